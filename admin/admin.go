// Package admin serves a dynamo node's state to operators over HTTP: JSON for
// tools (dynamoctl) and one HTML dashboard for people, mounted by the
// embedding service the way it mounts net/http/pprof.
//
//	mux.Handle("/admin/", http.StripPrefix("/admin", admin.Handler(node.Store)))
//
// Every endpoint is read-only and answers GET and HEAD:
//
//	/         the dashboard: node health, ring ownership, hint backlog, latency
//	          histograms, the last anti-entropy sync with each peer
//	/status   Status: the node's summary, with latency percentiles
//	/members  []Member: ring members and their reachability
//	/ring     dynamo.RingView: partitions owned per node
//	/hints    Hints: hints held per intended owner
//	/stats    dynamo.Metrics: the node's counters, histograms, anti-entropy results
//
// JSON field names are snake_case; each type documents its fields. No key or
// value stored in the cluster appears anywhere, unless WithHotKeys says so.
//
// The handler has no authentication of its own. What it shows (node IDs,
// addresses, load) helps an attacker map the cluster: mount it on an
// operators' listener, or behind the service's own authentication.
package admin

import (
	"encoding/json"
	"net/http"

	"github.com/dynamo-kv/dynamo"
)

// Option configures Handler.
type Option func(*options)

type options struct {
	hotKeys bool
}

// WithHotKeys includes Stats.HotKeys in /stats: the first 64 bytes of the
// keys this node's callers asked for most. They are left out by default
// because keys are application data (a cart key names its user, say), and an
// admin page is commonly open to more people than the data is; include them
// only where whoever can read the page may read keys.
func WithHotKeys() Option { return func(o *options) { o.hotKeys = true } }

// handler serves one Store's state.
type handler struct {
	st   *dynamo.Store
	opts options
	mux  *http.ServeMux
}

// Handler returns the admin handler of st. It serves the paths listed in the
// package doc relative to where it is mounted: strip the mount prefix
// (http.StripPrefix) so that the dashboard's root is "/". Links on the
// dashboard are relative, so it works under any prefix that ends in "/".
func Handler(st *dynamo.Store, opts ...Option) http.Handler {
	h := &handler{st: st, mux: http.NewServeMux()}
	for _, o := range opts {
		o(&h.opts)
	}
	h.mux.HandleFunc("GET /{$}", h.dashboard)
	h.mux.HandleFunc("GET /status", h.jsonOf(func() any { return h.status() }))
	h.mux.HandleFunc("GET /members", h.jsonOf(func() any { return h.members() }))
	h.mux.HandleFunc("GET /ring", h.jsonOf(func() any { return h.st.Ring() }))
	h.mux.HandleFunc("GET /hints", h.jsonOf(func() any { return h.hints() }))
	h.mux.HandleFunc("GET /stats", h.jsonOf(func() any { return h.stats() }))
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(w, r)
}

// jsonOf answers with the JSON of what build returns.
func (h *handler) jsonOf(build func() any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := json.MarshalIndent(build(), "", "  ")
		if err != nil {
			http.Error(w, "admin: encode: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(b, '\n'))
	}
}
