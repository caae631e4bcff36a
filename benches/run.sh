#!/usr/bin/env bash
# Reflatten vs. pyarrow on the same JSON lines; prints wall time, GB/s, peak RSS and the ratio.
# Usage: benches/run.sh [CALLS_PER_DAY (default 1900: 13,300 records, ~0.49 GB)] [SCRATCH dir]
# Needs: a release build (cargo build --release), python3 with pyarrow, /usr/bin/time.
set -euo pipefail
calls_per_day=${1:-1900}
scratch=${2:-${TMPDIR:-/tmp}/callrecords-bench}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release/callrecords-etl
mkdir -p "$scratch"
input=$scratch/records-$calls_per_day.jsonl
[ -s "$input" ] || "$bin" emulator --dump-jsonl "$input" --calls-per-day "$calls_per_day" --dump-days 7
bytes=$(stat -c %s "$input")
cat "$input" > /dev/null # warm page cache, as for both runs

measure() { # label, command...
    local label=$1; shift
    local log=$scratch/$label.time
    /usr/bin/time -v "$@" > /dev/null 2> "$log"
    local wall rss
    wall=$(grep "Elapsed (wall clock)" "$log" | awk -F': ' '{print $2}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    rss=$(grep "Maximum resident" "$log" | awk '{print $6}')
    printf '%-10s wall %6.2f s  %5.2f GB/s  peak RSS %5d MiB  CPU %s\n' "$label" "$wall" \
        "$(echo "$bytes / $wall / 1000000000" | bc -l)" $((rss / 1024)) "$(grep 'Percent of CPU' "$log" | awk '{print $NF}')"
    echo "$wall" > "$scratch/$label.wall"
}

rm -rf "$scratch/out-reflatten" "$scratch/out-pyarrow"
measure reflatten "$bin" -q reflatten --raw "$input" --out "$scratch/out-reflatten"
measure pyarrow python3 "$root/benches/pyarrow_streams.py" "$input" "$scratch/out-pyarrow"
echo "input: $(wc -l < "$input") records, $((bytes / 1000000)) MB"
echo "ratio (pyarrow wall / reflatten wall): $(echo "$(cat "$scratch/pyarrow.wall") / $(cat "$scratch/reflatten.wall")" | bc -l | cut -c1-4)"
