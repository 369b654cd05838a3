// dashboard_test.go: the dashboard escapes what comes from the network (node
// IDs, addresses, zones) and draws one bar per node.
package admin

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo"
)

func TestDashboard_EscapesHostileNames(t *testing.T) {
	evil := `"><script>alert(1)</script><img src=x onerror=alert(2)>`
	v := dynamo.RingView{Partitions: 8, N: 3, Nodes: []dynamo.NodeView{
		{ID: "n0", Self: true, First: 5, Replica: 8, Reachable: true, MembershipUp: true},
		{ID: evil, Addr: evil, Zone: evil, First: 3, Replica: 8},
	}}
	m := dynamo.Metrics{Node: "n0"}
	m.Stats.Hints.Pending = map[string]int{evil: 4}
	m.AntiEntropy.Peers = []dynamo.AntiEntropyPeer{{Peer: evil, Err: evil}}
	var buf bytes.Buffer
	require.NoError(t, dashboardTmpl.Execute(&buf, pageOf("n0/1", v, m)))
	out := buf.String()
	require.NotContains(t, out, "<script")
	require.NotContains(t, out, "<img")
	require.NotContains(t, out, evil)
	require.Contains(t, out, "&lt;script&gt;")
	require.Equal(t, 2, strings.Count(out, "data-ownership-bar="))
	require.Equal(t, 1, strings.Count(out, "data-hint-bar="))
	require.Contains(t, out, `data-state="down"`)
}

func TestShorten(t *testing.T) {
	require.Equal(t, "n0", shorten("n0"))
	long := strings.Repeat("é", 100)
	s := shorten(long)
	require.Equal(t, labelLen, len([]rune(s)))
	require.True(t, strings.HasSuffix(s, "…"))
}

func TestDashboard_HintChartBounded(t *testing.T) {
	m := dynamo.Metrics{Node: "n0"}
	m.Stats.Hints.Pending = map[string]int{}
	for i := range 1000 {
		m.Stats.Hints.Pending[fmt.Sprintf("gone-%04d", i)] = 1 + i
	}
	var buf bytes.Buffer
	require.NoError(t, dashboardTmpl.Execute(&buf, pageOf("n0/1", dynamo.RingView{}, m)))
	out := buf.String()
	require.Equal(t, maxHintBars, strings.Count(out, "data-hint-bar="))
	require.Contains(t, out, `data-hint-bar="gone-0999"`, "the biggest backlog first")
	require.Contains(t, out, fmt.Sprintf(`data-hints-undrawn="%d"`, 1000-maxHintBars))
	require.Contains(t, out, "held for 1000 owners", "the text counts them all")
}
