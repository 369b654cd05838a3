// crdt_race_off_test.go: raceEnabled is false without the race detector.
//go:build !race

package dynamo

const raceEnabled = false
