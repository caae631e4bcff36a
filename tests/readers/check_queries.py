"""The query pack (docs/queries/) against an emulator lake, with expected numbers computed
here in plain Python over the Parquet files as pyarrow reads them.

Usage: check_queries.py LAKE DDL_FILE QUERIES_DIR

DDL_FILE holds `callrecords-etl schema --ddl duckdb --location LAKE` (the views the DuckDB
queries read). Each DuckDB query runs as written; each Spark SQL query is transpiled by sqlglot
(spark -> duckdb) and run against the same views; both must give the expected rows. Prints what
it compared; exits 1 listing every difference.
"""

import collections
import pathlib
import sys

import duckdb
import pyarrow.dataset as ds
import sqlglot


def table(lake, name):
    rows = ds.dataset(pathlib.Path(lake) / name, format="parquet", partitioning="hive").to_table().to_pylist()
    for row in rows:
        row["dt"] = str(row["dt"])
    return rows


def modality(label):
    label = (label or "").lower()
    if label.startswith("applicationsharing"):
        return "screen_sharing" if "video" in label[len("applicationsharing"):] else "application_sharing"
    if "audio" in label:
        return "audio"
    if "video" in label:
        return "video"
    return "other"


def receiving(row, side_row, column):
    side = row["receiving_endpoint"]
    if side not in ("caller", "callee"):
        return None
    return side_row[f"{side}_{column}"]


def classified_streams(lake):
    """Classified streams with their media and session rows."""
    media = {(m["call_id"], m["session_index"], m["segment_index"], m["media_index"]): m for m in table(lake, "call_media")}
    sessions = {(s["call_id"], s["session_index"]): s for s in table(lake, "call_sessions")}
    out = []
    for s in table(lake, "call_media_streams"):
        if s["quality"] not in ("good", "poor"):
            continue
        m = media[(s["call_id"], s["session_index"], s["segment_index"], s["media_index"])]
        out.append((s, m, sessions[(s["call_id"], s["session_index"])]))
    return out


def rates(groups):
    rows = []
    for key, qualities in groups.items():
        poor = sum(1 for q in qualities if q == "poor")
        rows.append((*key, len(qualities), poor, round(100.0 * poor / len(qualities), 2)))
    return rows


def by(streams, key):
    groups = collections.defaultdict(list)
    for s, m, ses in streams:
        groups[key(s, m, ses)].append(s["quality"])
    return rates(groups)


def or_none(value, text):
    return text if value is None else value


def users(streams):
    poor, total, names = collections.Counter(), collections.Counter(), {}
    for s, m, ses in streams:
        user = receiving(s, ses, "associated_identity_id")
        if modality(m["label"]) != "audio" or user is None:
            continue
        total[user] += 1
        poor[user] += s["quality"] == "poor"
        name = receiving(s, ses, "associated_identity_display_name")
        if name is not None:
            names[user] = max(names.get(user, name), name)
    rows = [(u, names.get(u), poor[u], total[u], round(100.0 * poor[u] / total[u], 2)) for u in total]
    rows.sort(key=lambda r: (-r[2], r[0]))
    return rows[:10]


def direct_routing(lake):
    calls = table(lake, "direct_routing_calls")
    trunk_calls = collections.Counter(c["trunk_fully_qualified_domain_name"] for c in calls)
    failed = collections.Counter(
        (c["trunk_fully_qualified_domain_name"], c["final_sip_code"])
        for c in calls
        if c["successful_call"] is False and c["trunk_fully_qualified_domain_name"] is not None
    )
    return [
        (trunk, code, trunk_calls[trunk], n, round(100.0 * n / trunk_calls[trunk], 2))
        for (trunk, code), n in failed.items()
    ]


def calls_per_day(lake):
    counts = collections.Counter((c["dt"], c["type"]) for c in table(lake, "call_records"))
    return [(dt, kind, n) for (dt, kind), n in counts.items()]


def expected_rows(lake):
    streams = classified_streams(lake)
    return {
        "poor_streams_by_day_and_modality": by(streams, lambda s, m, ses: (s["dt"], modality(m["label"]))),
        "poor_streams_by_connection_type": by(
            streams, lambda s, m, ses: (modality(m["label"]), or_none(receiving(s, m, "network_connection_type"), "(none)"))
        ),
        "poor_streams_by_building": by(
            streams, lambda s, m, ses: (modality(m["label"]), or_none(receiving(s, m, "building"), "(no building)"))
        ),
        "poor_streams_by_client_platform": by(
            streams, lambda s, m, ses: (modality(m["label"]), or_none(receiving(s, ses, "user_agent_platform"), "(none)"))
        ),
        "users_with_most_poor_audio": users(streams),
        "direct_routing_failures_by_sip_code_and_trunk": direct_routing(lake),
        "calls_per_day_by_type": calls_per_day(lake),
    }


def plain(value):
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return value.isoformat()[:10]
    if isinstance(value, float) or type(value).__name__ == "Decimal":
        return float(value)
    return value


def same(actual, expected):
    if len(actual) != len(expected):
        return False
    for a, e in zip(actual, expected):
        if isinstance(e, float):
            if a is None or abs(float(a) - e) > 0.0051:
                return False
        elif a != e:
            return False
    return True


def compare(name, dialect, actual, expected, ordered, problems):
    actual = [tuple(plain(v) for v in row) for row in actual]
    if not ordered:
        actual, expected = sorted(actual, key=repr), sorted(expected, key=repr)
    if not expected:
        problems.append(f"{name}: the lake gives no expected rows: the test proves nothing")
    bad = [(a, e) for a, e in zip(actual, expected) if not same(a, e)]
    if len(actual) != len(expected) or bad:
        problems.append(
            f"{name} ({dialect}): {len(actual)} rows, expected {len(expected)}; first differences: {bad[:3]}"
        )
    else:
        print(f"{name} ({dialect}): {len(actual)} rows as expected")


def main():
    lake, ddl, queries = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    connection = duckdb.connect()
    connection.execute(pathlib.Path(ddl).read_text())
    expected = expected_rows(lake)
    problems = []
    names = sorted(p.stem for p in (queries / "duckdb").glob("*.sql"))
    if names != sorted(expected) or names != sorted(p.stem for p in (queries / "spark").glob("*.sql")):
        problems.append(f"the pack's queries {names} are not the checked ones {sorted(expected)} in both dialects")
    for name in sorted(expected):
        ordered = name == "users_with_most_poor_audio"
        duck = (queries / "duckdb" / f"{name}.sql").read_text()
        compare(name, "duckdb", connection.execute(duck).fetchall(), expected[name], ordered, problems)
        spark = (queries / "spark" / f"{name}.sql").read_text()
        transpiled = sqlglot.transpile(spark, read="spark", write="duckdb")
        if len(transpiled) != 1:
            problems.append(f"{name} (spark): {len(transpiled)} statements")
            continue
        compare(name, "spark", connection.execute(transpiled[0]).fetchall(), expected[name], ordered, problems)
    if problems:
        print("\n".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
