//! The declared schemas against the code and the Graph model:
//! - every non-deprecated v1.0 property reachable from callRecord is the `source` of a
//!   column, or is listed below as deliberately left out, with the reason;
//! - the Arrow schema the writer uses is the declaration, column by column, in order;
//! - the README's table reference is generated from the declarations.

use crate::support;

use std::collections::{BTreeSet, HashSet};

use callrecords_etl::flatten::TableBuilder;
use callrecords_etl::schema::{self, ColumnType};
use serde_json::Value;

/// Properties reachable from callRecord that no column reads, and why.
const LEFT_OUT: &[(&str, &str)] = &[
    (
        "callRecord.organizer",
        "deprecated; removed from Graph on 2026-11-06: organizer_v2 replaces it",
    ),
    (
        "callRecord.participants",
        "deprecated; removed from Graph on 2026-11-06: participants_v2 replaces it",
    ),
    (
        "participantEndpoint.identity",
        "deprecated; removed from Graph on 2026-11-06: associatedIdentity replaces it",
    ),
    (
        "callRecord.organizer_v2",
        "a navigation property: its rows are in call_participants (role = organizer)",
    ),
    (
        "callRecord.participants_v2",
        "a navigation property: its rows are call_participants",
    ),
    (
        "callRecord.sessions",
        "a navigation property: its rows are call_sessions",
    ),
    (
        "session.segments",
        "a navigation property: its rows are call_segments",
    ),
    ("segment.media", "a collection: its rows are call_media"),
    (
        "media.streams",
        "a collection: its rows are call_media_streams",
    ),
    (
        "networkInfo.traceRouteHops",
        "a collection: its rows are call_trace_route_hops",
    ),
];

fn model() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(support::fixture_path("callrecords-model.json")).unwrap(),
    )
    .unwrap()
}

/// `(type.property)` of every property reachable from callRecord, subtypes included.
fn reachable_properties(model: &Value) -> BTreeSet<String> {
    let types = model["types"].as_object().unwrap();
    let mut found = BTreeSet::new();
    let mut queue = vec!["callRecord".to_string()];
    let mut visited = HashSet::new();
    while let Some(name) = queue.pop() {
        if !visited.insert(name.clone()) {
            continue;
        }
        // A type's properties are its own plus its bases'; its subtypes are reachable too.
        for (sub, definition) in types {
            if definition["base"].as_str() == Some(name.as_str()) {
                queue.push(sub.clone());
            }
        }
        let Some(definition) = types.get(&name) else {
            continue;
        };
        if let Some(base) = definition["base"].as_str() {
            queue.push(base.to_string());
        }
        for (property, spec) in definition["properties"].as_object().unwrap() {
            if spec["deprecated"].as_bool() == Some(true) {
                found.insert(format!("{name}.{property}#deprecated"));
                continue;
            }
            found.insert(format!("{name}.{property}"));
            let target = spec["type"].as_str().unwrap();
            if types.contains_key(target) {
                queue.push(target.to_string());
            }
        }
    }
    found
}

#[test]
fn every_reachable_graph_property_is_a_column_source_or_left_out_with_a_reason() {
    let model = model();
    let sources: HashSet<&str> = schema::tables()
        .iter()
        .flat_map(|t| t.columns.iter())
        .filter_map(|c| c.source.as_deref())
        .collect();
    let left_out: HashSet<&str> = LEFT_OUT.iter().map(|(p, _)| *p).collect();
    let types = model["types"].as_object().unwrap();
    let mut missing = Vec::new();
    for property in reachable_properties(&model) {
        if let Some(deprecated) = property.strip_suffix("#deprecated") {
            assert!(
                left_out.contains(deprecated),
                "deprecated {deprecated} must be listed in LEFT_OUT"
            );
            continue;
        }
        let (type_name, name) = property.split_once('.').unwrap();
        let target = types[type_name]["properties"][name]["type"]
            .as_str()
            .unwrap();
        // A property of a complex type is covered through the columns of its own properties.
        let is_structure = types.contains_key(target)
            && !types[target]["properties"].as_object().unwrap().is_empty();
        if !sources.contains(property.as_str())
            && !left_out.contains(property.as_str())
            && !is_structure
        {
            missing.push(property);
        }
    }
    assert!(
        missing.is_empty(),
        "Graph properties with no column (add a column or a LEFT_OUT entry): {missing:#?}"
    );
    // LEFT_OUT must not go stale either.
    let reachable = reachable_properties(&model);
    for (property, _) in LEFT_OUT {
        let known =
            reachable.contains(*property) || reachable.contains(&format!("{property}#deprecated"));
        assert!(
            known,
            "LEFT_OUT names {property}, which is not a reachable property"
        );
    }
}

#[test]
fn every_log_row_property_of_v1_and_beta_is_a_column_of_its_table() {
    let model = model();
    let tables = [
        ("pstn_calls", "pstnCallLogRow"),
        ("direct_routing_calls", "directRoutingLogRow"),
        ("sms_logs", "smsLogRow"),
        ("pstn_blocked_users", "pstnBlockedUsersLogRow"),
        (
            "pstn_online_meeting_dialouts",
            "pstnOnlineMeetingDialoutReport",
        ),
    ];
    for (table, row_type) in tables {
        let declared = schema::table(table).unwrap();
        let properties: HashSet<&str> = declared
            .columns
            .iter()
            .filter_map(|c| c.source.as_deref())
            .filter_map(|s| s.split_once('.').map(|(_, p)| p))
            .collect();
        let mut expected = Vec::new();
        for section in ["types", "beta_types"] {
            let Some(definition) = model[section].get(row_type) else {
                continue;
            };
            let mut types = vec![definition];
            if let Some(base) = definition["base"].as_str() {
                types.push(&model[section][base]);
            }
            for t in types {
                expected.extend(t["properties"].as_object().unwrap().keys().cloned());
            }
        }
        for property in expected {
            let name = if property == "administrativeUnitInfos" {
                "id"
            } else {
                property.as_str()
            };
            assert!(
                properties.contains(name),
                "{table}: {row_type}.{property} has no column"
            );
        }
    }
}

#[test]
fn every_column_source_names_a_real_model_property() {
    let model = model();
    let mut known: HashSet<String> = HashSet::new();
    for section in ["types", "beta_types", "graph_types"] {
        for (type_name, definition) in model[section].as_object().unwrap() {
            for property in definition["properties"].as_object().unwrap().keys() {
                known.insert(format!("{type_name}.{property}"));
            }
            known.insert(format!("{type_name}.id"));
            known.insert(format!("{type_name}.@odata.type"));
        }
    }
    for table in schema::tables() {
        for column in &table.columns {
            if let Some(source) = &column.source {
                assert!(
                    known.contains(source),
                    "{}.{}: source {source} is not in the Graph model",
                    table.table,
                    column.name
                );
            }
        }
    }
}

#[test]
fn the_writer_schema_is_the_declaration_column_by_column() {
    for table in schema::tables() {
        let batch = TableBuilder::new(table).finish();
        let fields = batch.schema().fields().clone();
        assert_eq!(fields.len(), table.columns.len(), "{}", table.table);
        for (field, column) in fields.iter().zip(&table.columns) {
            assert_eq!(field.name(), &column.name, "{}", table.table);
            assert_eq!(
                field.data_type(),
                &column.column_type.arrow(),
                "{}.{}",
                table.table,
                column.name
            );
            assert_eq!(
                field.is_nullable(),
                column.nullable,
                "{}.{}",
                table.table,
                column.name
            );
            assert_eq!(field.metadata()["description"], column.description);
        }
    }
}

#[test]
fn column_names_follow_the_snake_case_rule_and_durations_end_in_ms() {
    for table in schema::tables() {
        for column in &table.columns {
            assert!(
                column
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}.{} is not snake_case",
                table.table,
                column.name
            );
            // Derived columns (`$` paths) such as call_quality.worst_jitter_ms hold milliseconds
            // taken from duration columns.
            let is_duration = column.convert == schema::Convert::DurationMs;
            let in_ms = column.name.ends_with("_ms");
            if !column.path.starts_with('$') {
                assert_eq!(is_duration, in_ms, "{}.{}", table.table, column.name);
            }
            if is_duration || in_ms {
                assert_eq!(column.column_type, ColumnType::Double);
            }
        }
    }
}

#[test]
fn the_table_reference_is_generated_from_the_schemas() {
    let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tables.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (begin, end) = ("<!-- tables:begin -->", "<!-- tables:end -->");
    let start = readme
        .find(begin)
        .expect("docs/tables.md has a tables:begin marker")
        + begin.len();
    let stop = readme
        .find(end)
        .expect("docs/tables.md has a tables:end marker");
    let generated = format!("\n{}", schema::markdown_reference());
    if readme[start..stop] != generated {
        if std::env::var_os("UPDATE_README").is_some() {
            let updated = format!("{}{}{}", &readme[..start], generated, &readme[stop..]);
            std::fs::write(&readme_path, updated).unwrap();
        } else {
            panic!(
                "docs/tables.md is out of date: run `UPDATE_README=1 cargo test --test it schemas`"
            );
        }
    }
}

#[test]
fn the_example_config_parses_and_validates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let settings = callrecords_etl::config::load(&path, |name| {
        (name == callrecords_etl::config::SECRET_ENV).then(|| "example-secret".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.graph.tenant_id, "contoso.onmicrosoft.com");
    assert_eq!(settings.output, std::path::PathBuf::from("./lake"));
}

#[test]
fn the_tests_list_of_call_tables_is_the_declared_one() {
    let declared: Vec<&str> = schema::tables_of_stream("call_records")
        .map(|t| t.table.as_str())
        .collect();
    assert_eq!(declared, support::CALL_TABLES);
}

/// Descriptions are sentences: a note such as `Beta only: …` starts after a full stop, not
/// in the middle of the sentence before it.
#[test]
fn notes_in_descriptions_start_a_new_sentence() {
    for table in callrecords_etl::schema::tables() {
        let texts =
            std::iter::once(&table.description).chain(table.columns.iter().map(|c| &c.description));
        for text in texts {
            for (at, _) in text.match_indices("Beta only:") {
                assert!(
                    at == 0 || text[..at].ends_with(". "),
                    "{}: {text:?}",
                    table.table
                );
            }
        }
    }
}
