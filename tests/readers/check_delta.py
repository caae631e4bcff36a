#!/usr/bin/env python3
"""Reads a Delta lake written by callrecords-etl (`--format delta`) with delta-rs' Python
package `deltalake` and with polars, and compares what they see with the rows Rust read
from a Parquet export of the same window (tests/it/delta.rs writes EXPECTED and runs this).

    python3 tests/readers/check_delta.py LAKE EXPECTED.json

LAKE is a folder or an object-store URL (s3://, az://). EXPECTED.json:
    {"tables": [{"declaration": schemas/<table>.json, "rows": [row, ...]}, ...],
     "versions": {table: the latest version}, "run_id": the last run's id,
     "storage_options": {delta-rs object-store options, for a URL}}

For every declared table in EXPECTED it checks
- the Delta schema: the declared columns (Delta types, nullability, descriptions as
  `comment`) then `dt DATE`, partitioned by `dt`;
- deltalake and polars read exactly Rust's rows, at the latest version and (time travel) at
  the one before, whose files the latest version replaced;
- the latest commit names the run (`run_id` in commitInfo); in a local lake its log entry
  also carries a `txn` action of app id `callrecords-etl`, and every `add` has statistics
  with `numRecords`.
Prints one line per table; exits 1 with the differences when anything differs.
"""

import json
import sys
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

sys.path.insert(0, str(Path(__file__).parent))
from check_lake import Table, decimal_args  # noqa: E402

DELTA_TYPES = {
    "string": "string",
    "int32": "integer",
    "int64": "long",
    "float": "float",
    "double": "double",
    "boolean": "boolean",
    "timestamp": "timestamp",
    "list<string>": {"type": "array", "elementType": "string", "containsNull": True},
}


def delta_type(declared):
    args = decimal_args(declared)
    return f"decimal({args[0]},{args[1]})" if args else DELTA_TYPES[declared]


def log_entries(uri, version):
    """The actions of commit `version`, read from the JSON log itself (a local lake only)."""
    text = (Path(uri) / "_delta_log" / f"{version:020}.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def check_schema(delta, table, problems):
    schema = json.loads(delta.schema().to_json())
    declared = [
        (c["name"], delta_type(c["type"]), c["nullable"], c["description"])
        for c in table.columns
    ]
    declared.append(("dt", "date", True, "The UTC day of the row (partition)."))
    found = [
        (f["name"], f["type"], f["nullable"], f.get("metadata", {}).get("comment"))
        for f in schema["fields"]
    ]
    if found != declared:
        problems.append(f"{table.name}: Delta schema {found}\n  declared {declared}")
    partitions = delta.metadata().partition_columns
    if partitions != ["dt"]:
        problems.append(f"{table.name}: partitioned by {partitions}")
    if delta.metadata().description != table.declaration["description"]:
        problems.append(f"{table.name}: table description {delta.metadata().description!r}")


def read_rows(uri, version, options):
    delta = DeltaTable(uri, version=version, storage_options=options)
    by_deltalake = delta.to_pyarrow_table().to_pylist()
    by_polars = pl.read_delta(uri, version=version, storage_options=options).to_dicts()
    return delta, by_deltalake, by_polars


def check_commit(delta, uri, table, version, run_id, problems):
    info = delta.history(1)[0]
    if info.get("run_id") != run_id or info.get("version") != version:
        problems.append(f"{table.name} v{version}: last commit {info.get('version')} of run {info.get('run_id')!r}, expected {run_id}")
    if "://" in uri:
        return
    entries = log_entries(uri, version)
    txns = [e["txn"] for e in entries if "txn" in e]
    if [t["appId"] for t in txns] != ["callrecords-etl"]:
        problems.append(f"{table.name} v{version}: txn actions {txns}")
    for entry in entries:
        add = entry.get("add")
        if add and json.loads(add.get("stats") or "{}").get("numRecords") is None:
            problems.append(f"{table.name} v{version}: add {add['path']} without numRecords")


def check_table(lake, entry, expected, problems):
    table = Table(entry)
    uri = f"{lake.rstrip('/')}/{table.name}"
    options = expected.get("storage_options") or None
    version = expected["versions"][table.name]
    delta, rows, polars_rows = read_rows(uri, None, options)
    if delta.version() != version:
        problems.append(f"{table.name}: version {delta.version()}, expected {version}")
    check_schema(delta, table, problems)
    table.compare_rows("deltalake", rows, problems)
    table.compare_rows("polars", polars_rows, problems)
    check_commit(delta, uri, table, version, expected["run_id"], problems)
    if version == 0:
        return f"{table.name}: v0, {len(rows)} rows"
    before, old_rows, old_polars = read_rows(uri, version - 1, options)
    table.compare_rows(f"deltalake at v{version - 1}", old_rows, problems)
    table.compare_rows(f"polars at v{version - 1}", old_polars, problems)
    kept = set(before.file_uris()) & set(delta.file_uris())
    if kept:
        problems.append(f"{table.name}: v{version} kept files of v{version - 1}: {sorted(kept)[:3]}")
    return f"{table.name}: v{version} and v{version - 1}, {len(rows)} rows each"


def main():
    lake, expected_path = sys.argv[1], Path(sys.argv[2])
    expected = json.loads(expected_path.read_text())
    problems = []
    for entry in expected["tables"]:
        print(check_table(lake, entry, expected, problems))
    if problems:
        print("\n".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
