// main_test.go: the test entry point (a re-exec switch for node processes, goleak) and the story's golden output (§4.4, §6.1).

package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// nodeEnv switches the test binary into the program: TestProcesses re-runs
// the binary with it set to start cluster nodes as real processes.
const nodeEnv = "DYNAMO_CART_NODE"

var update = flag.Bool("update", false, "rewrite testdata/story.golden")

// TestMain runs main when nodeEnv is set, and otherwise the tests, failing
// the run if any goroutine outlives them.
func TestMain(m *testing.M) {
	if os.Getenv(nodeEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	if name := os.Getenv(dosAttackEnv); name != "" {
		os.Exit(runAttacker(name))
	}
	goleak.VerifyTestMain(m)
}

// TestStory runs the no-flag story in-process. Its text must be the same on
// every run, so it is compared with a golden file, and its key claims are
// checked one by one so a failure says which one broke.
func TestStory(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, runStory(&out))
	got := out.String()
	for _, want := range []string{
		"Shopper 2, on node-c (cut off), tries the same with R=2: the read quorum is not met",
		"Get with R=3 and no resolver, through node-a, returns 2 siblings:\n     sibling: [book lamp]\n     sibling: [book pen]\n",
		"cart = [book lamp pen]. Nothing is lost.",
		"Get with R=3 now returns 1 version: [book lamp pen]",
		"returns 2 siblings:\n     sibling: [book cup lamp pen]\n     sibling: [lamp pen]\n",
		"cart = [book cup lamp pen]. The removed \"book\" is back.",
		"deleted items can resurface",
		"merges the key's 2 siblings: cart = [cup lamp pen]. The removal holds",
		"concurrently: cart = [cup lamp pen]. The concurrent add wins",
		"Closed all nodes.",
	} {
		require.Contains(t, got, want)
	}

	golden := filepath.Join("testdata", "story.golden")
	if *update {
		require.NoError(t, os.WriteFile(golden, out.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), got, "the story changed; rerun with -update if that was meant")
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	require.Contains(t, string(readme), "```text\n"+got+"```", "README.md must show the story as it is")
}

// TestRun_Flags checks the command line: node mode needs -id and -data, and
// stray arguments are refused, both before anything starts.
func TestRun_Flags(t *testing.T) {
	tests := map[string]struct {
		args []string
		code int
		msg  string
	}{
		"node mode without id":   {args: []string{"-data", t.TempDir()}, code: 2, msg: "needs -id and -data"},
		"node mode without data": {args: []string{"-id", "node-a"}, code: 2, msg: "needs -id and -data"},
		"node mode without secret": {args: []string{"-id", "node-a", "-data", t.TempDir()}, code: 2,
			msg: "needs one of -secret-file and -insecure"},
		"secret and insecure": {args: []string{"-id", "node-a", "-data", t.TempDir(), "-secret-file", "x", "-insecure"}, code: 2,
			msg: "needs one of -secret-file and -insecure"},
		"unreadable secret": {args: []string{"-id", "node-a", "-data", t.TempDir(), "-secret-file", "/nonexistent/secret"}, code: 1,
			msg: "read the cluster secret"},
		"stray argument": {args: []string{"story"}, code: 2, msg: "unexpected arguments"},
		"unknown flag":   {args: []string{"-nodes", "3"}, code: 2, msg: "flag provided but not defined"},
		"help":           {args: []string{"-h"}, code: 0, msg: "usage: shoppingcart"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			require.Equal(t, tc.code, run(tc.args, &stdout, &stderr))
			require.Contains(t, stderr.String(), tc.msg)
			require.Empty(t, stdout.String())
		})
	}
}
