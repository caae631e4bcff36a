//! An embedded Microsoft Graph look-alike: an HTTP server on a loopback address that speaks
//! the Entra ID client-credentials token protocol and the Graph `communications/callRecords`
//! protocol (list, get with `$expand`, sessions and participants_v2 paging) over the
//! deterministic synthetic [`tenant::Tenant`].
//!
//! Used by `callrecords-etl export --emulator`, `callrecords-etl emulator` and the
//! end-to-end tests. It touches nothing but its own listening socket and memory.
//!
//! - [`tenant`]: the synthetic data, usable without HTTP.
//! - `routes`: the router and Graph handlers; `odata`: query options, paging tokens and the
//!   Graph error body; `auth`: tokens and their checking.

mod auth;
mod odata;
mod routes;
pub mod tenant;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use tenant::Tenant;

/// The synthetic organisation's tenant id (also the emulator's default login tenant).
pub const DEFAULT_TENANT_ID: &str = "00000000-0000-4000-8000-0000000e1a70";
/// The default client id the emulator's token endpoint accepts.
pub const DEFAULT_CLIENT_ID: &str = "00000000-0000-4000-8000-00000000c11e";
/// The default (published, fake) client secret.
pub const DEFAULT_CLIENT_SECRET: &str = "emulator-secret";

/// How long a graceful shutdown may wait for open connections before the server is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the emulator serves and which credentials it accepts.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Seed of the synthetic tenant; the same seed always yields the same calls.
    pub seed: u64,
    /// Calls per UTC day (at most [`tenant::MAX_CALLS_PER_DAY`]).
    pub calls_per_day: u32,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime of issued access tokens.
    pub token_lifetime: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            calls_per_day: 200,
            tenant_id: DEFAULT_TENANT_ID.to_owned(),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// One request the emulator answered, for tests that count or inspect requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
}

/// Requests served so far, shared between the server and its [`RunningEmulator`] handle.
type RequestLog = Arc<Mutex<Vec<RecordedRequest>>>;

/// A running emulator. Dropping it aborts the server; [`RunningEmulator::shutdown`] stops
/// it gracefully.
pub struct RunningEmulator {
    addr: SocketAddr,
    config: EmulatorConfig,
    requests: RequestLog,
    shutdown_signal: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// Binds `listen` (must be a loopback address, else an error that says so) and serves in a
/// background task.
pub async fn start(config: EmulatorConfig, listen: SocketAddr) -> anyhow::Result<RunningEmulator> {
    if !listen.ip().is_loopback() {
        bail!(
            "the emulator must listen on a loopback address (127.0.0.1 or ::1), not {listen}: \
             it accepts a published fake secret and must not be reachable from other machines"
        );
    }
    if config.calls_per_day > tenant::MAX_CALLS_PER_DAY {
        bail!(
            "emulator calls_per_day {} exceeds the maximum of {}",
            config.calls_per_day,
            tenant::MAX_CALLS_PER_DAY
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the emulator to {listen}"))?;
    let addr = listener
        .local_addr()
        .context("reading the emulator's bound address")?;
    let requests = RequestLog::default();
    let router = routes::router(config.clone(), base_url(addr), requests.clone());
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
        config,
        requests,
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
        &self.config
    }

    /// Every request served so far, in the order the responses were produced.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
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
) -> anyhow::Result<()> {
    let emulator = start(config, listen).await?;
    let config = emulator.config();
    tracing::info!(
        base_url = %emulator.base_url(),
        tenant_id = %config.tenant_id,
        client_id = %config.client_id,
        client_secret = %config.client_secret,
        seed = config.seed,
        calls_per_day = config.calls_per_day,
        "Microsoft Graph emulator listening; use base_url as both graph_url and login_url (the secret is fake)"
    );
    shutdown.await;
    tracing::info!("Microsoft Graph emulator shutting down");
    emulator.shutdown().await;
    Ok(())
}
