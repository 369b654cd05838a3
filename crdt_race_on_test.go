// crdt_race_on_test.go: raceEnabled is true under the race detector, so long tests run their short variants.
//go:build race

package dynamo

const raceEnabled = true
