//go:build race

// race_on_test.go: whether this test binary has the race detector.
package main

// raceBuild: the race detector multiplies a process's memory 5 to 10 times
// (its shadow memory), so tests that bound a node's resident memory start
// nodes from a build without it (nodeBinary).
const raceBuild = true
