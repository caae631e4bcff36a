//! The OData side of the Graph protocol as the emulator speaks it: query options
//! (`$filter` on startDateTime, `$expand`, `$skiptoken`), the `Prefer: odata.maxpagesize`
//! header, tamper-evident skip tokens, page slicing and the Graph error body.
//! Pure request/response helpers; touches nothing else.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::tenant::values::fnv1a;

/// A Graph error: `{"error":{"code":..,"message":..,"innerError":{..}}}` with a status.
#[derive(Debug)]
pub struct GraphError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl GraphError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "BadRequest",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "NotFound",
            message: message.into(),
        }
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "BadRequest",
            message: message.into(),
        }
    }

    /// Throttled: Graph's 429 body (the caller adds `Retry-After`).
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "TooManyRequests",
            message: message.into(),
        }
    }

    /// A transient failure of the service (500, 502, 503 or 504) with Graph's code for it.
    pub fn server_error(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::INTERNAL_SERVER_ERROR => {
                ("generalException", "An unspecified error has occurred.")
            }
            StatusCode::BAD_GATEWAY => ("BadGateway", "The gateway received an invalid response."),
            StatusCode::SERVICE_UNAVAILABLE => (
                "serviceNotAvailable",
                "The service is temporarily unavailable. Retry the request after a delay.",
            ),
            _ => ("GatewayTimeout", "The service did not answer in time."),
        };
        Self {
            status,
            code,
            message: message.to_owned(),
        }
    }

    pub fn invalid_token() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "InvalidAuthenticationToken",
            message: "Access token has expired or is not yet valid.".to_owned(),
        }
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": uuid::Uuid::new_v4().to_string(),
                    "client-request-id": uuid::Uuid::new_v4().to_string(),
                },
            }
        });
        (self.status, Json(body)).into_response()
    }
}

/// The `$`-prefixed query options of one request, decoded.
#[derive(Debug, Default)]
pub struct QueryOptions {
    options: Vec<(String, String)>,
}

impl QueryOptions {
    /// Decodes the raw query (`+` and `%20` both mean space, as in Graph) and rejects
    /// options the endpoint does not support and repeated options, as Graph does; other
    /// (non-`$`) parameters are ignored.
    pub fn parse(raw_query: Option<&str>, supported: &[&str]) -> Result<Self, GraphError> {
        let mut options: Vec<(String, String)> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes()) {
            if !name.starts_with('$') {
                continue;
            }
            if !supported.contains(&name.as_ref()) {
                return Err(GraphError::bad_request(format!(
                    "Query option '{name}' is not supported by this request."
                )));
            }
            if options.iter().any(|(seen, _)| *seen == name) {
                return Err(GraphError::bad_request(format!(
                    "Query option '{name}' was specified more than once, but it must be specified at most once."
                )));
            }
            options.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self { options })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(option, _)| option == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The `startDateTime` bounds of a list `$filter`; a missing side is open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartTimeFilter {
    /// Inclusive lower bound.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub to: Option<DateTime<Utc>>,
}

/// Parses `startDateTime (ge|gt|le|lt) <DateTimeOffset> [and startDateTime (..) <..>]`,
/// the only list filter on time Graph supports. Literals are unquoted RFC 3339.
pub fn parse_start_time_filter(filter: &str) -> Result<StartTimeFilter, GraphError> {
    let invalid = || {
        GraphError::bad_request(format!(
            "Invalid filter clause: the emulator supports only 'startDateTime (ge|gt|le|lt) <DateTimeOffset>', \
             optionally twice joined by 'and'; got '{filter}'."
        ))
    };
    let tokens: Vec<&str> = filter.split_whitespace().collect();
    let conditions: Vec<&[&str]> = match tokens.len() {
        3 => vec![&tokens[..]],
        7 if tokens[3] == "and" => vec![&tokens[..3], &tokens[4..]],
        _ => return Err(invalid()),
    };
    let mut bounds = StartTimeFilter::default();
    for condition in conditions {
        let [property, operator, literal] = condition else {
            return Err(invalid());
        };
        if *property != "startDateTime" {
            return Err(invalid());
        }
        let instant = DateTime::parse_from_rfc3339(literal)
            .map_err(|_| invalid())?
            .with_timezone(&Utc);
        // Bounds are kept half-open; one nanosecond is below Graph's 100 ns resolution.
        let just_after = instant + TimeDelta::nanoseconds(1);
        match *operator {
            "ge" => bounds.from = bounds.from.max(Some(instant)),
            "gt" => bounds.from = bounds.from.max(Some(just_after)),
            "lt" => bounds.to = Some(bounds.to.map_or(instant, |to| to.min(instant))),
            "le" => bounds.to = Some(bounds.to.map_or(just_after, |to| to.min(just_after))),
            _ => return Err(invalid()),
        }
    }
    Ok(bounds)
}

/// The page size a request asks for with `Prefer: odata.maxpagesize=N`, if it is below the
/// endpoint's `max` (larger requests get `max`, as in Graph).
pub fn preferred_page_size(headers: &HeaderMap, max: usize) -> Option<usize> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| preference.trim().strip_prefix("odata.maxpagesize="))
        .filter_map(|size| size.trim().parse::<usize>().ok())
        .find(|size| (1..max).contains(size))
}

/// Opaque continuation tokens: hex of the integers they carry plus a checksum bound to the
/// collection they page, so garbage or a token from another collection is a clean 400.
pub struct SkipToken;

impl SkipToken {
    pub fn encode(scope: &str, values: &[i64]) -> String {
        let text = values
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(".");
        let payload: String = text.bytes().map(|byte| format!("{byte:02x}")).collect();
        format!("{payload}{:016x}", checksum(scope, &text))
    }

    pub fn decode(
        token: &str,
        scope: &str,
        expected_values: usize,
    ) -> Result<Vec<i64>, GraphError> {
        let invalid = || {
            GraphError::bad_request(format!(
                "The $skiptoken '{token}' is not valid for this request."
            ))
        };
        if token.len() <= 16 || !token.len().is_multiple_of(2) || !token.is_ascii() {
            return Err(invalid());
        }
        let (payload, check) = token.split_at(token.len() - 16);
        let bytes = (0..payload.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&payload[at..at + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        if u64::from_str_radix(check, 16).ok() != Some(checksum(scope, &text)) {
            return Err(invalid());
        }
        let values = text
            .split('.')
            .map(str::parse::<i64>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| invalid())?;
        if values.len() == expected_values {
            Ok(values)
        } else {
            Err(invalid())
        }
    }
}

/// FNV-1a over scope and text: detects corruption and cross-collection reuse (not a
/// security boundary; the emulator has no secrets worth forging tokens for).
fn checksum(scope: &str, text: &str) -> u64 {
    fnv1a(scope.bytes().chain([0]).chain(text.bytes()))
}

/// The items of one page and the offset of the next page, if any.
pub fn page<T>(items: &[T], offset: usize, size: usize) -> (&[T], Option<usize>) {
    let start = offset.min(items.len());
    let end = start.saturating_add(size).min(items.len());
    (&items[start..end], (end < items.len()).then_some(end))
}

/// Percent-encodes a query value (skip tokens are hex today, but links are followed verbatim).
pub fn encode_query_value(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn filter_accepts_graph_style_windows() {
        let window = parse_start_time_filter(
            "startDateTime ge 2026-11-20T00:00:00Z and startDateTime lt 2026-11-21T01:00:00.1234567+01:00",
        )
        .unwrap();
        assert_eq!(window.from, Some(at("2026-11-20T00:00:00Z")));
        assert_eq!(window.to, Some(at("2026-11-21T00:00:00.1234567Z")));
        let window = parse_start_time_filter("startDateTime le 2026-11-20T00:00:00Z").unwrap();
        assert_eq!(window.from, None);
        assert_eq!(window.to, Some(at("2026-11-20T00:00:00.000000001Z")));
    }

    #[test]
    fn filter_rejects_everything_else() {
        for filter in [
            "",
            "endDateTime ge 2026-11-20T00:00:00Z",
            "startDateTime eq 2026-11-20T00:00:00Z",
            "startDateTime ge '2026-11-20T00:00:00Z'",
            "startDateTime ge 2026-11-20",
            "startDateTime ge 2026-11-20T00:00:00Z or startDateTime lt 2026-11-21T00:00:00Z",
            "participants_v2/any(p:p/id eq '821809f5-0000-0000-0000-3b5136c0e777')",
        ] {
            assert!(parse_start_time_filter(filter).is_err(), "{filter}");
        }
    }

    #[test]
    fn skip_tokens_round_trip_and_reject_tampering() {
        let token = SkipToken::encode("list", &[1, -2, 300]);
        assert_eq!(
            SkipToken::decode(&token, "list", 3).unwrap(),
            vec![1, -2, 300]
        );
        assert!(SkipToken::decode(&token, "sessions", 3).is_err());
        assert!(SkipToken::decode(&token, "list", 2).is_err());
        assert!(SkipToken::decode("abc", "list", 3).is_err());
        assert!(SkipToken::decode("zz00000000000000000000", "list", 1).is_err());
        assert!(SkipToken::decode(&token.replace('3', "4"), "list", 3).is_err());
    }
}
