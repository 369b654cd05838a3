// vclock_test.go: layer-1 table tests of §4.4 dotted version vectors: vector
// operations, the sibling sync rule, minting a write's dot, and the paper's
// Figure 3 history at the pure level.
package dynamo

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// vcDot parses "a:3" into the dot (a, 3).
func vcDot(s string) dot {
	actor, n, ok := strings.Cut(s, ":")
	if !ok {
		panic("vcDot: missing ':' in " + s)
	}
	c, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		panic(err)
	}
	return dot{Actor: actor, Counter: c}
}

// vcVV parses "a:2 b:1" into a version vector, sorted by actor. "" is the
// empty vector.
func vcVV(s string) versionVector {
	var v versionVector
	for _, f := range strings.Fields(s) {
		d := vcDot(f)
		v = append(v, vvEntry{Actor: d.Actor, Counter: d.Counter})
	}
	slices.SortFunc(v, func(a, b vvEntry) int { return strings.Compare(a.Actor, b.Actor) })
	return v
}

// vcState builds a replica state from its vector and siblings written as
// "a:2=value" (live) or "a:2~" (tombstone), sorted by dot.
func vcState(vv string, sibs ...string) state {
	st := state{VV: vcVV(vv)}
	for _, s := range sibs {
		var sb sibling
		if d, ok := strings.CutSuffix(s, "~"); ok {
			sb = sibling{Dot: vcDot(d), Tombstone: true}
		} else {
			d, v, ok := strings.Cut(s, "=")
			if !ok {
				panic("vcState: sibling needs '=' or '~': " + s)
			}
			sb = sibling{Dot: vcDot(d), Value: []byte(v)}
		}
		st.Siblings = append(st.Siblings, sb)
	}
	slices.SortFunc(st.Siblings, func(a, b sibling) int { return a.Dot.compare(b.Dot) })
	return st
}

// vcVVString renders a vector as "[a:2 b:1]".
func vcVVString(v versionVector) string {
	parts := make([]string, len(v))
	for i, e := range v {
		parts[i] = fmt.Sprintf("%s:%d", e.Actor, e.Counter)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// vcString renders a state as "[a:2 b:1]{a:2=x b:1~}", in stored order, so
// that table expectations read like the paper and failures diff well.
// Timestamps are left out.
func vcString(st state) string {
	parts := make([]string, len(st.Siblings))
	for i, sb := range st.Siblings {
		if sb.Tombstone {
			parts[i] = fmt.Sprintf("%s:%d~", sb.Dot.Actor, sb.Dot.Counter)
		} else {
			parts[i] = fmt.Sprintf("%s:%d=%s", sb.Dot.Actor, sb.Dot.Counter, sb.Value)
		}
	}
	return vcVVString(st.VV) + "{" + strings.Join(parts, " ") + "}"
}

// vcRequireWellFormed checks the invariants of a stored state: a sorted,
// unique, non-zero vector that covers every sibling, and siblings sorted by
// dot and unique.
func vcRequireWellFormed(t require.TestingT, st state) {
	for i, e := range st.VV {
		require.NotZero(t, e.Counter, "zero counter in %s", vcString(st))
		require.NotEmpty(t, e.Actor, "empty actor in %s", vcString(st))
		if i > 0 {
			require.Less(t, st.VV[i-1].Actor, e.Actor, "vector not sorted or not unique in %s", vcString(st))
		}
	}
	for i, sb := range st.Siblings {
		require.True(t, st.VV.covers(sb.Dot), "sibling %v not covered in %s", sb.Dot, vcString(st))
		require.NotZero(t, sb.Dot.Counter, "zero dot in %s", vcString(st))
		if i > 0 {
			require.Negative(t, st.Siblings[i-1].Dot.compare(sb.Dot), "siblings not sorted or not unique in %s", vcString(st))
		}
	}
}

func TestVClock_VersionVector_Get(t *testing.T) {
	tests := map[string]struct {
		vv    string
		actor string
		want  uint64
	}{
		"empty vector":           {vv: "", actor: "a", want: 0},
		"present first":          {vv: "a:3 c:1", actor: "a", want: 3},
		"present last":           {vv: "a:3 c:7", actor: "c", want: 7},
		"absent before all":      {vv: "b:3 c:1", actor: "a", want: 0},
		"absent between":         {vv: "a:3 c:1", actor: "b", want: 0},
		"absent after all":       {vv: "a:3 c:1", actor: "d", want: 0},
		"actor is a prefix":      {vv: "ab:5", actor: "a", want: 0},
		"incarnation is actor":   {vv: "n1/01:4 n1/02:1", actor: "n1/02", want: 1},
		"large counter survives": {vv: "a:4611686018427387904", actor: "a", want: 1 << 62},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, tc.want, vcVV(tc.vv).get(tc.actor))
		})
	}
}

func TestVClock_VersionVector_Covers(t *testing.T) {
	tests := map[string]struct {
		vv   string
		dot  string
		want bool
	}{
		"empty vector covers nothing": {vv: "", dot: "a:1", want: false},
		"below the entry":             {vv: "a:3", dot: "a:2", want: true},
		"at the entry":                {vv: "a:3", dot: "a:3", want: true},
		"above the entry":             {vv: "a:3", dot: "a:4", want: false},
		"other actor":                 {vv: "a:3", dot: "b:1", want: false},
		"one of several":              {vv: "a:1 b:5 c:2", dot: "b:5", want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, tc.want, vcVV(tc.vv).covers(vcDot(tc.dot)))
		})
	}
}

func TestVClock_VersionVector_With(t *testing.T) {
	tests := map[string]struct {
		vv      string
		actor   string
		counter uint64
		want    string
	}{
		"into empty":          {vv: "", actor: "a", counter: 1, want: "[a:1]"},
		"insert first":        {vv: "b:1 c:1", actor: "a", counter: 2, want: "[a:2 b:1 c:1]"},
		"insert between":      {vv: "a:1 c:1", actor: "b", counter: 2, want: "[a:1 b:2 c:1]"},
		"insert last":         {vv: "a:1 b:1", actor: "c", counter: 2, want: "[a:1 b:1 c:2]"},
		"raise existing":      {vv: "a:1 b:1 c:1", actor: "b", counter: 9, want: "[a:1 b:9 c:1]"},
		"equal is a no-op":    {vv: "a:1 b:4", actor: "b", counter: 4, want: "[a:1 b:4]"},
		"lower never lowers":  {vv: "a:1 b:4", actor: "b", counter: 2, want: "[a:1 b:4]"},
		"raise only existing": {vv: "a:7", actor: "a", counter: 8, want: "[a:8]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := vcVV(tc.vv)
			before := vcVVString(in)
			got := in.with(tc.actor, tc.counter)
			require.Equal(t, tc.want, vcVVString(got))
			require.Equal(t, before, vcVVString(in), "with must not modify its receiver")
			vcRequireWellFormed(t, state{VV: got})
		})
	}
}

func TestVClock_Join(t *testing.T) {
	tests := map[string]struct {
		a, b string
		want string
	}{
		"both empty":         {a: "", b: "", want: "[]"},
		"left empty":         {a: "", b: "a:1 b:2", want: "[a:1 b:2]"},
		"right empty":        {a: "a:1 b:2", b: "", want: "[a:1 b:2]"},
		"identical":          {a: "a:1 b:2", b: "a:1 b:2", want: "[a:1 b:2]"},
		"pointwise max":      {a: "a:3 b:1", b: "a:1 b:4", want: "[a:3 b:4]"},
		"disjoint":           {a: "a:1 c:1", b: "b:2 d:2", want: "[a:1 b:2 c:1 d:2]"},
		"one side dominates": {a: "a:5 b:5 c:5", b: "b:1", want: "[a:5 b:5 c:5]"},
		"partly overlapping": {a: "a:1 b:2", b: "b:3 c:4", want: "[a:1 b:3 c:4]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a, b := vcVV(tc.a), vcVV(tc.b)
			got := join(a, b)
			require.Equal(t, tc.want, vcVVString(got))
			require.Equal(t, tc.want, vcVVString(join(b, a)), "join is commutative")
			require.True(t, got.descends(a) && got.descends(b), "the join descends both sides")
			require.Equal(t, vcVVString(vcVV(tc.a)), vcVVString(a), "join must not modify a")
			require.Equal(t, vcVVString(vcVV(tc.b)), vcVVString(b), "join must not modify b")
			vcRequireWellFormed(t, state{VV: got})
		})
	}
}

func TestVClock_VersionVector_Descends(t *testing.T) {
	tests := map[string]struct {
		v, o string
		want bool
	}{
		"empty descends empty":           {v: "", o: "", want: true},
		"anything descends empty":        {v: "a:1", o: "", want: true},
		"empty does not descend":         {v: "", o: "a:1", want: false},
		"equal":                          {v: "a:2 b:1", o: "a:2 b:1", want: true},
		"strictly greater":               {v: "a:3 b:1", o: "a:2 b:1", want: true},
		"extra actor":                    {v: "a:2 b:1 c:1", o: "a:2 b:1", want: true},
		"missing actor":                  {v: "a:2", o: "a:2 b:1", want: false},
		"concurrent one way":             {v: "a:2 b:1", o: "a:1 b:2", want: false},
		"concurrent the other way":       {v: "a:1 b:2", o: "a:2 b:1", want: false},
		"behind on one entry of several": {v: "a:9 b:9 c:1", o: "a:1 b:1 c:2", want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, tc.want, vcVV(tc.v).descends(vcVV(tc.o)))
		})
	}
}

func TestVClock_SyncStates(t *testing.T) {
	tests := map[string]struct {
		a, b state
		want string
	}{
		"both empty": {
			a: state{}, b: state{}, want: "[]{}",
		},
		"left empty": {
			a: state{}, b: vcState("a:1", "a:1=x"), want: "[a:1]{a:1=x}",
		},
		"right empty": {
			a: vcState("a:2 b:1", "a:2=x", "b:1=y"), b: state{}, want: "[a:2 b:1]{a:2=x b:1=y}",
		},
		"identical": {
			a: vcState("a:2 b:1", "a:2=x", "b:1=y"), b: vcState("a:2 b:1", "a:2=x", "b:1=y"),
			want: "[a:2 b:1]{a:2=x b:1=y}",
		},
		"both keep the sibling they share": {
			a: vcState("a:1 b:1", "a:1=x", "b:1=y"), b: vcState("a:1 c:1", "a:1=x", "c:1=z"),
			want: "[a:1 b:1 c:1]{a:1=x b:1=y c:1=z}",
		},
		"one side superseded": {
			a: vcState("a:1", "a:1=x"), b: vcState("a:1 b:1", "b:1=y"),
			want: "[a:1 b:1]{b:1=y}",
		},
		"stale replica catches up with its own actor": {
			a: vcState("a:1", "a:1=x"), b: vcState("a:3", "a:3=z"),
			want: "[a:3]{a:3=z}",
		},
		"disjoint concurrent": {
			a: vcState("a:1", "a:1=x"), b: vcState("b:1", "b:1=y"),
			want: "[a:1 b:1]{a:1=x b:1=y}",
		},
		"concurrent kept, superseded dropped": {
			// a holds two concurrent writes through a; b's write saw only a:1.
			a: vcState("a:2", "a:1=p", "a:2=q"), b: vcState("a:1 b:1", "b:1=r"),
			want: "[a:2 b:1]{a:2=q b:1=r}",
		},
		"tombstone supersedes the value it saw": {
			a: vcState("a:1", "a:1=x"), b: vcState("a:1 b:1", "b:1~"),
			want: "[a:1 b:1]{b:1~}",
		},
		"tombstone concurrent with a write": {
			a: vcState("a:1", "a:1~"), b: vcState("b:1", "b:1=y"),
			want: "[a:1 b:1]{a:1~ b:1=y}",
		},
		"each side superseded something of the other": {
			a: vcState("a:2 b:1", "a:2=x"), b: vcState("a:1 b:2", "b:2=y"),
			want: "[a:2 b:2]{a:2=x b:2=y}",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			beforeA, beforeB := vcString(tc.a), vcString(tc.b)
			ab, ba := syncStates(tc.a, tc.b), syncStates(tc.b, tc.a)
			require.Equal(t, tc.want, vcString(ab))
			require.Equal(t, tc.want, vcString(ba), "syncStates is commutative")
			require.True(t, sameVersion(ab, ba))
			require.Equal(t, beforeA, vcString(tc.a), "syncStates must not modify a")
			require.Equal(t, beforeB, vcString(tc.b), "syncStates must not modify b")
			require.Equal(t, tc.want, vcString(syncStates(ab, tc.a)), "syncing a side again changes nothing")
			require.Equal(t, tc.want, vcString(syncStates(ab, ab)), "syncStates is idempotent")
			vcRequireWellFormed(t, ab)
		})
	}
}

// A dot names one event, so two replicas holding the same dot with
// different versions means a node issued the dot twice (it lost data) or a
// disk lied (issue 20). The merge keeps both, each moved to a dot derived
// from the dot and its content, whichever side the merge is called on; the
// same version on both sides stays put.
func TestVClock_SyncStates_SameDotKeepsBothVersions(t *testing.T) {
	tests := map[string]struct {
		a, b sibling
		same bool
	}{
		"different values":        {a: sibling{Time: 5, Value: []byte("x")}, b: sibling{Time: 5, Value: []byte("y")}},
		"different times":         {a: sibling{Time: 1, Value: []byte("x")}, b: sibling{Time: 2, Value: []byte("x")}},
		"tombstone against value": {a: sibling{Time: 5, Value: []byte("x")}, b: sibling{Time: 5, Tombstone: true}},
		"the same version":        {a: sibling{Time: 5, Value: []byte("x")}, b: sibling{Time: 5, Value: []byte("x")}, same: true},
	}
	d := vcDot("n/01.5:1")
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tc.a.Dot, tc.b.Dot = d, d
			a := state{VV: vcVV("n/01.5:1"), Siblings: []sibling{tc.a}}
			b := state{VV: vcVV("n/01.5:1"), Siblings: []sibling{tc.b}}
			ab, conflicts := syncCount(a, b)
			vcRequireWellFormed(t, ab)
			vcpRequireSameState(t, ab, syncStates(b, a), "the merge does not depend on argument order")
			if tc.same {
				require.Zero(t, conflicts)
				require.Equal(t, []sibling{tc.a}, ab.Siblings)
				return
			}
			require.Equal(t, 1, conflicts)
			require.Len(t, ab.Siblings, 2, "both versions stay visible")
			for _, sb := range ab.Siblings {
				require.True(t, strings.HasPrefix(sb.Dot.Actor, "n/01.5#"), "moved to a derived actor: %s", sb.Dot.Actor)
				require.Equal(t, uint64(1), sb.Dot.Counter)
				require.True(t, ab.VV.covers(d), "the conflicted dot stays seen")
			}
			vcpRequireSameState(t, ab, syncStates(ab, a), "a stale copy of one side moves and merges in")
			vcpRequireSameState(t, ab, syncStates(b, ab), "from either side")
		})
	}
}

// Three versions under one dot: however the replicas meet, each ends under
// its own derived dot. A moved version that a side superseded (it has seen
// the derived dot without holding it) stays superseded, even when a stale
// copy of it comes back under the original dot; a version under the
// conflicted dot that nobody saw moves and survives.
func TestVClock_SyncStates_SameDot_ThreeWaysAndSupersede(t *testing.T) {
	v := func(val string, tm int64) state {
		return state{VV: vcVV("n/01.5:1"), Siblings: []sibling{{Dot: vcDot("n/01.5:1"), Time: tm, Value: []byte(val)}}}
	}
	x, y, z := v("x", 3), v("y", 2), v("z", 1)
	left := syncStates(syncStates(x, y), z)
	right := syncStates(x, syncStates(y, z))
	other := syncStates(syncStates(z, x), y)
	vcpRequireSameState(t, left, right, "associative")
	vcpRequireSameState(t, left, other, "any order")
	require.Equal(t, []string{"x", "y", "z"}, liveValues(left))
	for _, sb := range left.Siblings {
		require.Equal(t, 1, strings.Count(sb.Dot.Actor, "#"), "derived once: %s", sb.Dot.Actor)
	}

	// A client reads {x, y} (moved) and writes w with that context: x and y
	// are superseded. z, met later, moves and survives (nobody saw it); x and
	// y, met again in their original form, stay superseded.
	xy := syncStates(x, y)
	w, _ := mint(xy, xy.VV, "m/02.1", []byte("w"), false, 9)
	got := syncStates(syncStates(syncStates(w, z), y), x)
	vcRequireWellFormed(t, got)
	require.Equal(t, []string{"w", "z"}, liveValues(got))
	vcpRequireSameState(t, got, syncStates(x, syncStates(y, syncStates(z, w))), "in any order")
}

func TestVClock_Mint(t *testing.T) {
	tests := map[string]struct {
		st        state
		ctx       string
		actor     string
		value     string
		tombstone bool
		want      string
		wantDot   string
	}{
		"first write of a key": {
			st: state{}, ctx: "", actor: "a", value: "v",
			want: "[a:1]{a:1=v}", wantDot: "a:1",
		},
		"supersedes exactly what ctx covers": {
			st: vcState("a:1 b:1", "a:1=x", "b:1=y"), ctx: "a:1 b:1", actor: "a", value: "v",
			want: "[a:2 b:1]{a:2=v}", wantDot: "a:2",
		},
		"keeps the concurrent sibling ctx did not cover": {
			st: vcState("a:1 b:1", "a:1=x", "b:1=y"), ctx: "a:1", actor: "a", value: "v",
			want: "[a:2 b:1]{a:2=v b:1=y}", wantDot: "a:2",
		},
		"empty ctx supersedes nothing": {
			st: vcState("a:1", "a:1=x"), ctx: "", actor: "a", value: "v",
			want: "[a:2]{a:1=x a:2=v}", wantDot: "a:2",
		},
		"counter from the local vector when ctx is behind": {
			st: vcState("a:3", "a:3=x"), ctx: "a:1", actor: "a", value: "v",
			want: "[a:4]{a:3=x a:4=v}", wantDot: "a:4",
		},
		"counter from ctx when ctx is ahead of the replica": {
			// The replica lost the key (or never had it) but the client saw a:5.
			st: state{}, ctx: "a:5", actor: "a", value: "v",
			want: "[a:6]{a:6=v}", wantDot: "a:6",
		},
		"counter is per actor": {
			st: vcState("a:2 b:7", "b:7=y"), ctx: "b:7", actor: "a", value: "v",
			want: "[a:3 b:7]{a:3=v}", wantDot: "a:3",
		},
		"ctx covers dots this replica never held": {
			st: vcState("b:1", "b:1=y"), ctx: "b:1 c:2", actor: "b", value: "v",
			want: "[b:2 c:2]{b:2=v}", wantDot: "b:2",
		},
		"new dot sorts among concurrent siblings": {
			st: vcState("a:1 c:1", "a:1=x", "c:1=z"), ctx: "", actor: "b", value: "v",
			want: "[a:1 b:1 c:1]{a:1=x b:1=v c:1=z}", wantDot: "b:1",
		},
		"new dot sorts first": {
			st: vcState("b:1 c:1", "b:1=y", "c:1=z"), ctx: "", actor: "a", value: "v",
			want: "[a:1 b:1 c:1]{a:1=v b:1=y c:1=z}", wantDot: "a:1",
		},
		"tombstone keeps a dot": {
			st: vcState("a:1", "a:1=x"), ctx: "a:1", actor: "a", tombstone: true,
			want: "[a:2]{a:2~}", wantDot: "a:2",
		},
		"tombstone keeps concurrent siblings": {
			st: vcState("a:1 b:1", "a:1=x", "b:1=y"), ctx: "a:1", actor: "a", tombstone: true,
			want: "[a:2 b:1]{a:2~ b:1=y}", wantDot: "a:2",
		},
		"write over a tombstone": {
			st: vcState("a:2", "a:2~"), ctx: "a:2", actor: "a", value: "v",
			want: "[a:3]{a:3=v}", wantDot: "a:3",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := vcString(tc.st)
			ctx := vcVV(tc.ctx)
			var value []byte
			if !tc.tombstone {
				value = []byte(tc.value)
			}
			got, d := mint(tc.st, ctx, tc.actor, value, tc.tombstone, 42)
			require.Equal(t, tc.want, vcString(got))
			require.Equal(t, vcDot(tc.wantDot), d)
			require.Equal(t, before, vcString(tc.st), "mint must not modify the replica state")
			require.False(t, ctx.covers(d), "the new dot is never in the writer's context")
			require.Equal(t, max(tc.st.VV.get(tc.actor), ctx.get(tc.actor))+1, d.Counter)
			require.Equal(t, concurrentCount(tc.st, ctx, dot{})+1, len(got.Siblings),
				"concurrentCount predicts the siblings left beside the write")
			i := slices.IndexFunc(got.Siblings, func(sb sibling) bool { return sb.Dot == d })
			require.GreaterOrEqual(t, i, 0)
			require.Equal(t, int64(42), got.Siblings[i].Time)
			require.Equal(t, tc.tombstone, got.Siblings[i].Tombstone)
			vcRequireWellFormed(t, got)
		})
	}
}

func TestVClock_SameVersion(t *testing.T) {
	tests := map[string]struct {
		a, b state
		want bool
	}{
		"both empty":            {a: state{}, b: state{}, want: true},
		"empty and non-empty":   {a: state{}, b: vcState("a:1", "a:1=x"), want: false},
		"equal":                 {a: vcState("a:2 b:1", "a:2=x", "b:1=y"), b: vcState("a:2 b:1", "a:2=x", "b:1=y"), want: true},
		"vector differs":        {a: vcState("a:2", "a:2=x"), b: vcState("a:2 b:1", "a:2=x"), want: false},
		"sibling dots differ":   {a: vcState("a:2 b:1", "a:2=x"), b: vcState("a:2 b:1", "b:1=x"), want: false},
		"one sibling more":      {a: vcState("a:2 b:1", "a:2=x"), b: vcState("a:2 b:1", "a:2=x", "b:1=y"), want: false},
		"tombstone vs no dot":   {a: vcState("a:2", "a:2~"), b: vcState("a:2"), want: false},
		"values are not events": {a: vcState("a:1", "a:1=x"), b: vcState("a:1", "a:1=y"), want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, tc.want, sameVersion(tc.a, tc.b))
			require.Equal(t, tc.want, sameVersion(tc.b, tc.a), "sameVersion is symmetric")
		})
	}
}

func TestVClock_State_LiveAndEmpty(t *testing.T) {
	tests := map[string]struct {
		st        state
		wantLive  []string
		wantEmpty bool
	}{
		"zero state":      {st: state{}, wantLive: nil, wantEmpty: true},
		"all live":        {st: vcState("a:1 b:1", "a:1=x", "b:1=y"), wantLive: []string{"x", "y"}},
		"only tombstones": {st: vcState("a:1", "a:1~"), wantLive: nil},
		"mixed":           {st: vcState("a:2 b:1", "a:2~", "b:1=y"), wantLive: []string{"y"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, sb := range tc.st.live() {
				require.False(t, sb.Tombstone)
				got = append(got, string(sb.Value))
			}
			require.Equal(t, tc.wantLive, got)
			require.Equal(t, tc.wantEmpty, tc.st.empty())
		})
	}
}

// Reference: §4.4 Figure 3 "Version evolution of an object over time", at the
// level of replica states: D1 and D2 through Sx, D3 through Sy and D4 through
// Sz from D2's context, a read that merges them, and D5 through Sx that
// reconciles both.
func TestVClock_Figure3_VersionEvolution(t *testing.T) {
	var sx, sy, sz state
	var d dot

	sx, d = mint(sx, nil, "Sx", []byte("D1"), false, 1)
	require.Equal(t, "[Sx:1]{Sx:1=D1}", vcString(sx))
	require.Equal(t, vcDot("Sx:1"), d)

	ctx1 := sx.VV // the client reads D1
	sx, _ = mint(sx, ctx1, "Sx", []byte("D2"), false, 2)
	require.Equal(t, "[Sx:2]{Sx:2=D2}", vcString(sx), "D2 descends from D1 and overwrites it")

	// D2 reaches Sy and Sz; a client reads D2's context.
	sy, sz = syncStates(sy, sx), syncStates(sz, sx)
	ctx2 := sx.VV

	sy, _ = mint(sy, ctx2, "Sy", []byte("D3"), false, 3)
	sz, _ = mint(sz, ctx2, "Sz", []byte("D4"), false, 4)
	require.Equal(t, "[Sx:2 Sy:1]{Sy:1=D3}", vcString(sy))
	require.Equal(t, "[Sx:2 Sz:1]{Sz:1=D4}", vcString(sz))

	// A read that reaches every replica merges them; D2 is gone, D3 and D4
	// are concurrent and both survive.
	read := syncStates(syncStates(sx, sy), sz)
	require.Equal(t, "[Sx:2 Sy:1 Sz:1]{Sy:1=D3 Sz:1=D4}", vcString(read))
	require.Equal(t, vcString(read), vcString(syncStates(sz, syncStates(sy, sx))), "any merge order")

	// The client reconciles and writes D5 through Sx with the merged context.
	sx = syncStates(sx, read)
	sx, d = mint(sx, read.VV, "Sx", []byte("D5"), false, 5)
	require.Equal(t, "[Sx:3 Sy:1 Sz:1]{Sx:3=D5}", vcString(sx), "D5([Sx,3],[Sy,1],[Sz,1]) as in the paper")
	require.Equal(t, vcDot("Sx:3"), d)

	// Once D5 reaches the others, it supersedes D3 and D4 everywhere.
	sy, sz = syncStates(sy, sx), syncStates(sz, sx)
	for name, st := range map[string]state{"Sy": sy, "Sz": sz} {
		require.Equal(t, "[Sx:3 Sy:1 Sz:1]{Sx:3=D5}", vcString(st), name)
	}
}

// DESIGN §2: two clients that read the same context and write through the
// same coordinator must both keep their values. With plain per-node vector
// clocks the coordinator would stamp them [a:2] and [a:3], the second would
// descend from the first, and one update would be lost.
func TestVClock_SameCoordinator_KeepsConcurrentWrites(t *testing.T) {
	st, _ := mint(state{}, nil, "a", []byte("base"), false, 1)
	ctxAlice, ctxBob := st.VV, st.VV // both read [a:1]

	st, _ = mint(st, ctxAlice, "a", []byte("alice"), false, 2)
	st, _ = mint(st, ctxBob, "a", []byte("bob"), false, 3)
	require.Equal(t, "[a:3]{a:2=alice a:3=bob}", vcString(st), "both writes survive as siblings; base is superseded")

	// A client that read both siblings reconciles them with one write.
	st, _ = mint(st, st.VV, "a", []byte("alice+bob"), false, 4)
	require.Equal(t, "[a:4]{a:4=alice+bob}", vcString(st))
}

// A replica that merges in a sibling it already superseded must not bring it
// back, whichever way the merge goes.
func TestVClock_SyncStates_NoResurrection(t *testing.T) {
	a, _ := mint(state{}, nil, "a", []byte("old"), false, 1)
	b := syncStates(state{}, a) // b holds the old value
	a, _ = mint(a, a.VV, "a", nil, true, 2)
	require.Equal(t, "[a:2]{a:2~}", vcString(a))
	require.Equal(t, "[a:2]{a:2~}", vcString(syncStates(a, b)))
	require.Equal(t, "[a:2]{a:2~}", vcString(syncStates(b, a)))
}
