// config.go: Config, its defaults and validation, and per-request options (§4.5).
package dynamo

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/dynamo-kv/dynamo/membership"
	"github.com/dynamo-kv/dynamo/storage"
	"github.com/dynamo-kv/dynamo/transport"
)

// Transport carries opaque payloads between nodes; see package transport.
type Transport = transport.Transport

// Storage is one node's durable key/value space; see package storage.
type Storage = storage.Storage

// Membership reports the ring's members and who is reachable; see package
// membership.
type Membership = membership.Membership

// Defaults used by DefaultConfig and for zero fields of Config.
const (
	DefaultN              = 3
	DefaultR              = 2
	DefaultW              = 2
	DefaultPartitions     = 1 << 17
	DefaultCluster        = "dynamo"
	DefaultRequestTimeout = 2 * time.Second
	DefaultReplicaTimeout = 500 * time.Millisecond
	DefaultReadHedge      = 20 * time.Millisecond
	maxPartitions         = 1 << 22
	maxMembers            = 1 << 16
)

// Bounds of Config.Secrets.
const (
	maxSecrets   = 16
	minSecretLen = 16
	maxSecretLen = 1024
)

// Limits bound what a caller or peer may store. A zero field takes the
// default given in its comment.
type Limits struct {
	MaxKeySize     int // bytes in a key; default 4 KiB
	MaxValueSize   int // bytes in one value; default 1 MiB
	MaxSiblings    int // siblings a key may hold after a Put; default 32
	MaxStateSize   int // bytes of one key's encoded state (all siblings); default 8 MiB
	MaxContextSize int // bytes of a context's vector as Put accepts it; default 4 KiB
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxKeySize, 4<<10)
	def(&l.MaxValueSize, 1<<20)
	def(&l.MaxSiblings, 32)
	def(&l.MaxStateSize, 8<<20)
	def(&l.MaxContextSize, 4<<10)
	return l
}

// HandoffConfig tunes hinted handoff. A zero field takes the default given
// in its comment.
type HandoffConfig struct {
	// Interval is how often a node retries delivering its hints; delivery also
	// starts at once when a membership change shows a hinted node reachable.
	// Default 1s.
	Interval time.Duration
	// MaxBackoff caps the delay between retries to a node whose deliveries
	// keep failing; the delay doubles from Interval. Default 30s.
	MaxBackoff time.Duration
	// MaxHints and MaxHintBytes bound the hints this node holds for others.
	// A node at either bound declines new hints (ErrHintsFull) and the
	// coordinator tries the next fallback; hints it already holds for a key
	// still merge. Defaults 100,000 and 256 MiB.
	MaxHints     int
	MaxHintBytes int64
	// Rate is the most hints per second a node delivers, and Concurrency the
	// most deliveries in flight, so handoff never starves foreground traffic.
	// Defaults 2,000/s and 4.
	Rate        int
	Concurrency int
}

func (h HandoffConfig) withDefaults() HandoffConfig {
	if h.Interval == 0 {
		h.Interval = time.Second
	}
	if h.MaxBackoff == 0 {
		h.MaxBackoff = 30 * time.Second
	}
	if h.MaxHints == 0 {
		h.MaxHints = 100_000
	}
	if h.MaxHintBytes == 0 {
		h.MaxHintBytes = 256 << 20
	}
	if h.Rate == 0 {
		h.Rate = 2000
	}
	if h.Concurrency == 0 {
		h.Concurrency = 4
	}
	return h
}

// Config configures a Store. The zero value is not usable: start from
// DefaultConfig and set NodeID, Transport, Storage and the members.
type Config struct {
	// NodeID names this node in the ring. It must be stable across restarts.
	NodeID string
	// Cluster names the cluster. Nodes and contexts of another cluster are
	// rejected. Empty means DefaultCluster.
	Cluster string

	// N is the number of replicas of each key; R and W are how many must
	// answer a read or write. R+W > N makes a read overlap the last write's
	// replicas when no node has failed; see the package doc, # Consistency.
	N, R, W int
	// Partitions is Q, the number of fixed partitions of the hash space. It
	// must be the same on every node and can never change for a data
	// directory. Balance improves with partitions per node: the busiest node
	// holds about 1 + 2.5/sqrt(Q/nodes) times the mean. Zero means
	// DefaultPartitions (2^17: at 100 nodes, the busiest holds 1.03-1.05
	// times the mean replicas).
	Partitions int

	// Transport moves messages between nodes. Required.
	Transport Transport
	// Storage keeps this node's replicas, hints and metadata. Required.
	Storage Storage
	// Membership says who is in the ring and reachable. If nil, Members is
	// used as a static list.
	Membership Membership
	// Members is a static member list, used when Membership is nil. Give
	// each member its Zone to spread every key's replicas over zones. Its
	// membership holds every member reachable forever; the Store's own
	// failure detector (an unanswered call backs a peer off for a while, see
	// Store.Reachable) is then the only one.
	Members []Member

	// Secrets are the cluster's secrets, the same on every node. The first
	// signs the contexts Get hands out (a MAC, so that a context edited or
	// forged in untrusted hands is refused with ErrBadContext); all of them
	// verify. To rotate, put the new secret first on every node, then drop
	// the old one once the contexts it signed are no longer in use. Each
	// must be 16 to 1024 bytes; 32 random bytes are right. Keys are derived
	// with HKDF-SHA256, one per purpose, so the same secrets may serve other
	// purposes. With no secret, contexts carry a checksum keyed by the
	// cluster name only: it catches accidental edits, not forgery, so set
	// Secrets whenever contexts pass through untrusted hands.
	//
	// Open (NodeConfig) uses the same secrets to authenticate and encrypt
	// the TCP transport (mutual TLS 1.3, each certificate bound to its
	// NodeID) and gossip (memberlist's keyring) that it builds, and refuses
	// to start unless exactly one of Secrets, PKI, TLS and Insecure is set;
	// Node.RotateSecrets rotates all of them (see package auth).
	Secrets [][]byte

	// Resolver, if set, merges siblings in Get, which then returns at most one
	// value. If nil, Get returns every sibling.
	Resolver Resolver

	// RequestTimeout bounds a whole Get, Put or Delete unless the caller's
	// context ends sooner. Zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// ReplicaTimeout bounds each call to one replica. Zero means
	// DefaultReplicaTimeout.
	ReplicaTimeout time.Duration

	// ReadAllReplicas makes every read ask all N reachable replicas at
	// once and wait for R, as the paper's coordinator does, so read repair
	// checks every replica on every read. By default a read asks R of them,
	// this node first when it is one, and asks one more for each that
	// fails and each time ReadHedge passes without R answers: the quorum is
	// the same (R + W > N still meets every acknowledged write), a read
	// costs R replica calls rather than N, and a replica no read asked is
	// brought up to date by hinted handoff and anti-entropy instead of read
	// repair. Cassandra reads the same way.
	ReadAllReplicas bool
	// ReadHedge is how long a read that asked R replicas waits for their
	// answers before it asks one more (a hedged request). Zero means
	// DefaultReadHedge (20ms); negative means it asks more only when one
	// fails or ReplicaTimeout passes.
	ReadHedge time.Duration

	// Limits bound keys, values, siblings and contexts.
	Limits Limits

	// PrimariesOnly makes every request use only the key's N primary
	// replicas, like Riak's PR/PW: no fallback nodes, no hints. A write then
	// fails at once, writing nothing, when fewer than W primaries are
	// reachable. The default (false) is the sloppy quorum of §4.6.
	PrimariesOnly bool
	// NoGetCoalescing gives every Get a quorum read of its own. By default
	// concurrent Gets of one key through one node share reads, each caller
	// getting a read that began after it called (coalesce.go), so a hot key
	// costs its replicas one read at a time. Simulations in fake time set
	// it: which of two Gets arriving at one instant leads a shared read
	// depends on goroutine order, and runs must replay.
	NoGetCoalescing bool
	// Handoff tunes hinted handoff (§4.6).
	Handoff HandoffConfig
	// AntiEntropy tunes the Merkle-tree anti-entropy rounds (§4.7).
	AntiEntropy AntiEntropyConfig
	// TombstoneGrace is how long a delete's tombstone is kept after every
	// replica holds it, before it is purged. It must exceed the longest
	// time a hint or a message may stay in flight. Zero means 1 hour.
	TombstoneGrace time.Duration

	// Logger receives the Store's logs. Nil discards them.
	Logger *slog.Logger
	// Clock gives the wall-clock time stamped on each write, used by
	// last-write-wins resolvers. Nil means time.Now.
	Clock func() time.Time
	// Rand is the entropy source for the node's incarnation. Nil means
	// crypto/rand. Simulations set it to replay runs.
	Rand io.Reader
}

// DefaultConfig returns the paper's common setting: N=3, R=2, W=2, with
// default timeouts and limits. The caller still sets NodeID, Transport,
// Storage and the members.
func DefaultConfig() Config {
	return Config{
		Cluster:        DefaultCluster,
		N:              DefaultN,
		R:              DefaultR,
		W:              DefaultW,
		Partitions:     DefaultPartitions,
		RequestTimeout: DefaultRequestTimeout,
		ReplicaTimeout: DefaultReplicaTimeout,
	}
}

// Validate reports every problem with c at once, each naming the values
// involved, wrapped in ErrInvalidConfig. It never modifies c.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.NodeID == "" {
		add("NodeID is empty")
	} else if len(c.NodeID) > 128 {
		add("NodeID is %d bytes, the limit is 128", len(c.NodeID))
	}
	if c.N < 1 {
		add("N (%d) must be at least 1", c.N)
	}
	if c.R < 1 || c.R > c.N {
		add("R (%d) must be between 1 and N (%d)", c.R, c.N)
	}
	if c.W < 1 || c.W > c.N {
		add("W (%d) must be between 1 and N (%d)", c.W, c.N)
	}
	if c.Partitions < 0 || c.Partitions > maxPartitions {
		add("Partitions (%d) must be between 1 and %d, or 0 for the default", c.Partitions, maxPartitions)
	}
	if c.Transport == nil {
		add("Transport is nil")
	}
	if c.Storage == nil {
		add("Storage is nil")
	}
	if c.Membership == nil {
		if len(c.Members) == 0 {
			add("Membership is nil and Members is empty")
		}
		if len(c.Members) > maxMembers {
			add("Members has %d nodes, the limit is %d", len(c.Members), maxMembers)
		}
		seen := make(map[string]bool, len(c.Members))
		for i, m := range c.Members {
			switch {
			case m.ID == "":
				add("Members[%d] has an empty ID", i)
			case seen[m.ID]:
				add("Members[%d] repeats ID %q", i, m.ID)
			}
			if m.Addr == "" {
				add("Members[%d] (%q) has an empty Addr", i, m.ID)
			}
			if len(m.Zone) > membership.MaxZoneLen {
				add("Members[%d] (%q) has a Zone of %d bytes, the limit is %d", i, m.ID, len(m.Zone), membership.MaxZoneLen)
			}
			seen[m.ID] = true
		}
	}
	errs = append(errs, c.secretProblems()...)
	if c.RequestTimeout < 0 {
		add("RequestTimeout (%v) is negative", c.RequestTimeout)
	}
	if c.ReplicaTimeout < 0 {
		add("ReplicaTimeout (%v) is negative", c.ReplicaTimeout)
	}
	l := c.Limits
	for _, f := range []struct {
		name string
		v    int
	}{{"MaxKeySize", l.MaxKeySize}, {"MaxValueSize", l.MaxValueSize}, {"MaxSiblings", l.MaxSiblings}, {"MaxStateSize", l.MaxStateSize}, {"MaxContextSize", l.MaxContextSize}} {
		if f.v < 0 {
			add("Limits.%s (%d) is negative", f.name, f.v)
		}
	}
	if l.MaxKeySize > 64<<10 {
		add("Limits.MaxKeySize (%d) exceeds 65536", l.MaxKeySize)
	}
	if l.MaxSiblings > maxDecodedSiblings {
		add("Limits.MaxSiblings (%d) exceeds %d", l.MaxSiblings, maxDecodedSiblings)
	}
	h := c.Handoff
	for _, f := range []struct {
		name string
		v    int64
	}{{"Interval", int64(h.Interval)}, {"MaxBackoff", int64(h.MaxBackoff)}, {"MaxHints", int64(h.MaxHints)},
		{"MaxHintBytes", h.MaxHintBytes}, {"Rate", int64(h.Rate)}, {"Concurrency", int64(h.Concurrency)}} {
		if f.v < 0 {
			add("Handoff.%s (%d) is negative", f.name, f.v)
		}
	}
	if c.AntiEntropy.KeysPerSecond < 0 {
		add("AntiEntropy.KeysPerSecond (%d) is negative", c.AntiEntropy.KeysPerSecond)
	}
	if c.TombstoneGrace < 0 {
		add("TombstoneGrace (%v) is negative", c.TombstoneGrace)
	}
	if ld := l.withDefaults(); ld.MaxValueSize > ld.MaxStateSize {
		add("Limits.MaxValueSize (%d) exceeds Limits.MaxStateSize (%d)", ld.MaxValueSize, ld.MaxStateSize)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// secretProblems lists what is wrong with Secrets' count and sizes.
func (c Config) secretProblems() []error {
	var errs []error
	if len(c.Secrets) > maxSecrets {
		errs = append(errs, fmt.Errorf("Secrets has %d secrets, the limit is %d", len(c.Secrets), maxSecrets))
	}
	for i, sec := range c.Secrets {
		if len(sec) < minSecretLen || len(sec) > maxSecretLen {
			errs = append(errs, fmt.Errorf("Secrets[%d] is %d bytes; a secret must be %d to %d bytes", i, len(sec), minSecretLen, maxSecretLen))
		}
	}
	return errs
}

// withDefaults fills zero fields. It is applied to New's private copy.
func (c Config) withDefaults() Config {
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ReplicaTimeout == 0 {
		c.ReplicaTimeout = DefaultReplicaTimeout
	}
	if c.ReadHedge == 0 {
		c.ReadHedge = DefaultReadHedge
	}
	c.Limits = c.Limits.withDefaults()
	c.Handoff = c.Handoff.withDefaults()
	c.AntiEntropy = c.AntiEntropy.withDefaults()
	if c.TombstoneGrace == 0 {
		c.TombstoneGrace = time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// Option overrides one of the Store's defaults for a single request.
type Option func(*options)

type options struct {
	r, w          int
	timeout       time.Duration
	retries       int
	primariesOnly bool
}

// WithR sets how many replicas must answer this read (1..N).
func WithR(r int) Option { return func(o *options) { o.r = r } }

// WithW sets how many replicas must durably acknowledge this write (1..N).
func WithW(w int) Option { return func(o *options) { o.w = w } }

// WithTimeout bounds this request; it overrides Config.RequestTimeout.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithPrimariesOnly restricts this request to the key's N primary replicas
// (see Config.PrimariesOnly).
func WithPrimariesOnly() Option { return func(o *options) { o.primariesOnly = true } }

// WithRetries sets how many times Modify retries after a quorum failure
// (default 2).
func WithRetries(n int) Option { return func(o *options) { o.retries = n } }

func (s *Store) options(opts []Option) (options, error) {
	o := options{r: s.cfg.R, w: s.cfg.W, timeout: s.cfg.RequestTimeout, retries: 2, primariesOnly: s.cfg.PrimariesOnly}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	var errs []error
	if o.r < 1 || o.r > s.cfg.N {
		errs = append(errs, fmt.Errorf("R (%d) must be between 1 and N (%d)", o.r, s.cfg.N))
	}
	if o.w < 1 || o.w > s.cfg.N {
		errs = append(errs, fmt.Errorf("W (%d) must be between 1 and N (%d)", o.w, s.cfg.N))
	}
	if o.timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout (%v) must be positive", o.timeout))
	}
	if o.retries < 0 {
		errs = append(errs, fmt.Errorf("retries (%d) is negative", o.retries))
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("%w: %w", ErrBadOption, errors.Join(errs...))
	}
	return o, nil
}
