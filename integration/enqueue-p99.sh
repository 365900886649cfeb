#!/usr/bin/env bash
# enqueue-p99.sh runs issue 4's enqueue latency benchmark several times and prints each run and the
# medians: one-event Enqueue calls offered at 20,000/s (open loop, BenchmarkEnqueueOpenLoop), and in
# the same run the bare write-ahead log on the same disk through the same harness, the floor of any
# enqueue that waits for an fdatasync. On a machine whose neighbours move the floor from run to run,
# the median of several runs and the ratio to the floor say more than one run.
#
#   integration/enqueue-p99.sh [runs] [rate]      (defaults: 9 runs, 20000/s)
#
# Run it on an otherwise idle machine; it takes about 15 s a run.
set -euo pipefail
runs=${1:-9}
rate=${2:-20000}
cd "$(dirname "$0")/.."
bin=$(mktemp -d)/q.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" ./capi/queue/
out=$(dirname "$bin")/runs
printf '%-4s %12s %12s %8s %12s %10s %8s\n' run call-p99-ms floor-p99-ms ratio call-p50-ms cpu-µs/ev B/op
for i in $(seq "$runs"); do
	"$bin" -test.run '^$' -test.bench "BenchmarkEnqueueOpenLoop/rate=${rate}\$" -test.benchtime 100000x |
		awk -v run="$i" '/^BenchmarkEnqueueOpenLoop/ {
			for (f = 1; f < NF; f++) m[$(f+1)] = $f
			printf "%-4s %12.2f %12.2f %8.2f %12.2f %10.1f %8d\n", run, m["call-p99-µs"]/1000, m["floor-call-p99-µs"]/1000,
				m["p99÷floor"], m["call-p50-µs"]/1000, m["cpu-µs/event"], m["B/op"]
		}' | tee -a "$out"
done
median() { awk -v c="$1" '{ print $c }' "$out" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "median of $runs runs: call p99 $(median 2) ms, floor p99 $(median 3) ms, ratio $(median 4), call p50 $(median 5) ms"
