"""pyarrow baseline for BENCHMARKS.md: read the JSON lines with an explicit schema and
flatten only the stream table (sessions -> segments -> media -> streams) into
Hive-partitioned zstd Parquet (dt=YYYY-MM-DD), the way the perf probe measured pyarrow.

Usage: python3 benches/pyarrow_streams.py INPUT.jsonl OUT_DIR
"""
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.json as pj

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


def explode(table, column):
    """One row per element of the list `column`, with the other columns repeated."""
    parents = pc.list_parent_indices(table[column])
    values = pc.list_flatten(table[column])
    out = table.drop_columns([column]).take(parents)
    return out, values


def duration_ms(array):
    # "PT0.016S" / "PT1M2.5S": minutes and seconds are all Graph sends for stream metrics.
    parts = pc.extract_regex(array, r"^PT(?:(?P<m>\d+)M)?(?:(?P<s>[\d.]+)S)?$")
    minutes = pc.cast(pc.if_else(pc.equal(pc.struct_field(parts, "m"), ""), "0", pc.struct_field(parts, "m")), pa.float64())
    seconds = pc.cast(pc.if_else(pc.equal(pc.struct_field(parts, "s"), ""), "0", pc.struct_field(parts, "s")), pa.float64())
    return pc.multiply(pc.add(pc.multiply(minutes, 60.0), seconds), 1000.0)


def main(path, out):
    table = pj.read_json(path, parse_options=pj.ParseOptions(explicit_schema=SCHEMA,
                                                             unexpected_field_behavior="ignore"))
    calls = pa.table({"call_id": table["id"], "dt": pc.utf8_slice_codeunits(table["startDateTime"], 0, 10),
                      "sessions": table["sessions"]})
    calls, sessions = explode(calls, "sessions")
    calls = calls.append_column("segments", pc.struct_field(sessions, "segments"))
    calls, segments = explode(calls, "segments")
    calls = calls.append_column("media", pc.struct_field(segments, "media"))
    calls, media = explode(calls, "media")
    calls = calls.append_column("streams", pc.struct_field(media, "streams"))
    calls, streams = explode(calls, "streams")
    columns = {name: calls[name] for name in calls.column_names}
    for field in STREAM:
        values = pc.struct_field(streams, field.name)
        if field.name in DURATIONS:
            values = duration_ms(values)
        elif field.name.endswith("DateTime"):
            # 7 fractional digits (Graph's) do not fit microseconds: cut to 6.
            values = pc.replace_substring_regex(values, r"(\.\d{6})\d+Z$", r"\1Z")
            values = pc.cast(values, pa.timestamp("us", tz="UTC"))
        elif field.name in FLOATS:
            values = pc.cast(values, pa.float32())
        columns[field.name] = values
    result = pa.table(columns)
    ds.write_dataset(result, out, format="parquet", partitioning=["dt"], partitioning_flavor="hive",
                     file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
                     existing_data_behavior="overwrite_or_ignore")
    print(f"pyarrow: {result.num_rows} stream rows")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
