// crdt_bench_test.go: what an OR-set update costs the client: merging the siblings of a read and encoding the write, for a set of 1,000 elements.
package dynamo

import (
	"fmt"
	"testing"
)

// BenchmarkORSet_Update1000 resolves a read of two concurrent siblings of a
// 1,000-element set (decode both, merge), adds an element and encodes the
// write: the CPU an UpdateSet spends outside the network and storage.
func BenchmarkORSet_Update1000(b *testing.B) {
	m := newCRDTModel(2)
	base := &ORSet[string]{}
	for i := range 1000 {
		base.Add(fmt.Sprintf("item-%06d", i))
	}
	v, err := encodeSet(base)
	if err != nil {
		b.Fatal(err)
	}
	m.write(0, nil, v)
	m.syncAll()
	st := m.read([]int{0})
	for c := range 2 { // two concurrent writes from the same read
		set, err := resolveSet[string](nil, st, Context{vv: st.VV})
		if err != nil {
			b.Fatal(err)
		}
		set.Add(fmt.Sprintf("new-%d", c))
		v, err := encodeSet(set)
		if err != nil {
			b.Fatal(err)
		}
		m.write(c, st.VV, v)
	}
	m.syncAll()
	st = m.read([]int{0})
	if len(st.Siblings) != 2 {
		b.Fatalf("%d siblings", len(st.Siblings))
	}
	b.ReportAllocs()
	for b.Loop() {
		set, err := resolveSet[string](nil, st, Context{vv: st.VV})
		if err != nil {
			b.Fatal(err)
		}
		set.Add("x")
		if _, err := encodeSet(set); err != nil {
			b.Fatal(err)
		}
	}
}
