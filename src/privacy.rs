//! Privacy modes: what the exporter writes for personal data, by class.
//!
//! Each personal-data column of `schemas/*.json` names its class (`"pii": "phone_number"`,
//! ...); [`Privacy`] maps every class to a [`Mode`]: `keep` writes the value as read,
//! `drop` writes null, `hash` writes lowercase hex HMAC-SHA-256(key, value), the same
//! output for the same input in every table, run and day, so joins keep working while the
//! value itself is not stored. The flattener decides once per column what to do
//! ([`crate::flatten::TableBuilder::with_privacy`]); this module holds the vocabulary, the
//! keyed hash and the rewriting of identity JSON.
//!
//! Pure: no I/O. The key arrives as a [`Secret`] and is never formatted.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::graph::Secret;

/// What to write for one class of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The value as Graph sent it.
    #[default]
    Keep,
    /// Lowercase hex HMAC-SHA-256 of the value, keyed with the secret named by `salt_env`.
    Hash,
    /// Null.
    Drop,
}

/// A class of personal data; each has its own `[privacy]` override key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiClass {
    PhoneNumber,
    /// User principal names and e-mail addresses.
    UserPrincipalName,
    /// Display names, and the names people give their machines and devices.
    DisplayName,
    /// IP addresses, subnets, MAC addresses and Wi-Fi BSSIDs.
    IpAddress,
    /// Free text users type into call feedback.
    FeedbackText,
}

impl PiiClass {
    pub const ALL: [PiiClass; 5] = [
        PiiClass::PhoneNumber,
        PiiClass::UserPrincipalName,
        PiiClass::DisplayName,
        PiiClass::IpAddress,
        PiiClass::FeedbackText,
    ];

    /// The `[privacy]` key that overrides `mode` for this class.
    pub fn config_key(self) -> &'static str {
        match self {
            PiiClass::PhoneNumber => "phone_numbers",
            PiiClass::UserPrincipalName => "user_principal_names",
            PiiClass::DisplayName => "display_names",
            PiiClass::IpAddress => "ip_addresses",
            PiiClass::FeedbackText => "feedback_text",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a column declares with `"pii"` in `schemas/*.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnClass {
    /// Every value is of this class (`phone_number`, `user_principal_name`,
    /// `display_name`, `ip_address`, `feedback_text`).
    Value(PiiClass),
    /// `identity_id`: an identity's id, which is a phone number for phone identities.
    /// Treated as a phone number when the identity is a `phone` one or the id looks like a
    /// phone number ([`is_phone_number`]); other ids (Entra object ids, bot and ACS ids)
    /// are written as read.
    IdentityId,
    /// `identity_json`: an identity (set) as JSON; its personal members are rewritten by
    /// class and the structure is kept ([`Privacy::protect_identity_json`]).
    IdentityJson,
}

impl std::str::FromStr for ColumnClass {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "phone_number" => ColumnClass::Value(PiiClass::PhoneNumber),
            "user_principal_name" => ColumnClass::Value(PiiClass::UserPrincipalName),
            "display_name" => ColumnClass::Value(PiiClass::DisplayName),
            "ip_address" => ColumnClass::Value(PiiClass::IpAddress),
            "feedback_text" => ColumnClass::Value(PiiClass::FeedbackText),
            "identity_id" => ColumnClass::IdentityId,
            "identity_json" => ColumnClass::IdentityJson,
            other => {
                return Err(format!(
                    "unknown pii class `{other}` (known: phone_number, user_principal_name, display_name, \
                     ip_address, feedback_text, identity_id, identity_json)"
                ));
            }
        })
    }
}

/// The HMAC-SHA-256 key of the hash mode, shared by every column that hashes. `Debug`
/// prints `[redacted]`.
#[derive(Clone)]
pub struct HashKey(Arc<hmac::Key>);

impl HashKey {
    pub fn new(secret: &Secret) -> Self {
        Self(Arc::new(hmac::Key::new(
            hmac::HMAC_SHA256,
            secret.expose().as_bytes(),
        )))
    }

    /// An identifier of the key that does not reveal it: the first 16 hex characters of
    /// the key's HMAC of a fixed text.
    pub fn id(&self) -> String {
        self.hash("callrecords-etl hash key id")[..16].to_string()
    }

    /// Lowercase hex HMAC-SHA-256(key, value): 64 characters.
    pub fn hash(&self, value: &str) -> String {
        hex::encode(hmac::sign(&self.0, value.as_bytes()).as_ref())
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey([redacted])")
    }
}

/// A [`Mode`] ready to apply (the hash mode with its key).
#[derive(Debug, Clone)]
pub enum Treatment {
    Keep,
    Hash(HashKey),
    Drop,
}

impl Treatment {
    pub fn is_keep(&self) -> bool {
        matches!(self, Treatment::Keep)
    }

    /// The value to write for `value`: itself, its hash, or nothing (null).
    pub fn apply<'a>(&self, value: Cow<'a, str>) -> Option<Cow<'a, str>> {
        match self {
            Treatment::Keep => Some(value),
            Treatment::Hash(key) => Some(Cow::Owned(key.hash(&value))),
            Treatment::Drop => None,
        }
    }

    fn apply_json(&self, value: &mut Value) {
        match self {
            Treatment::Keep => {}
            Treatment::Hash(key) => {
                if let Value::String(text) = value {
                    *text = key.hash(text);
                }
            }
            Treatment::Drop => *value = Value::Null,
        }
    }
}

/// Why privacy settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivacyError {
    #[error("a class is hashed but no key was given")]
    MissingKey,
}

/// The treatment of every class for one run.
#[derive(Debug, Clone)]
pub struct Privacy {
    treatments: [Treatment; 5],
}

impl Default for Privacy {
    /// Everything kept: the output holds what Graph sent.
    fn default() -> Self {
        Self {
            treatments: std::array::from_fn(|_| Treatment::Keep),
        }
    }
}

impl Privacy {
    /// `mode_of` gives each class's mode; `key` is required when one of them is `hash`.
    pub fn new(
        mode_of: impl Fn(PiiClass) -> Mode,
        key: Option<HashKey>,
    ) -> Result<Self, PrivacyError> {
        let mut treatments = std::array::from_fn(|_| Treatment::Keep);
        for class in PiiClass::ALL {
            treatments[class.index()] = match mode_of(class) {
                Mode::Keep => Treatment::Keep,
                Mode::Drop => Treatment::Drop,
                Mode::Hash => Treatment::Hash(key.clone().ok_or(PrivacyError::MissingKey)?),
            };
        }
        Ok(Self { treatments })
    }

    pub fn treatment(&self, class: PiiClass) -> &Treatment {
        &self.treatments[class.index()]
    }

    pub fn mode(&self, class: PiiClass) -> Mode {
        match self.treatment(class) {
            Treatment::Keep => Mode::Keep,
            Treatment::Hash(_) => Mode::Hash,
            Treatment::Drop => Mode::Drop,
        }
    }

    /// What the rows written under these settings look like, as text: each class's mode
    /// (with the hash key's id), so that rows written under other settings are recognised
    /// (`phone_numbers=hash:1a2b…,user_principal_names=keep,…`).
    pub fn fingerprint(&self) -> String {
        PiiClass::ALL
            .iter()
            .map(|class| {
                let mode = match self.treatment(*class) {
                    Treatment::Keep => "keep".to_string(),
                    Treatment::Hash(key) => format!("hash:{}", key.id()),
                    Treatment::Drop => "drop".to_string(),
                };
                format!("{}={mode}", class.config_key())
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether everything is written as read.
    pub fn keeps_everything(&self) -> bool {
        self.treatments.iter().all(Treatment::is_keep)
    }

    /// Rewrites the personal members of identity JSON (an identity set, an identity, or
    /// arrays of them) in place: `displayName`; `userPrincipalName`, `email`, `mail`;
    /// `ipAddress`; and `id` when it is a phone number (of a `phone` member, or shaped like
    /// one). Dropped members become null, so the structure stays as Graph sent it.
    pub fn protect_identity_json(&self, value: &mut Value) {
        self.protect_members(value, None);
    }

    fn protect_members(&self, value: &mut Value, member: Option<&str>) {
        match value {
            Value::Object(object) => {
                for (key, child) in object.iter_mut() {
                    let class = match child {
                        Value::String(text) => identity_member_class(key, text, member),
                        _ => None,
                    };
                    match class {
                        Some(class) => self.treatment(class).apply_json(child),
                        None => self.protect_members(child, Some(key)),
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.protect_members(item, member);
                }
            }
            _ => {}
        }
    }
}

/// The class of an identity's string member `key` (inside the identity-set member
/// `member`, e.g. `phone`), if it holds personal data.
fn identity_member_class(key: &str, text: &str, member: Option<&str>) -> Option<PiiClass> {
    match key {
        "displayName" => Some(PiiClass::DisplayName),
        "userPrincipalName" | "email" | "mail" => Some(PiiClass::UserPrincipalName),
        "ipAddress" => Some(PiiClass::IpAddress),
        "id" if member == Some("phone") || is_phone_number(text) => Some(PiiClass::PhoneNumber),
        _ => None,
    }
}

/// Whether an id looks like a phone number: `+` or `tel:` followed by digits and the usual
/// separators (`+1 (425) 555-0100`, `tel:+14255550100`), or digits only (`14255550100`).
/// GUIDs, `8:acs:...` ids and the like do not.
pub fn is_phone_number(text: &str) -> bool {
    let rest = text
        .get(..4)
        .filter(|scheme| scheme.eq_ignore_ascii_case("tel:"))
        .map_or(text, |_| &text[4..]);
    let (prefixed, number) = match rest.strip_prefix('+') {
        Some(number) => (true, number),
        None => (rest.len() != text.len(), rest),
    };
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    let separators_ok = number
        .bytes()
        .all(|b| b.is_ascii_digit() || (prefixed && matches!(b, b' ' | b'-' | b'(' | b')' | b'.')));
    digits >= 5 && separators_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> HashKey {
        HashKey::new(&Secret::new("k".repeat(32)))
    }

    #[test]
    fn the_hash_is_hmac_sha256_in_lowercase_hex() {
        // RFC 4231 test case 2.
        let key = HashKey::new(&Secret::new("Jefe".into()));
        assert_eq!(
            key.hash("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(format!("{key:?}"), "HashKey([redacted])");
    }

    #[test]
    fn the_fingerprint_tells_modes_and_keys_apart_and_hides_the_key() {
        let keep = Privacy::default().fingerprint();
        assert!(keep.starts_with("phone_numbers=keep,"), "{keep}");
        let hashed = |key: HashKey| {
            Privacy::new(
                |class| match class {
                    PiiClass::DisplayName => Mode::Hash,
                    _ => Mode::Drop,
                },
                Some(key),
            )
            .unwrap()
            .fingerprint()
        };
        let (one, other) = (
            hashed(key()),
            hashed(HashKey::new(&Secret::new("z".repeat(32)))),
        );
        assert!(
            one.contains("display_names=hash:") && one.contains("ip_addresses=drop"),
            "{one}"
        );
        assert_ne!(one, other, "another key, another fingerprint");
        assert_eq!(one, hashed(key()));
        assert!(!one.contains(&"k".repeat(8)));
    }

    #[test]
    fn phone_numbers_are_told_from_other_ids() {
        for phone in [
            "+14255550100",
            "+1 (425) 555-0100",
            "tel:+14255550100",
            "TEL:14255550100",
            "14255550100",
            "+5564981205182",
        ] {
            assert!(is_phone_number(phone), "{phone}");
        }
        for other in [
            "2b8b1c38-7a15-4a5b-9e64-3f1a7f4d1a2e",
            "12345678-1234-1234-1234-123456789012",
            "8:acs:00000000-0000-4000-8000-0000000e1a70_abc",
            "",
            "+",
            "+1234",
            "1-425-555-0100",
            "machineName_42",
        ] {
            assert!(!is_phone_number(other), "{other}");
        }
    }

    #[test]
    fn hash_mode_needs_a_key() {
        let hashed = |_| Mode::Hash;
        assert_eq!(
            Privacy::new(hashed, None).unwrap_err(),
            PrivacyError::MissingKey
        );
        assert!(Privacy::new(|_| Mode::Drop, None).is_ok());
        assert!(Privacy::default().keeps_everything());
    }

    #[test]
    fn identity_json_keeps_its_structure_and_loses_its_personal_members() {
        let privacy = Privacy::new(
            |class| match class {
                PiiClass::DisplayName => Mode::Drop,
                _ => Mode::Hash,
            },
            Some(key()),
        )
        .unwrap();
        let mut set = json!({
            "@odata.type": "#microsoft.graph.communicationsIdentitySet",
            "endpointType": "default",
            "user": {"id": "2b8b1c38-7a15-4a5b-9e64-3f1a7f4d1a2e", "displayName": "Abbie Wilkins",
                     "tenantId": "t1", "userPrincipalName": "abbie@contoso.com", "email": "a@contoso.com"},
            "phone": {"id": "4255550100", "displayName": null},
            "assertedIdentity": {"id": "+14255550199", "ipAddress": "10.0.0.7"},
            "guest": null
        });
        privacy.protect_identity_json(&mut set);
        let k = key();
        assert_eq!(
            set,
            json!({
                "@odata.type": "#microsoft.graph.communicationsIdentitySet",
                "endpointType": "default",
                "user": {"id": "2b8b1c38-7a15-4a5b-9e64-3f1a7f4d1a2e", "displayName": null,
                         "tenantId": "t1", "userPrincipalName": k.hash("abbie@contoso.com"),
                         "email": k.hash("a@contoso.com")},
                "phone": {"id": k.hash("4255550100"), "displayName": null},
                "assertedIdentity": {"id": k.hash("+14255550199"), "ipAddress": k.hash("10.0.0.7")},
                "guest": null
            })
        );
    }

    #[test]
    fn treatments_apply_to_text() {
        let text = || Cow::Borrowed("+14255550100");
        assert_eq!(
            Treatment::Keep.apply(text()).as_deref(),
            Some("+14255550100")
        );
        assert_eq!(Treatment::Drop.apply(text()), None);
        let hashed = Treatment::Hash(key()).apply(text()).unwrap();
        assert_eq!(hashed, key().hash("+14255550100"));
        assert_eq!(hashed.len(), 64);
    }
}
