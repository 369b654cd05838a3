#!/usr/bin/env bash
# A/B of two commits on the peer harness, dynamo alone, from the project's root:
#
#   docs/peers/ab.sh OLD NEW ROUNDS DURATION [WORKLOADS]
#   docs/peers/ab.sh adb5f1c HEAD 4 8s put,get,mixed
#
# It builds the harness (../shared/peers, with docs/peers/dynamo_adapter.go.txt)
# against a checkout of each commit, then runs ROUNDS rounds of both, the
# order alternating from one round to the next (A B, B A, ...): on a 2-core
# machine whichever runs second in a round comes out ahead by 5 to 16%, so a
# fixed order measures the order (docs/overwrite.md). It prints each run and
# the medians of ops/s, CPU µs per op and p99.9 per workload and side, and
# leaves the raw JSON lines in ab.out in the temporary folder it names.
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,12p "$0" >&2; exit 2; }
old=$1 new=$2 rounds=$3 dur=$4 workloads=${5:-put,get,mixed}
proj=$(pwd)
grep -q '^module github.com/dynamo-kv/dynamo' "$proj/go.mod" 2>/dev/null || {
  echo "ab.sh: run it from the project's root" >&2; exit 2; }
harness=$(cd "$proj/../shared/peers" && pwd)
work=$(mktemp -d)
echo "ab.sh: working in $work" >&2
cleanup() {
  for side in A B; do git -C "$proj" worktree remove --force "$work/src$side" 2>/dev/null || true; done
}
trap cleanup EXIT

for side in A B; do
  rev=$old
  [ $side = B ] && rev=$new
  git -C "$proj" worktree add --detach "$work/src$side" "$rev" >/dev/null 2>&1
  cp -r "$harness" "$work/h$side"
  chmod -R u+w "$work/h$side"
  cp "$proj/docs/peers/dynamo_adapter.go.txt" "$work/h$side/systems/dynamo/dynamo.go"
  (cd "$work/h$side" && go mod edit -replace github.com/dynamo-kv/dynamo="$work/src$side" &&
    go mod tidy >/dev/null 2>&1 && go build -o peerbench ./cmd/peerbench)
  echo "ab.sh: $side = $rev ($(git -C "$work/src$side" rev-parse --short HEAD))" >&2
done

out=$work/ab.out
: >"$out"
for i in $(seq 1 "$rounds"); do
  order="A B"
  [ $((i % 2)) = 0 ] && order="B A"
  for side in $order; do
    rm -rf "$work/data" && mkdir -p "$work/data"
    "$work/h$side/peerbench" -datadir "$work/data" -systems dynamo -clients 16 -duration "$dur" \
      -value-size 1024 -keys 10000 -workloads "$workloads" 2>/dev/null |
      grep '^{' | sed "s/^/$side $i /" >>"$out"
  done
done

field() { grep -o "\"$1\":[0-9.]*" | head -1 | cut -d: -f2; }
median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
printf '%-6s %-4s %-6s %10s %8s %8s\n' workload side round ops/s cpu-us p99.9-ms
while read -r side round json; do
  w=$(echo "$json" | grep -o '"workload":"[a-z]*"' | cut -d'"' -f4)
  printf '%-6s %-4s %-6s %10.0f %8.0f %8.1f\n' "$w" "$side" "$round" \
    "$(echo "$json" | field ops_per_sec)" "$(echo "$json" | field cpu_us_per_op)" "$(echo "$json" | field p99_9)"
done <"$out"
echo "medians:"
for w in ${workloads//,/ }; do
  for side in A B; do
    lines=$(grep "^$side [0-9]* {.*\"workload\":\"$w\"" "$out" | cut -d' ' -f3-)
    printf '%-6s %-4s ops/s %8.0f  cpu-us %5.0f  p99.9-ms %5.1f\n' "$w" "$side" \
      "$(echo "$lines" | while read -r l; do echo "$l" | field ops_per_sec; done | median)" \
      "$(echo "$lines" | while read -r l; do echo "$l" | field cpu_us_per_op; done | median)" \
      "$(echo "$lines" | while read -r l; do echo "$l" | field p99_9; done | median)"
  done
done
