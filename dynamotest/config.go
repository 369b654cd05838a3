// config.go: SimConfig, the simulation's modes and their defaults.
package dynamotest

import (
	"errors"
	"fmt"

	"github.com/dynamo-kv/dynamo"
)

// Mode selects how the simulated stores reconcile siblings.
type Mode int

const (
	// ModeUnion keeps siblings and merges them by set union (dynamo.Union):
	// no acknowledged write may be lost.
	ModeUnion Mode = iota
	// ModeLWW sets Config.Resolver to dynamo.Latest on every store: Get
	// returns the sibling with the latest timestamp, and writes that lose are
	// discarded. Losses are expected and reported, never asserted away.
	ModeLWW
)

func (m Mode) String() string {
	switch m {
	case ModeUnion:
		return "union"
	case ModeLWW:
		return "lww"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// BrokenMode switches on a deliberate bug, to show that the checker catches it.
type BrokenMode int

const (
	// BrokenNone runs the stores as they are.
	BrokenNone BrokenMode = iota
	// BrokenAckBeforeCommit wraps every node's storage so that half of the
	// updates to workload keys return nil without being applied: a disk that
	// acknowledges a write before committing it and then crashes. Acknowledged
	// writes get lost.
	BrokenAckBeforeCommit
	// BrokenStaleDelete makes clients delete with the zero Context instead of
	// the one their read returned: the tombstone covers nothing, so deleted
	// elements come back.
	BrokenStaleDelete
	// BrokenUnionRemove, with ORSet, keeps each set as a plain []int64 merged
	// by union (dynamo.Modify and dynamo.Union) instead of a dynamo.ORSet: a
	// removed element comes back when a concurrent write still held it.
	BrokenUnionRemove
)

func (b BrokenMode) String() string {
	switch b {
	case BrokenNone:
		return "none"
	case BrokenAckBeforeCommit:
		return "ack-before-commit"
	case BrokenStaleDelete:
		return "stale-delete"
	case BrokenUnionRemove:
		return "union-remove"
	}
	return fmt.Sprintf("BrokenMode(%d)", int(b))
}

// Defaults for zero fields of SimConfig.
const (
	DefaultNodes   = 5
	DefaultKeys    = 4
	DefaultClients = 4
	DefaultOps     = 300
)

// SimConfig configures one simulated run. Zero fields take the defaults in
// their comments.
type SimConfig struct {
	// Seed seeds every random decision of the run; the same seed replays the
	// same run (see the package doc, # Determinism).
	Seed int64
	// Nodes is the number of stores; default 5.
	Nodes int
	// N, R and W are the stores' replication settings; default 3, 2, 2.
	N, R, W int
	// Keys is the number of set-valued keys; default 4.
	Keys int
	// Clients is the number of clients; each runs one operation at a time, and
	// a step runs up to Clients operations concurrently. Default 4.
	Clients int
	// Ops is the number of client operations; default 300.
	Ops int
	// Faults lets the nemesis act: partitions, bridges, one-way blocks, drops,
	// lost replies, delays, duplicates, crashes, amnesia, restarts, clock skew
	// and pauses.
	Faults bool
	// Mode selects sibling reconciliation; default ModeUnion.
	Mode Mode
	// Broken switches on a deliberate bug; default BrokenNone.
	Broken BrokenMode
	// PrimariesOnly sets Config.PrimariesOnly on every store: strict quorums
	// instead of the sloppy quorum of §4.6. With R+W > N every read then
	// overlaps every write acknowledged before it, so the resurrection check
	// is stronger: it needs no quiet cluster to know a Delete saw a write.
	PrimariesOnly bool
	// LargeValues adds a nemesis action that pads the values clients write
	// to near Limits.MaxValueSize for a while. The stores then run with a
	// 128 KiB value limit, 512 KiB states and 1 MiB frames, so that every
	// batch crossing the network (anti-entropy, hints, transfers) meets the
	// frame limit.
	LargeValues bool

	// Zones puts node i in zone "z<i mod Zones>" (Member.Zone), so that
	// every key's replicas span min(N, Zones) zones, which the checker
	// verifies. Zero means no zones.
	Zones int
	// ZoneOutage takes one zone down for the middle third of the workload;
	// default ZoneOutageNone. It needs Zones >= 2 and no Faults. The Report
	// counts the adds that ran meanwhile and were acknowledged.
	ZoneOutage ZoneOutage
	// ORSet runs the OR-set workload instead of the union one: the keys hold
	// dynamo.ORSet[int64] values, and clients add new elements, re-add old
	// ones and remove elements they read (dynamo.UpdateSet), and read
	// (dynamo.GetSet); there are no deletes. The checker holds every
	// acknowledged add to "present, unless a remove that observed it took it
	// out", and every acknowledged remove to "stays removed, unless the
	// element was added again by a write the remove did not observe". It
	// takes no Mode, Resolver, Merge or LargeValues.
	ORSet bool

	// PartialLoss adds partial data loss to the nemesis (issue 20): a node
	// crashes, and comes back with its identity but with its storage rolled
	// back to an earlier snapshot, or without the records of a few keys, or
	// with a damaged record. AmnesiaHeavy replaces the disks of the first
	// key's replicas again and again. In both, a loss happens only once the
	// replicas were found in sync since the previous one: two losses before
	// that can destroy a write acknowledged by W = 2 replicas, which no
	// protocol prevents. Both need W >= 2 and Faults.
	PartialLoss  bool
	AmnesiaHeavy bool
	// TamperContexts makes clients do their adds by hand (Get, then Put) and
	// pass each context through its text form, editing the text at random
	// one time in three first: a tampered context must be refused with
	// dynamo.ErrBadContext (the write is then retried with the genuine one).
	TamperContexts bool
	// ChainedWrites makes clients do their adds with PutReturning (Get,
	// then PutReturning) and write the new set once more with the context
	// it returned, without reading: a returned context that covered a
	// concurrent add the client never saw would make the second write lose
	// it, which the checker reports.
	ChainedWrites bool

	// Resolver, if set, is installed as Config.Resolver on every store,
	// replacing the one Mode implies. Values are msgpack-encoded []int64 sets
	// (dynamo.MsgpackCodec[[]int64]).
	Resolver dynamo.Resolver
	// Merge, if set, is what clients pass to dynamo.Modify to merge siblings,
	// instead of dynamo.Union[int64].
	Merge dynamo.Merge[[]int64]
	// Logf, if set, receives a line for every decision and every operation's
	// outcome, stamped with fake time since the start.
	Logf func(format string, args ...any)
}

// withDefaults returns cfg with zero fields filled.
func (cfg SimConfig) withDefaults() SimConfig {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.Nodes, DefaultNodes)
	def(&cfg.N, dynamo.DefaultN)
	def(&cfg.R, dynamo.DefaultR)
	def(&cfg.W, dynamo.DefaultW)
	def(&cfg.Keys, DefaultKeys)
	def(&cfg.Clients, DefaultClients)
	def(&cfg.Ops, DefaultOps)
	return cfg
}

// validate reports every problem with a defaulted cfg at once.
func (cfg SimConfig) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.Nodes < 1 || cfg.Nodes > 64 {
		add("Nodes (%d) must be between 1 and 64", cfg.Nodes)
	}
	if cfg.N < 1 || cfg.N > cfg.Nodes {
		add("N (%d) must be between 1 and Nodes (%d)", cfg.N, cfg.Nodes)
	}
	if cfg.R < 1 || cfg.R > cfg.N {
		add("R (%d) must be between 1 and N (%d)", cfg.R, cfg.N)
	}
	if cfg.W < 1 || cfg.W > cfg.N {
		add("W (%d) must be between 1 and N (%d)", cfg.W, cfg.N)
	}
	if cfg.Keys < 1 || cfg.Keys > 1000 {
		add("Keys (%d) must be between 1 and 1000", cfg.Keys)
	}
	if cfg.Clients < 1 || cfg.Clients > 999 {
		add("Clients (%d) must be between 1 and 999", cfg.Clients)
	}
	if cfg.Ops < 1 || cfg.Ops >= 1e6 {
		add("Ops (%d) must be between 1 and 999999", cfg.Ops)
	}
	if cfg.Mode != ModeUnion && cfg.Mode != ModeLWW {
		add("Mode (%d) is unknown", int(cfg.Mode))
	}
	if (cfg.PartialLoss || cfg.AmnesiaHeavy) && (cfg.W < 2 || !cfg.Faults) {
		add("PartialLoss and AmnesiaHeavy need W >= 2 (W is %d) and Faults", cfg.W)
	}
	if cfg.Broken < BrokenNone || cfg.Broken > BrokenUnionRemove {
		add("Broken (%d) is unknown", int(cfg.Broken))
	}
	errs = append(errs, cfg.validateZones()...)
	errs = append(errs, cfg.setErrors()...)
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("dynamotest: invalid SimConfig: %w", errors.Join(errs...))
}
