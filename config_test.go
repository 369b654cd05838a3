// config_test.go: DefaultConfig and Config.Validate, which reports every
// problem at once, names the values involved, and never modifies the config.
package dynamo

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/transport/memnet"
)

// cfgProblems returns the messages of the problems a Validate error reports,
// one per joined error.
func cfgProblems(t *testing.T, err error) []string {
	t.Helper()
	require.ErrorIs(t, err, ErrInvalidConfig)
	outer, ok := err.(interface{ Unwrap() []error })
	require.True(t, ok, "Validate wraps ErrInvalidConfig and the joined problems: %v", err)
	var out []string
	for _, e := range outer.Unwrap() {
		if e == ErrInvalidConfig {
			continue
		}
		joined, ok := e.(interface{ Unwrap() []error })
		require.True(t, ok, "problems are joined with errors.Join: %T", e)
		for _, p := range joined.Unwrap() {
			out = append(out, p.Error())
		}
	}
	return out
}

// cfgValid returns a config that passes Validate. Validate only checks that
// Transport and Storage are set, so typed nil pointers stand in for them.
func cfgValid() Config {
	c := DefaultConfig()
	c.NodeID = "n1"
	c.Transport = (*memnet.Transport)(nil)
	c.Storage = (*memory.Store)(nil)
	c.Members = []Member{{ID: "n1", Addr: "a1"}, {ID: "n2", Addr: "a2"}, {ID: "n3", Addr: "a3"}}
	return c
}

// cfgClone copies c deeply enough to detect any change Validate could make.
func cfgClone(c Config) Config {
	c.Members = slices.Clone(c.Members)
	return c
}

// Reference: §4.5 "A common (N,R,W) configuration used by several instances
// of Dynamo is (3,2,2)."
func TestConfig_DefaultConfig(t *testing.T) {
	c := DefaultConfig()
	require.Equal(t, 3, c.N)
	require.Equal(t, 2, c.R)
	require.Equal(t, 2, c.W)
	require.Greater(t, c.R+c.W, c.N, "R+W > N by default")
	require.Equal(t, DefaultPartitions, c.Partitions)
	require.Equal(t, DefaultCluster, c.Cluster)
	require.Equal(t, DefaultRequestTimeout, c.RequestTimeout)
	require.Equal(t, DefaultReplicaTimeout, c.ReplicaTimeout)

	// What DefaultConfig leaves to the caller is exactly what Validate asks for.
	require.ElementsMatch(t, []string{
		"NodeID is empty",
		"Transport is nil",
		"Storage is nil",
		"Membership is nil and Members is empty",
	}, cfgProblems(t, c.Validate()))
}

func TestConfig_Validate_ZeroConfigReportsEveryProblem(t *testing.T) {
	err := Config{}.Validate()
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ElementsMatch(t, []string{
		"NodeID is empty",
		"N (0) must be at least 1",
		"R (0) must be between 1 and N (0)",
		"W (0) must be between 1 and N (0)",
		"Transport is nil",
		"Storage is nil",
		"Membership is nil and Members is empty",
	}, cfgProblems(t, err))
	require.True(t, strings.HasPrefix(err.Error(), "dynamo: invalid config: "), err.Error())
}

func TestConfig_Validate(t *testing.T) {
	tooMany := make([]Member, maxMembers+1)
	for i := range tooMany {
		tooMany[i] = Member{ID: fmt.Sprint(i), Addr: fmt.Sprint(i)}
	}
	tests := map[string]struct {
		mut  func(*Config)
		want []string // nil: valid
	}{
		"valid":                      {mut: func(*Config) {}},
		"(3,1,3)":                    {mut: func(c *Config) { c.R, c.W = 1, 3 }},
		"(3,3,3)":                    {mut: func(c *Config) { c.R, c.W = 3, 3 }},
		"(3,1,1)":                    {mut: func(c *Config) { c.R, c.W = 1, 1 }},
		"N above the member count":   {mut: func(c *Config) { c.N, c.R, c.W = 5, 3, 3 }},
		"membership instead of list": {mut: func(c *Config) { c.Members, c.Membership = nil, (*membership.Static)(nil) }},
		"zero fields take defaults":  {mut: func(c *Config) { c.Partitions, c.Cluster, c.RequestTimeout, c.ReplicaTimeout = 0, "", 0, 0 }},
		"largest partition count":    {mut: func(c *Config) { c.Partitions = maxPartitions }},
		"one partition":              {mut: func(c *Config) { c.Partitions = 1 }},
		"NodeID at the limit":        {mut: func(c *Config) { c.NodeID = strings.Repeat("x", 128) }},
		"limits at their bounds":     {mut: func(c *Config) { c.Limits = Limits{MaxKeySize: 64 << 10, MaxSiblings: maxDecodedSiblings} }},
		"R above N":                  {mut: func(c *Config) { c.R = 4 }, want: []string{"R (4) must be between 1 and N (3)"}},
		"R zero":                     {mut: func(c *Config) { c.R = 0 }, want: []string{"R (0) must be between 1 and N (3)"}},
		"W above N":                  {mut: func(c *Config) { c.W = 4 }, want: []string{"W (4) must be between 1 and N (3)"}},
		"W negative":                 {mut: func(c *Config) { c.W = -1 }, want: []string{"W (-1) must be between 1 and N (3)"}},
		"R and W both wrong":         {mut: func(c *Config) { c.R, c.W = 7, 0 }, want: []string{"R (7) must be between 1 and N (3)", "W (0) must be between 1 and N (3)"}},
		"N zero takes R and W with it": {
			mut:  func(c *Config) { c.N = 0 },
			want: []string{"N (0) must be at least 1", "R (2) must be between 1 and N (0)", "W (2) must be between 1 and N (0)"},
		},
		"NodeID too long":     {mut: func(c *Config) { c.NodeID = strings.Repeat("x", 129) }, want: []string{"NodeID is 129 bytes, the limit is 128"}},
		"negative partitions": {mut: func(c *Config) { c.Partitions = -1 }, want: []string{fmt.Sprintf("Partitions (-1) must be between 1 and %d, or 0 for the default", maxPartitions)}},
		"too many partitions": {
			mut:  func(c *Config) { c.Partitions = maxPartitions + 1 },
			want: []string{fmt.Sprintf("Partitions (%d) must be between 1 and %d, or 0 for the default", maxPartitions+1, maxPartitions)},
		},
		"no members":       {mut: func(c *Config) { c.Members = nil }, want: []string{"Membership is nil and Members is empty"}},
		"too many members": {mut: func(c *Config) { c.Members = tooMany }, want: []string{fmt.Sprintf("Members has %d nodes, the limit is %d", maxMembers+1, maxMembers)}},
		"member without ID": {
			mut:  func(c *Config) { c.Members = append(c.Members, Member{Addr: "a4"}) },
			want: []string{"Members[3] has an empty ID"},
		},
		"member ID repeated": {
			mut:  func(c *Config) { c.Members = append(c.Members, Member{ID: "n2", Addr: "a4"}) },
			want: []string{`Members[3] repeats ID "n2"`},
		},
		"members in zones": {mut: func(c *Config) {
			c.Members[0].Zone, c.Members[1].Zone, c.Members[2].Zone = "a", "b", strings.Repeat("z", membership.MaxZoneLen)
		}},
		"member zone too long": {
			mut:  func(c *Config) { c.Members[2].Zone = strings.Repeat("z", membership.MaxZoneLen+1) },
			want: []string{fmt.Sprintf(`Members[2] (%q) has a Zone of %d bytes, the limit is %d`, "n3", membership.MaxZoneLen+1, membership.MaxZoneLen)},
		},
		"member without Addr": {
			mut:  func(c *Config) { c.Members[1].Addr = "" },
			want: []string{`Members[1] ("n2") has an empty Addr`},
		},
		"negative timeouts": {
			mut:  func(c *Config) { c.RequestTimeout, c.ReplicaTimeout = -time.Second, -time.Millisecond },
			want: []string{"RequestTimeout (-1s) is negative", "ReplicaTimeout (-1ms) is negative"},
		},
		"negative limit":            {mut: func(c *Config) { c.Limits.MaxContextSize = -1 }, want: []string{"Limits.MaxContextSize (-1) is negative"}},
		"key limit too large":       {mut: func(c *Config) { c.Limits.MaxKeySize = 64<<10 + 1 }, want: []string{"Limits.MaxKeySize (65537) exceeds 65536"}},
		"sibling limit too large":   {mut: func(c *Config) { c.Limits.MaxSiblings = maxDecodedSiblings + 1 }, want: []string{fmt.Sprintf("Limits.MaxSiblings (%d) exceeds %d", maxDecodedSiblings+1, maxDecodedSiblings)}},
		"value above state limit":   {mut: func(c *Config) { c.Limits.MaxValueSize, c.Limits.MaxStateSize = 2000, 1000 }, want: []string{"Limits.MaxValueSize (2000) exceeds Limits.MaxStateSize (1000)"}},
		"value above default state": {mut: func(c *Config) { c.Limits.MaxValueSize = 16 << 20 }, want: []string{"Limits.MaxValueSize (16777216) exceeds Limits.MaxStateSize (8388608)"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := cfgValid()
			tc.mut(&c)
			before := cfgClone(c)
			err := c.Validate()
			require.Equal(t, before, c, "Validate modified the config")
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ElementsMatch(t, tc.want, cfgProblems(t, err))
		})
	}
}

func TestConfig_Validate_NeverModifies(t *testing.T) {
	tests := map[string]Config{
		"zero":    {},
		"valid":   cfgValid(),
		"invalid": func() Config { c := cfgValid(); c.R, c.Partitions = 9, -1; c.Members[0].Addr = ""; return c }(),
		"default": DefaultConfig(),
	}
	for name, c := range tests {
		t.Run(name, func(t *testing.T) {
			before := cfgClone(c)
			_ = c.Validate()
			require.Equal(t, before, c)
			// Validate has a value receiver, but Members is shared with the
			// caller: its elements must not be filled in or reordered.
			require.Equal(t, before.Members, c.Members)
			if name == "zero" {
				require.Equal(t, Config{}, c, "Validate must not fill defaults")
			}
		})
	}
}

func TestConfig_WithDefaults(t *testing.T) {
	c := cfgValid()
	c.Cluster, c.Partitions, c.RequestTimeout, c.ReplicaTimeout = "", 0, 0, 0
	before := cfgClone(c)
	d := c.withDefaults()
	require.Equal(t, before, c, "withDefaults works on a copy")
	require.Equal(t, DefaultCluster, d.Cluster)
	require.Equal(t, DefaultPartitions, d.Partitions)
	require.Equal(t, DefaultRequestTimeout, d.RequestTimeout)
	require.Equal(t, DefaultReplicaTimeout, d.ReplicaTimeout)
	require.Equal(t, Limits{}.withDefaults(), d.Limits)
	require.NotNil(t, d.Logger)
	require.NotNil(t, d.Clock)
	require.NoError(t, d.Validate(), "defaults are valid")

	// Fields already set are kept.
	c.Partitions, c.Limits.MaxSiblings = 64, 7
	d = c.withDefaults()
	require.Equal(t, 64, d.Partitions)
	require.Equal(t, 7, d.Limits.MaxSiblings)
}
