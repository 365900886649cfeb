#!/bin/sh
# Runs the edge's end-to-end benchmarks against the real binary (built from ./xcaddy by the
# harness) and prints their markdown table, as recorded in integration/BENCHMARKS.md.
#
#     integration/bench/run.sh
#
# The load shape can be changed through the environment: CAPI_BENCH_ROUNDS (default 5),
# CAPI_BENCH_DURATION (seconds per wrk run, default 6), CAPI_BENCH_CONNECTIONS (default 16),
# CAPI_BENCH_THREADS (wrk threads, default 1). CAPI_BENCH_PROFILE=<dir> saves a CPU profile of the
# capi site under each workload; CAPI_BENCH_STRICT=1 fails the run when a throughput target is
# missed; CAPI_CADDY_BINARY=<path> measures a prebuilt binary instead of building one.
set -eu

cd "$(dirname "$0")/../.."

if ! command -v wrk >/dev/null 2>&1; then
	echo "run.sh: wrk is not installed (Debian: apt-get install wrk); the benchmarks need it" >&2
	exit 1
fi

report=$(mktemp)
log=$(mktemp)
trap 'rm -f "$report" "$log"' EXIT

status=0
CAPI_BENCH=1 CAPI_BENCH_REPORT="$report" \
	go test -count=1 -v -run '^TestEdgeProxyOverhead$' -timeout 30m ./integration/bench/ >"$log" 2>&1 || status=$?

if [ "$status" -ne 0 ] || [ ! -s "$report" ]; then
	cat "$log" >&2
	echo "run.sh: the benchmarks failed (exit status $status)" >&2
	exit 1
fi
grep -E '^\s+(edge_test|large_test)\.go:[0-9]+: (round|plain|capi|TARGET|caddy logged)' "$log" | sed 's/^ *//' >&2 || true
echo
cat "$report"
