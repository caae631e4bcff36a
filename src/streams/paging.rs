//! OData paging: fetch a collection page, then follow its `@odata.nextLink` verbatim until
//! absent, refusing a link already seen in the same pagination (a server bug must not
//! loop forever).
//!
//! Pages are read as `serde_json::Value`s, or ([`Pager::next_raw_page`], [`get_raw_object`])
//! with the items of their collections kept as JSON text ([`RawObject`]): what a call
//! record is assembled from without a tree of every item.
//!
//! Touches Graph only through [`GraphClient::get_parsed`], which also refuses links outside
//! the configured Graph origin.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
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

    /// The URL of the next page, or `None` after the last page; a URL already fetched in
    /// this pagination is an error.
    fn next_url(&mut self) -> Result<Option<Url>, GraphError> {
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
        Ok(Some(url))
    }

    /// The `value` items of the next page as JSON text, or `None` after the last page.
    pub(crate) async fn next_raw_page(&mut self) -> Result<Option<Vec<Box<RawValue>>>, GraphError> {
        let Some(url) = self.next_url()? else {
            return Ok(None);
        };
        let mut page = get_raw_object(self.client, &url, |page| {
            page.collection("value")
                .map(drop)
                .ok_or("expected a collection page: an object with a \"value\" array")
        })
        .await?;
        self.next = next_link(&url, page.members.remove(NEXT_LINK))?;
        Ok(Some(page.take_collection("value").unwrap_or_default()))
    }

    /// The `value` items of the next page, or `None` after the last page.
    pub(crate) async fn next_page(&mut self) -> Result<Option<Vec<Value>>, GraphError> {
        let Some(url) = self.next_url()? else {
            return Ok(None);
        };
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

/// Collections whose items [`RawObject`] keeps as JSON text, when they are arrays: a
/// collection page's `value`, and a call record's `sessions` and `participants_v2`.
const RAW_COLLECTIONS: [&str; 3] = ["value", "sessions", "participants_v2"];

/// A JSON object whose collections ([`RAW_COLLECTIONS`]) hold their items as JSON text,
/// exactly as received; its other members (scalars, small objects) are values.
#[derive(Default)]
pub(crate) struct RawObject {
    pub(crate) members: Map<String, Value>,
    collections: Vec<(String, Vec<Box<RawValue>>)>,
}

impl RawObject {
    /// The items of the collection `name`, if the object has it as an array.
    pub(crate) fn collection(&self, name: &str) -> Option<&[Box<RawValue>]> {
        self.collections
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, items)| items.as_slice())
    }

    /// Removes the collection `name` (an array) and returns its items.
    pub(crate) fn take_collection(&mut self, name: &str) -> Option<Vec<Box<RawValue>>> {
        let at = self.collections.iter().position(|(key, _)| key == name)?;
        Some(self.collections.swap_remove(at).1)
    }

    /// The object as compact JSON text (for error reports): members, then collections.
    pub(crate) fn to_json(&self) -> String {
        let mut text = JsonObjectWriter::new();
        for (key, value) in &self.members {
            text.member(key, value);
        }
        for (key, items) in &self.collections {
            text.open_array(key);
            for item in items {
                text.item(item);
            }
            text.close_array();
        }
        text.finish()
    }

    fn insert(&mut self, key: String, member: Member) {
        self.members.remove(&key);
        self.collections.retain(|(known, _)| *known != key);
        match member {
            Member::Items(items) => self.collections.push((key, items)),
            Member::Value(value) => {
                self.members.insert(key, value);
            }
        }
    }
}

/// Compact JSON text of one object, written member by member (arrays item by item).
pub(crate) struct JsonObjectWriter {
    text: String,
    /// Whether the object or array being written has no entry yet.
    first: bool,
}

impl JsonObjectWriter {
    pub(crate) fn new() -> Self {
        JsonObjectWriter {
            text: String::from("{"),
            first: true,
        }
    }

    fn separate(&mut self) {
        if !self.first {
            self.text.push(',');
        }
        self.first = false;
    }

    fn key(&mut self, key: &str) {
        self.separate();
        self.text
            .push_str(&serde_json::to_string(key).expect("a string serializes"));
        self.text.push(':');
    }

    pub(crate) fn member(&mut self, key: &str, value: &Value) {
        self.key(key);
        self.text
            .push_str(&serde_json::to_string(value).expect("a JSON value serializes"));
    }

    pub(crate) fn open_array(&mut self, key: &str) {
        self.key(key);
        self.text.push('[');
        self.first = true;
    }

    /// Appends one item to the open array. Its text is kept as received unless it holds a
    /// line break (pretty-printed JSON): a raw-zone line must stay one line.
    pub(crate) fn item(&mut self, item: &RawValue) {
        self.separate();
        let text = item.get();
        if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_none() {
            self.text.push_str(text);
            return;
        }
        let value: Value = serde_json::from_str(text).expect("a raw value is JSON");
        self.text
            .push_str(&serde_json::to_string(&value).expect("a JSON value serializes"));
    }

    pub(crate) fn close_array(&mut self) {
        self.text.push(']');
        self.first = false;
    }

    pub(crate) fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

/// A member of a [`RawObject`] being read.
enum Member {
    Items(Vec<Box<RawValue>>),
    Value(Value),
}

/// A response read for [`get_raw_object`]: an object, or any other JSON (the wrong shape).
enum RawResponse {
    Object(RawObject),
    Other(Value),
}

impl<'de> Deserialize<'de> for RawResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ResponseVisitor;
        impl<'de> Visitor<'de> for ResponseVisitor {
            type Value = RawResponse;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawResponse, A::Error> {
                let mut object = RawObject::default();
                while let Some(key) = map.next_key::<String>()? {
                    let member = match RAW_COLLECTIONS.contains(&key.as_str()) {
                        true => map.next_value::<MaybeItems>()?.0,
                        false => Member::Value(map.next_value()?),
                    };
                    object.insert(key, member);
                }
                Ok(RawResponse::Object(object))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawResponse, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RawResponse::Other)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawResponse, E> {
                Ok(RawResponse::Other(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawResponse, E> {
                Ok(RawResponse::Other(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawResponse, E> {
                Ok(RawResponse::Other(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawResponse, E> {
                Ok(RawResponse::Other(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawResponse, E> {
                Ok(RawResponse::Other(v.into()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawResponse, E> {
                Ok(RawResponse::Other(Value::Null))
            }
        }
        deserializer.deserialize_any(ResponseVisitor)
    }
}

/// A collection member: its items as text when it is an array, else its value.
struct MaybeItems(Member);

impl<'de> Deserialize<'de> for MaybeItems {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor;
        impl<'de> Visitor<'de> for ItemsVisitor {
            type Value = MaybeItems;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeItems, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Box<RawValue>>()? {
                    items.push(item);
                }
                Ok(MaybeItems(Member::Items(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MaybeItems, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|value| MaybeItems(Member::Value(value)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<MaybeItems, E> {
                Ok(MaybeItems(Member::Value(Value::Bool(v))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MaybeItems, E> {
                Ok(MaybeItems(Member::Value(v.into())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MaybeItems, E> {
                Ok(MaybeItems(Member::Value(v.into())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MaybeItems, E> {
                Ok(MaybeItems(Member::Value(v.into())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MaybeItems, E> {
                Ok(MaybeItems(Member::Value(v.into())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<MaybeItems, E> {
                Ok(MaybeItems(Member::Value(Value::Null)))
            }
        }
        deserializer.deserialize_any(ItemsVisitor)
    }
}

/// [`get_object`] with the collections' items kept as text ([`RawObject`]).
pub(crate) async fn get_raw_object(
    client: &GraphClient,
    url: &Url,
    shape: impl Fn(&RawObject) -> Result<(), &'static str>,
) -> Result<RawObject, GraphError> {
    let mut problem = "";
    let mut received = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            tracing::warn!(url = %redact(url.as_str(), &[]),
                "Unexpected response shape ({problem}); requesting it once more.");
        }
        match client.get_parsed::<RawResponse>(url).await? {
            RawResponse::Object(object) => match shape(&object) {
                Ok(()) => return Ok(object),
                Err(why) => (problem, received) = (why, object.to_json()),
            },
            RawResponse::Other(value) => {
                (problem, received) = ("expected a JSON object", value.to_string());
            }
        }
    }
    Err(GraphError::Decode {
        url: url.clone(),
        message: problem.into(),
        body: redact(&received, &[]).into(),
    })
}
