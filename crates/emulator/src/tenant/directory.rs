//! The synthetic organisation's people and other parties (tenant users, federated users,
//! guests, phone numbers, Azure Communication Services users, bots) and how Graph renders
//! them: `communicationsIdentitySet`, participant items and `associatedIdentity`.
//! Pure data generation; touches nothing else.

use rand::Rng;
use serde_json::{Map, Value, json};

use super::values::{TenantRng, guid_from_hash, mix, pick_weighted};
use crate::DEFAULT_TENANT_ID;

/// Users in the synthetic tenant; more than the largest meeting so its attendees are distinct.
pub const DIRECTORY_SIZE: u32 = 600;
/// The organisation's e-mail domain, as in Microsoft's samples.
const DOMAIN: &str = "contoso.com";
/// The home tenant of federated (external) users.
const PARTNER_TENANT_ID: &str = "7b1f3c2e-5d4a-4e6b-9c8d-0a1b2c3d4e5f";
/// Administrative units; a user's membership is fixed by its directory index.
const ADMINISTRATIVE_UNIT_COUNT: u64 = 4;

const FIRST_NAMES: [&str; 40] = [
    "Abbie",
    "Owen",
    "Anette",
    "Daichi",
    "Adele",
    "Alex",
    "Allan",
    "Bianca",
    "Brian",
    "Cameron",
    "Christie",
    "Debra",
    "Diego",
    "Emily",
    "Enrico",
    "Grady",
    "Henrietta",
    "Irvin",
    "Isaiah",
    "Johanna",
    "Joni",
    "Lee",
    "Lidia",
    "Lynne",
    "Megan",
    "Miriam",
    "Nestor",
    "Patti",
    "Pradeep",
    "Raul",
    "Sanjay",
    "Serena",
    "Sofia",
    "Tomas",
    "Ugo",
    "Vera",
    "Wen",
    "Xavier",
    "Yuki",
    "Zara",
];
const LAST_NAMES: [&str; 40] = [
    "Wilkins",
    "Franklin",
    "Thomsen",
    "Maruyama",
    "Vance",
    "Wilber",
    "Deyoung",
    "Holloway",
    "Johnson",
    "White",
    "Cline",
    "Berg",
    "Siciliani",
    "Braun",
    "Bellini",
    "Archie",
    "Okafor",
    "Bellinger",
    "Hughes",
    "Lauer",
    "Sherman",
    "Gu",
    "Holloway",
    "Zrinski",
    "Bowen",
    "Patel",
    "Wilke",
    "Fernandes",
    "Gupta",
    "Andrade",
    "Rao",
    "Nakamura",
    "Lindqvist",
    "Novak",
    "Rossi",
    "Kowalski",
    "Chen",
    "Dubois",
    "Tanaka",
    "Haddad",
];

/// What kind of party a participant is; decides which identity-set slot it fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartyKind {
    /// A user of the synthetic tenant.
    User,
    /// A user of another (federated) tenant.
    ExternalUser,
    /// An anonymous or invited guest.
    Guest,
    /// A PSTN phone number.
    Phone,
    /// An Azure Communication Services user.
    AcsUser,
    /// A bot or resource account (auto attendant, call queue).
    ApplicationInstance,
}

/// One party of a call, as Graph identifies it.
#[derive(Clone, Debug)]
pub struct Party {
    pub kind: PartyKind,
    pub id: String,
    pub display_name: Option<String>,
    pub tenant_id: Option<String>,
    pub user_principal_name: Option<String>,
    pub administrative_unit: Option<String>,
}

/// The tenant's user directory, derived from the seed so any user can be rebuilt by index.
#[derive(Clone, Debug)]
pub struct Directory {
    seed: u64,
}

impl Directory {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// User `index` of the tenant (`index < DIRECTORY_SIZE`).
    pub fn user(&self, index: u32) -> Party {
        let first = FIRST_NAMES[index as usize % FIRST_NAMES.len()];
        let last = LAST_NAMES[index as usize / FIRST_NAMES.len() % LAST_NAMES.len()];
        let hash = mix(&[self.seed, 0x05E7, u64::from(index)]);
        // Every fourth user is in one of the administrative units, so exports see both
        // shapes and several units.
        let administrative_unit = index.is_multiple_of(4).then(|| {
            guid_from_hash(mix(&[
                self.seed,
                0xAD,
                u64::from(index / 4) % ADMINISTRATIVE_UNIT_COUNT,
            ]))
        });
        Party {
            kind: PartyKind::User,
            id: guid_from_hash(hash),
            display_name: Some(format!("{first} {last}")),
            tenant_id: Some(DEFAULT_TENANT_ID.to_owned()),
            user_principal_name: Some(format!(
                "{}.{}@{DOMAIN}",
                first.to_lowercase(),
                last.to_lowercase()
            )),
            administrative_unit,
        }
    }

    pub fn random_user(&self, rng: &mut TenantRng) -> Party {
        self.user(rng.random_range(0..DIRECTORY_SIZE))
    }

    /// `count` distinct tenant users.
    pub fn distinct_users(&self, rng: &mut TenantRng, count: u32) -> Vec<Party> {
        rand::seq::index::sample(rng, DIRECTORY_SIZE as usize, count as usize)
            .into_iter()
            .map(|index| self.user(index as u32))
            .collect()
    }

    /// A meeting attendee: mostly colleagues, sometimes someone from outside the tenant.
    pub fn random_attendee(&self, rng: &mut TenantRng) -> Party {
        match pick_weighted(
            rng,
            &[
                (PartyKind::User, 85),
                (PartyKind::ExternalUser, 5),
                (PartyKind::Guest, 5),
                (PartyKind::Phone, 3),
                (PartyKind::AcsUser, 2),
            ],
        ) {
            PartyKind::User => self.random_user(rng),
            kind => outside_party(rng, kind),
        }
    }
}

/// A party that is not a user of the tenant (asking for a `User` yields a federated user:
/// the tenant's own users come from [`Directory`]).
pub fn outside_party(rng: &mut TenantRng, kind: PartyKind) -> Party {
    let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
    let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
    let guid = super::values::guid(rng);
    let (id, display_name, tenant_id, user_principal_name) = match kind {
        PartyKind::User | PartyKind::ExternalUser => (
            guid,
            Some(format!("{first} {last}")),
            Some(PARTNER_TENANT_ID.to_owned()),
            Some(format!("{}@fabrikam.com", first.to_lowercase())),
        ),
        PartyKind::Guest => (guid, Some(format!("{first} {last} (Guest)")), None, None),
        PartyKind::Phone => (phone_number(rng), None, None, None),
        PartyKind::AcsUser => (
            format!("8:acs:{DEFAULT_TENANT_ID}_{guid}"),
            None,
            Some(DEFAULT_TENANT_ID.to_owned()),
            None,
        ),
        PartyKind::ApplicationInstance => (
            guid,
            Some(pick_resource_account(rng).to_owned()),
            Some(DEFAULT_TENANT_ID.to_owned()),
            None,
        ),
    };
    Party {
        kind: if kind == PartyKind::User {
            PartyKind::ExternalUser
        } else {
            kind
        },
        id,
        display_name,
        tenant_id,
        user_principal_name,
        administrative_unit: None,
    }
}

fn pick_resource_account(rng: &mut TenantRng) -> &'static str {
    super::values::pick(
        rng,
        &[
            "Main Line Auto Attendant",
            "Helpdesk Call Queue",
            "Reception",
        ],
    )
}

/// A fictitious US number from the 555 range Microsoft's samples use.
fn phone_number(rng: &mut TenantRng) -> String {
    format!("+1425555{:04}", rng.random_range(0..10_000))
}

impl Party {
    /// The `communicationsIdentitySet` of this party, every slot present (null when unused)
    /// like the participants_v2 samples, including the undeclared open keys.
    pub fn identity_set(&self, rng: &mut TenantRng) -> Value {
        let mut set = Map::new();
        for slot in [
            "acsUser",
            "spoolUser",
            "phone",
            "guest",
            "encrypted",
            "onPremises",
            "acsApplicationInstance",
            "spoolApplicationInstance",
            "applicationInstance",
            "application",
            "device",
            "user",
        ] {
            set.insert(slot.to_owned(), Value::Null);
        }
        let slot = match self.kind {
            PartyKind::User | PartyKind::ExternalUser => "user",
            PartyKind::Guest => "guest",
            PartyKind::Phone => "phone",
            PartyKind::AcsUser => "acsUser",
            PartyKind::ApplicationInstance => "applicationInstance",
        };
        let mut identity = json!({
            "id": self.id,
            "displayName": self.display_name,
            "tenantId": self.tenant_id,
        });
        if let Some(user_principal_name) = &self.user_principal_name {
            identity["userPrincipalName"] = json!(user_principal_name);
            // Graph types user identities explicitly, but not always.
            if rng.random_bool(0.95) {
                identity["@odata.type"] = json!("#microsoft.graph.userIdentity");
            }
        }
        set.insert(slot.to_owned(), identity);
        Value::Object(set)
    }

    /// A participants_v2 (or organizer_v2) item.
    pub fn participant(&self, rng: &mut TenantRng) -> Value {
        let mut participant = json!({ "id": self.id, "identity": self.identity_set(rng) });
        if let Some(unit) = &self.administrative_unit {
            participant["administrativeUnitInfos"] = json!([{ "id": unit }]);
        }
        participant
    }

    /// The `associatedIdentity` of a participant endpoint.
    pub fn associated_identity(&self) -> Value {
        json!({
            "id": self.id,
            "displayName": self.display_name,
            "tenantId": self.tenant_id,
            "userPrincipalName": self.user_principal_name,
        })
    }
}
