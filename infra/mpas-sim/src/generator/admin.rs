//! Admin events: the mix of admin operations and, per operation, the resource path and the
//! representation a real server records.

use std::sync::Arc;

use serde_json::json;

use super::pool::{Client, Named, User};
use super::{Generator, Shape};
use crate::error::SimError;
use crate::model::{AdminEvent, AuthDetails, EventKind, Fields, Record};
use crate::rng::SimRng;

/// The admin operations generated, each one resource change.
#[derive(Clone, Copy)]
enum AdminOp {
    CreateUser,
    UpdateUser,
    DeleteUser,
    ResetPassword,
    ExecuteActionsEmail,
    LogoutUser,
    DeleteSession,
    UpdateClient,
    CreateClient,
    JoinGroup,
    LeaveGroup,
    GrantRealmRole,
    RevokeRealmRole,
    CreateGroup,
    UpdateRealm,
}

/// Admin operations and their relative weights.
const ADMIN_MIX: &[(AdminOp, u32)] = &[
    (AdminOp::CreateUser, 20),
    (AdminOp::UpdateUser, 25),
    (AdminOp::DeleteUser, 5),
    (AdminOp::ResetPassword, 8),
    (AdminOp::ExecuteActionsEmail, 3),
    (AdminOp::LogoutUser, 3),
    (AdminOp::DeleteSession, 10),
    (AdminOp::UpdateClient, 4),
    (AdminOp::CreateClient, 1),
    (AdminOp::JoinGroup, 10),
    (AdminOp::LeaveGroup, 4),
    (AdminOp::GrantRealmRole, 6),
    (AdminOp::RevokeRealmRole, 2),
    (AdminOp::CreateGroup, 1),
    (AdminOp::UpdateRealm, 1),
];

impl Generator {
    /// One admin event at `time` of an operation drawn from [`ADMIN_MIX`].
    pub(super) fn admin_event(&mut self, time: i64, shape: Shape) -> Result<Record, SimError> {
        let i = self.rng.weighted(ADMIN_MIX.iter().map(|(_, w)| *w));
        let op = ADMIN_MIX.get(i).map_or(AdminOp::UpdateUser, |(o, _)| *o);
        let id = self.rng.uuid();
        let rng = &mut self.rng;
        let pool = &self.pool;
        let (Some(admin), Some(user), Some(client), Some(group), Some(role), Some(admin_client)) = (
            rng.pick(&pool.admins),
            rng.pick(&pool.users),
            rng.pick(&pool.clients),
            rng.pick(&pool.groups),
            rng.pick(&pool.roles),
            rng.pick(&pool.admin_clients),
        ) else {
            return Err(SimError::config("traffic.users", "empty actor pool"));
        };
        let targets = Targets {
            user,
            client,
            group,
            role,
            realm: &self.realm,
            realm_id: &self.realm_id,
        };
        let change = targets.change(op, rng);
        let error = (rng.chance(0.01)).then(|| "unknown_error".to_owned());
        let event = AdminEvent {
            id: (!self.legacy).then(|| id.clone()),
            time,
            realm_id: self.realm_id.clone(),
            auth_details: AuthDetails {
                realm_id: pool.master_realm_id.clone(),
                client_id: admin_client.clone(),
                user_id: admin.id.clone(),
                ip_address: admin.ip.clone(),
            },
            operation_type: change.operation_type,
            resource_type: change.resource_type,
            resource_path: change.resource_path,
            representation: change.representation,
            error,
            details: None,
        };
        self.admin_record(event, id, shape)
    }

    /// Serialises an admin event into a stored record with its commit time and filter fields.
    fn admin_record(
        &mut self,
        event: AdminEvent,
        id: String,
        shape: Shape,
    ) -> Result<Record, SimError> {
        let is_error = event.error.is_some();
        let time = event.time;
        let json: Arc<str> = serde_json::to_string(&event)?.into();
        let commit_at = time.saturating_add(self.commit_delay(is_error, shape));
        let AdminEvent {
            auth_details,
            operation_type,
            resource_type,
            resource_path,
            ..
        } = event;
        Ok(Record {
            seq: self.next_seq(),
            kind: EventKind::Admin,
            id,
            time,
            commit_at,
            is_error,
            fields: Fields::Admin {
                operation_type,
                resource_type,
                resource_path,
                auth_realm: auth_details.realm_id,
                auth_client: auth_details.client_id,
                auth_user: auth_details.user_id,
                auth_ip: auth_details.ip_address,
            },
            json,
        })
    }
}

/// What an admin operation changed: `operationType`, `resourceType`, `resourcePath` and the
/// `representation` (a JSON document as a string, when the operation has one).
struct Change {
    operation_type: &'static str,
    resource_type: &'static str,
    resource_path: String,
    representation: Option<String>,
}

impl Change {
    fn new(
        operation_type: &'static str,
        resource_type: &'static str,
        resource_path: String,
        representation: Option<String>,
    ) -> Self {
        Self {
            operation_type,
            resource_type,
            resource_path,
            representation,
        }
    }
}

/// The resources an admin operation may act on, drawn for the event.
struct Targets<'a> {
    user: &'a User,
    client: &'a Client,
    group: &'a Named,
    role: &'a Named,
    realm: &'a str,
    realm_id: &'a str,
}

impl Targets<'_> {
    /// The change `op` makes.
    fn change(&self, op: AdminOp, rng: &mut SimRng) -> Change {
        match op {
            AdminOp::CreateUser => self.user_change("CREATE", "", Some(self.user_repr(true))),
            AdminOp::UpdateUser => {
                let repr = self.user_repr(rng.chance(0.9));
                self.user_change("UPDATE", "", Some(repr))
            }
            AdminOp::DeleteUser => self.user_change("DELETE", "", None),
            AdminOp::ResetPassword => self.user_change(
                "ACTION",
                "/reset-password",
                Some(r#"{"type":"password","temporary":true}"#.to_owned()),
            ),
            AdminOp::ExecuteActionsEmail => self.user_change(
                "ACTION",
                "/execute-actions-email",
                Some(r#"["UPDATE_PASSWORD","VERIFY_EMAIL"]"#.to_owned()),
            ),
            AdminOp::LogoutUser => self.user_change("ACTION", "/logout", None),
            AdminOp::DeleteSession => Change::new(
                "DELETE",
                "USER_SESSION",
                format!("sessions/{}", rng.uuid()),
                None,
            ),
            AdminOp::UpdateClient => self.update_client(),
            AdminOp::CreateClient => create_client(rng),
            AdminOp::JoinGroup => self.group_membership("CREATE"),
            AdminOp::LeaveGroup => self.group_membership("DELETE"),
            AdminOp::GrantRealmRole => self.realm_role_mapping("CREATE"),
            AdminOp::RevokeRealmRole => self.realm_role_mapping("DELETE"),
            AdminOp::CreateGroup => create_group(rng),
            AdminOp::UpdateRealm => self.update_realm(),
        }
    }

    /// A change to the user at `users/{id}{suffix}`.
    fn user_change(
        &self,
        operation_type: &'static str,
        suffix: &str,
        representation: Option<String>,
    ) -> Change {
        let path = format!("users/{}{suffix}", self.user.id);
        Change::new(operation_type, "USER", path, representation)
    }

    /// The user's UserRepresentation.
    fn user_repr(&self, enabled: bool) -> String {
        let user = self.user;
        json!({
            "username": user.username,
            "email": user.email,
            "enabled": enabled,
            "emailVerified": true,
            "firstName": user.username.split('.').next().unwrap_or_default(),
            "attributes": {},
            "groups": [],
        })
        .to_string()
    }

    fn update_client(&self) -> Change {
        let client = self.client;
        let repr = json!({
            "id": client.internal_id,
            "clientId": client.client_id,
            "enabled": true,
            "publicClient": !client.confidential,
            "redirectUris": [client.redirect_uri],
            "serviceAccountsEnabled": client.confidential,
        });
        let path = format!("clients/{}", client.internal_id);
        Change::new("UPDATE", "CLIENT", path, Some(repr.to_string()))
    }

    /// The user joins (`CREATE`) or leaves (`DELETE`) the group.
    fn group_membership(&self, operation_type: &'static str) -> Change {
        let group = self.group;
        let repr = json!({"id": group.id, "name": group.name, "path": format!("/{}", group.name), "subGroups": []});
        let path = format!("users/{}/groups/{}", self.user.id, group.id);
        Change::new(
            operation_type,
            "GROUP_MEMBERSHIP",
            path,
            Some(repr.to_string()),
        )
    }

    /// The user is granted (`CREATE`) or loses (`DELETE`) the realm role.
    fn realm_role_mapping(&self, operation_type: &'static str) -> Change {
        let role = self.role;
        let repr = json!([{"id": role.id, "name": role.name, "composite": false, "clientRole": false, "containerId": self.realm_id}]);
        let path = format!("users/{}/role-mappings/realm", self.user.id);
        Change::new(
            operation_type,
            "REALM_ROLE_MAPPING",
            path,
            Some(repr.to_string()),
        )
    }

    fn update_realm(&self) -> Change {
        let repr = json!({"realm": self.realm, "enabled": true, "eventsEnabled": true, "adminEventsEnabled": true, "adminEventsDetailsEnabled": true});
        Change::new("UPDATE", "REALM", String::new(), Some(repr.to_string()))
    }
}

/// A new client with a random name.
fn create_client(rng: &mut SimRng) -> Change {
    let new_id = rng.uuid();
    let name = format!("app-{}", rng.hex(6));
    let repr = json!({"clientId": name, "enabled": true, "protocol": "openid-connect"});
    Change::new(
        "CREATE",
        "CLIENT",
        format!("clients/{new_id}"),
        Some(repr.to_string()),
    )
}

/// A new group with a random name.
fn create_group(rng: &mut SimRng) -> Change {
    let gid = rng.uuid();
    let repr = json!({"name": format!("team-{}", rng.hex(4))});
    Change::new(
        "CREATE",
        "GROUP",
        format!("groups/{gid}"),
        Some(repr.to_string()),
    )
}
