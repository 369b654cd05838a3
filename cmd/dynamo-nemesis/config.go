// config.go: the controller's flags and their validation.

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// config configures a controller run.
type config struct {
	Duration    time.Duration // how long clients write under faults
	Seed        uint64
	Mode        string // union or lww
	Nodes       int
	Clients     int
	Keys        int
	Dir         string        // root of the data directories; empty means a temporary directory
	Interval    time.Duration // mean time between nemesis actions
	DeleteEvery time.Duration // time between deletes of a whole key; 0 means none
	Converge    time.Duration // bound on the convergence wait
	OpTimeout   time.Duration // bound of one client call on the node
	// RequestTimeout and ReplicaTimeout are the nodes' Config values; zero
	// means the node's defaults.
	RequestTimeout, ReplicaTimeout time.Duration
	Profile                        string
	Partitions                     int
	Rejoin                         time.Duration // the nodes' -rejoin
	Exe                            string        // the binary run as node; empty means os.Executable
	JSON                           bool
	Faults                         string // comma-separated kinds the nemesis uses: partition, kill, stop, heal
}

func defaultConfig() config {
	return config{
		Duration: 30 * time.Second, Seed: 1, Mode: "union", Nodes: 5, Clients: 5, Keys: 4,
		Interval: 2 * time.Second, DeleteEvery: 3 * time.Second, Converge: 60 * time.Second,
		OpTimeout: 4 * time.Second, Profile: "local", Partitions: 0, Rejoin: time.Second,
		Faults: "partition,kill,stop,heal",
	}
}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("dynamo-nemesis", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		usage(stderr)
		fmt.Fprintln(stderr, "flags:")
		fs.PrintDefaults()
	}
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long clients write under faults")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the nemesis schedule and the clients' choices")
	fs.StringVar(&c.Mode, "mode", c.Mode, "union: siblings merged by set union (no loss allowed); lww: dynamo.Latest (losses expected, reported)")
	fs.IntVar(&c.Nodes, "nodes", c.Nodes, "node processes (N=3, R=2, W=2 needs at least 3)")
	fs.IntVar(&c.Clients, "clients", c.Clients, "client goroutines")
	fs.IntVar(&c.Keys, "keys", c.Keys, "set keys")
	fs.StringVar(&c.Dir, "dir", "", "directory for data directories and node logs (kept); default a temporary one, removed unless the run fails")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "mean time between nemesis actions")
	fs.DurationVar(&c.DeleteEvery, "delete-every", c.DeleteEvery, "time between deletes of a whole key (0: no deletes)")
	fs.DurationVar(&c.Converge, "converge-timeout", c.Converge, "bound on waiting for convergence after the heal")
	fs.DurationVar(&c.OpTimeout, "op-timeout", c.OpTimeout, "bound of one client call on a node")
	fs.StringVar(&c.Profile, "profile", c.Profile, "gossip timing: lan, wan or local")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "Config.Partitions of every node (0: the library default, 2^17)")
	fs.DurationVar(&c.Rejoin, "rejoin", c.Rejoin, "how often nodes rejoin peers held dead (0: never; memberlist alone does not heal a partition)")
	fs.StringVar(&c.Faults, "faults", c.Faults, "comma-separated fault kinds the nemesis draws from: partition, kill, stop, heal")
	fs.BoolVar(&c.JSON, "json", false, "also print the report as a JSON line")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	if c.Mode != "union" && c.Mode != "lww" {
		errs = append(errs, fmt.Errorf("-mode %q: want union or lww", c.Mode))
	}
	if c.Nodes < 3 || c.Nodes > 50 {
		errs = append(errs, fmt.Errorf("-nodes %d: want 3 to 50", c.Nodes))
	}
	if c.Clients < 1 || c.Keys < 1 {
		errs = append(errs, errors.New("-clients and -keys must be at least 1"))
	}
	if _, err := parseFaults(c.Faults); err != nil {
		errs = append(errs, err)
	}
	if c.Duration <= 0 || c.Interval <= 0 || c.Converge <= 0 || c.OpTimeout <= 0 || c.DeleteEvery < 0 || c.Rejoin < 0 {
		errs = append(errs, errors.New("durations must be positive"))
	}
	return errors.Join(errs...)
}
