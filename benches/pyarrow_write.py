"""The Parquet writer of Arrow C++ (pyarrow) on the tables `reflatten` wrote, for
BENCHMARKS.md: how long the peer's writer takes to encode the same rows with the same
settings, next to `cargo bench --bench stages`'s "Parquet alone" (arrow-rs).

Reads every Parquet file under LAKE into memory first, then writes each again on one
thread with the settings `reflatten` chose for it: zstd level 1, dictionary encoding for
the columns the file has it for, statistics for the columns the file has them for, page
indexes, row groups of 128 Ki rows. Only the writing is timed; the best of REPEAT runs
counts. It prints the files, rows and values, the writer's wall and CPU time, and the
size written next to the size `reflatten` wrote.

Usage: python3 benches/pyarrow_write.py LAKE [--repeat N] [--out DIR]
"""
import argparse
import glob
import os
import shutil
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq


def column_choices(metadata):
    """The columns with a dictionary, and those with statistics, in a file's first row group."""
    first = metadata.row_group(0)
    columns = [first.column(c) for c in range(metadata.num_columns)]
    dictionary = [c.path_in_schema for c in columns if any("DICTIONARY" in e for e in c.encodings)]
    statistics = [c.path_in_schema for c in columns if c.is_stats_set]
    return dictionary, statistics


def load(lake):
    jobs = []
    for path in sorted(glob.glob(f"{lake}/**/*.parquet", recursive=True)):
        file = pq.ParquetFile(path)
        if file.metadata.num_row_groups == 0:
            continue
        jobs.append((path, file.read(), *column_choices(file.metadata)))
    if not jobs:
        raise SystemExit(f"no Parquet files under {lake}: run reflatten --out {lake} first")
    return jobs


def write_all(jobs, out):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cpu, wall = time.process_time(), time.perf_counter()
    for index, (_, table, dictionary, statistics) in enumerate(jobs):
        pq.write_table(table, f"{out}/{index}.parquet", compression="zstd",
                       compression_level=1, use_dictionary=dictionary,
                       write_statistics=statistics, row_group_size=128 * 1024,
                       write_page_index=True)
    return time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lake")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    pa.set_memory_pool(pa.jemalloc_memory_pool())
    pa.set_cpu_count(1)
    jobs = load(args.lake)
    out = args.out or tempfile.mkdtemp(prefix="pyarrow-write-")
    best = min(write_all(jobs, out) for _ in range(args.repeat))
    rows = sum(table.num_rows for _, table, _, _ in jobs)
    values = sum(table.num_rows * table.num_columns for _, table, _, _ in jobs)
    written = sum(os.path.getsize(p) for p in glob.glob(f"{out}/*.parquet"))
    original = sum(os.path.getsize(path) for path, *_ in jobs)
    print(f"{args.lake}: {len(jobs)} files, {rows} rows, {values} values; "
          f"Arrow C++ writer (pyarrow {pa.__version__}), one thread, best of {args.repeat}: "
          f"wall {best[0]:.3f} s, CPU {best[1]:.3f} s; "
          f"{written / 1e6:.1f} MB (reflatten wrote {original / 1e6:.1f} MB)")
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
