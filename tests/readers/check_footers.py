#!/usr/bin/env python3
"""Reads the footers of every Parquet file of a lake with pyarrow, as parquet-mr (Spark, Hive)
would judge them (tests/it/readers.rs runs this).

    python3 tests/readers/check_footers.py LAKE

- created_by is `callrecords-etl version X.Y.Z (build COMMIT)`, the form parquet-mr's version
  parser reads;
- every float and double column chunk holding a value has min/max statistics.

(pyarrow does not expose the footer's column orders; tests/it/readers.rs checks those with
the parquet crate.) Exits 1 with the problems otherwise.
"""

import re
import sys
from pathlib import Path

import pyarrow.parquet as pq

CREATED_BY = re.compile(r"^callrecords-etl version \d+\.\d+\.\d+ \(build [0-9a-z]+\)$")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    problems, floats, files = [], 0, 0
    for path in sorted(Path(sys.argv[1]).glob("*/dt=*/*.parquet")):
        files += 1
        metadata = pq.ParquetFile(path).metadata
        if not CREATED_BY.match(metadata.created_by or ""):
            problems.append(f"{path}: created_by {metadata.created_by!r}")
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for index in range(metadata.num_columns):
                chunk = row_group.column(index)
                if chunk.physical_type not in ("FLOAT", "DOUBLE"):
                    continue
                stats = chunk.statistics
                if stats is None or stats.num_values == 0:
                    continue
                floats += 1
                if not stats.has_min_max:
                    problems.append(f"{path}: {chunk.path_in_schema} has no min/max")
    if floats == 0:
        problems.append("no float or double column chunk with values")
    if problems:
        print(f"FAILED: {len(problems)} problems", file=sys.stderr)
        for problem in problems[:50]:
            print(f"- {problem}", file=sys.stderr)
        sys.exit(1)
    print(f"{files} files: created_by as parquet-mr reads it; {floats} float chunks with min/max")


if __name__ == "__main__":
    main()
