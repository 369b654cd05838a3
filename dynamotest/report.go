// report.go: the checker's Report, its one-line and JSON forms (TESTING §3).
package dynamotest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Report is what the checker found in one run.
type Report struct {
	// Acked counts adds whose Modify returned nil.
	Acked int `json:"acked"`
	// Lost counts acknowledged adds missing from the final read that no
	// Delete's read had seen.
	Lost int `json:"lost"`
	// UnackedPresent counts adds whose Modify failed but whose element is in
	// the final read (a failed write may still have been stored).
	UnackedPresent int `json:"unacked_present"`
	// Resurrected counts elements that came back after an acknowledged Delete
	// had surely covered every write carrying them.
	Resurrected int `json:"resurrected"`
	// MaxSiblings is the most siblings any Get of a client returned, not
	// counting blind writes not yet merged (SimConfig.PartialLoss), which
	// are concurrent with every other write.
	MaxSiblings int `json:"max_siblings"`
	// MaxConcurrentWriters is, over all keys, the most Modify and Delete
	// operations in flight on one key at once.
	MaxConcurrentWriters int `json:"max_concurrent_writers"`
	// ConvergeMS is the fake time from healing every fault to the replicas'
	// convergence, in milliseconds.
	ConvergeMS int64 `json:"converge_ms"`
	// Seed is the run's SimConfig.Seed.
	Seed int64 `json:"seed"`

	// Mode and Broken name the run's SimConfig.Mode and SimConfig.Broken.
	Mode   string `json:"mode"`
	Broken string `json:"broken"`
	// Clients is the run's number of clients: the bound on MaxSiblings.
	Clients int `json:"clients"`
	// Ops counts client operations, Unacked the adds whose Modify failed, and
	// Deletes the acknowledged deletes (in an OR-set run, the acknowledged
	// removes).
	Ops     int `json:"ops"`
	Unacked int `json:"unacked"`
	Deletes int `json:"deletes"`
	// CheckedAcked counts the acknowledged adds held to "not lost": those no
	// Delete's read saw.
	CheckedAcked int `json:"checked_acked"`
	// CheckedDeletes counts the acknowledged deletes (in an OR-set run,
	// removes) checked for resurrection: all of them when R+W > N, except
	// those whose read began before a disk was lost.
	CheckedDeletes int `json:"checked_deletes"`
	// Faults counts the nemesis actions taken, and Losses those that lost a
	// node's data (amnesia, or SimConfig.PartialLoss's kinds).
	Faults int `json:"faults"`
	// DownZone names the zone SimConfig.ZoneOutage took down, ZoneDownAdds
	// counts the adds that ran while it was down, ZoneDownAcked those
	// acknowledged, and ZoneHints the hints the other nodes held for the
	// zone's nodes when it returned (when the workload outlasted the outage).
	DownZone      string `json:"down_zone,omitempty"`
	ZoneDownAdds  int    `json:"zone_down_adds,omitempty"`
	ZoneDownAcked int    `json:"zone_down_acked,omitempty"`
	ZoneHints     int    `json:"zone_hints,omitempty"`
	Losses        int    `json:"losses"`
	// Tampered counts the contexts clients edited (SimConfig.TamperContexts)
	// and Put refused; any it accepted is a "forged-context" violation.
	Tampered int `json:"tampered"`
	// MaxContextBytes is the longest text form of a context a client read.
	MaxContextBytes int `json:"max_context_bytes"`
	// CorruptRecords and DotConflicts sum the stores' dynamo.Stats
	// counters: damaged records found and replaced, and merges that met one
	// dot carrying two versions (a dot issued twice).
	CorruptRecords int64 `json:"corrupt_records"`
	DotConflicts   int64 `json:"dot_conflicts"`
	// EntriesFolded sums the stores' dynamo.Stats.EntriesFolded: dead
	// version-vector entries folded away.
	EntriesFolded int64 `json:"entries_folded"`
	// Converged reports whether the replicas converged within the bounded
	// number of rounds after healing.
	Converged bool `json:"converged"`
	// Fingerprint hashes the decision sequence and every operation's outcome
	// and fake end time: equal fingerprints mean the runs replayed alike.
	Fingerprint string `json:"fingerprint"`
	// Violations describes each broken promise the run's mode must keep
	// (at most a few per kind). Empty means the run passed. Each starts with
	// its kind: "lost", "resurrected", "duplicate-siblings" (one write became
	// several siblings), "siblings" (more siblings than clients),
	// "convergence", "corrupt", "zones" (a key's replicas in fewer than
	// min(N, Zones) zones) or "forged-context" (an edited context was
	// accepted).
	Violations []string `json:"violations,omitempty"`
	// Notes describes expected anomalies, such as the elements last-write-wins
	// lost (at most a few per kind).
	Notes []string `json:"notes,omitempty"`
}

// String returns the one-line report:
// acked=N lost=N unacked_present=N converge_ms=N max_siblings=N resurrected=N seed=N.
func (r Report) String() string {
	return fmt.Sprintf("acked=%d lost=%d unacked_present=%d converge_ms=%d max_siblings=%d resurrected=%d seed=%d",
		r.Acked, r.Lost, r.UnackedPresent, r.ConvergeMS, r.MaxSiblings, r.Resurrected, r.Seed)
}

// JSON returns the report as one JSON object.
func (r Report) JSON() []byte {
	b, err := json.Marshal(r)
	if err != nil { // unreachable: every field is a plain value
		panic(fmt.Sprintf("dynamotest: marshal report: %v", err))
	}
	return b
}

// Err returns nil if the run kept every promise its mode must keep, or an
// error listing the violations.
func (r Report) Err() error {
	if len(r.Violations) == 0 {
		return nil
	}
	return errors.New("dynamotest: seed " + fmt.Sprint(r.Seed) + ": " + strings.Join(r.Violations, "; "))
}
