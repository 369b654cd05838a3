// example_test.go: a runnable example of mounting the admin handler.
package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/dynamo-kv/dynamo"
	"github.com/dynamo-kv/dynamo/admin"
	"github.com/dynamo-kv/dynamo/storage/memory"
	"github.com/dynamo-kv/dynamo/transport/memnet"
)

// Mount the handler under /admin/, as with net/http/pprof, and read a
// node's status as a tool would. A service would serve mux on an
// operators' listener; dynamoctl reads the same JSON.
func ExampleHandler() {
	network := memnet.New(memnet.Options{})
	tr, _ := network.Listen("a")
	defer tr.Close()
	cfg := dynamo.DefaultConfig()
	cfg.NodeID, cfg.Transport, cfg.Storage, cfg.Partitions = "a", tr, memory.New(), 64
	cfg.Members = []dynamo.Member{{ID: "a", Addr: "a"}}
	st, err := dynamo.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()

	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", admin.Handler(st)))

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/status", nil))
	var s admin.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: healthy=%v members=%d reachable=%d partitions=%d\n", s.Node, s.Healthy, s.Members, s.Reachable, s.Partitions)
	// Output:
	// a: healthy=true members=1 reachable=1 partitions=64
}
