#!/usr/bin/env python3
"""Reads a lake written by callrecords-etl with pyarrow and with DuckDB, and compares what
they see with what the Rust test read (tests/it/readers.rs writes EXPECTED and runs this).

    python3 tests/readers/check_lake.py LAKE EXPECTED.json

EXPECTED.json: {"duckdb_ddl": the output of `schema --ddl duckdb --location LAKE`,
                "tables": [{"declaration": schemas/<table>.json, "rows": [row, ...]}, ...]}
where each row maps column names (and "dt") to the values Rust read: timestamps as RFC 3339,
decimals as text, lists as arrays.

For every declared table it checks
- pyarrow (dataset with hive partitioning): each file's Arrow types and nullability are the
  declared ones, the field descriptions and the footer's key-value descriptions are the
  declared ones, and the rows are Rust's rows, value for value;
- DuckDB, after running the generated DDL: the view's columns and types are the declared
  ones plus `dt DATE`, its column comments are the descriptions, its rows are Rust's rows,
  and a `dt` filter finds each day's rows.
Prints one line per table; exits 1 with the differences when anything differs.
"""

import json
import struct
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_DIFFERENCES = 5

# What each declared type must be in each reader; written out here rather than taken from
# the code under test.
PYARROW_TYPES = {
    "string": "string",
    "int32": "int32",
    "int64": "int64",
    "float": "float",
    "double": "double",
    "boolean": "bool",
    "timestamp": "timestamp[us, tz=UTC]",
    "list<string>": "list<element: string>",
}
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "list<string>": "VARCHAR[]",
}


def decimal_args(declared):
    """(precision, scale) of `decimal(p,s)`, or None for other types."""
    if not declared.startswith("decimal("):
        return None
    precision, scale = declared[len("decimal(") : -1].split(",")
    return int(precision), int(scale)


def pyarrow_type(declared):
    args = decimal_args(declared)
    return f"decimal128({args[0]}, {args[1]})" if args else PYARROW_TYPES[declared]


def duckdb_type(declared):
    args = decimal_args(declared)
    return f"DECIMAL({args[0]},{args[1]})" if args else DUCKDB_TYPES[declared]


def normalize(value, declared):
    """One reader's value in a form every reader's value of the same cell compares equal to."""
    if value is None:
        return None
    if declared == "timestamp":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return (value - EPOCH) // timedelta(microseconds=1)
    if declared == "float":
        # Rust prints a float32 by its shortest text, the others widen it to a double:
        # both round back to the same float32.
        return struct.unpack("<f", struct.pack("<f", value))[0]
    if declared == "double":
        return float(value)
    if decimal_args(declared):
        return Decimal(str(value))
    if declared == "date":
        return str(value)
    if declared == "list<string>":
        return list(value)
    return value


class Table:
    def __init__(self, entry):
        self.declaration = entry["declaration"]
        self.name = self.declaration["table"]
        self.columns = self.declaration["columns"]
        self.key = self.declaration["primary_key"]
        self.types = {c["name"]: c["type"] for c in self.columns}
        self.types["dt"] = "date"
        self.descriptions = {c["name"]: c["description"] for c in self.columns}
        self.expected = self.keyed(entry["rows"])
        self.expected_rows = len(entry["rows"])

    def keyed(self, rows):
        """Rows normalized and keyed by primary key and day; a table without a primary key
        (an aggregate report, a block log) is keyed by the whole row and its occurrence."""
        out = {}
        for row in rows:
            values = {c: normalize(row.get(c), t) for c, t in self.types.items()}
            if self.key:
                key = tuple(values[c] for c in self.key) + (values["dt"],)
            else:
                whole = tuple(sorted((c, repr(v)) for c, v in values.items()))
                key = whole + (sum(1 for k in out if k[: len(whole)] == whole),)
            out[key] = values
        return out

    def compare_rows(self, reader, rows, problems):
        """Rows a reader returned against Rust's: count, keys, then every value."""
        if len(rows) != self.expected_rows:
            problems.append(f"{self.name}: {reader} reads {len(rows)} rows, Rust {self.expected_rows}")
        got = self.keyed(rows)
        missing = sorted(set(self.expected) - set(got), key=str)[:MAX_DIFFERENCES]
        extra = sorted(set(got) - set(self.expected), key=str)[:MAX_DIFFERENCES]
        for key in missing:
            problems.append(f"{self.name}: {reader} lacks the row {key}")
        for key in extra:
            problems.append(f"{self.name}: {reader} has a row Rust does not: {key}")
        differences = 0
        for key, expected in self.expected.items():
            row = got.get(key)
            if row is None:
                continue
            for column, value in expected.items():
                if row[column] != value and differences < MAX_DIFFERENCES:
                    differences += 1
                    problems.append(
                        f"{self.name} {key}: {column} is {row[column]!r} in {reader}, {value!r} in Rust"
                    )
        return len(got) * len(self.types)


def check_pyarrow(lake, table, problems):
    files = sorted((lake / table.name).glob("dt=*/*.parquet"))
    if not files:
        problems.append(f"{table.name}: no Parquet files under {lake / table.name}")
    for file in files:
        schema = pq.read_schema(file)
        where = f"{table.name}/{file.parent.name}/{file.name}"
        declared = [(c["name"], pyarrow_type(c["type"]), c["nullable"]) for c in table.columns]
        found = [(f.name, str(f.type), f.nullable) for f in schema]
        if found != declared:
            problems.append(f"{where}: pyarrow schema {found}\n  declared {declared}")
        for field in schema:
            description = (field.metadata or {}).get(b"description", b"").decode()
            if description != table.descriptions.get(field.name):
                problems.append(f"{where}: field {field.name} has description {description!r}")
        footer = pq.ParquetFile(file).metadata.metadata or {}
        plain = json.loads(footer.get(b"callrecords_etl.column_descriptions", b"null"))
        if plain != table.descriptions:
            problems.append(f"{where}: footer key-value column descriptions are {plain!r}")
    dataset = ds.dataset(lake / table.name, format="parquet", partitioning="hive")
    return table.compare_rows("pyarrow", dataset.to_table().to_pylist(), problems)


def check_duckdb(connection, table, problems):
    view = '"' + table.name.replace('"', '""') + '"'
    declared = [(c["name"], duckdb_type(c["type"])) for c in table.columns] + [("dt", "DATE")]
    found = [(row[0], row[1]) for row in connection.execute(f"DESCRIBE {view}").fetchall()]
    if found != declared:
        problems.append(f"{table.name}: DuckDB view columns {found}\n  declared {declared}")
    comments = dict(
        connection.execute(
            "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ?", [table.name]
        ).fetchall()
    )
    for name, description in table.descriptions.items():
        if comments.get(name) != description:
            problems.append(f"{table.name}: DuckDB comment on {name} is {comments.get(name)!r}")
    cursor = connection.execute(f"SELECT * FROM {view}")
    names = [d[0] for d in cursor.description]
    compared = table.compare_rows(
        "DuckDB", [dict(zip(names, row)) for row in cursor.fetchall()], problems
    )
    # The partition column is a DATE that filters files: each day finds exactly its rows.
    per_day = {}
    for values in table.expected.values():
        per_day[values["dt"]] = per_day.get(values["dt"], 0) + 1
    for day, expected in sorted(per_day.items()):
        (count,) = connection.execute(
            f"SELECT count(*) FROM {view} WHERE dt = CAST(? AS DATE)", [day]
        ).fetchone()
        if count != expected:
            problems.append(f"{table.name}: DuckDB finds {count} rows WHERE dt = {day}, Rust {expected}")
    return compared


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    lake = Path(sys.argv[1])
    expected = json.loads(Path(sys.argv[2]).read_text())
    tables = [Table(entry) for entry in expected["tables"]]
    connection = duckdb.connect()
    connection.execute(expected["duckdb_ddl"])
    problems = []
    print(f"duckdb {duckdb.__version__}, pyarrow {__import__('pyarrow').__version__}")
    for table in tables:
        before = len(problems)
        values = check_pyarrow(lake, table, problems)
        check_duckdb(connection, table, problems)
        verdict = "ok" if len(problems) == before else f"{len(problems) - before} differences"
        print(f"{table.name}: {table.expected_rows} rows, {values} values in each reader: {verdict}")
    if problems:
        print(f"\nFAILED: {len(problems)} differences", file=sys.stderr)
        for problem in problems:
            print(f"- {problem}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
