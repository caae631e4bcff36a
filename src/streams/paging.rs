//! OData paging: fetch a collection page, then follow its `@odata.nextLink` verbatim until
//! absent, refusing a link already seen in the same pagination (a server bug must not
//! loop forever).
//!
//! Touches Graph only through [`GraphClient::get_json`], which also refuses links outside
//! the configured Graph origin.

use std::collections::HashSet;

use serde_json::Value;
use url::Url;

use crate::graph::{GraphClient, GraphError};

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
                ),
            });
        }
        let page = self.client.get_json(&url).await?;
        let Value::Object(mut page) = page else {
            return Err(not_a_collection(url));
        };
        self.next = next_link(&url, page.remove(NEXT_LINK))?;
        match page.remove("value") {
            Some(Value::Array(items)) => Ok(Some(items)),
            _ => Err(not_a_collection(url)),
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
            message: format!("{NEXT_LINK} {link:?} is not an absolute URL: {e}"),
        }),
        Some(other) => Err(GraphError::Decode {
            url: source.clone(),
            message: format!("{NEXT_LINK} is not a string: {other}"),
        }),
    }
}

fn not_a_collection(url: Url) -> GraphError {
    GraphError::Decode {
        url,
        message: "expected a collection page: an object with a \"value\" array".into(),
    }
}
