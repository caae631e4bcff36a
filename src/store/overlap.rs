//! Whether two locations of the lake, the raw zone or a raw input overlap: the same folder,
//! or one inside the other. Locations are compared after normalising them: plain paths and
//! `file://` URLs become absolute, `.` and `..` resolved, symbolic links of the folders that
//! exist followed (the real path of the longest existing ancestor); object-store URLs compare by scheme (`s3a` is `s3`), bucket or container
//! (host and user part, ignoring case) and prefix, ignoring empty segments and trailing
//! slashes. Azure's spellings of one place (`az://c/x`, `abfss://c@account.dfs.core.windows.net/x`,
//! `https://account.blob.core.windows.net/c/x`, and OneLake's `…fabric.microsoft.com` forms) all
//! name an account and a container, read as object_store reads them; a spelling without the
//! account (`az://c/x`, whose account comes from the store's settings) is taken to be on any
//! account, so raw and lake are refused as overlapping when in doubt: a refused setting is
//! fixed in a minute, a lake written over its raw zone is not.
//!
//! May touch: the file system, read-only (to resolve the folders that exist).

use std::path::{Component, Path, PathBuf};

/// Where one location lies relative to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Both are the same place.
    Same,
    /// The first lies inside the second.
    Inside,
    /// The second lies inside the first.
    Contains,
}

/// A location, normalised.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    Object {
        store: String,
        parts: Vec<String>,
    },
    /// Azure Blob / ADLS / OneLake: the account when the spelling names it, the container.
    Azure {
        account: Option<String>,
        container: String,
        parts: Vec<String>,
    },
}

/// Where `location` lies relative to `other`; None when they are apart (siblings such as
/// `/lake` and `/lake2`, other buckets, a folder and an object store) or one cannot be read
/// as a location (its own check reports that).
pub fn overlap(location: &str, other: &str) -> Option<Overlap> {
    match (place(location)?, place(other)?) {
        (Place::Local(a), Place::Local(b)) => relation(&a, &b, |a, b| a.starts_with(b)),
        (Place::Object { store: a, parts: p }, Place::Object { store: b, parts: q }) if a == b => {
            relation(&p, &q, |p, q| p.starts_with(q))
        }
        (
            Place::Azure {
                account: a,
                container: c,
                parts: p,
            },
            Place::Azure {
                account: b,
                container: d,
                parts: q,
            },
        ) if c == d && (a.is_none() || b.is_none() || a == b) => {
            relation(&p, &q, |p, q| p.starts_with(q))
        }
        _ => None,
    }
}

fn relation<T: PartialEq + ?Sized>(
    a: &T,
    b: &T,
    within: impl Fn(&T, &T) -> bool,
) -> Option<Overlap> {
    if a == b {
        Some(Overlap::Same)
    } else if within(a, b) {
        Some(Overlap::Inside)
    } else if within(b, a) {
        Some(Overlap::Contains)
    } else {
        None
    }
}

fn place(location: &str) -> Option<Place> {
    let location = location.trim();
    if !location.contains("://") {
        return Some(Place::Local(local(Path::new(location))));
    }
    let url = url::Url::parse(location).ok()?;
    if url.scheme() == "file" {
        return Some(Place::Local(local(&url.to_file_path().ok()?)));
    }
    let parts: Vec<String> = url
        .path_segments()
        .map(|segments| {
            segments
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if let Some(azure) = azure(&url, parts.clone()) {
        return Some(azure);
    }
    let scheme = match url.scheme() {
        "s3a" => "s3",
        other => other,
    };
    let store = format!(
        "{scheme}://{}@{}:{}",
        url.username(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(0)
    )
    .to_ascii_lowercase();
    Some(Place::Object { store, parts })
}

/// An Azure URL as object_store's `MicrosoftAzureBuilder` reads it: `az`/`adl`/`azure`/
/// `abfs[s]://container/…` (account from the settings), `abfs[s]://container@account.<host>/…`
/// and `https://account.<host>/container/…`, where host is Blob, ADLS or OneLake's. Names
/// compare ignoring case (Azure's are case-insensitive). None for any other URL.
fn azure(url: &url::Url, mut parts: Vec<String>) -> Option<Place> {
    let host = url.host_str()?.to_ascii_lowercase();
    let account_of = |host: &str| {
        let (account, domain) = host.split_once('.')?;
        matches!(
            domain,
            "dfs.core.windows.net"
                | "blob.core.windows.net"
                | "dfs.fabric.microsoft.com"
                | "blob.fabric.microsoft.com"
        )
        .then(|| account.to_owned())
    };
    let (account, container) = match url.scheme() {
        "az" | "adl" | "azure" | "abfs" | "abfss" if url.username().is_empty() => (None, host),
        "az" | "abfs" | "abfss" => (Some(account_of(&host)?), url.username().to_owned()),
        "https" => {
            let account = account_of(&host)?;
            (Some(account), (!parts.is_empty()).then(|| parts.remove(0))?)
        }
        _ => return None,
    };
    Some(Place::Azure {
        account,
        container: container.to_ascii_lowercase(),
        parts,
    })
}

/// `path` made absolute, `.` and `..` resolved lexically, then through the real path of
/// its longest existing ancestor (which resolves symbolic links).
fn local(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut lexical = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.as_path();
    while !existing.exists()
        && let Some(parent) = existing.parent()
    {
        existing = parent;
    }
    let rest = lexical.strip_prefix(existing).unwrap_or(Path::new(""));
    match existing.canonicalize() {
        Ok(real) if rest.as_os_str().is_empty() => real,
        Ok(real) => real.join(rest),
        Err(_) => lexical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_compare_after_normalising() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        std::fs::create_dir(dir.path().join("lake")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("lake"), dir.path().join("link")).unwrap();
        let cases = [
            (
                format!("{root}/lake"),
                format!("{root}/lake/"),
                Some(Overlap::Same),
            ),
            (
                format!("{root}/lake/./"),
                format!("file://{root}/lake"),
                Some(Overlap::Same),
            ),
            (
                format!("{root}/link"),
                format!("{root}/lake"),
                Some(Overlap::Same),
            ),
            (
                format!("{root}/lake/raw"),
                format!("{root}/lake"),
                Some(Overlap::Inside),
            ),
            (
                format!("{root}/link/new/raw"),
                format!("{root}/lake"),
                Some(Overlap::Inside),
            ),
            (
                root.to_string(),
                format!("{root}/lake"),
                Some(Overlap::Contains),
            ),
            (
                format!("{root}/new/../lake"),
                format!("{root}/lake"),
                Some(Overlap::Same),
            ),
            (format!("{root}/lake2"), format!("{root}/lake"), None),
            (format!("{root}/raw"), format!("{root}/lake"), None),
            (format!("{root}/lake"), "s3://bucket/lake".into(), None),
        ];
        for (a, b, expected) in cases {
            assert_eq!(overlap(&a, &b), expected, "{a} vs {b}");
        }
    }

    #[test]
    fn relative_paths_are_taken_from_the_working_folder() {
        let here = std::env::current_dir().unwrap();
        let lake = format!("{}/lake", here.display());
        assert_eq!(overlap("./lake", &lake), Some(Overlap::Same));
        assert_eq!(overlap("lake/raw", "./lake"), Some(Overlap::Inside));
    }

    #[test]
    fn object_store_urls_compare_by_bucket_and_prefix() {
        let cases = [
            (
                "s3://bucket/teams",
                "s3://bucket/teams/",
                Some(Overlap::Same),
            ),
            (
                "s3a://Bucket/teams",
                "s3://bucket/teams",
                Some(Overlap::Same),
            ),
            (
                "s3://bucket/teams/raw",
                "s3://bucket/teams",
                Some(Overlap::Inside),
            ),
            ("s3://bucket", "s3://bucket/teams", Some(Overlap::Contains)),
            ("s3://bucket/teams2", "s3://bucket/teams", None),
            ("s3://other/teams", "s3://bucket/teams", None),
            ("gs://bucket/teams", "s3://bucket/teams", None),
            (
                "abfss://lake@acct.dfs.core.windows.net/teams/raw",
                "abfss://lake@acct.dfs.core.windows.net/teams",
                Some(Overlap::Inside),
            ),
            (
                "abfss://raw@acct.dfs.core.windows.net/teams",
                "abfss://lake@acct.dfs.core.windows.net/teams",
                None,
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(overlap(a, b), expected, "{a} vs {b}");
        }
    }

    #[test]
    fn azure_spellings_of_one_place_are_recognised() {
        let cases = [
            (
                "az://lake/teams/raw",
                "abfss://lake@acct.dfs.core.windows.net/teams",
                Some(Overlap::Inside),
            ),
            (
                "https://acct.blob.core.windows.net/lake/teams",
                "abfss://Lake@ACCT.dfs.core.windows.net/teams/",
                Some(Overlap::Same),
            ),
            (
                "abfs://lake/teams",
                "azure://lake/teams/raw",
                Some(Overlap::Contains),
            ),
            (
                "abfss://ws@onelake.dfs.fabric.microsoft.com/item/Files",
                "https://onelake.dfs.fabric.microsoft.com/ws/item/Files/raw",
                Some(Overlap::Contains),
            ),
            // Another account, another container, or a bare account URL: apart.
            (
                "abfss://lake@other.dfs.core.windows.net/teams",
                "abfss://lake@acct.dfs.core.windows.net/teams",
                None,
            ),
            ("az://raw/teams", "az://lake/teams", None),
            ("https://acct.blob.core.windows.net", "az://lake", None),
            // Not Azure hosts: compared as any other URL.
            ("https://example.com/lake", "az://lake", None),
        ];
        for (a, b, expected) in cases {
            assert_eq!(overlap(a, b), expected, "{a} vs {b}");
        }
    }
}
