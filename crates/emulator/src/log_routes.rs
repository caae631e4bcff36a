//! The HTTP side of the log functions: parsing a function-call segment
//! (`getPstnCalls(fromDateTime=2026-11-01,toDateTime=2026-11-02T12:00:00Z)`, names and keys
//! case-insensitive, values a date or an RFC 3339 time), Graph's rules on top of
//! [`LogTenant::rows`](super::LogTenant::rows) (each function's inclusive or exclusive
//! `toDateTime`, at most 90 days, `$filter` ignored by `getDirectRoutingCalls` and refused by
//! the others, beta-only functions unknown on v1.0) and `$skip` paging by 1000 with
//! `@odata.count` counting the rows of the page.
//! Touches only the emulator's shared state.

use axum::Json;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::json;

use super::odata::{GraphError, QueryOptions, page};
use super::routes::EmulatorState;
use super::{ApiVersion, LogFunction};

/// Rows per page, as Graph serves them.
const PAGE_SIZE: usize = 1000;
/// The longest range one call may ask for.
const MAX_RANGE: TimeDelta = TimeDelta::days(90);

/// A parsed `name(fromDateTime=…,toDateTime=…)` segment.
#[derive(Debug)]
pub struct FunctionCall {
    function: LogFunction,
    from: Parameter,
    to: Parameter,
}

/// A function parameter: its instant and its text as given (for the nextLink).
#[derive(Debug)]
struct Parameter {
    time: DateTime<Utc>,
    text: String,
}

impl FunctionCall {
    /// The call a `callRecords/{segment}` names, `None` if the segment is no function call
    /// (then it is a call record id). Unknown functions, and beta-only ones on v1.0, are the
    /// 400 Graph gives for an unknown segment.
    pub fn parse(segment: &str, version: ApiVersion) -> Result<Option<Self>, GraphError> {
        let segment = segment.trim();
        let (name, arguments) = match segment.split_once('(') {
            Some((name, arguments)) => (name.trim(), Some(arguments)),
            None if LogFunction::from_name(segment).is_some() => (segment, None),
            None => return Ok(None),
        };
        let function = LogFunction::from_name(name)
            .filter(|function| function.is_available_in(version))
            .ok_or_else(|| {
                GraphError::bad_request(format!("Resource not found for the segment '{name}'."))
            })?;
        let arguments = arguments
            .and_then(|arguments| arguments.trim_end().strip_suffix(')'))
            .ok_or_else(|| {
                GraphError::bad_request(format!(
                    "The function '{name}' takes the parameters fromDateTime and toDateTime, \
                     as in {name}(fromDateTime=2026-11-01,toDateTime=2026-11-02)."
                ))
            })?;
        let (mut from, mut to) = (None, None);
        for argument in arguments.split(',') {
            let (key, value) = argument.split_once('=').ok_or_else(|| {
                GraphError::bad_request(format!(
                    "The function parameter '{}' has no value.",
                    argument.trim()
                ))
            })?;
            let key = key.trim();
            let slot = if key.eq_ignore_ascii_case("fromDateTime") {
                &mut from
            } else if key.eq_ignore_ascii_case("toDateTime") {
                &mut to
            } else {
                return Err(GraphError::bad_request(format!(
                    "The function '{name}' has no parameter '{key}'; it takes fromDateTime and toDateTime."
                )));
            };
            if slot.is_some() {
                return Err(GraphError::bad_request(format!(
                    "The function parameter '{key}' is given more than once."
                )));
            }
            *slot = Some(Parameter::parse(key, value)?);
        }
        let missing = |key: &str| {
            GraphError::bad_request(format!(
                "The function '{name}' needs the parameter '{key}'."
            ))
        };
        let from = from.ok_or_else(|| missing("fromDateTime"))?;
        let to = to.ok_or_else(|| missing("toDateTime"))?;
        if to.time < from.time {
            return Err(GraphError::bad_request(format!(
                "toDateTime ({}) is before fromDateTime ({}).",
                to.text, from.text
            )));
        }
        // The real service is documented to answer 406 here in one place (a docs pull
        // request) and 400 in others; 400 is what a client sees for every other bad
        // argument, so the emulator answers 400.
        if to.time - from.time > MAX_RANGE {
            return Err(GraphError::bad_request(format!(
                "The date range from fromDateTime ({}) to toDateTime ({}) may not exceed 90 days.",
                from.text, to.text
            )));
        }
        Ok(Some(Self { function, from, to }))
    }
}

impl Parameter {
    /// A date (`2026-11-01`, midnight UTC) or an RFC 3339 time (`2026-11-01T12:00:00.1234567Z`),
    /// optionally in single quotes.
    fn parse(key: &str, value: &str) -> Result<Self, GraphError> {
        let text = value.trim();
        let text = text
            .strip_prefix('\'')
            .and_then(|quoted| quoted.strip_suffix('\''))
            .unwrap_or(text);
        let time = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .map(|midnight| midnight.and_utc())
            .or_else(|| {
                DateTime::parse_from_rfc3339(text)
                    .ok()
                    .map(|time| time.with_timezone(&Utc))
            })
            .ok_or_else(|| {
                GraphError::bad_request(format!(
                    "The parameter '{}' has the invalid value '{text}': expected a date \
                     (2026-11-01) or a UTC time (2026-11-01T00:00:00Z).",
                    key.trim()
                ))
            })?;
        Ok(Self {
            time,
            text: text.to_owned(),
        })
    }
}

/// One page of a log function's rows.
pub fn respond(
    state: &EmulatorState,
    version: ApiVersion,
    call: &FunctionCall,
    query: Option<&str>,
) -> Result<Response, GraphError> {
    let function = call.function;
    // getDirectRoutingCalls accepts and ignores $filter (microsoftgraph/microsoft-graph-docs
    // #12668): clients must filter themselves, and the emulator makes them.
    let supported: &[&str] = if function == LogFunction::DirectRoutingCalls {
        &["$skip", "$filter"]
    } else {
        &["$skip"]
    };
    let options = QueryOptions::parse(query, supported)?;
    let skip = match options.get("$skip") {
        None => 0,
        Some(skip) => skip.trim().parse::<usize>().map_err(|_| {
            GraphError::bad_request(format!(
                "Invalid value '{skip}' for $skip: expected a non-negative integer."
            ))
        })?,
    };
    // Rows are 100 ns ticks, so one nanosecond past `to` makes the half-open window inclusive.
    let end = if function.includes_to() {
        call.to.time + TimeDelta::nanoseconds(1)
    } else {
        call.to.time
    };
    let rows = state.log_rows(function, version, call.from.time, end);
    let (items, next_skip) = page(&rows, skip, PAGE_SIZE);
    let base = format!("{}/{}", state.base_url, version.segment());
    let mut body = json!({
        "@odata.context": format!(
            "{base}/$metadata#Collection(microsoft.graph.callRecords.{})",
            function.row_type()
        ),
        "@odata.count": items.len(),
        "value": items,
    });
    if let Some(next_skip) = next_skip {
        body["@odata.nextLink"] = json!(format!(
            "{base}/communications/callRecords/{}(fromDateTime={},toDateTime={})?$skip={next_skip}",
            function.name(),
            call.from.text,
            call.to.text
        ));
    }
    Ok(Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(segment: &str) -> Result<Option<FunctionCall>, GraphError> {
        FunctionCall::parse(segment, ApiVersion::Beta)
    }

    #[test]
    fn parses_dates_times_and_odd_spellings() {
        let call = parse(
            " GETPSTNCALLS( toDateTime = '2026-11-20T12:30:00.1234567Z' ,fromdatetime=2026-11-01)",
        )
        .unwrap()
        .unwrap();
        assert_eq!(call.function, LogFunction::PstnCalls);
        assert_eq!(call.from.time.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(call.from.text, "2026-11-01");
        assert_eq!(call.to.text, "2026-11-20T12:30:00.1234567Z");
        assert_eq!(
            call.to.time.timestamp_subsec_nanos(),
            123_456_700,
            "7 fractional digits"
        );
        assert!(
            parse("0a1b2c3d-0000-4000-8000-000000000000")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn rejects_what_graph_rejects() {
        for segment in [
            "getPstnCalls",
            "getPstnCalls(fromDateTime=2026-11-01)",
            "getPstnCalls(fromDateTime=2026-11-01,toDateTime=2026-11-01,toDateTime=2026-11-02)",
            "getPstnCalls(from=2026-11-01,to=2026-11-02)",
            "getPstnCalls(fromDateTime=2026-11-02,toDateTime=2026-11-01)",
            "getPstnCalls(fromDateTime=2026-01-01,toDateTime=2026-04-02)",
            "getPstnCalls(fromDateTime=yesterday,toDateTime=2026-11-02)",
            "getPstnCalls(fromDateTime=2026-11-01,toDateTime=2026-11-02",
            "getPstnCallz(fromDateTime=2026-11-01,toDateTime=2026-11-02)",
        ] {
            assert!(parse(segment).is_err(), "{segment}");
        }
        // Exactly 90 days is allowed.
        assert!(
            parse("getPstnCalls(fromDateTime=2026-01-01,toDateTime=2026-04-01)")
                .unwrap()
                .is_some()
        );
        let v1 = FunctionCall::parse(
            "getSmsLog(fromDateTime=2026-11-01,toDateTime=2026-11-02)",
            ApiVersion::V1,
        );
        assert!(v1.is_err());
    }
}
