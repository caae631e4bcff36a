//! OData paging: fetch a collection page, then follow its `@odata.nextLink` verbatim until
//! absent, refusing a link already seen in the same pagination (a server bug must not
//! loop forever).
//!
//! Touches Graph only through [`GraphClient::get_json`], which also refuses links outside
//! the configured Graph origin.

use std::collections::HashSet;

use serde_json::{Map, Value};
use url::Url;

use crate::graph::{GraphClient, GraphError};
use crate::redact::redact;

pub(crate) const NEXT_LINK: &str = "@odata.nextLink";

/// One pagination: the next URL to fetch and every URL fetched so far.
pub(crate) struct Pager<'a> {
    client: &'a GraphClient,
    next: Option<Url>,
    seen: HashSet<Url>,
}

impl<'a> Pager<'a> {
    pub(crate) fn new(client: &'a GraphClient, first: Url) -> Self {
        Self {
            client,
            next: Some(first),
            seen: HashSet::new(),
        }
    }

    /// The `value` items of the next page, or `None` after the last page.
    pub(crate) async fn next_page(&mut self) -> Result<Option<Vec<Value>>, GraphError> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        if !self.seen.insert(url.clone()) {
            return Err(GraphError::Decode {
                url,
                message: format!(
                    "{NEXT_LINK} points to a page already fetched in this pagination (paging loop)"
                )
                .into(),
                body: "".into(),
            });
        }
        let mut page = get_object(self.client, &url, |page| {
            matches!(page.get("value"), Some(Value::Array(_)))
                .then_some(())
                .ok_or("expected a collection page: an object with a \"value\" array")
        })
        .await?;
        self.next = next_link(&url, page.remove(NEXT_LINK))?;
        match page.remove("value") {
            Some(Value::Array(items)) => Ok(Some(items)),
            _ => unreachable!("checked by get_object"),
        }
    }

    /// All remaining items, in page order.
    pub(crate) async fn collect(mut self) -> Result<Vec<Value>, GraphError> {
        let mut all = Vec::new();
        while let Some(items) = self.next_page().await? {
            all.extend(items);
        }
        Ok(all)
    }
}

/// Parses a nextLink annotation taken from the response of `source`; absent or null means
/// the last page.
pub(crate) fn next_link(source: &Url, link: Option<Value>) -> Result<Option<Url>, GraphError> {
    match link {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(link)) => Url::parse(&link).map(Some).map_err(|e| GraphError::Decode {
            url: source.clone(),
            message: format!("{NEXT_LINK} {link:?} is not an absolute URL: {e}").into(),
            body: "".into(),
        }),
        Some(other) => Err(GraphError::Decode {
            url: source.clone(),
            message: format!("{NEXT_LINK} is not a string: {other}").into(),
            body: "".into(),
        }),
    }
}

/// GETs a JSON object that `shape` accepts. A response of the wrong shape (valid JSON, but
/// not what Graph documents) is requested once more, like a broken body, before it is a
/// [`GraphError::Decode`] carrying what was received.
pub(crate) async fn get_object(
    client: &GraphClient,
    url: &Url,
    shape: impl Fn(&Map<String, Value>) -> Result<(), &'static str>,
) -> Result<Map<String, Value>, GraphError> {
    let mut problem = "";
    let mut received = Value::Null;
    for attempt in 0..2 {
        if attempt > 0 {
            tracing::warn!(url = %redact(url.as_str(), &[]),
                "Unexpected response shape ({problem}); requesting it once more.");
        }
        received = client.get_json(url).await?;
        match &received {
            Value::Object(object) => match shape(object) {
                Ok(()) => {
                    let Value::Object(object) = received else {
                        unreachable!()
                    };
                    return Ok(object);
                }
                Err(why) => problem = why,
            },
            _ => problem = "expected a JSON object",
        }
    }
    Err(GraphError::Decode {
        url: url.clone(),
        message: problem.into(),
        body: redact(&received.to_string(), &[]).into(),
    })
}
