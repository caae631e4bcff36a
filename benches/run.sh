#!/usr/bin/env bash
# reflatten vs. pyarrow on the same JSON lines, in the same run (BENCHMARKS.md).
#
# For each input shape: builds the input once (the emulator's synthetic tenant, complete
# callRecords as JSON lines), warms the page cache, then runs `reflatten` (all 9 call
# tables) and the pyarrow baseline (stream table only, its tuned settings) REPEAT times
# each, alternating, and prints median wall time, GB/s of JSON, peak RSS, CPU and the ratio
# of the wall times, each against its target, and the ratio within each pair of runs (how
# far the ratio moves with the host's load). Then reflatten once more on SCALE times the
# input, to show that peak memory does not grow with the input.
#
# Shapes (synthetic-records --shape): `mixed`, the emulator's tenant (mostly two-party and
# PSTN calls); `meetings`, meetings with many attendees, few but long sessions with video,
# streams with most metrics null.
#
# Usage: benches/run.sh
# Environment: SHAPES ("mixed meetings"), CALLS_PER_DAY (1900: 13,300 mixed records over
#   7 days, ~0.49 GB), MEETINGS_CALLS_PER_DAY (90: 630 calls over 7 days, ~0.46 GB),
#   REPEAT (5; 1 for a quick check), SCALE (5; 0 skips the memory-growth runs),
#   SCRATCH (${TMPDIR:-/tmp}/callrecords-bench), WORKERS (reflatten --workers; default: one
#   per core, at most 16), PYARROW_ARGS (extra options of benches/pyarrow_streams.py, to try settings).
# Needs: a release build of the workspace (cargo build --release --workspace: the app and
#   the emulator crate's synthetic-records), python3 with pyarrow, GNU time.
set -euo pipefail
repeat=${REPEAT:-5}
scale=${SCALE:-5}
scratch=${SCRATCH:-${TMPDIR:-/tmp}/callrecords-bench}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release/callrecords-etl
records_bin=${CARGO_TARGET_DIR:-$root/target}/release/synthetic-records
for b in "$bin" "$records_bin"; do
    [ -x "$b" ] || { echo "no release build at $b: run cargo build --release --workspace" >&2; exit 2; }
done
python3 -c 'import pyarrow' 2>/dev/null || { echo "pyarrow is missing: pip install pyarrow" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "GNU time (/usr/bin/time) is missing: apt-get install time" >&2; exit 2; }
workers=()
[ -n "${WORKERS:-}" ] && workers=(--workers "$WORKERS")
read -r -a pyarrow_args <<< "${PYARROW_ARGS:-}"
mkdir -p "$scratch"

calls_per_day_of() { # shape -> calls per day of its input
    case $1 in
        mixed) echo "${CALLS_PER_DAY:-1900}" ;;
        meetings) echo "${MEETINGS_CALLS_PER_DAY:-90}" ;;
        *) echo "unknown shape $1 in SHAPES (mixed, meetings)" >&2; exit 2 ;;
    esac
}

input_for() { # shape, calls per day -> path of the JSON lines (generated once)
    local path=$scratch/records-$1-$2.jsonl
    if [ ! -s "$path" ]; then
        echo "generating $path ($1, $2 calls/day x 7 days) ..." >&2
        "$records_bin" --out "$path.tmp" --shape "$1" --calls-per-day "$2" --days 7
        mv "$path.tmp" "$path"
    fi
    echo "$path"
}

# One timed run: label, command... Appends "wall_s peak_rss_kib cpu_s" to $scratch/<label>.runs.
measure() {
    local label=$1; shift
    local log=$scratch/$label.time
    rm -rf "$scratch/out-$label"
    /usr/bin/time -f '%e %M %U %S' -o "$log" "$@" > /dev/null
    awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }' "$log" >> "$scratch/$label.runs"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column() { awk -v c="$1" '{ print $c }' "$scratch/$2.runs"; }
verdict() { if awk -v a="$1" -v b="$2" "BEGIN { exit !(a $3 b) }"; then echo met; else echo "NOT met"; fi; }
reflatten() { measure "$1" "$bin" -q reflatten --raw "$2" --out "$scratch/out-$1" "${workers[@]}"; }

bench_shape() { # shape
    local shape=$1 input bytes label
    input=$(input_for "$shape" "$(calls_per_day_of "$shape")")
    bytes=$(stat -c %s "$input")
    cat "$input" > /dev/null
    rm -f "$scratch"/reflatten.runs "$scratch"/pyarrow.runs "$scratch"/scaled.runs
    for _ in $(seq "$repeat"); do
        reflatten reflatten "$input"
        measure pyarrow python3 "$root/benches/pyarrow_streams.py" "$input" "$scratch/out-pyarrow" "${pyarrow_args[@]}"
    done

    echo
    echo "== input '$shape': $(wc -l < "$input") callRecords, $((bytes / 1000000)) MB of JSON lines ($input)"
    echo "runs:    $repeat of each, alternating; medians"
    for label in reflatten pyarrow; do
        wall=$(column 1 $label | median)
        printf '%-10s wall %6.2f s (min %.2f, max %.2f)  %5.2f GB/s  peak RSS %4d MiB  CPU %5.2f s\n' "$label" "$wall" \
            "$(column 1 $label | sort -n | head -1)" "$(column 1 $label | sort -n | tail -1)" \
            "$(echo "$bytes / $wall / 1000000000" | bc -l)" "$(( $(column 2 $label | sort -n | tail -1) / 1024 ))" \
            "$(column 3 $label | median)"
    done
    local reflatten_wall ratio throughput peak_mib
    reflatten_wall=$(column 1 reflatten | median)
    ratio=$(echo "$reflatten_wall / $(column 1 pyarrow | median)" | bc -l)
    throughput=$(echo "$bytes / $reflatten_wall / 1000000000" | bc -l)
    peak_mib=$(( $(column 2 reflatten | sort -n | tail -1) / 1024 ))
    printf 'target: reflatten/pyarrow wall <= 0.50   %5.2f        %s\n' "$ratio" "$(verdict "$ratio" 0.5 '<=')"
    # The two runs of a pair follow each other, so a busy host slows both alike: the pairs'
    # ratios say how far the ratio above moves with the host's load.
    local pairs
    pairs=$(paste -d' ' <(column 1 reflatten) <(column 1 pyarrow) | awk '{ printf "%.3f\n", $1 / $2 }' | sort -n)
    printf 'pairs:   reflatten/pyarrow of each pair of runs: median %.2f (%.2f to %.2f)\n' \
        "$(echo "$pairs" | median)" "$(echo "$pairs" | head -1)" "$(echo "$pairs" | tail -1)"
    printf 'target: >= 1 GB/s of JSON               %5.2f GB/s   %s\n' "$throughput" "$(verdict "$throughput" 1 '>=')"
    printf 'target: peak RSS <= 512 MiB             %5d MiB    %s\n' "$peak_mib" "$(verdict "$peak_mib" 512 '<=')"

    if [ "$scale" -gt 0 ]; then
        local scaled scaled_bytes scaled_wall scaled_mib growth
        scaled=$(input_for "$shape" $(($(calls_per_day_of "$shape") * scale)))
        scaled_bytes=$(stat -c %s "$scaled")
        reflatten scaled "$scaled"
        scaled_wall=$(column 1 scaled)
        scaled_mib=$(( $(column 2 scaled) / 1024 ))
        growth=$(echo "($scaled_mib - $peak_mib) * 100 / $peak_mib" | bc -l)
        printf 'scaled:  %dx input, %d MB: wall %.2f s  %.2f GB/s  peak RSS %d MiB\n' "$scale" \
            $((scaled_bytes / 1000000)) "$scaled_wall" "$(echo "$scaled_bytes / $scaled_wall / 1000000000" | bc -l)" "$scaled_mib"
        printf 'target: %dx input, < 20 %% more peak memory   %+5.1f %%   %s\n' "$scale" "$growth" "$(verdict "$growth" 20 '<')"
    fi
}

echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "pyarrow: $(python3 -c 'import pyarrow; print(pyarrow.__version__)') ${PYARROW_ARGS:-(tuned defaults)}"
for shape in ${SHAPES:-mixed meetings}; do
    bench_shape "$shape"
done
