//! Quarantine: records a run could not read, kept aside instead of exported, in
//! `<lake>/_rejected/<run_id>/<stream>.jsonl`, and listed in the run's summary.
//!
//! May touch: the run's folder under the lake's `_rejected/`.
//! Knows nothing of Graph (it is handed what was received) or of the tables.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use crate::redact::redact;
use crate::store::{LineLog, Location};
use crate::streams::StreamKind;

/// Where quarantined records go: `<out>/_rejected/<run_id>/<stream>.jsonl`.
pub const REJECTED_DIR: &str = "_rejected";

/// A record that could not be read and was quarantined instead of exported.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedRecord {
    pub stream: String,
    pub id: String,
    pub url: String,
    pub error: String,
}

/// Records that could not be read: `<out>/_rejected/<run_id>/<stream>.jsonl`, one JSON
/// object per record with its id, the URL, the error and the body as received. Each record
/// is durable before the run goes on ([`LineLog`]).
pub struct Quarantine {
    output: Location,
    /// `_rejected/<run_id>`, relative to the output root.
    dir: String,
    files: BTreeMap<&'static str, LineLog>,
    rejected: Vec<RejectedRecord>,
}

impl Quarantine {
    pub fn new(out: &Location, run_id: &str) -> Self {
        Quarantine {
            output: out.clone(),
            dir: format!("{REJECTED_DIR}/{run_id}"),
            files: BTreeMap::new(),
            rejected: Vec::new(),
        }
    }

    /// Quarantines one record, durably, and logs why.
    pub async fn reject(
        &mut self,
        stream: StreamKind,
        id: &str,
        url: &str,
        error: &str,
        body: &str,
    ) -> anyhow::Result<()> {
        // What a server sent back may quote a token or a signed URL.
        let (url, error, body) = (&*redact(url, &[]), &*redact(error, &[]), redact(body, &[]));
        let dir = self.output.display_path(&self.dir);
        tracing::error!(
            stream = stream.name(),
            id,
            url,
            "Record {id} could not be read ({error}); quarantined in {dir} and left out of the tables."
        );
        let relative = format!("{}/{}.jsonl", self.dir, stream.name());
        let log = match self.files.entry(stream.name()) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(
                self.output
                    .line_log(&relative)
                    .with_context(|| format!("cannot quarantine record {id} in {dir}"))?,
            ),
        };
        let line = json!({"id": id, "url": url, "error": error, "body": body});
        log.append(line.to_string().as_bytes())
            .await
            .with_context(|| format!("cannot quarantine record {id} in {dir}"))?;
        self.rejected.push(RejectedRecord {
            stream: stream.name().into(),
            id: id.into(),
            url: url.into(),
            error: error.into(),
        });
        Ok(())
    }

    /// The records quarantined so far.
    pub fn rejected(&self) -> &[RejectedRecord] {
        &self.rejected
    }

    /// A run that publishes nothing keeps no quarantine either: its rerun fetches again.
    pub async fn discard(self) {
        if self.files.is_empty() {
            return;
        }
        let _ = self.output.remove_all(&self.dir).await;
    }
}
