#!/usr/bin/env python3
"""Reads a Delta lake written by callrecords-etl (`--format delta`) with delta-rs' Python
package `deltalake` and with polars, and compares what they see with the rows Rust read
from a Parquet export of the same window (tests/it/delta.rs writes EXPECTED and runs this).

    python3 tests/readers/check_delta.py LAKE EXPECTED.json

EXPECTED.json: {"tables": [{"declaration": schemas/<table>.json, "rows": [row, ...]}, ...],
                "versions": {table: the latest version}, "run_id": the last run's id}

For every declared table in EXPECTED it checks
- the Delta schema: the declared columns (Delta types, nullability, descriptions as
  `comment`) then `dt DATE`, partitioned by `dt`;
- deltalake and polars read exactly Rust's rows, at the latest version and (time travel) at
  the one before, whose files the latest version replaced;
- the latest commit names the run (`run_id` in commitInfo) and carries a `txn` action of
  app id `callrecords-etl`; every `add` has statistics with `numRecords`.
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


def log_entries(path, version):
    """The actions of commit `version`, read from the JSON log itself."""
    text = (path / "_delta_log" / f"{version:020}.json").read_text()
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


def read_rows(path, version):
    delta = DeltaTable(str(path), version=version)
    by_deltalake = delta.to_pyarrow_table().to_pylist()
    by_polars = pl.read_delta(str(path), version=version).to_dicts()
    return delta, by_deltalake, by_polars


def check_commit(path, table, version, run_id, problems):
    entries = log_entries(path, version)
    info = next((e["commitInfo"] for e in entries if "commitInfo" in e), {})
    if info.get("run_id") != run_id:
        problems.append(f"{table.name} v{version}: commitInfo run_id {info.get('run_id')!r}, expected {run_id}")
    txns = [e["txn"] for e in entries if "txn" in e]
    if [t["appId"] for t in txns] != ["callrecords-etl"]:
        problems.append(f"{table.name} v{version}: txn actions {txns}")
    for entry in entries:
        add = entry.get("add")
        if add and json.loads(add.get("stats") or "{}").get("numRecords") is None:
            problems.append(f"{table.name} v{version}: add {add['path']} without numRecords")


def check_table(lake, entry, versions, run_id, problems):
    table = Table(entry)
    path = lake / table.name
    version = versions[table.name]
    delta, rows, polars_rows = read_rows(path, None)
    if delta.version() != version:
        problems.append(f"{table.name}: version {delta.version()}, expected {version}")
    check_schema(delta, table, problems)
    table.compare_rows("deltalake", rows, problems)
    table.compare_rows("polars", polars_rows, problems)
    check_commit(path, table, version, run_id, problems)
    if version == 0:
        return f"{table.name}: v0, {len(rows)} rows"
    before, old_rows, old_polars = read_rows(path, version - 1)
    table.compare_rows(f"deltalake at v{version - 1}", old_rows, problems)
    table.compare_rows(f"polars at v{version - 1}", old_polars, problems)
    kept = set(before.file_uris()) & set(delta.file_uris())
    if kept:
        problems.append(f"{table.name}: v{version} kept files of v{version - 1}: {sorted(kept)[:3]}")
    return f"{table.name}: v{version} and v{version - 1}, {len(rows)} rows each"


def main():
    lake, expected_path = Path(sys.argv[1]), Path(sys.argv[2])
    expected = json.loads(expected_path.read_text())
    problems = []
    for entry in expected["tables"]:
        print(check_table(lake, entry, expected["versions"], expected["run_id"], problems))
    if problems:
        print("\n".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
