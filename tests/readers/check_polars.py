#!/usr/bin/env python3
"""Scans table folders of a lake with polars, as a user would: `scan_parquet(<table folder>)`,
with hive partitioning (tests/it/object_store.rs runs this).

    python3 tests/readers/check_polars.py EXPECTED.json

EXPECTED.json: {"root": lake URL or path, "storage_options": {...}, "rows": {table: count}}

polars refuses a folder holding files of different extensions (a commit marker beside the
Parquet files), so this fails unless the table folders hold data only. Exits 1 with the
problems otherwise.
"""

import json
import sys
from pathlib import Path

import polars as pl


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    expected = json.loads(Path(sys.argv[1]).read_text())
    problems = []
    for table, rows in sorted(expected["rows"].items()):
        folder = f"{expected['root'].rstrip('/')}/{table}/"
        try:
            frame = pl.scan_parquet(
                folder,
                hive_partitioning=True,
                storage_options=expected["storage_options"] or None,
            )
            counts = frame.group_by("dt").len().collect()
            seen = int(counts["len"].sum())
        except Exception as error:  # noqa: BLE001 - the message is the report
            problems.append(f"{table}: polars cannot scan {folder}: {error}")
            continue
        if seen != rows:
            problems.append(f"{table}: polars reads {seen} rows, expected {rows}")
        else:
            print(f"{table}: {seen} rows in {len(counts)} days")
    if problems:
        print(f"FAILED: {len(problems)} problems", file=sys.stderr)
        for problem in problems:
            print(f"- {problem}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
