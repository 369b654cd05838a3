//go:build !race

// race_off_test.go: whether this test binary has the race detector.
package main

const raceBuild = false
