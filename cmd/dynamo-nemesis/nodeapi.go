// nodeapi.go: the node process's data API over HTTP: adds to and deletes
// of set keys, reads, local reads, and their error replies.

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"

	"github.com/dynamo-kv/dynamo"
)

var codec dynamo.MsgpackCodec[[]int64]

// newWriterID returns a fresh negative marker naming one write.
func newWriterID() int64 { return -int64(rand.Uint64()>>2) - 1 }

// split returns the elements (positive) and writer markers (negative) of v.
func split(v []int64) (elems, writers []int64) {
	for _, x := range v {
		if x < 0 {
			writers = append(writers, x)
		} else {
			elems = append(elems, x)
		}
	}
	return elems, writers
}

// addReply answers POST /add.
type addReply struct {
	Writer     int64   `json:"writer"`
	Siblings   int     `json:"siblings"`   // most siblings the Modify's reads saw
	Superseded []int64 `json:"superseded"` // writers of the versions the write superseded
}

func (s *nodeServer) add(w http.ResponseWriter, r *http.Request) {
	n := s.store(w)
	if n == nil {
		return
	}
	key := r.URL.Query().Get("key")
	elem, err := strconv.ParseInt(r.URL.Query().Get("elem"), 10, 64)
	if err != nil || elem <= 0 || key == "" {
		writeJSON(w, http.StatusBadRequest, errorReply{Error: "want key=K&elem=E with E > 0"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.f.opTime)
	defer cancel()
	var rep addReply
	merge := func(values [][]int64) ([]int64, error) {
		rep.Siblings = max(rep.Siblings, len(values))
		if s.f.mode == "lww" {
			// Never called with more than one value: the Store's Resolver
			// (dynamo.Latest) already kept the latest sibling.
			return values[len(values)-1], nil
		}
		return dynamo.Union(values)
	}
	fn := func(cur []int64, found bool) ([]int64, error) {
		if found {
			rep.Siblings = max(rep.Siblings, 1)
		}
		elems, writers := split(cur)
		rep.Writer = newWriterID()
		rep.Superseded = writers
		next := append(elems, elem, rep.Writer)
		slices.Sort(next)
		return slices.Compact(next), nil
	}
	if _, err := dynamo.Modify(ctx, n.Store, []byte(key), codec, merge, fn); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// deleteReply answers POST /delete. Elems and Writers are what the delete's
// Get saw, so what its tombstone covers; they are sent also when the Delete
// itself failed (it may still have been stored), with Error set.
type deleteReply struct {
	Stage    string  `json:"stage"` // "get": the Get failed, nothing was written; "delete": the Delete ran
	Elems    []int64 `json:"elems"`
	Writers  []int64 `json:"writers"`
	Siblings int     `json:"siblings"`
	Error    string  `json:"error,omitempty"`
}

func (s *nodeServer) del(w http.ResponseWriter, r *http.Request) {
	n := s.store(w)
	if n == nil {
		return
	}
	key := []byte(r.URL.Query().Get("key"))
	ctx, cancel := context.WithTimeout(r.Context(), s.f.opTime)
	defer cancel()
	sibs, c, err := n.Get(ctx, key)
	if err != nil {
		writeJSON(w, errorStatus(err), deleteReply{Stage: "get", Error: err.Error()})
		return
	}
	rep := deleteReply{Stage: "delete", Siblings: len(sibs)}
	for _, sb := range decodeSiblings(sibs) {
		rep.Elems = append(rep.Elems, sb.Elems...)
		rep.Writers = append(rep.Writers, sb.Writer)
	}
	slices.Sort(rep.Elems)
	rep.Elems = slices.Compact(rep.Elems)
	if err := n.Delete(ctx, key, c); err != nil {
		rep.Error = err.Error()
		writeJSON(w, errorStatus(err), rep)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// siblingView is one sibling as the endpoints report it.
type siblingView struct {
	Writer int64   `json:"writer"` // 0 if the value had no marker (or did not decode)
	Elems  []int64 `json:"elems"`
	Bad    string  `json:"bad,omitempty"` // the decode error of a value that is not a set
}

func decodeSiblings(sibs []dynamo.Sibling) []siblingView {
	out := make([]siblingView, 0, len(sibs))
	for _, sb := range sibs {
		v, err := codec.Unmarshal(sb.Value)
		if err != nil {
			out = append(out, siblingView{Bad: err.Error()})
			continue
		}
		elems, writers := split(v)
		view := siblingView{Elems: elems}
		if len(writers) > 0 {
			view.Writer = writers[0]
		}
		out = append(out, view)
	}
	slices.SortFunc(out, func(a, b siblingView) int { return cmp.Compare(a.Writer, b.Writer) })
	return out
}

// readReply answers GET /read and GET /local.
type readReply struct {
	Elems    []int64       `json:"elems"` // the union of the siblings' elements
	Count    int           `json:"count"` // how many siblings
	Siblings []siblingView `json:"siblings"`
	// ContextBytes is the size of the Get's context in text form: it grows
	// with the actors (node incarnations) that ever coordinated the key.
	ContextBytes int  `json:"context_bytes,omitempty"`
	Primary      bool `json:"primary,omitempty"` // /local: this node is a primary of the key
	// Resolved is, in lww mode, what Get returns for the local siblings:
	// the one dynamo.Latest keeps (/local only).
	Resolved []siblingView `json:"resolved,omitempty"`
}

func newReadReply(sibs []dynamo.Sibling, contextBytes int) readReply {
	rep := readReply{Elems: []int64{}, Count: len(sibs), Siblings: decodeSiblings(sibs), ContextBytes: contextBytes}
	for _, sb := range rep.Siblings {
		rep.Elems = append(rep.Elems, sb.Elems...)
	}
	slices.Sort(rep.Elems)
	rep.Elems = slices.Compact(rep.Elems)
	return rep
}

func (s *nodeServer) read(w http.ResponseWriter, r *http.Request) {
	n := s.store(w)
	if n == nil {
		return
	}
	var opts []dynamo.Option
	if v := r.URL.Query().Get("r"); v != "" {
		rn, err := strconv.Atoi(v)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorReply{Error: "r is not a number"})
			return
		}
		opts = append(opts, dynamo.WithR(rn))
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.f.opTime)
	defer cancel()
	sibs, c, err := n.Get(ctx, []byte(r.URL.Query().Get("key")), opts...)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, newReadReply(sibs, len(c.String())))
}

func (s *nodeServer) local(w http.ResponseWriter, r *http.Request) {
	n := s.store(w)
	if n == nil {
		return
	}
	key := []byte(r.URL.Query().Get("key"))
	sibs, err := n.LocalGet(key)
	if err != nil {
		writeError(w, err)
		return
	}
	rep := newReadReply(sibs, 0)
	rep.Primary = slices.ContainsFunc(n.PreferenceList(key, dynamo.DefaultN), func(m dynamo.Member) bool { return m.ID == s.f.id })
	if s.f.mode == "lww" && len(sibs) > 0 {
		v, err := dynamo.Latest(key, sibs)
		if err != nil {
			writeError(w, err)
			return
		}
		rep.Resolved = decodeSiblings([]dynamo.Sibling{{Value: v}})
	}
	writeJSON(w, http.StatusOK, rep)
}

type errorReply struct {
	Error string `json:"error"`
}

// errorStatus is the HTTP status err calls for: 503 when the outcome is a
// quorum or availability failure, 400 for bad input, 500 otherwise.
func errorStatus(err error) int {
	switch {
	case errors.Is(err, dynamo.ErrBadOption), errors.Is(err, dynamo.ErrBadContext), errors.Is(err, dynamo.ErrEmptyKey),
		errors.Is(err, dynamo.ErrKeyTooLarge), errors.Is(err, dynamo.ErrValueTooLarge):
		return http.StatusBadRequest
	case errors.Is(err, dynamo.ErrTooManySiblings):
		return http.StatusConflict
	case errors.Is(err, dynamo.ErrReadQuorum), errors.Is(err, dynamo.ErrWriteQuorum), errors.Is(err, dynamo.ErrNoReplica),
		errors.Is(err, dynamo.ErrClosed), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, errorStatus(err), errorReply{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
