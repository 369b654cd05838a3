// browser_test.go: the dashboard of a running 3-node cluster (TCP on
// 127.0.0.1, bbolt, memberlist) loaded in headless chromium, its rendered
// DOM checked, and a screenshot kept as a test artifact.
package admin_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/admin"
	"github.com/dynamo-kv/dynamo/internal/clustertest"
)

// The browser test's environment:
//
//	DYNAMO_CHROMIUM       the browser to run (default "chromium", Debian's package)
//	DYNAMO_SKIP_BROWSER=1 skip the test when the browser is missing; without
//	                      it a missing browser fails the test (CI installs it)
//	DYNAMO_ARTIFACTS      directory for dashboard.png and dashboard.html
//	                      (default: the test's temporary directory)
const (
	envChromium    = "DYNAMO_CHROMIUM"
	envSkipBrowser = "DYNAMO_SKIP_BROWSER"
	envArtifacts   = "DYNAMO_ARTIFACTS"
)

// chromium returns the browser's path, skipping or failing the test when
// it is missing.
func chromium(t *testing.T) string {
	name := cmpOr(os.Getenv(envChromium), "chromium")
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv(envSkipBrowser) == "1" {
			t.Skipf("%s not found and %s=1: %v", name, envSkipBrowser, err)
		}
		t.Fatalf("%s not found (%v): install Debian's chromium package (.ci/run does), or set %s=1 to skip", name, err, envSkipBrowser)
	}
	return path
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// attrs returns the values of attribute name on every element that has it
// in the DOM chromium serialized (always double-quoted).
func attrs(dom, name string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`\s`+regexp.QuoteMeta(name)+`="([^"]*)"`).FindAllStringSubmatch(dom, -1) {
		out = append(out, m[1])
	}
	return out
}

// elements returns, for each element carrying key, its attributes named in
// names: a bar's data-first and data-replica, say.
func elements(t *testing.T, dom, key string, names ...string) map[string]map[string]int {
	t.Helper()
	out := map[string]map[string]int{}
	for _, tag := range regexp.MustCompile(`<[a-z]+\s[^>]*`+regexp.QuoteMeta(key)+`="[^"]*"[^>]*>`).FindAllString(dom, -1) {
		id := attrs(tag, key)[0]
		out[id] = map[string]int{}
		for _, n := range names {
			v := attrs(tag, n)
			require.Len(t, v, 1, "%s on %s", n, tag)
			x, err := strconv.Atoi(v[0])
			require.NoError(t, err)
			out[id][n] = x
		}
	}
	return out
}

func TestDashboard_HeadlessChromium(t *testing.T) {
	browser := chromium(t)
	c := clustertest.Start(t, 3)
	n0 := c.Nodes[0]
	ctx := t.Context()
	const puts, gets = 30, 50
	for i := range puts {
		put(ctx, t, n0.Store, fmt.Appendf(nil, "k%d", i))
	}
	for i := range gets {
		_, _, err := n0.Get(ctx, fmt.Appendf(nil, "k%d", i%puts))
		require.NoError(t, err)
	}
	_, err := n0.AntiEntropy(ctx)
	require.NoError(t, err)

	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", admin.Handler(n0.Store)))
	srv := httptest.NewServer(mux) // 127.0.0.1
	defer srv.Close()

	dir := os.Getenv(envArtifacts)
	if dir == "" {
		dir = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	shot := filepath.Join(dir, "dashboard.png")
	bctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(bctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir="+t.TempDir(), "--window-size=1100,1500", "--hide-scrollbars",
		"--screenshot="+shot, "--dump-dom", srv.URL+"/admin/")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "chromium: %s", stderr.String())
	dom := string(out)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dashboard.html"), out, 0o644))
	t.Logf("screenshot: %s", shot)
	info, err := os.Stat(shot)
	require.NoError(t, err)
	require.Positive(t, info.Size())

	require.Equal(t, []string{"n0"}, attrs(dom, "data-self"))
	require.Equal(t, []string{"true"}, attrs(dom, "data-healthy"))
	require.Equal(t, []string{"3"}, attrs(dom, "data-members"))
	require.Equal(t, []string{"3"}, attrs(dom, "data-reachable"))

	require.Equal(t, []string{"n0", "n1", "n2"}, attrs(dom, "data-node"), "one table row per node")
	require.Equal(t, []string{"up", "up", "up"}, attrs(dom, "data-state"))

	bars := elements(t, dom, "data-ownership-bar", "data-first", "data-replica")
	require.Len(t, bars, 3, "one ownership bar per node")
	first := 0
	for id, b := range bars {
		v := n0.Ring()
		for _, n := range v.Nodes {
			if n.ID == id {
				require.Equal(t, n.First, b["data-first"], id)
			}
		}
		require.Equal(t, 64, b["data-replica"], "%s: 3 nodes, N=3", id)
		first += b["data-first"]
	}
	require.Equal(t, 64, first)

	hist := elements(t, dom, "data-histogram", "data-count")
	require.Equal(t, gets, hist["get"]["data-count"])
	require.Equal(t, puts, hist["put"]["data-count"])
	sum := 0
	for _, s := range attrs(dom, "data-bucket-count") {
		x, err := strconv.Atoi(s)
		require.NoError(t, err)
		sum += x
	}
	require.Equal(t, gets+puts, sum, "every request drawn in a bucket")

	require.ElementsMatch(t, []string{"n1", "n2"}, attrs(dom, "data-ae-peer"), "the last anti-entropy sync with each peer")
	require.Empty(t, attrs(dom, "data-hint-bar"), "no node missed a write")
	require.Len(t, attrs(dom, "data-chart"), 2, "ownership chart and the empty hint backlog")
	require.NotRegexp(t, `(src|href)="(https?:)?//`, dom, "no external assets")
}
