//! Admin events: the mix of admin operations and, per operation, the resource path and the
//! representation a real server records.

use std::sync::Arc;

use super::{Generator, Shape};
use crate::error::SimError;
use crate::model::{AdminEvent, AuthDetails, EventKind, Fields, Record};

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
        let user_repr = |enabled: bool| {
            serde_json::json!({
                "username": user.username,
                "email": user.email,
                "enabled": enabled,
                "emailVerified": true,
                "firstName": user.username.split('.').next().unwrap_or_default(),
                "attributes": {},
                "groups": [],
            })
            .to_string()
        };
        let (operation_type, resource_type, resource_path, representation) = match op {
            AdminOp::CreateUser => (
                "CREATE",
                "USER",
                format!("users/{}", user.id),
                Some(user_repr(true)),
            ),
            AdminOp::UpdateUser => (
                "UPDATE",
                "USER",
                format!("users/{}", user.id),
                Some(user_repr(rng.chance(0.9))),
            ),
            AdminOp::DeleteUser => ("DELETE", "USER", format!("users/{}", user.id), None),
            AdminOp::ResetPassword => (
                "ACTION",
                "USER",
                format!("users/{}/reset-password", user.id),
                Some(r#"{"type":"password","temporary":true}"#.to_owned()),
            ),
            AdminOp::ExecuteActionsEmail => (
                "ACTION",
                "USER",
                format!("users/{}/execute-actions-email", user.id),
                Some(r#"["UPDATE_PASSWORD","VERIFY_EMAIL"]"#.to_owned()),
            ),
            AdminOp::LogoutUser => (
                "ACTION",
                "USER",
                format!("users/{}/logout", user.id),
                None,
            ),
            AdminOp::DeleteSession => (
                "DELETE",
                "USER_SESSION",
                format!("sessions/{}", rng.uuid()),
                None,
            ),
            AdminOp::UpdateClient => (
                "UPDATE",
                "CLIENT",
                format!("clients/{}", client.internal_id),
                Some(
                    serde_json::json!({
                        "id": client.internal_id,
                        "clientId": client.client_id,
                        "enabled": true,
                        "publicClient": !client.confidential,
                        "redirectUris": [client.redirect_uri],
                        "serviceAccountsEnabled": client.confidential,
                    })
                    .to_string(),
                ),
            ),
            AdminOp::CreateClient => {
                let new_id = rng.uuid();
                let name = format!("app-{}", rng.hex(6));
                (
                    "CREATE",
                    "CLIENT",
                    format!("clients/{new_id}"),
                    Some(
                        serde_json::json!({"clientId": name, "enabled": true, "protocol": "openid-connect"})
                            .to_string(),
                    ),
                )
            }
            AdminOp::JoinGroup | AdminOp::LeaveGroup => (
                if matches!(op, AdminOp::JoinGroup) {
                    "CREATE"
                } else {
                    "DELETE"
                },
                "GROUP_MEMBERSHIP",
                format!("users/{}/groups/{}", user.id, group.id),
                Some(
                    serde_json::json!({"id": group.id, "name": group.name, "path": format!("/{}", group.name), "subGroups": []})
                        .to_string(),
                ),
            ),
            AdminOp::GrantRealmRole | AdminOp::RevokeRealmRole => (
                if matches!(op, AdminOp::GrantRealmRole) {
                    "CREATE"
                } else {
                    "DELETE"
                },
                "REALM_ROLE_MAPPING",
                format!("users/{}/role-mappings/realm", user.id),
                Some(
                    serde_json::json!([{"id": role.id, "name": role.name, "composite": false, "clientRole": false, "containerId": self.realm_id}])
                        .to_string(),
                ),
            ),
            AdminOp::CreateGroup => {
                let gid = rng.uuid();
                (
                    "CREATE",
                    "GROUP",
                    format!("groups/{gid}"),
                    Some(serde_json::json!({"name": format!("team-{}", rng.hex(4))}).to_string()),
                )
            }
            AdminOp::UpdateRealm => (
                "UPDATE",
                "REALM",
                String::new(),
                Some(
                    serde_json::json!({"realm": self.realm, "enabled": true, "eventsEnabled": true, "adminEventsEnabled": true, "adminEventsDetailsEnabled": true})
                        .to_string(),
                ),
            ),
        };
        let error = (rng.chance(0.01)).then(|| "unknown_error".to_owned());
        let is_error = error.is_some();
        let auth_ip = admin.ip.clone();
        let event = AdminEvent {
            id: (!self.legacy).then(|| id.clone()),
            time,
            realm_id: self.realm_id.clone(),
            auth_details: AuthDetails {
                realm_id: pool.master_realm_id.clone(),
                client_id: admin_client.clone(),
                user_id: admin.id.clone(),
                ip_address: auth_ip,
            },
            operation_type,
            resource_type,
            resource_path,
            representation,
            error,
            details: None,
        };
        let json: Arc<str> = serde_json::to_string(&event)?.into();
        let commit_at = time.saturating_add(self.commit_delay(is_error, shape));
        let AdminEvent {
            auth_details,
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
