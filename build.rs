//! Build script: the commit the binary is built from, for the `created_by` of the Parquet
//! files it writes (`callrecords-etl version 0.1.0 (build <commit>)`). `CALLRECORDS_BUILD`
//! overrides it (builds outside git, reproducible builds); outside git it is `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CALLRECORDS_BUILD");
    let build = std::env::var("CALLRECORDS_BUILD")
        .ok()
        .filter(|build| !build.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CALLRECORDS_BUILD={}", build.trim());
}

/// `git rev-parse --short HEAD`, and the files whose change means another commit.
fn git_commit() -> Option<String> {
    let git_dir = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let git_dir = String::from_utf8(git_dir.stdout).ok()?;
    let git_dir = std::path::Path::new(git_dir.trim());
    // A worktree's HEAD is in its own git dir; the refs are in the common one.
    for file in ["HEAD", "packed-refs", "refs/heads"] {
        println!("cargo:rerun-if-changed={}", git_dir.join(file).display());
    }
    if let Some(common) = Command::new("git")
        .args(["rev-parse", "--git-common-dir"])
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
    {
        let common = std::path::Path::new(common.trim());
        for file in ["packed-refs", "refs/heads"] {
            println!("cargo:rerun-if-changed={}", common.join(file).display());
        }
    }
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    String::from_utf8(head.stdout)
        .ok()
        .map(|commit| commit.trim().to_string())
        .filter(|commit| !commit.is_empty())
}
