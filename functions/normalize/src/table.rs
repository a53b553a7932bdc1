//! The mapping, as data: OCSF 1.1.0 classes of category 3 (Identity & Access Management) with
//! their activities, and per source product the table of event type -> class, activity and
//! status. The README's mapping table is this file, written out.

use std::fmt;

/// The OCSF classes a record can be mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Base Event (`class_uid` 0): records the mapping does not know.
    Base,
    /// Account Change (3001).
    AccountChange,
    /// Authentication (3002).
    Authentication,
    /// Entity Management (3004).
    EntityManagement,
    /// User Access Management (3005).
    UserAccess,
    /// Group Management (3006).
    GroupManagement,
}

impl Class {
    /// `class_uid`: `category_uid * 1000 + uid`.
    pub const fn uid(self) -> u16 {
        match self {
            Class::Base => 0,
            Class::AccountChange => 3001,
            Class::Authentication => 3002,
            Class::EntityManagement => 3004,
            Class::UserAccess => 3005,
            Class::GroupManagement => 3006,
        }
    }

    /// `category_uid`: 3 (Identity & Access Management), 0 for the Base Event.
    pub const fn category_uid(self) -> u8 {
        match self {
            Class::Base => 0,
            _ => 3,
        }
    }

    /// `category_name`.
    pub const fn category_name(self) -> &'static str {
        match self {
            Class::Base => "Uncategorized",
            _ => "Identity & Access Management",
        }
    }

    /// `class_name`.
    pub const fn name(self) -> &'static str {
        match self {
            Class::Base => "Base Event",
            Class::AccountChange => "Account Change",
            Class::Authentication => "Authentication",
            Class::EntityManagement => "Entity Management",
            Class::UserAccess => "User Access Management",
            Class::GroupManagement => "Group Management",
        }
    }

    /// The class's activities (`activity_id`, caption), 0 Unknown and 99 Other included.
    pub const fn activities(self) -> &'static [(u8, &'static str)] {
        match self {
            Class::Base => &[(0, "Unknown"), (99, "Other")],
            Class::AccountChange => &[
                (0, "Unknown"),
                (1, "Create"),
                (2, "Enable"),
                (3, "Password Change"),
                (4, "Password Reset"),
                (5, "Disable"),
                (6, "Delete"),
                (7, "Attach Policy"),
                (8, "Detach Policy"),
                (9, "Lock"),
                (10, "MFA Factor Enable"),
                (11, "MFA Factor Disable"),
                (99, "Other"),
            ],
            Class::Authentication => &[
                (0, "Unknown"),
                (1, "Logon"),
                (2, "Logoff"),
                (3, "Authentication Ticket"),
                (4, "Service Ticket Request"),
                (5, "Service Ticket Renew"),
                (99, "Other"),
            ],
            Class::EntityManagement => &[
                (0, "Unknown"),
                (1, "Create"),
                (2, "Read"),
                (3, "Update"),
                (4, "Delete"),
                (99, "Other"),
            ],
            Class::UserAccess => &[
                (0, "Unknown"),
                (1, "Assign Privileges"),
                (2, "Revoke Privileges"),
                (99, "Other"),
            ],
            Class::GroupManagement => &[
                (0, "Unknown"),
                (1, "Assign Privileges"),
                (2, "Revoke Privileges"),
                (3, "Add User"),
                (4, "Remove User"),
                (5, "Delete"),
                (6, "Create"),
                (99, "Other"),
            ],
        }
    }

    /// The caption of `activity` in this class (`Other` for one it does not list).
    pub fn activity_caption(self, activity: u8) -> &'static str {
        self.activities()
            .iter()
            .find(|(id, _)| *id == activity)
            .map_or("Other", |(_, c)| c)
    }
}

/// Whether the source says the activity succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `status_id` 1.
    Success,
    /// `status_id` 2.
    Failure,
    /// `status_id` 0: the source does not say.
    Unknown,
}

impl Status {
    /// `status_id`.
    pub fn id(self) -> u8 {
        match self {
            Status::Success => 1,
            Status::Failure => 2,
            Status::Unknown => 0,
        }
    }

    /// `status` (the caption of `status_id`).
    pub fn caption(self) -> &'static str {
        match self {
            Status::Success => "Success",
            Status::Failure => "Failure",
            Status::Unknown => "Unknown",
        }
    }

    /// ECS `event.outcome` and CEF `outcome`.
    pub fn outcome(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Unknown => "unknown",
        }
    }
}

/// Where a record lands: class and activity (`activity_name` given for activity 99, Other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The OCSF class.
    pub class: Class,
    /// `activity_id`.
    pub activity: u8,
    /// `activity_name` when the activity is Other (99): the source's own action.
    pub other: Option<&'static str>,
}

impl Mapping {
    /// Class `class`, activity `activity`.
    pub const fn new(class: Class, activity: u8) -> Self {
        Self {
            class,
            activity,
            other: None,
        }
    }

    /// Class `class`, activity Other (99) named `name`.
    pub const fn other(class: Class, name: &'static str) -> Self {
        Self {
            class,
            activity: 99,
            other: Some(name),
        }
    }

    /// The Base Event, activity Unknown: records the mapping does not know.
    pub const BASE: Mapping = Mapping::new(Class::Base, 0);

    /// `activity_name`.
    pub fn activity_name(&self) -> &'static str {
        match self.other {
            Some(name) => name,
            None => self.class.activity_caption(self.activity),
        }
    }

    /// `type_uid`: `class_uid * 100 + activity_id`.
    pub fn type_uid(&self) -> u32 {
        u32::from(self.class.uid()) * 100 + u32::from(self.activity)
    }

    /// `type_name` (`Authentication: Logon`), written without allocating.
    pub fn type_name(&self) -> TypeName {
        TypeName(self.class, self.class.activity_caption(self.activity))
    }

    /// `severity_id`: Medium (3) for a lockout, Low (2) for a failure, Informational (1)
    /// otherwise.
    pub fn severity_id(&self, status: Status) -> u8 {
        if self.class == Class::AccountChange && self.activity == ACCOUNT_LOCK {
            3
        } else if status == Status::Failure {
            2
        } else {
            1
        }
    }
}

/// `severity`: the caption of `severity_id`.
pub fn severity_caption(id: u8) -> &'static str {
    match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        6 => "Fatal",
        99 => "Other",
        _ => "Unknown",
    }
}

/// An OCSF `type_name`: `{class_name}: {activity caption}`.
#[derive(Debug, Clone, Copy)]
pub struct TypeName(Class, &'static str);

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.name(), self.1)
    }
}

impl serde::Serialize for TypeName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Account Change activity Lock.
const ACCOUNT_LOCK: u8 = 9;

use Class::{AccountChange as AC, Authentication as AUTH};

/// How a Keycloak user event's class depends on its details as well as its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refine {
    /// The type alone decides.
    None,
    /// `details.credential_type` `password` makes it a password change (else a second factor).
    CredentialType,
}

/// Keycloak user event types (without the `_ERROR` suffix: an `_ERROR` twin maps like its
/// type, with status Failure), sorted by name.
pub const KEYCLOAK_USER: &[(&str, Mapping, Refine)] = &[
    ("CLIENT_LOGIN", Mapping::new(AUTH, 1), Refine::None),
    ("CODE_TO_TOKEN", Mapping::new(AUTH, 4), Refine::None),
    ("DELETE_ACCOUNT", Mapping::new(AC, 6), Refine::None),
    (
        "IDENTITY_PROVIDER_FIRST_LOGIN",
        Mapping::new(AUTH, 1),
        Refine::None,
    ),
    (
        "IDENTITY_PROVIDER_LOGIN",
        Mapping::new(AUTH, 1),
        Refine::None,
    ),
    (
        "IDENTITY_PROVIDER_POST_LOGIN",
        Mapping::new(AUTH, 1),
        Refine::None,
    ),
    ("IMPERSONATE", Mapping::new(AUTH, 1), Refine::None),
    (
        "INTROSPECT_TOKEN",
        Mapping::other(AUTH, "Token Introspection"),
        Refine::None,
    ),
    ("LOGIN", Mapping::new(AUTH, 1), Refine::None),
    ("LOGOUT", Mapping::new(AUTH, 2), Refine::None),
    ("REFRESH_TOKEN", Mapping::new(AUTH, 5), Refine::None),
    ("REGISTER", Mapping::new(AC, 1), Refine::None),
    (
        "REMOVE_CREDENTIAL",
        Mapping::new(AC, 11),
        Refine::CredentialType,
    ),
    ("REMOVE_TOTP", Mapping::new(AC, 11), Refine::None),
    ("RESET_PASSWORD", Mapping::new(AC, 4), Refine::None),
    ("SEND_RESET_PASSWORD", Mapping::new(AC, 4), Refine::None),
    ("TOKEN_EXCHANGE", Mapping::new(AUTH, 4), Refine::None),
    (
        "UPDATE_CREDENTIAL",
        Mapping::new(AC, 10),
        Refine::CredentialType,
    ),
    (
        "UPDATE_EMAIL",
        Mapping::other(AC, "Update Email"),
        Refine::None,
    ),
    ("UPDATE_PASSWORD", Mapping::new(AC, 3), Refine::None),
    (
        "UPDATE_PROFILE",
        Mapping::other(AC, "Update Profile"),
        Refine::None,
    ),
    ("UPDATE_TOTP", Mapping::new(AC, 10), Refine::None),
    (
        "USER_DISABLED_BY_PERMANENT_LOCKOUT",
        Mapping::new(AC, 9),
        Refine::None,
    ),
    (
        "USER_DISABLED_BY_TEMPORARY_LOCKOUT",
        Mapping::new(AC, 9),
        Refine::None,
    ),
    (
        "USER_INFO_REQUEST",
        Mapping::other(AUTH, "User Info Request"),
        Refine::None,
    ),
    (
        "VERIFY_EMAIL",
        Mapping::other(AC, "Verify Email"),
        Refine::None,
    ),
];

/// The mapping of a Keycloak user event type (with its `_ERROR` twin's status), or `None`.
pub fn keycloak_user(event_type: &str) -> Option<(Mapping, Refine, Status)> {
    let (base, status) = match event_type.strip_suffix("_ERROR") {
        Some(base) => (base, Status::Failure),
        None => (event_type, Status::Success),
    };
    let i = KEYCLOAK_USER
        .binary_search_by(|(name, _, _)| (*name).cmp(base))
        .ok()?;
    KEYCLOAK_USER
        .get(i)
        .map(|(_, mapping, refine)| (*mapping, *refine, status))
}

/// What an admin event's resource type makes of its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRule {
    /// A user (`USER`): Account Change.
    User,
    /// A role mapping: User Access Management (Group Management on a group's mappings).
    RoleMapping,
    /// A user joining or leaving a group: Group Management.
    GroupMembership,
    /// Anything else (clients, realms, identity providers, components, ...): Entity
    /// Management.
    Entity,
}

/// Keycloak admin resource types with a rule of their own; every other type is
/// [`AdminRule::Entity`].
pub const KEYCLOAK_ADMIN: &[(&str, AdminRule)] = &[
    ("CLIENT_ROLE_MAPPING", AdminRule::RoleMapping),
    ("CLIENT_SCOPE_CLIENT_MAPPING", AdminRule::RoleMapping),
    ("GROUP_MEMBERSHIP", AdminRule::GroupMembership),
    ("REALM_ROLE_MAPPING", AdminRule::RoleMapping),
    ("USER", AdminRule::User),
];

/// The rule of an admin resource type.
pub fn admin_rule(resource_type: &str) -> AdminRule {
    KEYCLOAK_ADMIN
        .iter()
        .find(|(name, _)| *name == resource_type)
        .map_or(AdminRule::Entity, |(_, rule)| *rule)
}

/// The mapping of an admin event: its rule, operation (`CREATE`, `UPDATE`, `DELETE`,
/// `ACTION`), whether the resource path is a group's, and the path's last segment (the action
/// of `ACTION` operations on users: `reset-password`, `logout`, ...).
pub fn keycloak_admin(rule: AdminRule, op: &str, on_group: bool, action: &str) -> Mapping {
    use Class::{EntityManagement as EM, GroupManagement as GM, UserAccess as UA};
    match (rule, op) {
        (AdminRule::User, "CREATE") => Mapping::new(AC, 1),
        (AdminRule::User, "UPDATE") => Mapping::other(AC, "Update"),
        (AdminRule::User, "DELETE") => Mapping::new(AC, 6),
        (AdminRule::User, "ACTION") => match action {
            "reset-password" => Mapping::new(AC, 4),
            "execute-actions-email" => Mapping::other(AC, "Execute Actions Email"),
            "logout" => Mapping::other(AC, "Logout"),
            _ => Mapping::other(AC, "Action"),
        },
        (AdminRule::User, _) => Mapping::other(AC, "Other"),
        (AdminRule::RoleMapping, "CREATE") if on_group => Mapping::new(GM, 1),
        (AdminRule::RoleMapping, "DELETE") if on_group => Mapping::new(GM, 2),
        (AdminRule::RoleMapping, _) if on_group => Mapping::other(GM, "Update Privileges"),
        (AdminRule::RoleMapping, "CREATE") => Mapping::new(UA, 1),
        (AdminRule::RoleMapping, "DELETE") => Mapping::new(UA, 2),
        (AdminRule::RoleMapping, _) => Mapping::other(UA, "Update Privileges"),
        (AdminRule::GroupMembership, "CREATE") => Mapping::new(GM, 3),
        (AdminRule::GroupMembership, "DELETE") => Mapping::new(GM, 4),
        (AdminRule::GroupMembership, _) => Mapping::other(GM, "Update Membership"),
        (AdminRule::Entity, "CREATE") => Mapping::new(EM, 1),
        (AdminRule::Entity, "UPDATE") => Mapping::new(EM, 3),
        (AdminRule::Entity, "DELETE") => Mapping::new(EM, 4),
        (AdminRule::Entity, "ACTION") => Mapping::other(EM, "Action"),
        (AdminRule::Entity, _) => Mapping::other(EM, "Other"),
    }
}

/// Foxpass `service:method` records: both are authentications whose status is the record's
/// `success`; the second column is the OCSF `auth_protocol_id` (RADIUS 10, or Other 99 with
/// `auth_protocol` `LDAP`: OCSF 1.1.0 has no LDAP value).
pub const FOXPASS: &[(&str, u8, &str)] = &[
    ("ldap:bind", 99, "LDAP"),
    ("radius:authorize", 10, "RADIUS"),
];

/// Blitz Identity Provider event types (`type`) with their mapping and status.
pub const BLITZ: &[(&str, Mapping, Status)] = &[
    ("login", Mapping::new(AUTH, 1), Status::Success),
    ("login_failed", Mapping::new(AUTH, 1), Status::Failure),
    ("logout", Mapping::new(AUTH, 2), Status::Success),
    ("user_locked", Mapping::new(AC, 9), Status::Success),
];

/// Whether `event_type` is a Blitz event type: one of [`BLITZ`] or an administrator's
/// `admin_*` action.
pub fn is_blitz_type(event_type: &str) -> bool {
    BLITZ.iter().any(|(name, _, _)| *name == event_type) || blitz_admin_verb(event_type).is_some()
}

/// The Entity Management activity of a Blitz `admin_*` type, from a verb among the words of its
/// name (`create(d)`/`add(ed)` Create, `update(d)`/`change(d)`/`edit(ed)`/`set` Update,
/// `delete(d)`/`remove(d)` Delete, anything else Other); `None` for a type that is not
/// `admin_*`.
pub fn blitz_admin_verb(event_type: &str) -> Option<Mapping> {
    let rest = event_type.strip_prefix("admin_")?;
    if rest.is_empty() {
        return None;
    }
    let has = |verbs: &[&str]| rest.split('_').any(|w| verbs.contains(&w));
    let em = Class::EntityManagement;
    Some(if has(&["create", "created", "add", "added"]) {
        Mapping::new(em, 1)
    } else if has(&[
        "update", "updated", "change", "changed", "edit", "edited", "set",
    ]) {
        Mapping::new(em, 3)
    } else if has(&["delete", "deleted", "remove", "removed"]) {
        Mapping::new(em, 4)
    } else {
        Mapping::other(em, "Administration")
    })
}

/// The mapping and status of a Blitz event type, or `None` (a record with an `error` fails
/// whatever its type says).
pub fn blitz(event_type: &str) -> Option<(Mapping, Status)> {
    BLITZ
        .iter()
        .find(|(name, _, _)| *name == event_type)
        .map(|(_, m, s)| (*m, *s))
        .or_else(|| blitz_admin_verb(event_type).map(|m| (m, Status::Success)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keycloak_table_is_sorted_and_error_twins_fail() {
        assert!(KEYCLOAK_USER.windows(2).all(|w| w[0].0 < w[1].0));
        let (m, _, s) =
            keycloak_user("LOGIN_ERROR").unwrap_or((Mapping::BASE, Refine::None, Status::Unknown));
        assert_eq!(
            (m.class, m.activity, s),
            (Class::Authentication, 1, Status::Failure)
        );
        assert_eq!(keycloak_user("LOGOUT").map(|x| x.0.activity), Some(2));
        assert_eq!(keycloak_user("CUSTOM_REQUIRED_ACTION"), None);
    }

    #[test]
    fn type_uid_and_names_follow_the_class_and_activity() {
        let m = Mapping::new(Class::Authentication, 1);
        assert_eq!(m.type_uid(), 300201);
        assert_eq!(m.type_name().to_string(), "Authentication: Logon");
        assert_eq!(m.activity_name(), "Logon");
        let o = Mapping::other(Class::AccountChange, "Update");
        assert_eq!((o.type_uid(), o.activity_name()), (300199, "Update"));
        assert_eq!(o.type_name().to_string(), "Account Change: Other");
        assert_eq!(Mapping::BASE.type_uid(), 0);
    }

    #[test]
    fn severity_is_higher_for_failures_and_highest_for_lockouts() {
        let login = Mapping::new(Class::Authentication, 1);
        assert_eq!(login.severity_id(Status::Success), 1);
        assert_eq!(login.severity_id(Status::Failure), 2);
        assert_eq!(
            Mapping::new(Class::AccountChange, 9).severity_id(Status::Success),
            3
        );
        assert_eq!(severity_caption(3), "Medium");
    }

    #[test]
    fn admin_operations_map_by_resource_type_and_path() {
        let user = admin_rule("USER");
        assert_eq!(
            keycloak_admin(user, "CREATE", false, "u1"),
            Mapping::new(AC, 1)
        );
        assert_eq!(
            keycloak_admin(user, "ACTION", false, "reset-password").activity,
            4
        );
        let roles = admin_rule("REALM_ROLE_MAPPING");
        assert_eq!(
            keycloak_admin(roles, "CREATE", false, "realm").class,
            Class::UserAccess
        );
        assert_eq!(
            keycloak_admin(roles, "DELETE", true, "realm"),
            Mapping::new(Class::GroupManagement, 2)
        );
        assert_eq!(
            keycloak_admin(admin_rule("GROUP_MEMBERSHIP"), "CREATE", false, "g").activity,
            3
        );
        assert_eq!(
            keycloak_admin(admin_rule("CLIENT"), "UPDATE", false, "c"),
            Mapping::new(Class::EntityManagement, 3)
        );
    }

    #[test]
    fn blitz_types_map_and_admin_verbs_pick_the_activity() {
        assert_eq!(blitz("login_failed").map(|x| x.1), Some(Status::Failure));
        assert_eq!(blitz("admin_user_created").map(|x| x.0.activity), Some(1));
        assert_eq!(blitz("admin_role_removed").map(|x| x.0.activity), Some(4));
        assert_eq!(
            blitz("admin_address_changed").map(|x| x.0.activity),
            Some(3)
        );
        assert_eq!(blitz("admin_").map(|x| x.0), None);
        assert!(is_blitz_type("logout") && !is_blitz_type("LOGIN"));
    }
}
