//! Where the command line meets the configuration: the overrides of `export` and `check`
//! laid over [`Settings`], the streams chosen, and the lake and raw zone parsed into
//! locations that must lie apart. Everything refused here is a usage error
//! ([`UsageError`]), found before any request. Makes no request and writes nothing.

use std::collections::BTreeMap;

use super::{ReflattenSettings, Settings, check_raw_privacy};
use crate::commit::TableFormat;
use crate::graph::{ApiVersion, ClientSettings};
use crate::privacy::Privacy;
use crate::quality::Derivation;
use crate::store::{self, Location, Overlap, StoreError};
use crate::streams::{StreamKind, UnknownStream};

/// What the command line says over the configuration; `None` keeps the configured value.
#[derive(Debug, Default)]
pub struct Overrides {
    /// `--api-version` over `[graph] api_version`.
    pub api_version: Option<ApiVersion>,
    /// `--streams`: the streams to export (default: every stream the API version offers).
    pub streams: Option<Vec<String>>,
    /// `--out` over `[output] path`.
    pub out: Option<String>,
    /// `--raw` over `[raw] path`.
    pub raw: Option<String>,
    /// `--concurrency` over `[export] concurrency`.
    pub concurrency: Option<usize>,
    /// `--format` over `[output] format`.
    pub format: Option<TableFormat>,
}

/// The settings of one export: the configuration with the command line's overrides, the
/// streams chosen and the locations parsed.
#[derive(Debug)]
pub struct ExportSettings {
    pub graph: ClientSettings,
    pub streams: Vec<StreamKind>,
    pub output: Location,
    /// How the tables are written: `--format` or `[output] format`.
    pub format: TableFormat,
    pub raw: Option<Location>,
    pub concurrency: usize,
    pub lookback_days: u32,
    pub log_chunk_days: u32,
    pub max_window_days: u32,
    pub privacy: Privacy,
    pub derivation: Derivation,
}

/// A command line that cannot work with the configuration (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{0}")]
    UnknownStream(UnknownStream),
    #[error(
        "--streams {0}: Graph offers this log only on its beta endpoint; set [graph] api_version = \"beta\" \
         (or pass --api-version beta) to export it"
    )]
    BetaOnly(String),
    #[error("--streams is empty: name at least one stream")]
    NoStreams,
    /// The lake (`--out` or `[output] path`) is not a usable location.
    #[error("{0}")]
    Output(Box<StoreError>),
    /// The raw zone (`--raw` or `[raw] path`) is not a usable location.
    #[error("[raw] path: {0}")]
    Raw(Box<StoreError>),
    /// A location given by `flag` is not usable.
    #[error("{flag}: {error}")]
    Location {
        flag: &'static str,
        error: Box<StoreError>,
    },
    #[error(
        "the raw zone {raw} ({raw_source}) {relation} the output {out} ({out_source}): use separate \
         folders, neither inside the other (such as ./raw and ./lake)"
    )]
    Overlap {
        raw: String,
        raw_source: String,
        relation: &'static str,
        out: String,
        out_source: String,
    },
    /// A raw zone with hashed or dropped personal data, not allowed explicitly.
    #[error("{0}")]
    RawPrivacy(String),
}

impl Settings {
    /// The settings of one export run: `overrides` laid over these settings. A raw zone set
    /// by the command line meets the same privacy rule as `[raw] path` did in [`super::validate`].
    pub fn resolve(mut self, overrides: Overrides) -> Result<ExportSettings, UsageError> {
        let streams = self.resolve_streams(overrides.api_version, overrides.streams)?;
        let raw_from_command_line = overrides.raw.is_some();
        let out = overrides.out.unwrap_or(self.output);
        let raw_location = overrides.raw.or(self.raw);
        let output = Location::parse(&out, &self.output_options)
            .map_err(|error| UsageError::Output(Box::new(error)))?;
        let raw = raw_location
            .as_deref()
            .map(|raw| Location::parse(raw, &self.output_options))
            .transpose()
            .map_err(|error| UsageError::Raw(Box::new(error)))?;
        if let Some(raw) = &raw_location {
            check_apart(
                (raw, "--raw or [raw] path"),
                (&out, "--out or [output] path"),
            )?;
        }
        if raw_from_command_line {
            check_raw_privacy(&self.privacy, self.raw_allows_personal_data)
                .map_err(UsageError::RawPrivacy)?;
        }
        Ok(ExportSettings {
            graph: self.graph,
            streams,
            output,
            format: overrides.format.unwrap_or(self.output_format),
            raw,
            concurrency: overrides.concurrency.unwrap_or(self.concurrency),
            lookback_days: self.lookback_days,
            log_chunk_days: self.log_chunk_days,
            max_window_days: self.max_window_days,
            privacy: self.privacy,
            derivation: self.derivation,
        })
    }

    /// What `check` overrides: `--api-version` over `[graph] api_version`, then the streams
    /// it offers, or those of `--streams`.
    pub fn resolve_streams(
        &mut self,
        api_version: Option<ApiVersion>,
        streams: Option<Vec<String>>,
    ) -> Result<Vec<StreamKind>, UsageError> {
        if let Some(version) = api_version {
            self.graph.api_version = version;
        }
        select_streams(streams, self.graph.api_version)
    }
}

impl ReflattenSettings {
    /// The lake of `maintain`: `--out` over `[output] path`.
    pub fn lake(&self, out: Option<&str>) -> Result<Location, UsageError> {
        self.location("--out or [output] path", out.unwrap_or(&self.output))
    }

    /// How the rebuilt tables are written: `--format` over `[output] format`.
    pub fn format(&self, flag: Option<TableFormat>) -> TableFormat {
        flag.unwrap_or(self.output_format)
    }

    /// The location `flag` names. `[output.options]` are the export's lake's: they apply to
    /// object-store URLs, and a local copy (of the raw zone, say) takes none.
    pub fn location(&self, flag: &'static str, location: &str) -> Result<Location, UsageError> {
        let no_options = BTreeMap::new();
        let options = match location.contains("://") {
            true => &self.output_options,
            false => &no_options,
        };
        Location::parse(location, options).map_err(|error| UsageError::Location {
            flag,
            error: Box::new(error),
        })
    }
}

/// The streams to export: by default every stream `api_version` offers; a beta-only stream
/// on v1.0 is refused, never skipped.
pub fn select_streams(
    requested: Option<Vec<String>>,
    api_version: ApiVersion,
) -> Result<Vec<StreamKind>, UsageError> {
    let beta = api_version == ApiVersion::Beta;
    let Some(names) = requested else {
        return Ok(StreamKind::ALL
            .into_iter()
            .filter(|s| beta || !s.beta_only())
            .collect());
    };
    let mut streams = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let stream: StreamKind = name.parse().map_err(UsageError::UnknownStream)?;
        if stream.beta_only() && !beta {
            return Err(UsageError::BetaOnly(name.to_owned()));
        }
        if !streams.contains(&stream) {
            streams.push(stream);
        }
    }
    if streams.is_empty() {
        return Err(UsageError::NoStreams);
    }
    Ok(streams)
}

/// The raw zone (or raw input) and the lake must be apart: a run replaces partitions and
/// removes stale staging under its output, which must not touch the raw files, and the
/// reverse. Each is `(location, the flag or key that set it)`.
pub fn check_apart(raw: (&str, &str), out: (&str, &str)) -> Result<(), UsageError> {
    let relation = match store::overlap(raw.0, out.0) {
        None => return Ok(()),
        Some(Overlap::Same) => "is the same folder as",
        Some(Overlap::Inside) => "lies inside",
        Some(Overlap::Contains) => "contains",
    };
    Err(UsageError::Overlap {
        raw: raw.0.to_owned(),
        raw_source: raw.1.to_owned(),
        relation,
        out: out.0.to_owned(),
        out_source: out.1.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(streams: &[StreamKind]) -> Vec<&'static str> {
        streams.iter().map(|s| s.name()).collect()
    }

    #[test]
    fn streams_default_to_what_the_api_version_offers() {
        let v1 = select_streams(None, ApiVersion::V1).unwrap();
        assert!(v1.iter().all(|s| !s.beta_only()), "{:?}", names(&v1));
        let beta = select_streams(None, ApiVersion::Beta).unwrap();
        assert_eq!(beta.len(), StreamKind::ALL.len());
    }

    #[test]
    fn requested_streams_are_deduplicated_and_checked() {
        let list = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
        let chosen = select_streams(
            list(&["pstn_calls", " call_records", "pstn_calls"]),
            ApiVersion::V1,
        );
        assert_eq!(names(&chosen.unwrap()), ["pstn_calls", "call_records"]);
        let beta_only = select_streams(list(&["sms_logs"]), ApiVersion::V1).unwrap_err();
        assert!(
            beta_only
                .to_string()
                .starts_with("--streams sms_logs: Graph offers")
        );
        assert!(select_streams(list(&["sms_logs"]), ApiVersion::Beta).is_ok());
        let empty = select_streams(list(&[" ", ""]), ApiVersion::V1).unwrap_err();
        assert_eq!(
            empty.to_string(),
            "--streams is empty: name at least one stream"
        );
        assert!(matches!(
            select_streams(list(&["calls"]), ApiVersion::V1),
            Err(UsageError::UnknownStream(_))
        ));
    }

    #[test]
    fn a_raw_zone_inside_the_lake_is_refused_naming_both() {
        let error = check_apart(("./lake/raw", "--raw"), ("./lake", "--out")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the raw zone ./lake/raw (--raw) lies inside the output ./lake (--out): use separate \
             folders, neither inside the other (such as ./raw and ./lake)"
        );
        assert!(check_apart(("./raw", "--raw"), ("./lake", "--out")).is_ok());
    }
}
