//! An embedded Microsoft Graph look-alike: an HTTP server on a loopback address that speaks
//! the Entra ID client-credentials token protocol and the Graph `communications/callRecords`
//! protocol (list, get with `$expand`, sessions and participants_v2 paging, and the PSTN
//! log functions) over the deterministic synthetic [`tenant::Tenant`] and [`logs::LogTenant`],
//! optionally with Graph's throttling limits enforced and with injected faults.
//!
//! Used by `callrecords-etl export --emulator`, `callrecords-etl emulator` and the
//! end-to-end tests. It touches nothing but its own listening socket and memory.
//!
//! - [`tenant`], [`logs`]: the synthetic data, usable without HTTP.
//! - `routes`: the router and callRecords handlers; `log_routes`: the log functions;
//!   `odata`: query options, paging tokens and the Graph error body; `auth`: tokens and
//!   their checking; `memo`: the cache of generated windows.
//! - [`faults`], [`limits`]: what can go wrong and Graph's limits; `gate`: the middleware
//!   that applies both.
//! - [`synthetic_records`]: the tenant's complete records as a JSON-lines file (the
//!   `synthetic-records` binary, benchmark inputs).

mod auth;
pub mod faults;
mod gate;
pub mod limits;
mod log_routes;
pub mod logs;
mod memo;
mod odata;
mod routes;
pub mod synthetic_records;
pub mod tenant;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use faults::{FaultCounts, FaultKind, FaultSpecError, Faults};
pub use limits::{Limits, Rate};
pub use logs::{LogFunction, LogTenant};
pub use tenant::Tenant;

use routes::EmulatorState;

/// The synthetic organisation's tenant id (also the emulator's default login tenant).
pub const DEFAULT_TENANT_ID: &str = "00000000-0000-4000-8000-0000000e1a70";
/// The default client id the emulator's token endpoint accepts.
pub const DEFAULT_CLIENT_ID: &str = "00000000-0000-4000-8000-00000000c11e";
/// The default (published, fake) client secret.
pub const DEFAULT_CLIENT_SECRET: &str = "emulator-secret";

/// Calls per UTC day of the default synthetic tenant.
pub const DEFAULT_CALLS_PER_DAY: u32 = 200;
/// PSTN and Direct Routing log rows per UTC day by default: a 7-day window pages past 1000.
pub const DEFAULT_LOG_ROWS_PER_DAY: u32 = 300;

/// How long a graceful shutdown may wait for open connections before the server is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the emulator serves and which credentials it accepts.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Seed of the synthetic tenant; the same seed always yields the same calls.
    pub seed: u64,
    /// Calls per UTC day (at most [`tenant::MAX_CALLS_PER_DAY`]).
    pub calls_per_day: u32,
    /// PSTN and Direct Routing log rows per UTC day (SMS: a quarter; blocked users: one
    /// per 50); see [`logs`].
    pub log_rows_per_day: u32,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime of issued access tokens.
    pub token_lifetime: Duration,
    /// Injected failures (default: none).
    pub faults: Faults,
    /// Whether Graph's throttling limits ([`EmulatorConfig::limits`]) are enforced
    /// (default: no).
    pub enforce_limits: bool,
    /// The limits enforced when `enforce_limits` is set (default: Graph's documented ones).
    pub limits: Limits,
    /// Participants (each with a session) of every day's large meeting, instead of a few
    /// hundred (default: None); see [`Tenant::with_large_meeting`].
    pub large_meeting_attendees: Option<u32>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            calls_per_day: DEFAULT_CALLS_PER_DAY,
            log_rows_per_day: DEFAULT_LOG_ROWS_PER_DAY,
            tenant_id: DEFAULT_TENANT_ID.to_owned(),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            token_lifetime: Duration::from_secs(3600),
            faults: Faults::default(),
            enforce_limits: false,
            limits: Limits::default(),
            large_meeting_attendees: None,
        }
    }
}

/// The Graph version segment a request came in under (`/v1.0` or `/beta`); links stay in
/// it, and beta serves more log functions and properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    V1,
    Beta,
}

impl ApiVersion {
    /// `v1.0` or `beta`, as in the URL.
    pub fn segment(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }
}

/// One request the emulator answered, for tests that count or inspect requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The status sent; 0 when the connection was dropped without a response.
    pub status: u16,
    /// The injected fault or enforced limit that shaped the answer, if any.
    pub fault: Option<FaultKind>,
    /// When it arrived, after the emulator started (tokio's clock).
    pub received: Duration,
}

/// A running emulator. Dropping it aborts the server; [`RunningEmulator::shutdown`] stops
/// it gracefully.
pub struct RunningEmulator {
    addr: SocketAddr,
    state: EmulatorState,
    shutdown_signal: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// Why the emulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address is not a loopback one (a usage error of the caller).
    #[error(
        "the emulator must listen on a loopback address (127.0.0.1 or ::1), not {0}: \
         it accepts a published fake secret and must not be reachable from other machines"
    )]
    NotLoopback(SocketAddr),
    #[error("emulator calls_per_day {requested} exceeds the maximum of {maximum}")]
    TooManyCalls { requested: u32, maximum: u32 },
    #[error(transparent)]
    Faults(#[from] FaultSpecError),
    #[error("binding the emulator to {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reading the emulator's bound address")]
    BoundAddress(#[source] std::io::Error),
}

/// Binds `listen` (must be a loopback address, else [`StartError::NotLoopback`]) and serves
/// in a background task.
pub async fn start(
    config: EmulatorConfig,
    listen: SocketAddr,
) -> Result<RunningEmulator, StartError> {
    if !listen.ip().is_loopback() {
        return Err(StartError::NotLoopback(listen));
    }
    if config.calls_per_day > tenant::MAX_CALLS_PER_DAY {
        return Err(StartError::TooManyCalls {
            requested: config.calls_per_day,
            maximum: tenant::MAX_CALLS_PER_DAY,
        });
    }
    config.faults.validate()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(StartError::BoundAddress)?;
    let state = EmulatorState::new(config, base_url(addr));
    let router = routes::router(state.clone());
    let (shutdown_signal, shutdown_received) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                // A dropped sender also means stop.
                let _ = shutdown_received.await;
            })
            .await
    });
    Ok(RunningEmulator {
        addr,
        state,
        shutdown_signal: Some(shutdown_signal),
        server: Some(server),
    })
}

fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

impl RunningEmulator {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, used as both the Graph URL and the login URL.
    pub fn base_url(&self) -> String {
        base_url(self.addr)
    }

    pub fn config(&self) -> &EmulatorConfig {
        &self.state.config
    }

    /// Every request served so far, in the order the responses were produced.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.recorded_requests()
    }

    /// Every access token handed out so far (expired ones too), so a test can check that
    /// none leaks into logs or output.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.tokens.issued()
    }

    /// How many requests each injected fault, and the enforced limits, hit so far.
    pub fn fault_counts(&self) -> FaultCounts {
        self.state.ledger.counts()
    }

    /// Stops accepting connections, lets open ones finish (for a few seconds at most) and
    /// waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(signal) = self.shutdown_signal.take() {
            let _ = signal.send(());
        }
        if let Some(mut server) = self.server.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => {
                    tracing::warn!(%error, "emulator server stopped with an error")
                }
                Ok(Err(error)) => tracing::warn!(%error, "emulator server task failed"),
                Err(_elapsed) => {
                    tracing::warn!(
                        "emulator connections still open after {SHUTDOWN_GRACE:?}; aborting"
                    );
                    server.abort();
                }
            }
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The standalone `callrecords-etl emulator` command: logs where to connect and with which
/// (fake) credentials, then serves until `shutdown` resolves.
pub async fn serve_until_shutdown(
    config: EmulatorConfig,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let emulator = start(config, listen).await?;
    let config = emulator.config();
    tracing::info!(
        base_url = %emulator.base_url(),
        tenant_id = %config.tenant_id,
        client_id = %config.client_id,
        client_secret = %config.client_secret,
        seed = config.seed,
        calls_per_day = config.calls_per_day,
        log_rows_per_day = config.log_rows_per_day,
        faults = %config.faults,
        enforce_limits = config.enforce_limits,
        "Microsoft Graph emulator listening; use base_url as both graph_url and login_url (the secret is fake)"
    );
    shutdown.await;
    tracing::info!("Microsoft Graph emulator shutting down");
    emulator.shutdown().await;
    Ok(())
}
