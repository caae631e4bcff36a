//! The emulator's router and Graph handlers: list callRecords (with `$filter` windows and
//! `$skiptoken` paging), get one callRecord (with one `$expand` relationship and in-entity
//! nextLinks), and the sessions and participants_v2 collections; log function calls share
//! the `{id}` route and go to `log_routes`. Every link is absolute, built from the server's
//! own base URL. Also records every request for tests, with any fault injected.
//! Touches only the emulator's shared state.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::auth::{self, TokenStore};
use super::faults::FaultLedger;
use super::gate::{self, Dropped, Injected};
use super::limits::Limiter;
use super::log_routes;
use super::memo::Memo;
use super::odata::{
    GraphError, QueryOptions, SkipToken, encode_query_value, page, parse_start_time_filter,
    preferred_page_size,
};
use super::{ApiVersion, EmulatorConfig, LogFunction, LogTenant, RecordedRequest, Tenant};

/// Graph's maximum (and default) page size of the callRecords list.
const LIST_PAGE_SIZE: usize = 60;
/// Sessions per page, expanded or listed.
const SESSIONS_PAGE_SIZE: usize = 60;
/// Participants per page, expanded or listed.
const PARTICIPANTS_PAGE_SIZE: usize = 130;
/// Graph keeps call records for 30 days; an unfiltered list covers that much.
const RETENTION: TimeDelta = TimeDelta::days(30);

/// State shared by all handlers and the [`super::RunningEmulator`] handle.
#[derive(Clone)]
pub struct EmulatorState(Arc<Shared>);

pub struct Shared {
    pub config: EmulatorConfig,
    pub tenant: Tenant,
    pub logs: LogTenant,
    /// `http://127.0.0.1:PORT`, the prefix of every link the emulator hands out.
    pub base_url: String,
    pub tokens: TokenStore,
    /// Every request answered, in the order the answers were produced.
    pub requests: Mutex<Vec<RecordedRequest>>,
    /// When the emulator started (the zero of [`RecordedRequest::received`]).
    pub started: tokio::time::Instant,
    /// Per-URL attempt numbers and fault counters.
    pub ledger: FaultLedger,
    /// Graph's limits, when enforced.
    pub limiter: Option<Limiter>,
    /// Recently listed windows: paging through one costs one generation, not one per page.
    lists: Memo<(DateTime<Utc>, DateTime<Utc>), Vec<Value>>,
    /// Recently called log functions, for the same reason.
    log_rows: Memo<LogQuery, Vec<Value>>,
    /// Recently loaded records: paging through a record's sessions and participants costs
    /// one generation, not one per page (a huge record has hundreds of pages).
    records: Memo<String, Option<Arc<LoadedRecord>>>,
}

/// One log function call, as the rows it selects.
#[derive(PartialEq)]
struct LogQuery {
    function: LogFunction,
    version: ApiVersion,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl EmulatorState {
    pub fn new(config: EmulatorConfig, base_url: String) -> Self {
        Self(Arc::new(Shared {
            tenant: Tenant::new(config.seed, config.calls_per_day)
                .with_large_meeting(config.large_meeting_attendees),
            logs: LogTenant::for_config(&config),
            limiter: config
                .enforce_limits
                .then(|| Limiter::new(config.limits.clone())),
            config,
            base_url,
            tokens: TokenStore::default(),
            requests: Mutex::default(),
            started: tokio::time::Instant::now(),
            ledger: FaultLedger::default(),
            lists: Memo::new(2),
            log_rows: Memo::new(2),
            records: Memo::new(8),
        }))
    }
}

impl Shared {
    fn list(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Arc<Vec<Value>> {
        self.lists
            .get_or_make((from, to), || self.tenant.list(from, to))
    }

    /// The rows of `function` in `version` for `[from, to)`.
    pub fn log_rows(
        &self,
        function: LogFunction,
        version: ApiVersion,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Arc<Vec<Value>> {
        let query = LogQuery {
            function,
            version,
            from,
            to,
        };
        self.log_rows
            .get_or_make(query, || self.logs.rows(function, version, from, to))
    }

    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Deref for EmulatorState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub fn router(state: EmulatorState) -> Router {
    let graph = Router::new()
        .route("/communications/callRecords", get(list_call_records))
        .route("/communications/callRecords/{id}", get(get_call_record))
        .route(
            "/communications/callRecords/{id}/sessions",
            get(list_sessions),
        )
        .route(
            "/communications/callRecords/{id}/participants_v2",
            get(list_participants),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::require_bearer));
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(auth::token))
        .nest("/v1.0", graph.clone().layer(Extension(ApiVersion::V1)))
        .nest("/beta", graph.layer(Extension(ApiVersion::Beta)))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Limits and faults act before routing and authentication, as Graph's front door does.
        .layer(from_fn_with_state(state.clone(), gate::gate))
        .layer(from_fn_with_state(state.clone(), record_request))
        .with_state(state)
}

async fn record_request(
    State(state): State<EmulatorState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let received = state.started.elapsed();
    let response = next.run(request).await;
    let fault = response
        .extensions()
        .get::<Injected>()
        .map(|injected| injected.0);
    let status = if response.extensions().get::<Dropped>().is_some() {
        0
    } else {
        response.status().as_u16()
    };
    let recorded = RecordedRequest {
        method,
        path,
        query,
        status,
        fault,
        received,
    };
    state
        .requests
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(recorded);
    response
}

async fn unknown_route(method: Method, uri: axum::http::Uri) -> GraphError {
    GraphError::not_found(format!(
        "Resource not found for the segment '{}' ({method}).",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> GraphError {
    GraphError::method_not_allowed(format!(
        "The method {method} is not allowed on '{}'.",
        uri.path()
    ))
}

/// `GET /communications/callRecords[?$filter=..|?$skiptoken=..]`.
async fn list_call_records(
    State(state): State<EmulatorState>,
    Extension(version): Extension<ApiVersion>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, GraphError> {
    const SCOPE: &str = "callRecords";
    let options = QueryOptions::parse(query.as_deref(), &["$filter", "$skiptoken"])?;
    // The window travels in the skip token so later pages of an unfiltered list do not
    // drift with the clock.
    let (from, to, offset) = match options.get("$skiptoken") {
        Some(token) => {
            let values = SkipToken::decode(token, SCOPE, 3)?;
            let offset = usize::try_from(values[2])
                .map_err(|_| GraphError::bad_request("Invalid $skiptoken."))?;
            (
                DateTime::from_timestamp_nanos(values[0]),
                DateTime::from_timestamp_nanos(values[1]),
                offset,
            )
        }
        None => {
            let (from, to) = list_window(options.get("$filter"))?;
            (from, to, 0)
        }
    };
    let preferred = preferred_page_size(&headers, LIST_PAGE_SIZE);
    let items = state.list(from, to);
    let (items, next_offset) = page(&items, offset, preferred.unwrap_or(LIST_PAGE_SIZE));
    let base = format!("{}/{}", state.base_url, version.segment());
    let value: Vec<Value> = items
        .iter()
        .map(|item| with_organizer_context(&base, item.clone()))
        .collect();
    let mut body = json!({
        "@odata.context": format!("{base}/$metadata#communications/callRecords"),
        "value": value,
    });
    if let Some(next_offset) = next_offset {
        let token = SkipToken::encode(SCOPE, &[nanos(from)?, nanos(to)?, next_offset as i64]);
        body["@odata.nextLink"] = json!(format!(
            "{base}/communications/callRecords?$skiptoken={}",
            encode_query_value(&token)
        ));
    }
    Ok(with_preference_applied(
        Json(body).into_response(),
        preferred,
    ))
}

/// The half-open window a list covers: the filter's bounds, an open end closed at now and
/// an open start at 30 days before the end (Graph's retention).
fn list_window(filter: Option<&str>) -> Result<(DateTime<Utc>, DateTime<Utc>), GraphError> {
    let bounds = filter
        .map(parse_start_time_filter)
        .transpose()?
        .unwrap_or_default();
    let to = bounds.to.unwrap_or_else(Utc::now);
    let from = bounds.from.unwrap_or(to - RETENTION);
    Ok((from, to))
}

fn nanos(time: DateTime<Utc>) -> Result<i64, GraphError> {
    time.timestamp_nanos_opt().ok_or_else(|| {
        GraphError::bad_request(format!("The date {time} is outside the supported range."))
    })
}

/// A relationship of a callRecord that comes in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Relationship {
    Sessions { with_segments: bool },
    Participants,
}

impl Relationship {
    fn property(self) -> &'static str {
        match self {
            Relationship::Sessions { .. } => "sessions",
            Relationship::Participants => "participants_v2",
        }
    }

    fn page_size(self) -> usize {
        match self {
            Relationship::Sessions { .. } => SESSIONS_PAGE_SIZE,
            Relationship::Participants => PARTICIPANTS_PAGE_SIZE,
        }
    }

    /// `$expand=segments&` when segments were asked for, so the next page keeps them.
    fn link_query_prefix(self) -> &'static str {
        match self {
            Relationship::Sessions {
                with_segments: true,
            } => "$expand=segments&",
            _ => "",
        }
    }

    /// An item as this request returns it (sessions lose their segments unless expanded).
    fn shape(self, mut item: Value) -> Value {
        if let (
            Relationship::Sessions {
                with_segments: false,
            },
            Some(session),
        ) = (self, item.as_object_mut())
        {
            session.remove("segments");
        }
        item
    }
}

/// One page of a record's relationship and the absolute link to the next page.
struct RelationshipPage {
    items: Vec<Value>,
    next_link: Option<String>,
}

fn relationship_page(
    state: &EmulatorState,
    version: ApiVersion,
    id: &str,
    relationship: Relationship,
    all: &[Value],
    offset: usize,
    size: usize,
) -> RelationshipPage {
    let (items, next_offset) = page(all, offset, size);
    let next_link = next_offset.map(|next| {
        let token = SkipToken::encode(&token_scope(relationship, id), &[next as i64]);
        format!(
            "{}/{}/communications/callRecords/{id}/{}?{}$skiptoken={}",
            state.base_url,
            version.segment(),
            relationship.property(),
            relationship.link_query_prefix(),
            encode_query_value(&token)
        )
    });
    RelationshipPage {
        items: items
            .iter()
            .map(|item| relationship.shape(item.clone()))
            .collect(),
        next_link,
    }
}

fn token_scope(relationship: Relationship, id: &str) -> String {
    format!("{}:{id}", relationship.property())
}

/// A complete record split into its header and the two paged relationships.
struct LoadedRecord {
    header: Map<String, Value>,
    sessions: Vec<Value>,
    participants: Vec<Value>,
}

fn load_record(state: &EmulatorState, id: &str) -> Result<Arc<LoadedRecord>, GraphError> {
    let record = state.records.get_or_make(id.to_string(), || {
        let Some(Value::Object(mut header)) = state.tenant.record(id) else {
            return None;
        };
        let mut take_array = |key: &str| match header.remove(key) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let sessions = take_array("sessions");
        let participants = take_array("participants_v2");
        Some(Arc::new(LoadedRecord {
            header,
            sessions,
            participants,
        }))
    });
    match &*record {
        Some(record) => Ok(record.clone()),
        None => Err(GraphError::not_found(format!(
            "Call record '{id}' was not found."
        ))),
    }
}

/// Which relationship a get asks to expand. Graph expands at most one per request.
fn parse_record_expand(expand: Option<&str>) -> Result<Option<Relationship>, GraphError> {
    let Some(expand) = expand else {
        return Ok(None);
    };
    let mut depth = 0_i32;
    let items: Vec<&str> = expand
        .split(|character| {
            depth += match character {
                '(' => 1,
                ')' => -1,
                _ => 0,
            };
            character == ',' && depth == 0
        })
        .map(str::trim)
        .collect();
    if items.len() > 1 {
        return Err(GraphError::bad_request(
            "Only one relationship can be expanded per request: expand either 'sessions' or 'participants_v2'.",
        ));
    }
    match items[0] {
        "sessions" => Ok(Some(Relationship::Sessions {
            with_segments: false,
        })),
        "sessions($expand=segments)" => Ok(Some(Relationship::Sessions {
            with_segments: true,
        })),
        "participants_v2" => Ok(Some(Relationship::Participants)),
        other => Err(GraphError::bad_request(format!(
            "Parsing OData Select and Expand failed: Could not find a property named '{other}' on type 'microsoft.graph.callRecords.callRecord'."
        ))),
    }
}

/// `GET /communications/callRecords/{id}[?$expand=sessions($expand=segments)|participants_v2]`,
/// or a log function call, which has the same shape (`…/callRecords/getPstnCalls(…)`).
async fn get_call_record(
    State(state): State<EmulatorState>,
    Extension(version): Extension<ApiVersion>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, GraphError> {
    if let Some(call) = log_routes::FunctionCall::parse(&id, version)? {
        return log_routes::respond(&state, version, &call, query.as_deref());
    }
    let options = QueryOptions::parse(query.as_deref(), &["$expand"])?;
    let expand = parse_record_expand(options.get("$expand"))?;
    let record = load_record(&state, &id)?;
    let base = format!("{}/{}", state.base_url, version.segment());
    let entity_shape = match expand {
        None => "",
        Some(Relationship::Sessions {
            with_segments: true,
        }) => "(sessions(segments()))",
        Some(Relationship::Sessions {
            with_segments: false,
        }) => "(sessions())",
        Some(Relationship::Participants) => "(participants_v2())",
    };
    let mut body = with_organizer_context(&base, Value::Object(record.header.clone()));
    body["@odata.context"] = json!(format!(
        "{base}/$metadata#communications/callRecords{entity_shape}/$entity"
    ));
    if let Some(relationship) = expand {
        let all = match relationship {
            Relationship::Sessions { .. } => &record.sessions,
            Relationship::Participants => &record.participants,
        };
        let page = relationship_page(
            &state,
            version,
            &id,
            relationship,
            all,
            0,
            relationship.page_size(),
        );
        let property = relationship.property();
        body[format!("{property}@odata.context")] = json!(format!(
            "{base}/$metadata#communications/callRecords('{id}')/{property}"
        ));
        body[property] = Value::Array(page.items);
        if let Some(next_link) = page.next_link {
            body[format!("{property}@odata.nextLink")] = json!(next_link);
        }
    }
    Ok(Json(body).into_response())
}

/// `GET /communications/callRecords/{id}/sessions[?$expand=segments][&$skiptoken=..]`.
async fn list_sessions(
    State(state): State<EmulatorState>,
    Extension(version): Extension<ApiVersion>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, GraphError> {
    let options = QueryOptions::parse(query.as_deref(), &["$expand", "$skiptoken"])?;
    let with_segments = match options.get("$expand").map(str::trim) {
        None => false,
        Some("segments") => true,
        Some(other) => {
            return Err(GraphError::bad_request(format!(
                "Parsing OData Select and Expand failed: Could not find a property named '{other}' on type 'microsoft.graph.callRecords.session'."
            )));
        }
    };
    let record = load_record(&state, &id)?;
    let sessions = &record.sessions;
    relationship_response(
        &state,
        version,
        &id,
        Relationship::Sessions { with_segments },
        sessions,
        &options,
        &headers,
    )
}

/// `GET /communications/callRecords/{id}/participants_v2[?$skiptoken=..]`.
async fn list_participants(
    State(state): State<EmulatorState>,
    Extension(version): Extension<ApiVersion>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, GraphError> {
    let options = QueryOptions::parse(query.as_deref(), &["$skiptoken"])?;
    let record = load_record(&state, &id)?;
    let participants = &record.participants;
    relationship_response(
        &state,
        version,
        &id,
        Relationship::Participants,
        participants,
        &options,
        &headers,
    )
}

/// A page of a relationship collection: `{"@odata.context", "value", "@odata.nextLink"?}`.
fn relationship_response(
    state: &EmulatorState,
    version: ApiVersion,
    id: &str,
    relationship: Relationship,
    all: &[Value],
    options: &QueryOptions,
    headers: &HeaderMap,
) -> Result<Response, GraphError> {
    let offset = match options.get("$skiptoken") {
        Some(token) => {
            let values = SkipToken::decode(token, &token_scope(relationship, id), 1)?;
            usize::try_from(values[0])
                .map_err(|_| GraphError::bad_request("Invalid $skiptoken."))?
        }
        None => 0,
    };
    let preferred = preferred_page_size(headers, relationship.page_size());
    let size = preferred.unwrap_or(relationship.page_size());
    let page = relationship_page(state, version, id, relationship, all, offset, size);
    let mut body = json!({
        "@odata.context": format!(
            "{}/{}/$metadata#communications/callRecords('{id}')/{}",
            state.base_url,
            version.segment(),
            relationship.property()
        ),
        "value": page.items,
    });
    if let Some(next_link) = page.next_link {
        body["@odata.nextLink"] = json!(next_link);
    }
    Ok(with_preference_applied(
        Json(body).into_response(),
        preferred,
    ))
}

/// Adds the `organizer_v2@odata.context` annotation Graph puts next to the auto-expanded
/// organizer.
fn with_organizer_context(base: &str, mut record: Value) -> Value {
    let id = record["id"].as_str().unwrap_or_default().to_owned();
    record["organizer_v2@odata.context"] = json!(format!(
        "{base}/$metadata#communications/callRecords('{id}')/organizer_v2/$entity"
    ));
    record
}

/// Tells the client its `Prefer: odata.maxpagesize` was honoured, as Graph does.
fn with_preference_applied(mut response: Response, preferred: Option<usize>) -> Response {
    if let Some(size) = preferred {
        let value = HeaderValue::from_str(&format!("odata.maxpagesize={size}"))
            .expect("digits are a valid header value");
        response.headers_mut().insert("preference-applied", value);
    }
    response
}
