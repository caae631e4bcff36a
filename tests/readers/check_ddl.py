#!/usr/bin/env python3
"""Parses the Spark, Athena and Trino DDL of `callrecords-etl schema --ddl` with sqlglot, an
independent SQL parser, since those engines do not run here (tests/it/readers.rs runs this).

    python3 tests/readers/check_ddl.py EXPECTED.json

EXPECTED.json: {"tables": [schemas/<table>.json, ...], "scripts": {"spark": SQL, ...}}

For each script: it parses in its dialect (quotes, escapes, brackets and commas are right),
has one CREATE per declared table, with the declared columns in order (plus `dt`, where the
dialect lists it there), partitioned by `dt`, stored as Parquet, located in the table's folder. Exits 1 with the problems otherwise.
(Synapse's OPENROWSET(BULK ...) is beyond sqlglot; its text is checked in tests/it/ddl.rs.)
"""

import json
import logging
import sys
from pathlib import Path

import sqlglot
from sqlglot import exp

# `MSCK REPAIR TABLE` parses as an opaque command; sqlglot warns about it on every table.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


def check(dialect, script, tables, problems):
    try:
        statements = [s for s in sqlglot.parse(script, read=dialect) if s is not None]
    except sqlglot.errors.ParseError as error:
        problems.append(f"{dialect}: does not parse: {error}")
        return
    creates = [s for s in statements if isinstance(s, exp.Create)]
    if len(creates) != len(tables):
        problems.append(f"{dialect}: {len(creates)} CREATE statements for {len(tables)} tables")
    for create, table in zip(creates, tables):
        name = create.this.this.name
        columns = [c.name for c in create.this.expressions if isinstance(c, exp.ColumnDef)]
        declared = [c["name"] for c in table["columns"]]
        properties = create.args.get("properties")
        properties = properties.expressions if properties else []
        partitioned = [p for p in properties if isinstance(p, exp.PartitionedByProperty)]
        formats = [p for p in properties if isinstance(p, exp.FileFormatProperty)]
        text = " ".join(p.sql(dialect=dialect) for p in properties)
        if name != table["table"]:
            problems.append(f"{dialect}: CREATE {name}, expected {table['table']}")
        if columns not in (declared, declared + ["dt"]):
            problems.append(f"{dialect} {name}: columns {columns}")
        if len(partitioned) != 1 or "dt" not in partitioned[0].sql(dialect=dialect):
            problems.append(f"{dialect} {name}: not partitioned by dt: {text}")
        if len(formats) != 1 or "PARQUET" not in formats[0].sql(dialect=dialect).upper():
            problems.append(f"{dialect} {name}: not stored as Parquet: {text}")
        if f"/{name}'" not in text and f"/{name}/'" not in text:
            problems.append(f"{dialect} {name}: not located in its folder: {text}")
    print(f"{dialect}: {len(statements)} statements parse, {len(creates)} tables as declared")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    expected = json.loads(Path(sys.argv[1]).read_text())
    problems = []
    for dialect, script in expected["scripts"].items():
        check(dialect, script, expected["tables"], problems)
    if problems:
        print(f"\nFAILED: {len(problems)} problems", file=sys.stderr)
        for problem in problems:
            print(f"- {problem}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
