//! The SQL of `callrecords-etl schema --ddl`, as text: per dialect the type of every declared
//! column type, the `dt` partition, the location, identifier quoting and the escaping of
//! descriptions; and the `schema` command's listing, JSON and usage errors.
//! (DuckDB runs its DDL against a real export in tests/it/readers.rs; sqlglot parses the
//! Spark, Athena and Trino DDL there too.)

use callrecords_etl::ddl::{self, Dialect};
use callrecords_etl::schema::{self, TableSchema};
use serde_json::Value;

use crate::support::binary;

/// A table with every column type, names that engines reserve, and descriptions that need
/// escaping: a quote, a backslash, and a line break that must not end a `--` comment.
fn odd_table() -> TableSchema {
    serde_json::from_value(serde_json::json!({
        "table": "odd_table",
        "description": "Rows of it's own.\nDROP TABLE everything;",
        "stream": "call_records",
        "grain": "one row per thing",
        "row_object": "thing",
        "partition_by": ["dt"],
        "partition_source": "UTC date of the thing's start",
        "primary_key": ["type"],
        "columns": [
            {"name": "type", "type": "string", "nullable": false, "description": "It's a C:\\path, not an escape.", "source": null, "path": "type"},
            {"name": "role", "type": "string", "nullable": true, "description": "JSON text.", "source": null, "path": "role", "convert": "json"},
            {"name": "label", "type": "int32", "nullable": true, "description": "n", "source": null, "path": "label"},
            {"name": "version", "type": "int64", "nullable": true, "description": "v", "source": null, "path": "version"},
            {"name": "ratio", "type": "float", "nullable": true, "description": "r", "source": null, "path": "ratio"},
            {"name": "jitter_ms", "type": "double", "nullable": true, "description": "j", "source": null, "path": "jitter"},
            {"name": "ok", "type": "boolean", "nullable": true, "description": "b", "source": null, "path": "ok"},
            {"name": "at", "type": "timestamp", "nullable": true, "description": "t", "source": null, "path": "at"},
            {"name": "amount", "type": "decimal(18,4)", "nullable": true, "description": "d", "source": null, "path": "amount"},
            {"name": "tags", "type": "list<string>", "nullable": true, "description": "l", "source": null, "path": "tags"},
            {"name": "we\"ird]`", "type": "string", "nullable": true, "description": "q", "source": null, "path": "weird"}
        ]
    }))
    .unwrap()
}

fn sql(dialect: Dialect, location: &str) -> String {
    ddl::script(dialect, &[&odd_table()], &[], location)
}

/// The lines between `open` (a line ending the statement's head) and the line `close`.
fn block<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    let start = text
        .find(open)
        .unwrap_or_else(|| panic!("no `{open}` in\n{text}"))
        + open.len();
    let rest = &text[start..];
    let end = rest
        .find(close)
        .unwrap_or_else(|| panic!("no `{close}` after `{open}` in\n{text}"));
    rest[..end].lines().filter(|l| !l.is_empty()).collect()
}

/// Every line is SQL or a `--` comment: a line break in a description ends no comment.
fn assert_comments_stay_comments(text: &str) {
    for line in text.lines() {
        assert!(
            !line.starts_with("DROP TABLE"),
            "a description escaped its comment: {line}\n{text}"
        );
    }
}

#[test]
fn spark_declares_hive_types_comments_and_the_dt_partition() {
    let text = sql(
        Dialect::Spark,
        "abfss://lake@acct.dfs.core.windows.net/teams/",
    );
    let columns = block(&text, "CREATE TABLE IF NOT EXISTS `odd_table` (\n", "\n)\n");
    assert_eq!(
        columns,
        [
            r"  `type` STRING COMMENT 'It\'s a C:\\path, not an escape.',",
            "  `role` STRING COMMENT 'JSON text.',",
            "  `label` INT COMMENT 'n',",
            "  `version` BIGINT COMMENT 'v',",
            "  `ratio` FLOAT COMMENT 'r',",
            "  `jitter_ms` DOUBLE COMMENT 'j',",
            "  `ok` BOOLEAN COMMENT 'b',",
            "  `at` TIMESTAMP COMMENT 't',",
            "  `amount` DECIMAL(18,4) COMMENT 'd',",
            "  `tags` ARRAY<STRING> COMMENT 'l',",
            "  `we\"ird]``` STRING COMMENT 'q',",
            r"  `dt` DATE COMMENT 'Partition (folder dt=YYYY-MM-DD): UTC date of the thing\'s start.'",
        ]
    );
    assert!(
        text.contains(
            "\n)\nUSING PARQUET\nPARTITIONED BY (`dt`)\nCOMMENT 'Rows of it\\'s own. DROP TABLE everything;'\n\
             LOCATION 'abfss://lake@acct.dfs.core.windows.net/teams/odd_table';\n\
             MSCK REPAIR TABLE `odd_table` SYNC PARTITIONS;\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("-- odd_table: Rows of it's own. DROP TABLE everything;\n"),
        "{text}"
    );
    assert_comments_stay_comments(&text);
}

#[test]
fn athena_declares_the_partition_apart_and_a_folder_location() {
    let text = sql(Dialect::Athena, "s3://bucket/prefix");
    let columns = block(
        &text,
        "CREATE EXTERNAL TABLE IF NOT EXISTS `odd_table` (\n",
        "\n)\n",
    );
    assert_eq!(
        columns.len(),
        11,
        "dt is not among the columns: {columns:?}"
    );
    assert!(columns.iter().all(|c| !c.contains("`dt`")));
    assert!(columns.contains(&"  `tags` ARRAY<STRING> COMMENT 'l',"));
    assert!(
        text.contains(
            "PARTITIONED BY (`dt` DATE COMMENT 'Partition (folder dt=YYYY-MM-DD): UTC date of the thing\\'s start.')\n\
             STORED AS PARQUET\nLOCATION 's3://bucket/prefix/odd_table/';\nMSCK REPAIR TABLE `odd_table`;\n"
        ),
        "{text}"
    );
    assert_comments_stay_comments(&text);
}

#[test]
fn trino_declares_hive_connector_types_and_table_properties() {
    let text = sql(Dialect::Trino, "s3://bucket/prefix/");
    let columns = block(
        &text,
        "CREATE TABLE IF NOT EXISTS \"odd_table\" (\n",
        "\n)\n",
    );
    assert_eq!(
        columns,
        [
            r#"  "type" VARCHAR COMMENT 'It''s a C:\path, not an escape.',"#,
            r#"  "role" VARCHAR COMMENT 'JSON text.',"#,
            r#"  "label" INTEGER COMMENT 'n',"#,
            r#"  "version" BIGINT COMMENT 'v',"#,
            r#"  "ratio" REAL COMMENT 'r',"#,
            r#"  "jitter_ms" DOUBLE COMMENT 'j',"#,
            r#"  "ok" BOOLEAN COMMENT 'b',"#,
            r#"  "at" TIMESTAMP(3) COMMENT 't',"#,
            r#"  "amount" DECIMAL(18,4) COMMENT 'd',"#,
            r#"  "tags" ARRAY(VARCHAR) COMMENT 'l',"#,
            r#"  "we""ird]`" VARCHAR COMMENT 'q',"#,
            r#"  "dt" DATE COMMENT 'Partition (folder dt=YYYY-MM-DD): UTC date of the thing''s start.'"#,
        ]
    );
    assert!(
        text.contains(
            "WITH (\n  format = 'PARQUET',\n  external_location = 's3://bucket/prefix/odd_table',\n  \
             partitioned_by = ARRAY['dt']\n);\n\
             -- CALL system.sync_partition_metadata('<schema>', 'odd_table', 'FULL');\n"
        ),
        "{text}"
    );
    assert_comments_stay_comments(&text);
}

#[test]
fn duckdb_casts_to_the_declared_types_over_hive_partitioned_files() {
    let text = sql(Dialect::DuckDb, "/data/lake");
    let columns = block(
        &text,
        "CREATE OR REPLACE VIEW \"odd_table\" AS\nSELECT\n",
        "\nFROM ",
    );
    assert_eq!(
        columns,
        [
            r#"  CAST("type" AS VARCHAR) AS "type","#,
            r#"  CAST("role" AS VARCHAR) AS "role","#,
            r#"  CAST("label" AS INTEGER) AS "label","#,
            r#"  CAST("version" AS BIGINT) AS "version","#,
            r#"  CAST("ratio" AS FLOAT) AS "ratio","#,
            r#"  CAST("jitter_ms" AS DOUBLE) AS "jitter_ms","#,
            r#"  CAST("ok" AS BOOLEAN) AS "ok","#,
            r#"  CAST("at" AS TIMESTAMPTZ) AS "at","#,
            r#"  CAST("amount" AS DECIMAL(18,4)) AS "amount","#,
            r#"  CAST("tags" AS VARCHAR[]) AS "tags","#,
            r#"  CAST("we""ird]`" AS VARCHAR) AS "we""ird]`","#,
            r#"  "dt""#,
        ]
    );
    assert!(
        text.contains(
            "FROM read_parquet('/data/lake/odd_table/dt=*/*.parquet', hive_partitioning = true, \
             hive_types = {'dt': DATE}, union_by_name = true);\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "COMMENT ON COLUMN \"odd_table\".\"type\" IS 'It''s a C:\\path, not an escape.';\n"
        ),
        "{text}"
    );
    assert!(text.contains("COMMENT ON COLUMN \"odd_table\".\"dt\" IS 'Partition"));
    assert_comments_stay_comments(&text);
}

#[test]
fn synapse_views_read_openrowset_with_tsql_types_and_dt_from_the_folder() {
    let text = sql(
        Dialect::Synapse,
        "https://acct.dfs.core.windows.net/lake/teams",
    );
    let columns = block(&text, ") WITH (\n", "\n) AS [r];\nGO\n");
    let utf8 = "COLLATE Latin1_General_100_BIN2_UTF8";
    assert_eq!(
        columns,
        [
            format!("    [type] VARCHAR(8000) {utf8},"),
            format!("    [role] VARCHAR(MAX) {utf8},"),
            "    [label] INT,".to_string(),
            "    [version] BIGINT,".to_string(),
            "    [ratio] REAL,".to_string(),
            "    [jitter_ms] FLOAT,".to_string(),
            "    [ok] BIT,".to_string(),
            "    [at] DATETIME2(6),".to_string(),
            "    [amount] DECIMAL(18,4),".to_string(),
            format!("    [tags] VARCHAR(MAX) {utf8},"),
            format!("    [we\"ird]]`] VARCHAR(8000) {utf8}"),
        ]
    );
    assert!(
        text.contains(
            "CREATE OR ALTER VIEW [odd_table] AS\n\
             SELECT [r].*, CAST([r].filepath(1) AS DATE) AS [dt]\nFROM OPENROWSET(\n    \
             BULK 'https://acct.dfs.core.windows.net/lake/teams/odd_table/dt=*/*.parquet',\n    \
             FORMAT = 'PARQUET'\n) WITH (\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("skip folders by it"),
        "the script says why it makes views: {text}"
    );
    assert_comments_stay_comments(&text);
}

#[test]
fn every_dialect_registers_every_declared_table_and_column() {
    let tables: Vec<&TableSchema> = schema::tables().iter().collect();
    for dialect in Dialect::ALL {
        let text = ddl::script(dialect, &tables, &[], "s3://bucket/teams");
        let creates = text.lines().filter(|l| l.starts_with("CREATE ")).count();
        assert_eq!(creates, tables.len(), "{}", dialect.name());
        for table in &tables {
            assert!(
                text.contains(&format!("s3://bucket/teams/{}", table.table)),
                "{}: {}",
                dialect.name(),
                table.table
            );
            for column in &table.columns {
                assert!(
                    text.contains(&column.name),
                    "{}: {}.{}",
                    dialect.name(),
                    table.table,
                    column.name
                );
            }
        }
        assert!(!text.contains(ddl::LOCATION_PLACEHOLDER));
        let placeholder = ddl::script(dialect, &tables, &[], ddl::LOCATION_PLACEHOLDER);
        assert!(
            placeholder.contains(&format!("{}/call_records", ddl::LOCATION_PLACEHOLDER))
                && placeholder.contains("Replace <lake-root>"),
            "{}",
            dialect.name()
        );
    }
}

#[test]
fn dialects_parse_from_their_names() {
    for dialect in Dialect::ALL {
        assert_eq!(dialect.name().parse::<Dialect>(), Ok(dialect));
    }
    let error = "hive".parse::<Dialect>().unwrap_err();
    assert!(
        error.contains("spark, athena, trino, duckdb, synapse"),
        "{error}"
    );
}

#[test]
fn the_schema_command_lists_prints_json_and_ddl() {
    let listing = binary().arg("schema").output().unwrap();
    assert!(listing.status.success());
    let text = String::from_utf8(listing.stdout).unwrap();
    for table in schema::tables() {
        assert!(text.contains(&format!("{} (", table.table)), "{text}");
    }
    assert!(text.contains("average_jitter_ms") && text.contains("double"));

    let json = binary()
        .args(["schema", "--format", "json"])
        .output()
        .unwrap();
    assert!(json.status.success());
    let all: Vec<Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(all.len(), schema::tables().len());
    let one = binary()
        .args([
            "schema",
            "--table",
            "call_media_streams",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let declared: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("schemas/call_media_streams.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&one.stdout).unwrap(),
        declared
    );
    assert!(all.contains(&declared));

    let ddl = binary()
        .args(["schema", "--ddl", "trino", "--table", "call_records"])
        .output()
        .unwrap();
    assert!(ddl.status.success());
    let text = String::from_utf8(ddl.stdout).unwrap();
    assert_eq!(text.matches("CREATE TABLE").count(), 1, "{text}");
    assert!(text.contains("'<lake-root>/call_records'"), "{text}");
    assert!(
        String::from_utf8_lossy(&ddl.stderr).contains("--location"),
        "the placeholder is pointed out"
    );
}

#[test]
fn schema_usage_errors_exit_2_and_say_what_to_fix() {
    let cases: [(&[&str], &str); 9] = [
        (
            &["schema", "--table", "calls"],
            "call_records, call_participants",
        ),
        (&["schema", "--ddl", "hive"], "spark"),
        (&["schema", "--location", "s3://b/t"], "--ddl"),
        (
            &["schema", "--ddl", "spark", "--format", "json"],
            "--format",
        ),
        // Engines that read tables from URLs only refuse a local path, naming themselves
        // and what to pass instead.
        (
            &["schema", "--ddl", "athena", "--location", "/srv/lake"],
            "Athena reads tables from Amazon S3 (s3://…), not a local path; pass the lake's URL",
        ),
        (
            &[
                "schema",
                "--ddl",
                "athena",
                "--location",
                "abfss://l@a.dfs.core.windows.net/t",
            ],
            "Athena",
        ),
        (
            &["schema", "--ddl", "trino", "--location", "./lake"],
            "Trino's Hive connector reads tables from a file system URL",
        ),
        (
            &["schema", "--ddl", "spark", "--lake", "/no/such/lake"],
            "--lake /no/such/lake: no such folder",
        ),
        (
            &["schema", "--ddl", "synapse", "--location", "C:/lake"],
            "Synapse serverless SQL reads tables from Azure storage URLs",
        ),
    ];
    for (args, expected) in cases {
        let output = binary().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn urls_pass_the_location_check_and_local_paths_only_for_spark_and_duckdb() {
    let accepted = [
        (Dialect::Athena, "s3://bucket/teams"),
        (
            Dialect::Trino,
            "abfs://lake@acct.dfs.core.windows.net/teams",
        ),
        (
            Dialect::Synapse,
            "https://acct.dfs.core.windows.net/lake/teams",
        ),
        (
            Dialect::Synapse,
            "abfss://lake@acct.dfs.core.windows.net/teams",
        ),
        (Dialect::Spark, "/mnt/lake"),
        (Dialect::DuckDb, "./lake"),
        (Dialect::Athena, ddl::LOCATION_PLACEHOLDER),
    ];
    for (dialect, location) in accepted {
        assert!(ddl::check_location(dialect, location).is_ok(), "{location}");
    }
    let error = ddl::check_location(Dialect::Synapse, "s3://bucket/teams").unwrap_err();
    assert_eq!(error.engine, "Synapse serverless SQL");
}

/// A log table without a key says nothing of one, rather than `Primary key: .`.
#[test]
fn keyless_tables_say_no_primary_key() {
    let keyless: Vec<&TableSchema> = schema::tables()
        .iter()
        .filter(|t| t.primary_key.is_empty())
        .collect();
    assert!(!keyless.is_empty(), "a declared table has no key");
    for dialect in Dialect::ALL {
        let text = ddl::script(dialect, &keyless, &[], "s3://bucket/teams");
        assert!(!text.contains("Primary key"), "{}:\n{text}", dialect.name());
        assert!(
            text.contains(". Grain:") || text.contains("-- Grain: "),
            "{text}"
        );
    }
    assert!(!ddl::listing(&keyless).contains("Primary key"));
    let keyed = schema::table("call_records").unwrap();
    let text = ddl::script(Dialect::Spark, &[keyed], &[], "s3://b/t");
    assert!(text.contains("Primary key: call_id."), "{text}");
    assert!(!schema::markdown_reference().contains("Primary key: ``."));
}

/// Which tables the DDL registers: with a lake, those it holds files of; without, those of
/// the API version's streams. The rest are named in the script, with why.
#[test]
fn the_ddl_registers_the_tables_that_hold_data_and_names_the_rest() {
    let tables: Vec<&TableSchema> = schema::tables().iter().collect();
    let beta_only = |t: &TableSchema| {
        t.stream
            .parse::<callrecords_etl::streams::StreamKind>()
            .unwrap()
            .beta_only()
    };
    let names =
        |kept: &[&TableSchema]| -> Vec<String> { kept.iter().map(|t| t.table.clone()).collect() };
    let (v1, skipped) = ddl::select(
        &tables,
        ddl::Evidence::ApiVersion { beta: false },
        beta_only,
    );
    assert!(!names(&v1).contains(&"sms_logs".to_string()));
    assert!(names(&v1).contains(&"direct_routing_calls".to_string()));
    assert_eq!(v1.len() + skipped.len(), tables.len());
    assert!(skipped.iter().all(|(_, skip)| *skip == ddl::Skip::BetaOnly));
    let (beta, skipped) = ddl::select(&tables, ddl::Evidence::ApiVersion { beta: true }, beta_only);
    assert_eq!((beta.len(), skipped.len()), (tables.len(), 0));

    let holding: std::collections::BTreeSet<String> =
        ["call_records", "pstn_calls"].map(String::from).into();
    let (kept, skipped) = ddl::select(&tables, ddl::Evidence::Lake(&holding), beta_only);
    assert_eq!(names(&kept), ["call_records", "pstn_calls"]);
    let reasons: std::collections::BTreeMap<&str, ddl::Skip> = skipped
        .iter()
        .map(|(t, s)| (t.table.as_str(), *s))
        .collect();
    assert_eq!(reasons["sms_logs"], ddl::Skip::BetaOnly);
    assert_eq!(reasons["direct_routing_calls"], ddl::Skip::NoRows);

    let text = ddl::script(Dialect::DuckDb, &kept, &skipped, "/lake");
    assert_eq!(text.matches("CREATE OR REPLACE VIEW").count(), 2, "{text}");
    assert!(
        text.contains("-- Not registered: direct_routing_calls: the lake holds no rows of it yet.")
            && text.contains("-- Not registered: sms_logs: its stream is beta-only")
            && text.contains("schema --ddl duckdb --table <table> --location /lake"),
        "{text}"
    );
}
