// Command shoppingcart is the Dynamo paper's shopping cart (§4.4, §6.1) on the
// dynamo library.
//
// With no flags it tells the cart story on a 3-node cluster started inside
// the process: concurrent adds on both sides of a network cut become
// siblings, a union merge keeps every item, and an item removed in one
// sibling resurfaces; then, on an observed-remove set (dynamo.ORSet), the
// removal holds and a concurrent add wins. With flags it runs one node of a multi-process cluster
// and serves a small HTTP API; see README.md.
//
//	go run ./examples/shoppingcart
//	go run ./examples/shoppingcart -id node-a -data /tmp/a -http 127.0.0.1:8081
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/dynamo-kv/dynamo/membership/gossip"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// nodeFlags are the settings of one node of a multi-process cluster.
type nodeFlags struct {
	id, listen, gossip, join, data, http, zone string
	profile                                    gossip.Profile
	leaveOnExit                                bool
	secretFile                                 string // the cluster secret; "" with insecure
	insecure                                   bool
}

// run is main without the exit: it returns the process's exit code.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("shoppingcart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: shoppingcart              tell the cart story on an in-process cluster\n"+
			"       shoppingcart -id ID -data DIR [flags]  run one node of a cluster\n\nflags:\n")
		fs.PrintDefaults()
	}
	var f nodeFlags
	var profile string
	fs.StringVar(&f.id, "id", "", "node ID, stable across restarts (node mode)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:0", "TCP address for peer (data) traffic")
	fs.StringVar(&f.gossip, "gossip", "127.0.0.1:0", "memberlist gossip address (TCP and UDP)")
	fs.StringVar(&f.join, "join", "", "comma-separated gossip addresses of nodes already in the cluster")
	fs.StringVar(&f.data, "data", "", "data directory; reuse it to restart the node")
	fs.StringVar(&f.http, "http", "127.0.0.1:0", "HTTP API address")
	fs.StringVar(&f.zone, "zone", "", "failure domain (rack or availability zone): each key's replicas span as many zones as the cluster has, up to N")
	fs.StringVar(&profile, "profile", string(gossip.ProfileLAN), "failure detection timing: lan, wan or local")
	fs.BoolVar(&f.leaveOnExit, "leave-on-exit", false, "leave the ring for good on SIGTERM or SIGINT (default: stop as if crashed, keep partitions)")
	fs.StringVar(&f.secretFile, "secret-file", "", "file holding the cluster secret, the same on every node (node mode needs it, or -insecure)")
	fs.BoolVar(&f.insecure, "insecure", false, "run without peer authentication: anyone who reaches the ports can read, write and join")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "shoppingcart: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return 2
	}
	if fs.NFlag() == 0 {
		if err := runStory(stdout); err != nil {
			fmt.Fprintln(stderr, "shoppingcart:", err)
			return 1
		}
		return 0
	}
	f.profile = gossip.Profile(profile)
	if f.id == "" || f.data == "" {
		fmt.Fprintln(stderr, "shoppingcart: node mode needs -id and -data")
		fs.Usage()
		return 2
	}
	if (f.secretFile == "") == !f.insecure {
		fmt.Fprintln(stderr, "shoppingcart: node mode needs one of -secret-file and -insecure")
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := runNode(ctx, f, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "shoppingcart:", err)
		return 1
	}
	return 0
}
