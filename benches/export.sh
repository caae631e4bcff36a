#!/usr/bin/env bash
# The export path's own cost (BENCHMARKS.md): CPU per exported record at Graph's allowed
# request rate, and the memory of one huge record.
#
# 1. Rate: the emulator, a separate process enforcing Graph's documented throttling limits,
#    serves DAYS days of CALLS_PER_DAY calls; `export --streams call_records` of that window
#    with the default settings runs under GNU time. Printed: records, wall, CPU of the export
#    process alone, CPU per record against wall per record (what the rate allows).
# 2. One huge record: the emulator serves one call a day, its large meeting with ATTENDEES
#    participants each with a session; `export` of that day (with a raw zone, so the record's
#    JSON size is known) under GNU time: peak RSS against the record's size.
#
# Usage: benches/export.sh
# Environment: DAYS (7; 0 skips part 1), CALLS_PER_DAY (200), ATTENDEES (10000; 0 skips part 2),
#   PORT (18080), SCRATCH (${TMPDIR:-/tmp}/callrecords-export-bench).
# Needs: a release build (cargo build --release), python3 with pyarrow, GNU time, zstd.
set -euo pipefail
days=${DAYS:-7}
calls_per_day=${CALLS_PER_DAY:-200}
attendees=${ATTENDEES:-10000}
port=${PORT:-18080}
scratch=${SCRATCH:-${TMPDIR:-/tmp}/callrecords-export-bench}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release/callrecords-etl
[ -x "$bin" ] || { echo "no release build at $bin: run cargo build --release" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "GNU time (/usr/bin/time) is missing: apt-get install time" >&2; exit 2; }
rm -rf "$scratch" && mkdir -p "$scratch"
emulator_pid=
trap '[ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null; true' EXIT

start_emulator() { # emulator options...
    "$bin" -q emulator --listen "127.0.0.1:$port" "$@" > "$scratch/emulator.log" 2>&1 &
    emulator_pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
        sleep 0.1
    done
    echo "the emulator did not start: $(cat "$scratch/emulator.log")" >&2
    exit 1
}
stop_emulator() { kill "$emulator_pid"; wait "$emulator_pid" 2>/dev/null || true; emulator_pid=; }

# The emulator's own credentials (crates/emulator/src/lib.rs).
cat > "$scratch/etl.toml" <<EOF
[graph]
tenant_id = "00000000-0000-4000-8000-0000000e1a70"
client_id = "00000000-0000-4000-8000-00000000c11e"
graph_url = "http://127.0.0.1:$port"
login_url = "http://127.0.0.1:$port"
EOF
export CALLRECORDS_CLIENT_SECRET=emulator-secret
today=$(date -u +%F)

export_run() { # label, from, to, export options... -> "wall peak_kib cpu" in $scratch/<label>.time
    local label=$1 from=$2 to=$3; shift 3
    /usr/bin/time -f '%e %M %U %S' -o "$scratch/$label.time" "$bin" -q export --config "$scratch/etl.toml" \
        --streams call_records --from "$from" --to "$to" --out "$scratch/lake-$label" "$@" > /dev/null 2> "$scratch/$label.log"
}
records_of() { # lake -> rows of call_records
    python3 -c 'import sys, pyarrow.dataset as ds; print(ds.dataset(sys.argv[1] + "/call_records", partitioning="hive").count_rows())' "$1"
}

echo "machine: $(nproc) cores, $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$days" -gt 0 ]; then
    start_emulator --calls-per-day "$calls_per_day" --enforce-limits
    export_run rate "$(date -u -d "$today - $days days" +%F)" "$today"
    stop_emulator
    read -r wall _ user sys < "$scratch/rate.time"
    records=$(records_of "$scratch/lake-rate")
    awk -v r="$records" -v w="$wall" -v u="$user" -v s="$sys" 'BEGIN {
        cpu = u + s
        printf "rate:   %d records in %.1f s at Graph'"'"'s limits (%.1f records/s); export CPU %.2f s\n", r, w, r / w, cpu
        printf "        CPU per record %.2f ms, wall per record %.1f ms: CPU is %.1f %% of one core\n", cpu / r * 1000, w / r * 1000, cpu / w * 100
    }'
fi

if [ "$attendees" -gt 0 ]; then
    start_emulator --calls-per-day 1 --large-meeting-attendees "$attendees"
    day=$(date -u -d "$today - 2 days" +%F)
    export_run huge "$day" "$(date -u -d "$day + 1 day" +%F)" --raw "$scratch/raw-huge"
    stop_emulator
    read -r wall peak user sys < "$scratch/huge.time"
    line=$(find "$scratch/raw-huge" -path '*/call_records/*' -name '*.jsonl.zst' -exec zstd -dc {} + | wc -c)
    awk -v b="$line" -v p="$peak" -v w="$wall" -v c="$(echo "$user + $sys" | bc)" -v a="$attendees" 'BEGIN {
        printf "huge:   one meeting, %d sessions and %d participants: record %.1f MB of JSON (raw zone)\n", a, a + 1, b / 1e6
        printf "        peak RSS %d MiB (%.1fx the record), wall %.1f s, CPU %.1f s\n", p / 1024, p * 1024 / b, w, c
    }'
fi
