#!/usr/bin/env bash
# Paired A/B of W1 between builds: each server is started once against the same
# benchmark database (seed it first with `journeymap bench`), then `wrk` bursts of
# W1's first page alternate between them and each burst's server CPU is read from
# /proc. Alternating short bursts cancel most of this machine's drift, which moves
# whole runs by ±15%; compare the medians of several rounds.
#
#   bench/paired.sh postgres://postgres@127.0.0.1:5432/jm_bench 6 ./old/journeymap ./target/release/journeymap
#
# Needs `wrk` (apt-get install wrk). Prints per burst: round, binary, req/s, ms of
# server CPU a request.
set -euo pipefail
db=$1 rounds=$2
shift 2
secs=${SECS:-5} conns=${CONNS:-16}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

token=$("$1" token create --database-url "$db" --clinic glow --name paired-bench)
query='query Nested($after: String) { patients(first: 50, after: $after) { pageInfo { endCursor hasNextPage } edges { node { id givenName familyName journeys { id status stalled currentStage { id name category } } touchpoints(first: 5) { edges { node { id channel occurredAt emotion } } } feedback(first: 3) { edges { node { id kind score } } } } } } }'
cat >"$work/w1.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"query": "$query", "variables": {"after": null}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA

ports=()
port=18180
for binary in "$@"; do
  port=$((port + 1))
  RUST_LOG=warn,tower_http=off "$binary" serve --listen "127.0.0.1:$port" --database-url "$db" \
    --sweep-interval-secs 0 --rate-limit-refill-per-second 0 >/dev/null 2>&1 &
  pids+=($!)
  ports+=("$port")
done
sleep 3
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for i in "${!pids[@]}"; do
  wrk -t1 -c"$conns" -d3s -s "$work/w1.lua" "http://127.0.0.1:${ports[$i]}/graphql" >/dev/null
done
binaries=("$@")
for round in $(seq 1 "$rounds"); do
  for i in "${!pids[@]}"; do
    before=$(cpu "${pids[$i]}")
    out=$(wrk -t1 -c"$conns" -d"${secs}s" -s "$work/w1.lua" "http://127.0.0.1:${ports[$i]}/graphql")
    after=$(cpu "${pids[$i]}")
    if grep -q "Non-2xx" <<<"$out"; then echo "${binaries[$i]}: non-2xx answers" >&2; exit 1; fi
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    awk -v r="$round" -v b="${binaries[$i]}" -v rate="$rate" -v c=$((after - before)) -v t="$tick" -v n="$requests" \
      'BEGIN { printf "%s %s %s req/s %.2f ms CPU a request\n", r, b, rate, c / t * 1000 / n }'
  done
done
