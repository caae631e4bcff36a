//! `check`: what the command asks of Graph to prove a configuration works before the first
//! export: a token, then one cheap request per stream (the first page of the last hour's
//! call records, or of yesterday's rows of a log function); and what to do about each
//! failure, in plain words. Touches Graph only through [`GraphClient`]; prints nothing.

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::graph::{GraphClient, GraphError};
use crate::streams::{StreamKind, call_records, logs};
use crate::window::Window;

/// Signs in: Entra ID issues an access token for the application, or says why not.
pub async fn sign_in(client: &GraphClient) -> Result<(), GraphError> {
    client.authenticate().await
}

/// One cheap request for `stream` at `now`: what it answered, for the ✓ line.
pub async fn probe(
    client: &GraphClient,
    stream: StreamKind,
    now: DateTime<Utc>,
) -> Result<String, GraphError> {
    match stream.log() {
        None => {
            let hour = Window {
                from: now - chrono::Duration::hours(1),
                to: now,
            };
            let mut pages = std::pin::pin!(call_records::list(client, hour.from, hour.to));
            let page = pages.next().await.transpose()?;
            Ok(format!(
                "listed {} call records of the last hour",
                page.map_or(0, |p| p.len())
            ))
        }
        Some(log) => {
            let url = logs::request_url(client, log, Window::yesterday(now));
            let mut pages = std::pin::pin!(logs::pages(client, url));
            let page = pages.next().await.transpose()?;
            Ok(format!(
                "{} answered with {} rows of yesterday",
                log.function,
                page.map_or(0, |p| p.len())
            ))
        }
    }
}

/// What to do about a failed check, in plain words.
pub fn advice(error: &GraphError) -> String {
    match error {
        GraphError::Token { .. } => {
            "Fix the credentials or the tenant named above: in the Entra admin center, App registrations > \
             your app > Overview shows the Directory (tenant) ID and Application (client) ID; a new secret is \
             made under Certificates & secrets."
                .into()
        }
        GraphError::Forbidden { .. } => {
            "In the Entra admin center: App registrations > your app > API permissions > Add a permission > \
             Microsoft Graph > Application permissions > CallRecords.Read.All, then \"Grant admin consent\" \
             (a Global or Privileged Role Administrator must do this). Consent can take a few minutes to apply."
                .into()
        }
        GraphError::Unauthorized { .. } => {
            "The token was refused: check that tenant_id is the tenant where the app is registered and consented.".into()
        }
        GraphError::Transport { url, .. } => format!(
            "{} cannot be reached from here: check the network, DNS, a proxy (HTTPS_PROXY) or firewall, and \
             [graph] graph_url / login_url (or cloud).",
            url.host_str().unwrap_or("the host")
        ),
        GraphError::Throttled { .. } => "Graph is throttling this application; try again in a few minutes.".into(),
        GraphError::BadRequest { .. } => {
            "Graph refused the request: check [graph] api_version (the beta-only logs need \"beta\").".into()
        }
        _ => "See the message above; run with -vv for the requests made.".into(),
    }
}
