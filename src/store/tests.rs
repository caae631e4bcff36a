//! The operations of [`Location`], the same on a local folder and on an object store (in
//! memory).

use std::io::{Read, Write};
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

use super::*;

/// A local folder and an object store, each empty, for the same test.
fn locations() -> (tempfile::TempDir, [Location; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let local = Location::Local(dir.path().join("lake"));
    let object = Location::Object(ObjectLocation::in_memory("lake"));
    (dir, [local, object])
}

#[tokio::test]
async fn files_are_written_read_listed_and_removed_alike_on_both_backends() {
    let (_dir, locations) = locations();
    for location in &locations {
        assert_eq!(location.read("a/x.json").await.unwrap(), None);
        location.write_atomically("a/x.json", b"one").await.unwrap();
        location.write_atomically("a/x.json", b"two").await.unwrap();
        location.write_atomically("a/b/y.json", b"y").await.unwrap();
        location.write_atomically("a/c/z.json", b"z").await.unwrap();
        assert_eq!(
            location.read("a/x.json").await.unwrap().as_deref(),
            Some(&b"two"[..]),
            "{location}"
        );
        assert!(location.exists("a/x.json").await.unwrap());
        assert!(!location.exists("a/none.json").await.unwrap());
        assert_eq!(location.list_names("a").await.unwrap(), ["x.json"]);
        assert_eq!(location.list_folders("a").await.unwrap(), ["b", "c"]);
        assert!(location.list_names("missing").await.unwrap().is_empty());

        location.remove("a/x.json").await.unwrap();
        location.remove("a/x.json").await.unwrap();
        location.remove_all("a/b").await.unwrap();
        location.remove_all("a/b").await.unwrap();
        assert!(location.list_names("a").await.unwrap().is_empty());
        assert_eq!(location.list_folders("a").await.unwrap(), ["c"]);
    }
}

#[tokio::test]
async fn a_line_log_holds_every_line_appended_on_both_backends() {
    let (_dir, locations) = locations();
    for location in &locations {
        let mut log = location.line_log("q/run/calls.jsonl").unwrap();
        log.append(b"{\"id\":1}").await.unwrap();
        assert_eq!(
            location.read("q/run/calls.jsonl").await.unwrap().as_deref(),
            Some(&b"{\"id\":1}\n"[..]),
            "{location}: durable after the first line"
        );
        log.append(b"{\"id\":2}").await.unwrap();
        assert_eq!(
            location.read("q/run/calls.jsonl").await.unwrap().as_deref(),
            Some(&b"{\"id\":1}\n{\"id\":2}\n"[..]),
            "{location}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_file_appears_when_finished_and_reads_back() {
    let (_dir, locations) = locations();
    let runtime = Handle::current();
    for location in locations {
        let runtime = runtime.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = location.writer("s/f.bin", Some(&runtime)).unwrap();
            assert!(writer.location().ends_with("lake/s/f.bin"));
            writer.write_all(b"streamed ").unwrap();
            writer.write_all(b"bytes").unwrap();
            assert_eq!(writer.finish().unwrap(), 14);
            let mut text = String::new();
            location
                .reader("s/f.bin", &runtime)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, "streamed bytes");
            assert!(location.reader("s/none.bin", &runtime).is_err());
            location.remove_all_blocking("s", Some(&runtime)).unwrap();
            assert!(!runtime.block_on(location.exists("s/f.bin")).unwrap());
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_reads_only_the_columns_asked_for() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .unwrap();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let (_dir, locations) = locations();
    let runtime = Handle::current();
    for location in locations {
        location
            .write_atomically("t/f.parquet", &bytes)
            .await
            .unwrap();
        let runtime = runtime.clone();
        tokio::task::spawn_blocking(move || {
            let file = location
                .read_parquet("t/f.parquet", Some(&["n"]), &runtime)
                .unwrap();
            assert_eq!(file.metadata.file_metadata().num_rows(), 3);
            let batches: Vec<RecordBatch> = file.batches.map(Result::unwrap).collect();
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].num_columns(), 1, "{location}");
            assert_eq!(batches[0].num_rows(), 3);
            let error = location
                .read_parquet("t/none.parquet", None, &runtime)
                .err()
                .expect("no such file");
            assert!(error.to_string().contains("none.parquet"), "{error}");
        })
        .await
        .unwrap();
    }
}

#[test]
fn locations_parse_from_paths_and_urls() {
    let none = BTreeMap::new();
    assert!(matches!(
        Location::parse("/data/lake", &none).unwrap(),
        Location::Local(path) if path == std::path::Path::new("/data/lake")
    ));
    assert!(matches!(
        Location::parse("file:///data/lake", &none).unwrap(),
        Location::Local(path) if path == std::path::Path::new("/data/lake")
    ));
    let s3 = Location::parse("s3://bucket/lake/", &none).unwrap();
    assert_eq!(s3.to_string(), "s3://bucket/lake");
    assert_eq!(s3.display_path("t/x"), "s3://bucket/lake/t/x");
    assert_eq!(s3.root_name(), "s3://bucket/lake");
    assert!(s3.local_path("t").is_none());

    let options = BTreeMap::from([("aws_region".to_string(), "eu-west-1".to_string())]);
    let error = Location::parse("/data/lake", &options).unwrap_err();
    assert!(error.to_string().contains("object stores only"), "{error}");
    let typo = BTreeMap::from([("aws_regoin".to_string(), "x".to_string())]);
    assert!(matches!(
        Location::parse("s3://bucket/lake", &typo),
        Err(StoreError::UnknownOptions { .. })
    ));
    assert!(matches!(
        Location::parse("ftp://host/lake", &none),
        Err(StoreError::Location { .. })
    ));
}

#[test]
fn a_local_root_is_named_absolute_in_journals() {
    let relative = Location::Local("lake".into());
    let name = relative.root_name();
    assert!(std::path::Path::new(&name).is_absolute(), "{name}");
    assert!(name.ends_with("/lake"), "{name}");
}
