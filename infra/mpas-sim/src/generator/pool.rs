//! The actors of generated traffic: the realm's users, clients, groups and roles and the master
//! realm's administrators, drawn once from the seed.

use crate::rng::SimRng;

/// A user of the realm (or an administrator of the master realm).
pub(super) struct User {
    pub(super) id: String,
    pub(super) username: String,
    pub(super) email: String,
    pub(super) ip: String,
}

/// A client of the realm.
pub(super) struct Client {
    pub(super) client_id: &'static str,
    pub(super) internal_id: String,
    pub(super) redirect_uri: &'static str,
    pub(super) service_account_id: String,
    pub(super) confidential: bool,
}

/// A group or role: id and name.
pub(super) struct Named {
    pub(super) id: String,
    pub(super) name: &'static str,
}

/// The fixed cast of the realm: users, clients, admins, groups and roles.
pub(super) struct Pool {
    pub(super) users: Vec<User>,
    pub(super) clients: Vec<Client>,
    pub(super) admins: Vec<User>,
    pub(super) admin_clients: Vec<String>,
    pub(super) master_realm_id: String,
    pub(super) groups: Vec<Named>,
    pub(super) roles: Vec<Named>,
}

const FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yara",
];
const LAST_NAMES: &[&str] = &[
    "smith", "jones", "garcia", "miller", "davis", "lopez", "wilson", "moore", "taylor", "lee",
    "walker", "hall", "young", "king", "wright", "scott",
];
const CLIENTS: &[(&str, &str, bool)] = &[
    ("account-console", "/realms/{realm}/account/", false),
    ("webapp", "https://app.example.com/callback", true),
    ("mobile-app", "com.example.mobile:/oauth2redirect", false),
    ("reporting-service", "https://reports.example.com/*", true),
    (
        "partner-portal",
        "https://partners.example.com/login/callback",
        true,
    ),
];
const GROUPS: &[&str] = &["engineering", "finance", "support", "contractors", "admins"];
const ROLES: &[&str] = &[
    "offline_access",
    "uma_authorization",
    "auditor",
    "billing",
    "operator",
];

/// A random address: mostly private 10/8, documentation ranges, sometimes IPv6.
pub(super) fn random_ip(rng: &mut SimRng) -> String {
    match rng.below(10) {
        0..=3 => format!(
            "10.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        ),
        4..=5 => format!("203.0.113.{}", 1 + rng.below(254)),
        6..=7 => format!("198.51.100.{}", 1 + rng.below(254)),
        8 => format!("192.0.2.{}", 1 + rng.below(254)),
        _ => format!("2001:db8::{:x}", 1 + rng.below(0xffff)),
    }
}

impl Pool {
    /// Draws the cast: `users` users, the clients, three admins, groups and roles.
    pub(super) fn build(rng: &mut SimRng, realm: &str, users: u32) -> Self {
        let mut user_list = Vec::with_capacity(users as usize);
        for n in 0..users {
            let first = rng.pick(FIRST_NAMES).copied().unwrap_or("user");
            let last = rng.pick(LAST_NAMES).copied().unwrap_or("name");
            let username = format!("{first}.{last}{n}");
            user_list.push(User {
                id: rng.uuid(),
                email: format!("{username}@example.com"),
                username,
                ip: random_ip(rng),
            });
        }
        let clients = CLIENTS
            .iter()
            .map(|(client_id, redirect_uri, confidential)| Client {
                client_id,
                internal_id: rng.uuid(),
                redirect_uri,
                service_account_id: rng.uuid(),
                confidential: *confidential,
            })
            .collect();
        let admins = ["admin", "ops.oncall", "helpdesk"]
            .iter()
            .map(|name| User {
                id: rng.uuid(),
                username: (*name).to_owned(),
                email: format!("{name}@example.com"),
                ip: random_ip(rng),
            })
            .collect();
        // security-admin-console and admin-cli of the master realm.
        let admin_clients = vec![rng.uuid(), rng.uuid()];
        let master_realm_id = if realm == "master" {
            String::new()
        } else {
            rng.uuid()
        };
        let groups = GROUPS
            .iter()
            .map(|name| Named {
                id: rng.uuid(),
                name,
            })
            .collect();
        let roles = ROLES
            .iter()
            .map(|name| Named {
                id: rng.uuid(),
                name,
            })
            .collect();
        Self {
            users: user_list,
            clients,
            admins,
            admin_clients,
            master_realm_id,
            groups,
            roles,
        }
    }
}
