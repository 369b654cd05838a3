// Command dynamoctl shows the state of a running dynamo node through its
// admin endpoint (package admin), the way `nodetool status` and
// `riak-admin status` do: ring, members and reachability (§4.8), partitions
// owned (§4.2), hints held (§4.6) and counters.
//
//	dynamoctl [-addr host:port] [-prefix /admin] [-json] [-timeout 10s] status|members|ring|hints|stats
//
// It prints human tables, or the endpoint's JSON with -json. Exit codes:
//
//	0  the node answered and reports no problem
//	1  no usable answer: the node is unreachable, answered with an HTTP
//	   error, or sent a body that is not the JSON expected or too large
//	2  bad usage
//	3  the node answered and reports a problem: for status, its storage
//	   failed or it has not finished its start-up pulls; for members, some
//	   member is unreachable from it
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitProblem = 3
)

func main() { os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) }

// command prints one endpoint's answer; problem reports whether the node
// reports a problem (exit 3).
type command struct {
	path  string
	about string
	print func(c *client, w io.Writer) (problem bool, err error)
}

var commands = map[string]command{
	"status":  {"status", "the node's summary, every node's state and ownership, request latencies", printStatus},
	"members": {"members", "ring members and their reachability from the node", printMembers},
	"ring":    {"ring", "partitions owned per node, as first primary and as replica", printRing},
	"hints":   {"hints", "hints held for nodes that missed writes, per owner", printHints},
	"stats":   {"stats", "counters: requests, quorum failures, anti-entropy, transport, storage", printStats},
}

// problemOf reports, for -json, whether body (of path) reports a problem.
var problemOf = map[string]func(body []byte) (bool, error){
	"status":  statusProblem,
	"members": membersProblem,
}

// run is main without the exit: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dynamoctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "host:port of the node's HTTP server (or an http:// or https:// URL)")
	prefix := fs.String("prefix", "/admin", "path where the node mounts the admin handler")
	asJSON := fs.Bool("json", false, "print the endpoint's JSON instead of tables")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the whole request")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: dynamoctl [flags] command\n\ncommands:\n")
		for _, name := range []string{"status", "members", "ring", "hints", "stats"} {
			fmt.Fprintf(stderr, "  %-8s %s\n", name, commands[name].about)
		}
		fmt.Fprintf(stderr, "\nexit codes: 0 ok, 1 no usable answer, 2 bad usage, 3 the node reports a problem\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "dynamoctl: give exactly one command")
		fs.Usage()
		return exitUsage
	}
	cmd, ok := commands[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "dynamoctl: unknown command %q\n", fs.Arg(0))
		fs.Usage()
		return exitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "dynamoctl: -timeout must be positive")
		return exitUsage
	}
	base, err := baseURL(*addr, *prefix)
	if err != nil {
		fmt.Fprintln(stderr, "dynamoctl:", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := &client{ctx: ctx, base: base, http: &http.Client{Timeout: *timeout}}
	defer c.http.CloseIdleConnections()

	var problem bool
	if *asJSON {
		problem, err = c.printJSON(stdout, cmd.path, problemOf[cmd.path])
	} else {
		problem, err = cmd.print(c, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "dynamoctl:", err)
		return exitFailed
	}
	if problem {
		return exitProblem
	}
	return exitOK
}

// baseURL joins addr and prefix into the admin handler's URL, ending in "/".
func baseURL(addr, prefix string) (string, error) {
	if addr == "" {
		return "", errors.New("-addr is empty")
	}
	if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
		addr = "http://" + addr
	}
	prefix = strings.Trim(prefix, "/")
	u := strings.TrimRight(addr, "/") + "/"
	if prefix != "" {
		u += prefix + "/"
	}
	return u, nil
}
