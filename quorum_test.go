// quorum_test.go: layer-1 tests of the §4.5 quorum tally (pending | met |
// failed) for the paper's (N, R, W) settings, and of QuorumError.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynamo-kv/dynamo/transport"
)

// qtSeq parses "ok fail ok" into replica answers.
func qtSeq(s string) []bool {
	var out []bool
	for _, f := range strings.Fields(s) {
		switch f {
		case "ok":
			out = append(out, true)
		case "fail":
			out = append(out, false)
		default:
			panic("qtSeq: " + f)
		}
	}
	return out
}

// qtVotes parses "pending met" into tally results.
func qtVotes(s string) []vote {
	var out []vote
	for _, f := range strings.Fields(s) {
		switch f {
		case "pending":
			out = append(out, votePending)
		case "met":
			out = append(out, voteMet)
		case "failed":
			out = append(out, voteFailed)
		default:
			panic("qtVotes: " + f)
		}
	}
	return out
}

// Reference: §4.5 "R is the minimum number of nodes that must participate in a
// successful read operation. W is the minimum number of nodes that must
// participate in a successful write operation."
func TestQuorum_Tally(t *testing.T) {
	tests := map[string]struct {
		need, total int    // R or W, and the replicas asked (N), the coordinator included
		already     int    // acks counted before any reply (the coordinator's own)
		answers     string // replica answers in arrival order
		want        string // the tally's result after each answer
	}{
		// (3,2,2): the paper's common setting.
		"(3,2,2) read: two successes":                {need: 2, total: 3, answers: "ok ok", want: "pending met"},
		"(3,2,2) read: a failure then two successes": {need: 2, total: 3, answers: "fail ok ok", want: "pending pending met"},
		"(3,2,2) read: success, failure, success":    {need: 2, total: 3, answers: "ok fail ok", want: "pending pending met"},
		"(3,2,2) read: two failures":                 {need: 2, total: 3, answers: "fail fail", want: "pending failed"},
		"(3,2,2) read: success then two failures":    {need: 2, total: 3, answers: "ok fail fail", want: "pending pending failed"},
		"(3,2,2) write: own ack, one remote":         {need: 2, total: 3, already: 1, answers: "ok", want: "met"},
		"(3,2,2) write: own ack, remotes fail":       {need: 2, total: 3, already: 1, answers: "fail fail", want: "pending failed"},
		"(3,2,2) write: own ack, fail then ok":       {need: 2, total: 3, already: 1, answers: "fail ok", want: "pending met"},

		// (3,1,3): fast reads, writes that need every replica.
		"(3,1,3) read: first success is enough":   {need: 1, total: 3, answers: "ok", want: "met"},
		"(3,1,3) read: two failures, then ok":     {need: 1, total: 3, answers: "fail fail ok", want: "pending pending met"},
		"(3,1,3) read: every replica fails":       {need: 1, total: 3, answers: "fail fail fail", want: "pending pending failed"},
		"(3,1,3) write: all three ack":            {need: 3, total: 3, answers: "ok ok ok", want: "pending pending met"},
		"(3,1,3) write: one failure is fatal":     {need: 3, total: 3, answers: "ok fail", want: "pending failed"},
		"(3,1,3) write: own ack, remote failure":  {need: 3, total: 3, already: 1, answers: "ok fail", want: "pending failed"},
		"(3,1,3) write: own ack, both remotes ok": {need: 3, total: 3, already: 1, answers: "ok ok", want: "pending met"},

		// (3,3,3): strict.
		"(3,3,3) read: all three":              {need: 3, total: 3, answers: "ok ok ok", want: "pending pending met"},
		"(3,3,3) read: last one fails":         {need: 3, total: 3, answers: "ok ok fail", want: "pending pending failed"},
		"(3,3,3) read: first failure decides":  {need: 3, total: 3, answers: "fail", want: "failed"},
		"(3,3,3) write: own ack, remote fails": {need: 3, total: 3, already: 1, answers: "fail", want: "failed"},

		// (3,1,1): fastest, weakest.
		"(3,1,1) read: one success":            {need: 1, total: 3, answers: "ok", want: "met"},
		"(3,1,1) read: failures then success":  {need: 1, total: 3, answers: "fail fail ok", want: "pending pending met"},
		"(3,1,1) read: all fail":               {need: 1, total: 3, answers: "fail fail fail", want: "pending pending failed"},
		"(3,1,1) write: own ack is the quorum": {need: 1, total: 3, already: 1, answers: "", want: ""},

		// Degenerate rings: fewer replicas than the quorum asks for.
		"need more than total fails at once": {need: 3, total: 2, answers: "", want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// As writeAll builds it: the coordinator's own ack is already in.
			tl := tally{need: tc.need, total: tc.total, ok: tc.already}
			answers, want := qtSeq(tc.answers), qtVotes(tc.want)
			require.Len(t, want, len(answers), "bad table entry")
			require.LessOrEqual(t, len(answers)+tc.already, tc.total, "bad table entry")

			initial := votePending
			switch {
			case tc.already >= tc.need:
				initial = voteMet
			case tc.need > tc.total:
				initial = voteFailed
			}
			require.Equal(t, initial, tl.result(), "before any answer")

			for i, ok := range answers {
				tl.record(ok)
				require.Equal(t, want[i], tl.result(), "after answer %d (%v) of %q", i+1, ok, tc.answers)
			}
		})
	}
}

// Once decided, a tally stays decided whatever late answers bring: the
// coordinator stops counting, and read repair handles the rest.
func TestQuorum_Tally_DecisionIsFinal(t *testing.T) {
	for need := 1; need <= 3; need++ {
		for mask := range 1 << 3 {
			tl := tally{need: need, total: 3}
			decided := votePending
			for i := range 3 {
				tl.record(mask&(1<<i) != 0)
				v := tl.result()
				if decided != votePending {
					require.Equal(t, decided, v, "need %d, answers %03b: decision changed", need, mask)
				}
				decided = v
			}
			require.NotEqual(t, votePending, decided, "need %d, answers %03b: all answered yet pending", need, mask)
		}
	}
}

func TestQuorum_QuorumError(t *testing.T) {
	tests := map[string]struct {
		err       *QuorumError
		wantIs    error
		wantNotIs error
		wantText  []string
	}{
		"get": {
			err:       &QuorumError{Op: "get", Need: 2, Got: 1},
			wantIs:    ErrReadQuorum,
			wantNotIs: ErrWriteQuorum,
			wantText:  []string{"dynamo: read quorum not met", "got 1 of 2"},
		},
		"put": {
			err:       &QuorumError{Op: "put", Need: 2, Got: 1},
			wantIs:    ErrWriteQuorum,
			wantNotIs: ErrReadQuorum,
			wantText:  []string{"dynamo: write quorum not met", "got 1 of 2"},
		},
		"delete": {
			err:       &QuorumError{Op: "delete", Need: 3, Got: 0},
			wantIs:    ErrWriteQuorum,
			wantNotIs: ErrReadQuorum,
			wantText:  []string{"dynamo: write quorum not met", "delete got 0 of 3"},
		},
		"per-replica reasons, sorted by node": {
			err: &QuorumError{Op: "get", Need: 2, Got: 1, PerReplica: map[string]error{
				"n3": errors.New("timeout"), "n2": errors.New("refused"),
			}},
			wantIs:    ErrReadQuorum,
			wantNotIs: ErrWriteQuorum,
			wantText:  []string{"got 1 of 2", "(n2: refused; n3: timeout)"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, tc.err, tc.wantIs)
			require.NotErrorIs(t, tc.err, tc.wantNotIs)
			require.NotErrorIs(t, tc.err, ErrClosed)
			for _, s := range tc.wantText {
				require.Contains(t, tc.err.Error(), s)
			}

			// Wrapped, it still matches and can be unwrapped.
			wrapped := fmt.Errorf("key %q: %w", "k", tc.err)
			require.ErrorIs(t, wrapped, tc.wantIs)
			var qe *QuorumError
			require.ErrorAs(t, wrapped, &qe)
			require.Equal(t, tc.err.Need, qe.Need)
			require.Equal(t, tc.err.Got, qe.Got)
		})
	}
}

func TestQuorum_QuorumErrorFromReplies(t *testing.T) {
	boom := errors.New("boom")
	replies := []readReply{
		{m: Member{ID: "n1"}},
		{m: Member{ID: "n2"}, err: boom},
		{m: Member{ID: "n3"}, err: ErrClosed},
	}
	err := quorumError("get", 3, replies, nil)
	require.ErrorIs(t, err, ErrReadQuorum)
	var qe *QuorumError
	require.ErrorAs(t, err, &qe)
	require.Equal(t, 3, qe.Need)
	require.Equal(t, 1, qe.Got)
	require.Equal(t, map[string]error{"n2": boom, "n3": ErrClosed}, qe.PerReplica)
	require.Contains(t, err.Error(), "get got 1 of 3")

	// A deadline with no failed replica leaves PerReplica nil.
	err = quorumError("put", 2, []readReply{{m: Member{ID: "n1"}}}, context.DeadlineExceeded)
	require.ErrorIs(t, err, ErrWriteQuorum)
	require.ErrorAs(t, err, &qe)
	require.Nil(t, qe.PerReplica)
	require.Equal(t, 1, qe.Got)
}

// errorFromReply rebuilds on the caller's side the error a peer reported.
func TestQuorum_ErrorFromReply(t *testing.T) {
	for code, sentinel := range codeErrors {
		t.Run(sentinel.Error(), func(t *testing.T) {
			err := errorFromReply(&errorReply{Code: code, Msg: "details"})
			require.ErrorIs(t, err, sentinel)
			require.Contains(t, err.Error(), "details")
		})
	}
	t.Run("write quorum", func(t *testing.T) {
		err := errorFromReply(&errorReply{Code: codeWriteQuorum, Need: 2, Got: 1, Msg: "n2 down"})
		require.ErrorIs(t, err, ErrWriteQuorum)
		var qe *QuorumError
		require.ErrorAs(t, err, &qe)
		require.Equal(t, 2, qe.Need)
		require.Equal(t, 1, qe.Got)
		require.Contains(t, err.Error(), "got 1 of 2")
	})
	t.Run("other", func(t *testing.T) {
		err := errorFromReply(&errorReply{Code: codeOther, Msg: "disk on fire"})
		require.ErrorIs(t, err, transport.ErrRemote)
		require.Contains(t, err.Error(), "disk on fire")
	})
}
