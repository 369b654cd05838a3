// Config and its memberlist tuning profiles: failure detection timing of §4.8.

package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/dynamo-kv/dynamo/membership"
)

// Profile selects memberlist's timing: how often nodes probe each other and
// gossip, and so how quickly a failure is detected.
type Profile string

const (
	// ProfileLAN is memberlist.DefaultLANConfig: probe every 1 s with a
	// 500 ms timeout, suspicion of 4·max(1, log10(n)) probe intervals, a
	// push/pull state exchange every 30 s. The default.
	ProfileLAN Profile = "lan"
	// ProfileWAN is memberlist.DefaultWANConfig: probe every 5 s with a 3 s
	// timeout, suspicion of 6·max(1, log10(n)) probe intervals.
	ProfileWAN Profile = "wan"
	// ProfileLocal is for tests on one machine: probe every 200 ms with a
	// 100 ms timeout, gossip every 50 ms, suspicion of 3·max(1, log10(n))
	// probe intervals (600 ms for up to 10 nodes), push/pull every 1 s, and a
	// dead node forgotten by memberlist (not by the ring) after 1 s. A killed
	// node is reported unreachable within about 1 to 2 s.
	ProfileLocal Profile = "local"
)

// Config configures a Gossip. The zero value is not usable: NodeID,
// DataAddr and BindAddr (or Transport) are required.
type Config struct {
	// NodeID is the node's ring identity and its memberlist node name. A
	// process restarted after a crash rejoins with the same NodeID.
	NodeID string

	// BindAddr is the "ip:port" memberlist listens on, for both TCP and
	// UDP. Port 0 picks a free port; GossipAddr reports the one chosen. The
	// address other nodes reach this one at is the bound address (memberlist
	// picks a private interface for 0.0.0.0). Ignored when Transport is set.
	BindAddr string

	// DataAddr is this node's Transport address, the Member.Addr that other
	// nodes see. It travels in memberlist's node metadata.
	DataAddr string

	// Zone is this node's failure domain, the Member.Zone other nodes see:
	// at most membership.MaxZoneLen bytes, fixed for the node's run. It travels in
	// memberlist's node metadata with the ID and DataAddr. Empty means none.
	Zone string

	// Seeds are gossip addresses ("host:port") of nodes already in the
	// cluster; Join contacts them. Empty starts a new cluster. After
	// Join, the reconnect loop (see ReconnectInterval) contacts them
	// again whenever memberlist holds no other node alive. New does
	// not use them.
	Seeds []string

	// JoinRetry makes Join start the node alone, instead of failing
	// with ErrJoin, when no seed answers; the reconnect loop then keeps
	// contacting the seeds until one does. A node restarted inside a network
	// partition so starts, and joins when the partition heals. Until then it
	// sees a ring of one. Join still fails if its ctx ends first.
	// JoinRetry needs the reconnect loop: ReconnectInterval must not be
	// negative.
	JoinRetry bool

	// ReconnectInterval is how often the reconnect loop runs. memberlist
	// gives up on a node it holds dead: after GossipToTheDeadTime it forgets
	// the node and never contacts it again, so the two sides of a partition
	// that outlasts failure detection would stay apart after it heals. The
	// loop, as Serf's reconnect does, joins again each ring member that is
	// not alive in memberlist, at the gossip address the member's ring
	// record carries, and the Seeds given to Join while no other node
	// is alive. It tries at most three targets a round, and backs off on
	// each target that stays dead: retried after 1, 2, 4, then every 8
	// intervals. Zero means the profile's default: 500 ms for ProfileLocal,
	// 10 s for ProfileLAN, 30 s for ProfileWAN. Negative disables the loop.
	ReconnectInterval time.Duration

	// SecretKey, when set, encrypts and authenticates all gossip with
	// AES-GCM (memberlist's keyring). It must be 16, 24 or 32 bytes, and
	// the same on every node. Set SecretKey or SecretKeys, not both.
	SecretKey []byte

	// SecretKeys, when set, is memberlist's keyring: the first key
	// encrypts, every key decrypts. Each must be 16, 24 or 32 bytes. A node
	// cannot read gossip encrypted with a key it lacks, so a rotation takes
	// three steps, each on every node before the next (Gossip.SetSecretKeys
	// applies one to a running node): install the new key second, make it
	// first, then drop the old one.
	SecretKeys [][]byte

	// Signer, when set, makes this node sign every ring record it
	// publishes and take a peer's record only when it is signed by the
	// node it describes; a removal (Gossip.Remove) is signed by the member
	// that made it and taken only for a member held unreachable. So a
	// member cannot rewrite or evict another member's record, however it
	// gossips. Memberlist's metadata, which it does not authenticate, then
	// only tells which incarnation of a node is alive. Set it on every node
	// of a cluster or on none: a signed node takes no unsigned record, and
	// the other way round. auth.Credentials fits.
	Signer Signer

	// Profile selects the timing; empty means ProfileLAN.
	Profile Profile

	// Incarnation tells this run of NodeID apart from earlier ones: it must
	// be larger than that of any earlier run, so that a node that left, or
	// was removed, can rejoin, and so that stale records lose to new ones.
	// Zero, the default, takes the wall clock in nanoseconds at New.
	Incarnation uint64

	// Transport, when set, replaces memberlist's UDP/TCP transport, for
	// instance with a wrapper that injects faults around NewNetTransport's
	// result. The Gossip owns it once New succeeds and shuts it down on
	// Close or Leave; if New fails, the caller shuts it down.
	Transport memberlist.Transport

	// Logger receives memberlist's log lines at their levels; nil discards.
	Logger *slog.Logger
}

// Validate reports every problem with c at once, wrapped in
// ErrInvalidConfig, and never modifies c.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("NodeID is empty"))
	}
	if c.DataAddr == "" {
		errs = append(errs, errors.New("DataAddr is empty"))
	}
	if c.Transport == nil {
		if _, _, err := splitBindAddr(c.BindAddr); err != nil {
			errs = append(errs, err)
		}
	}
	for i, s := range c.Seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			errs = append(errs, fmt.Errorf("Seeds[%d] (%q) is not host:port: %w", i, s, err))
		}
	}
	switch n := len(c.SecretKey); n {
	case 0, 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("SecretKey is %d bytes; it must be 16, 24 or 32", n))
	}
	if len(c.SecretKey) > 0 && len(c.SecretKeys) > 0 {
		errs = append(errs, errors.New("SecretKey and SecretKeys are both set"))
	}
	errs = append(errs, checkKeys(c.SecretKeys)...)
	switch c.Profile {
	case "", ProfileLAN, ProfileWAN, ProfileLocal:
	default:
		errs = append(errs, fmt.Errorf("Profile (%q) must be %q, %q or %q", c.Profile, ProfileLAN, ProfileWAN, ProfileLocal))
	}
	if c.JoinRetry && c.ReconnectInterval < 0 {
		errs = append(errs, fmt.Errorf("JoinRetry needs the reconnect loop, which a negative ReconnectInterval (%v) disables", c.ReconnectInterval))
	}
	if len(c.Zone) > membership.MaxZoneLen {
		errs = append(errs, fmt.Errorf("Zone is %d bytes, the limit is %d", len(c.Zone), membership.MaxZoneLen))
	}
	// The largest metadata this node will ever publish: the left flag set
	// and the widest incarnation.
	meta, err := encode(metaV1, metaRecord(entry{ID: c.NodeID, Addr: c.DataAddr, Incarnation: math.MaxUint64, Left: true, Zone: c.Zone}))
	if err != nil {
		errs = append(errs, err)
	} else if len(meta) > memberlist.MetaMaxSize {
		errs = append(errs, fmt.Errorf("node metadata for NodeID (%d bytes), DataAddr (%d bytes) and Zone (%d bytes) takes %d bytes, more than memberlist.MetaMaxSize (%d)",
			len(c.NodeID), len(c.DataAddr), len(c.Zone), len(meta), memberlist.MetaMaxSize))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// splitBindAddr parses an "ip:port" bind address.
func splitBindAddr(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("BindAddr (%q) is not ip:port: %w", addr, err)
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("BindAddr (%q) must have an IP address, not %q", addr, host)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("BindAddr (%q) has a bad port %q: %w", addr, portStr, err)
	}
	return host, int(port), nil
}

// reconnectInterval returns how often the reconnect loop runs; <= 0 means
// never.
func (c Config) reconnectInterval() time.Duration {
	if c.ReconnectInterval != 0 {
		return c.ReconnectInterval
	}
	switch c.Profile {
	case ProfileLocal:
		return 500 * time.Millisecond
	case ProfileWAN:
		return 30 * time.Second
	default:
		return 10 * time.Second
	}
}

// memberlistConfig returns the memberlist configuration for c, which must be
// valid. Delegate and Events are left for the caller.
func (c Config) memberlistConfig(logger *log.Logger) *memberlist.Config {
	var mc *memberlist.Config
	switch c.Profile {
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
	case ProfileLocal:
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.GossipInterval = 50 * time.Millisecond
		mc.SuspicionMult = 3
		mc.SuspicionMaxTimeoutMult = 3
		mc.PushPullInterval = time.Second
		mc.GossipToTheDeadTime = time.Second
		// A restarted test node binds a new port; let it take over its
		// name as soon as the old process is declared dead.
		mc.DeadNodeReclaimTime = time.Millisecond
	default:
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = c.NodeID
	if c.Transport != nil {
		mc.Transport = c.Transport
	} else {
		host, port, _ := splitBindAddr(c.BindAddr)
		mc.BindAddr = host
		mc.BindPort = port
		mc.AdvertisePort = port
	}
	mc.SecretKey = bytes.Clone(c.SecretKey)
	if len(c.SecretKeys) > 0 {
		// Valid keys: NewKeyring cannot fail.
		mc.Keyring, _ = memberlist.NewKeyring(cloneKeys(c.SecretKeys), bytes.Clone(c.SecretKeys[0]))
	}
	mc.Logger = logger
	return mc
}

// checkKeys reports each key of a keyring that memberlist would refuse.
func checkKeys(keys [][]byte) []error {
	var errs []error
	for i, k := range keys {
		switch len(k) {
		case 16, 24, 32:
		default:
			errs = append(errs, fmt.Errorf("SecretKeys[%d] is %d bytes; it must be 16, 24 or 32", i, len(k)))
		}
	}
	return errs
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

// NewNetTransport returns memberlist's UDP/TCP transport listening on
// bindAddr ("ip:port"; port 0 picks a port free for both protocols), for a
// caller that wraps it and passes the wrapper as Config.Transport.
// logger receives its log lines; nil discards them.
func NewNetTransport(bindAddr string, logger *slog.Logger) (*memberlist.NetTransport, error) {
	host, port, err := splitBindAddr(bindAddr)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	cfg := &memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: newLogLogger(logger)}
	// With port 0 the kernel picks a free TCP port, which may be taken for
	// UDP: retry a few times, as memberlist itself does.
	tries := 1
	if port == 0 {
		tries = 10
	}
	for i := 0; ; i++ {
		nt, err := memberlist.NewNetTransport(cfg)
		if err == nil {
			return nt, nil
		}
		if i+1 >= tries || !strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("membership: listen on %s: %w", bindAddr, err)
		}
	}
}

// newLogLogger adapts l for memberlist, which writes lines that open with a
// level tag such as "[WARN] ".
func newLogLogger(l *slog.Logger) *log.Logger {
	if l == nil {
		return log.New(io.Discard, "", 0)
	}
	return log.New(slogWriter{l}, "", 0)
}

// slogWriter turns memberlist's "[LEVEL] memberlist: text" lines into slog
// records at the matching level.
type slogWriter struct{ l *slog.Logger }

// Write logs one line.
func (w slogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for _, t := range logTags {
		if rest, ok := strings.CutPrefix(msg, t.tag); ok {
			msg, level = rest, t.level
			break
		}
	}
	w.l.Log(context.Background(), level, msg)
	return len(p), nil
}

// logTags maps memberlist's level tags to slog levels.
var logTags = []struct {
	tag   string
	level slog.Level
}{
	{"[DEBUG] ", slog.LevelDebug},
	{"[INFO] ", slog.LevelInfo},
	{"[WARN] ", slog.LevelWarn},
	{"[ERR] ", slog.LevelError},
	{"[ERROR] ", slog.LevelError},
}
