"""pyarrow baseline for BENCHMARKS.md: read the JSON lines with an explicit schema and
flatten only the stream table (sessions -> segments -> media -> streams) into
Hive-partitioned zstd Parquet (dt=YYYY-MM-DD), with the settings that made pyarrow
fastest on the benchmark inputs (BENCHMARKS.md lists what was tried).

Usage: python3 benches/pyarrow_streams.py INPUT.jsonl OUT_DIR [--block-mib N]
           [--threads on|off] [--writer dataset|files] [--parallel on|off]
           [--dictionary on|off] [--memory-pool jemalloc|mimalloc|system] [--timings]

Defaults are the tuned settings: 16 MiB JSON blocks, threads on, Arrow's jemalloc memory
pool (with pyarrow's default, mimalloc, it was up to 1.5x slower and far less steady), the
stream columns converted on a thread pool, one `pq.write_table` per day (the input is in
time order, so each day is one slice) with the days written on the pool, dictionary
encoding on and zstd level 1 as `reflatten` writes. `--timings` prints each phase's wall
time to stderr.
"""
import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.json as pj
import pyarrow.parquet as pq

FLOATS = [
    "averageAudioDegradation", "averagePacketLossRate", "averageRatioOfConcealedSamples",
    "averageReceivedFrameRate", "averageVideoFrameLossPercentage", "averageVideoFrameRate",
    "averageVideoPacketLossRate", "lowFrameRateRatio", "lowVideoProcessingCapabilityRatio",
    "maxPacketLossRate", "maxRatioOfConcealedSamples", "postForwardErrorCorrectionPacketLossRate",
]
DURATIONS = [
    "averageAudioNetworkJitter", "averageFreezeDuration", "averageJitter", "averageRoundTripTime",
    "maxAudioNetworkJitter", "maxJitter", "maxRoundTripTime", "rmsFreezeDuration",
]
STREAM = pa.struct(
    [("audioCodec", pa.string()), ("averageBandwidthEstimate", pa.int64()),
     ("packetUtilization", pa.int64()), ("isAudioForwardErrorCorrectionUsed", pa.bool_()),
     ("wasMediaBypassed", pa.bool_()), ("streamDirection", pa.string()), ("streamId", pa.string()),
     ("videoCodec", pa.string()), ("startDateTime", pa.string()), ("endDateTime", pa.string())]
    + [(f, pa.float64()) for f in FLOATS]
    + [(d, pa.string()) for d in DURATIONS]
)
SCHEMA = pa.schema([
    ("id", pa.string()),
    ("startDateTime", pa.string()),
    ("sessions", pa.list_(pa.struct([
        ("segments", pa.list_(pa.struct([
            ("media", pa.list_(pa.struct([("streams", pa.list_(STREAM))]))),
        ]))),
    ]))),
])


class Phases:
    """Wall time per phase, printed to stderr with --timings."""

    def __init__(self, enabled):
        self.enabled, self.last = enabled, time.perf_counter()

    def done(self, phase):
        now = time.perf_counter()
        if self.enabled:
            print(f"  {phase}: {now - self.last:.3f} s", file=sys.stderr)
        self.last = now


def streams_of(table):
    """The call id, the day and the stream structs, one row per stream: the parent index
    of each nesting level composed, so the call columns are taken once, at the end."""
    level = table["sessions"]
    parents = None
    for child in ("segments", "media", "streams"):
        index = pc.list_parent_indices(level)
        parents = index if parents is None else pc.take(parents, index)
        level = pc.struct_field(pc.list_flatten(level), child)
    index = pc.list_parent_indices(level)
    parents = pc.take(parents, index)
    return parents, pc.list_flatten(level)


def duration_ms(array):
    # "PT0.016S" / "PT1M2.5S": minutes and seconds are all Graph sends for stream metrics.
    parts = pc.extract_regex(array, r"^PT(?:(?P<m>\d+)M)?(?:(?P<s>[\d.]+)S)?$")
    minutes = pc.cast(pc.if_else(pc.equal(pc.struct_field(parts, "m"), ""), "0", pc.struct_field(parts, "m")), pa.float64())
    seconds = pc.cast(pc.if_else(pc.equal(pc.struct_field(parts, "s"), ""), "0", pc.struct_field(parts, "s")), pa.float64())
    return pc.multiply(pc.add(pc.multiply(minutes, 60.0), seconds), 1000.0)


def stream_column(streams, field):
    values = pc.struct_field(streams, field.name)
    if field.name in DURATIONS:
        return duration_ms(values)
    if field.name.endswith("DateTime"):
        # 7 fractional digits (Graph's) do not fit microseconds: cut to 6.
        values = pc.replace_substring_regex(values, r"(\.\d{6})\d+Z$", r"\1Z")
        return pc.cast(values, pa.timestamp("us", tz="UTC"))
    if field.name in FLOATS:
        return pc.cast(values, pa.float32())
    return values


def stream_table(table, pool):
    """The stream table; its columns converted on `pool`'s threads (the kernels release
    the GIL), or one after the other without a pool."""
    parents, streams = streams_of(table)
    calls = pa.table({"call_id": table["id"],
                      "dt": pc.utf8_slice_codeunits(table["startDateTime"], 0, 10)}).take(parents)
    columns = {name: calls[name] for name in calls.column_names}
    convert = (lambda field: stream_column(streams, field))
    converted = pool.map(convert, STREAM) if pool else map(convert, STREAM)
    for field, values in zip(STREAM, converted):
        columns[field.name] = values
    return pa.table(columns)


def write_files(result, out, dictionary, pool):
    """One file per day, the days written on `pool`'s threads (one after the other without
    a pool): the rows are in time order, so each day is one contiguous slice (checked: a
    day seen twice would overwrite its first file)."""
    days = pc.run_end_encode(result["dt"].combine_chunks())
    ends, values = days.run_ends.to_pylist(), days.values.to_pylist()
    assert len(set(values)) == len(values), "the input is not in time order"
    starts = [0] + ends[:-1]

    def write(day, start, end):
        part = result.slice(start, end - start).drop_columns(["dt"])
        folder = f"{out}/dt={day}"
        pa.fs.LocalFileSystem().create_dir(folder)
        pq.write_table(part, f"{folder}/part-0.parquet", compression="zstd", compression_level=1,
                       use_dictionary=dictionary, row_group_size=128 * 1024)

    list((pool.map if pool else map)(write, values, starts, ends))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("out")
    parser.add_argument("--block-mib", type=int, default=16)
    parser.add_argument("--threads", choices=["on", "off"], default="on")
    parser.add_argument("--writer", choices=["dataset", "files"], default="files")
    parser.add_argument("--parallel", choices=["on", "off"], default="on",
                        help="convert the columns and write the days on a thread pool")
    parser.add_argument("--dictionary", choices=["on", "off"], default="on")
    parser.add_argument("--memory-pool", choices=["jemalloc", "mimalloc", "system"], default="jemalloc")
    parser.add_argument("--timings", action="store_true")
    args = parser.parse_args()
    if args.memory_pool not in pa.supported_memory_backends():
        sys.exit(f"this pyarrow has no {args.memory_pool} memory pool "
                 f"(it has {', '.join(pa.supported_memory_backends())}): pass --memory-pool")
    pa.set_memory_pool(getattr(pa, f"{args.memory_pool}_memory_pool")())
    threads = args.threads == "on"
    pa.set_cpu_count(pa.cpu_count() if threads else 1)
    phases = Phases(args.timings)
    table = pj.read_json(args.input,
                         read_options=pj.ReadOptions(use_threads=threads, block_size=args.block_mib << 20),
                         parse_options=pj.ParseOptions(explicit_schema=SCHEMA,
                                                       unexpected_field_behavior="ignore"))
    phases.done("read")
    pool = ThreadPoolExecutor(pa.cpu_count()) if args.parallel == "on" else None
    result = stream_table(table, pool)
    del table
    phases.done("flatten")
    if args.writer == "files":
        write_files(result, args.out, args.dictionary == "on", pool)
    else:
        ds.write_dataset(result, args.out, format="parquet", partitioning=["dt"], partitioning_flavor="hive",
                         file_options=ds.ParquetFileFormat().make_write_options(
                             compression="zstd", compression_level=1, use_dictionary=args.dictionary == "on"),
                         existing_data_behavior="overwrite_or_ignore", use_threads=threads)
    phases.done("write")
    print(f"pyarrow: {result.num_rows} stream rows")


if __name__ == "__main__":
    main()
