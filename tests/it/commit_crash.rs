//! Crash safety of the run-wide commit, proven step by step: a crash (`abort`, as `kill -9`
//! would) or an I/O error is injected at every step of the commit (the `fail` crate's
//! FAILPOINTS, see `callrecords_etl::commit`), and then
//!
//! - after an I/O error the run exits 1 and the lake is exactly the old one (rolled back
//!   before the process exits);
//! - after a crash the next command's recovery leaves exactly the old lake (crash before
//!   the journal) or exactly the new one (after it), never a mix;
//! - a plain rerun then gives a lake equal, row for row in every table and raw line, to a
//!   clean export of the same data.
//!
//! The old lake comes from an emulator with another seed, so old and new rows differ.

use crate::support;

use std::path::{Path, PathBuf};

use callrecords_etl::commit;
use callrecords_etl::store::Location as Zone;
use support::tenants::{STREAMS, Tenant, TwoTenants, tables};
use support::{days_ago, stderr};

/// Everything a reader of the lake and the raw zone sees, plus the state file.
fn snapshot(root: &Path) -> (Vec<String>, Vec<String>, Option<String>) {
    let lake = root.join("lake");
    (
        support::lake_rows(&lake, &tables()),
        support::raw_lines(&root.join("raw")),
        std::fs::read_to_string(lake.join("_state.json")).ok(),
    )
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Finishes what a crashed run left, as the next command does first.
async fn recover(root: &Path) -> Vec<commit::Recovered> {
    let lake = Zone::Local(root.join("lake"));
    let raw = Zone::Local(root.join("raw"));
    callrecords_etl::run::recover(&lake, Some(&raw))
        .await
        .unwrap()
}

fn nothing_left_over(root: &Path) {
    for leftover in ["lake/_commits", "lake/_staging", "raw/_staging"] {
        let path = root.join(leftover);
        let empty = !path.exists() || std::fs::read_dir(&path).unwrap().next().is_none();
        assert!(empty, "{} is left over", path.display());
    }
}

/// The failure points of the commit and how often each is reached before it triggers.
const CASES: &[(&str, &str, bool)] = &[
    // (FAILPOINTS value, what it injects, whether the new data is committed afterwards)
    (
        "commit::journal=return(crash)",
        "crash before the journal",
        false,
    ),
    (
        "commit::journal=return(io)",
        "I/O error writing the journal",
        false,
    ),
    (
        "commit::journal_written=return(crash)",
        "crash right after the journal",
        true,
    ),
    (
        "commit::journal_written=return(io)",
        "I/O error after the journal",
        false,
    ),
    (
        "commit::switch=return(crash)",
        "crash at the first switch",
        true,
    ),
    (
        "commit::switch=6*off->return(crash)",
        "crash at the 7th switch",
        true,
    ),
    (
        "commit::switch=6*off->return(io)",
        "I/O error at the 7th switch",
        false,
    ),
    (
        "commit::park_old=return(crash)",
        "crash parking the first old partition",
        true,
    ),
    (
        "commit::park_old=11*off->return(crash)",
        "crash parking the 12th old partition",
        true,
    ),
    (
        "commit::park_old=11*off->return(io)",
        "I/O error parking the 12th old partition",
        false,
    ),
    (
        "commit::write_file=return(crash)",
        "crash before writing the state",
        true,
    ),
    (
        "commit::write_file=1*off->return(crash)",
        "crash before writing the manifest",
        true,
    ),
    (
        "commit::write_file=1*off->return(io)",
        "I/O error writing the manifest",
        false,
    ),
    (
        "commit::clean_up=return(crash)",
        "crash before the clean-up",
        true,
    ),
    (
        "commit::clean_up=return(io)",
        "I/O error at the clean-up",
        true,
    ),
    (
        "commit::forget=return(crash)",
        "crash before removing the journal",
        true,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case1_a_crash_or_io_error_at_every_commit_step_leaves_the_old_or_the_new_lake_whole() {
    let tenants = TwoTenants::start().await;
    let template = tenants.path("template");
    let output = tenants.old.export(&template, "", &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let reference = tenants.path("reference");
    let output = tenants.new.export(&reference, "", &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let (old, new) = (snapshot(&template), snapshot(&reference));
    assert!(old.0 != new.0 && old.1 != new.1, "the two tenants differ");
    assert!(
        new.0.len() > 500 && new.1.len() > 50,
        "{} rows",
        new.0.len()
    );

    for (index, (failpoints, what, committed)) in CASES.iter().enumerate() {
        let root = tenants.path(&format!("case-{index}"));
        copy_tree(&template, &root);
        let output = tenants.new.export(&root, failpoints, &[]).await;
        let crashed = failpoints.contains("crash");
        if crashed {
            assert_eq!(output.status.code(), None, "{what}: killed by a signal");
            recover(&root).await;
        } else {
            let expected = if *committed { 0 } else { 1 };
            assert_eq!(
                output.status.code(),
                Some(expected),
                "{what}: {}",
                stderr(&output)
            );
            // Rolled back in-process; a published run whose clean-up failed is cleaned
            // up by the next command.
            let recovered = recover(&root).await;
            assert!(
                recovered
                    .iter()
                    .all(|r| *committed && r.direction == commit::Direction::Forward),
                "{what}: {recovered:?}"
            );
        }
        let expected = if *committed { &new } else { &old };
        assert!(
            &snapshot(&root) == expected,
            "{what}: the lake is not the whole {} one",
            if *committed { "new" } else { "old" }
        );
        nothing_left_over(&root);

        let output = tenants.new.export(&root, "", &[]).await;
        assert!(
            output.status.success(),
            "{what}, rerun: {}",
            stderr(&output)
        );
        assert!(
            snapshot(&root) == new,
            "{what}: the rerun differs from a clean export"
        );
        nothing_left_over(&root);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_commit_whose_staged_files_are_gone_is_rolled_back() {
    let tenants = TwoTenants::start().await;
    let root = tenants.path("lake-root");
    let output = tenants.old.export(&root, "", &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let old = snapshot(&root);

    let output = tenants
        .new
        .export(&root, "commit::switch=3*off->return(crash)", &[])
        .await;
    assert_eq!(output.status.code(), None);
    // Someone removes a staged file the commit still needs.
    let staged = walk(&root.join("lake/_staging"))
        .into_iter()
        .find(|path| path.extension().is_some_and(|e| e == "parquet"))
        .expect("a staged file");
    std::fs::remove_file(staged).unwrap();
    let recovered = recover(&root).await;
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].direction, commit::Direction::Back);
    assert!(snapshot(&root) == old, "rolled back to the whole old lake");
    nothing_left_over(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_is_refused_before_any_request_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::start(101, dir.path()).await;
    let root = dir.path().join("lake-root");
    std::fs::create_dir_all(root.join("lake/_commits")).unwrap();
    std::fs::write(
        root.join("lake/_commits/20261201T000000Z-deadbeef.json"),
        "{ torn",
    )
    .unwrap();
    let output = tenant.export(&root, "", &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("_commits/20261201T000000Z-deadbeef.json") && log.contains("damaged"),
        "{log}"
    );
    assert!(tenant.graph.requests().is_empty(), "no request was made");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case7_two_lakes_sharing_a_raw_zone_remove_only_their_own_staging() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::start(101, dir.path()).await;
    let raw = dir.path().join("raw");
    let run = |lake: &'static str, failpoints: &'static str| {
        let mut command = support::binary();
        command
            .env("CALLRECORDS_CLIENT_SECRET", tenant.secret())
            .env("FAILPOINTS", failpoints)
            .args(["export", "--streams", STREAMS, "--config"])
            .arg(&tenant.config)
            .args(["--from", &days_ago(4), "--to", &days_ago(3), "--out"])
            .arg(dir.path().join(lake))
            .arg("--raw")
            .arg(&raw);
        async move {
            tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap()
        }
    };
    let staged_runs = || -> Vec<String> {
        match std::fs::read_dir(raw.join("_staging")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    let output = run("lake-a", "commit::journal=return(crash)").await;
    assert_eq!(output.status.code(), None, "killed before its commit");
    let left_by_a = staged_runs();
    assert_eq!(left_by_a.len(), 1);

    let output = run("lake-b", "").await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        staged_runs(),
        left_by_a,
        "lake B left lake A's staging alone"
    );

    let output = run("lake-a", "").await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(staged_runs().is_empty(), "lake A removed its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_mounted_elsewhere_after_a_crash_is_completed_where_it_is_now() {
    let tenants = TwoTenants::start().await;
    let reference = tenants.path("reference");
    let output = tenants.new.export(&reference, "", &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let root = tenants.path("lake-root");
    let output = tenants.old.export(&root, "", &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let output = tenants
        .new
        .export(&root, "commit::switch=9*off->return(crash)", &[])
        .await;
    assert_eq!(output.status.code(), None);

    // The next pod mounts the lake at another path (the raw zone stays where it was).
    let moved = tenants.path("mounted-elsewhere");
    std::fs::rename(root.join("lake"), &moved).unwrap();
    let recovered = callrecords_etl::run::recover(
        &Zone::Local(moved.clone()),
        Some(&Zone::Local(root.join("raw"))),
    )
    .await
    .unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].direction, commit::Direction::Forward);
    assert!(support::lake_rows(&moved, &tables()) == snapshot(&reference).0);
    assert!(support::raw_lines(&root.join("raw")) == snapshot(&reference).1);
}
