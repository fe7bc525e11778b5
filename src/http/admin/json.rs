//! The proto3 JSON mapping of the admin RPCs' messages, as grpcurl prints them: field names in
//! lowerCamelCase, `google.protobuf.Timestamp` as RFC 3339 text in UTC (`prost_types`' own
//! rendering, with 0, 3, 6 or 9 fractional digits), `google.protobuf.Duration` as seconds with
//! an `s` suffix (`"900s"`, `"1.500s"`), `uint32` as a JSON number, maps as objects,
//! and fields at their default value (empty text, `false`, `0`, an empty list or map, an unset
//! message) left out.
//!
//! Requests go the other way through [`ReasonBody`] and [`RevokeAllBody`]; query strings are
//! read in `super`. These views borrow the generated messages, so the JSON shows exactly what
//! the gRPC answer holds and nothing is converted twice.

use std::collections::HashMap;

use serde::{Deserialize, Serialize, Serializer};

use crate::pb;

/// The optional body of the two `DELETE` routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (recorded in the audit log and on the sessions).
    #[serde(default)]
    pub reason: String,
}

/// The body of `POST /admin/api/revoke-all`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeAllBody {
    /// Must be `true`: the emergency switch is never thrown by a request that did not say so.
    #[serde(default)]
    pub confirm: bool,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn duration<S: Serializer>(
    d: &Option<prost_types::Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => serializer.collect_str(d),
        None => serializer.serialize_none(),
    }
}

fn timestamp<S: Serializer>(
    t: &Option<prost_types::Timestamp>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serializer.collect_str(t),
        None => serializer.serialize_none(),
    }
}

/// `sessiond.v1.Session`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Session<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    session_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    user_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    tenant_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "timestamp")]
    created_at: Option<prost_types::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "timestamp")]
    last_seen_at: Option<prost_types::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "timestamp")]
    expires_at: Option<prost_types::Timestamp>,
    #[serde(skip_serializing_if = "str::is_empty")]
    ip: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    user_agent: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    device_name: &'a str,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    metadata: &'a HashMap<String, String>,
    #[serde(skip_serializing_if = "is_false")]
    current: bool,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "timestamp")]
    revoked_at: Option<prost_types::Timestamp>,
    #[serde(skip_serializing_if = "str::is_empty")]
    revoke_reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "duration")]
    idle_timeout: Option<prost_types::Duration>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "timestamp")]
    auth_time: Option<prost_types::Timestamp>,
    #[serde(skip_serializing_if = "str::is_empty")]
    acr: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    amr: &'a [String],
}

impl<'a> From<&'a pb::Session> for Session<'a> {
    fn from(s: &'a pb::Session) -> Self {
        Self {
            session_id: &s.session_id,
            user_id: &s.user_id,
            tenant_id: &s.tenant_id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            ip: &s.ip,
            user_agent: &s.user_agent,
            device_name: &s.device_name,
            metadata: &s.metadata,
            current: s.current,
            revoked_at: s.revoked_at,
            revoke_reason: &s.revoke_reason,
            idle_timeout: s.idle_timeout,
            auth_time: s.auth_time,
            acr: &s.acr,
            amr: &s.amr,
        }
    }
}

/// `sessiond.v1.AuditEvent`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    event_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "timestamp")]
    at: Option<prost_types::Timestamp>,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    actor: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    user_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    session_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    ip: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    user_agent: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
}

impl<'a> From<&'a pb::AuditEvent> for AuditEvent<'a> {
    fn from(e: &'a pb::AuditEvent) -> Self {
        Self {
            event_id: &e.event_id,
            at: e.at,
            kind: &e.kind,
            actor: &e.actor,
            user_id: &e.user_id,
            session_id: &e.session_id,
            ip: &e.ip,
            user_agent: &e.user_agent,
            reason: &e.reason,
        }
    }
}

/// `sessiond.v1.AdminListResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminListResponse<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sessions: Vec<Session<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    next_page_token: &'a str,
}

impl<'a> From<&'a pb::AdminListResponse> for AdminListResponse<'a> {
    fn from(r: &'a pb::AdminListResponse) -> Self {
        Self {
            sessions: r.sessions.iter().map(Session::from).collect(),
            next_page_token: &r.next_page_token,
        }
    }
}

/// `sessiond.v1.AdminListAuditEventsResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminListAuditEventsResponse<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    events: Vec<AuditEvent<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    next_page_token: &'a str,
}

impl<'a> From<&'a pb::AdminListAuditEventsResponse> for AdminListAuditEventsResponse<'a> {
    fn from(r: &'a pb::AdminListAuditEventsResponse) -> Self {
        Self {
            events: r.events.iter().map(AuditEvent::from).collect(),
            next_page_token: &r.next_page_token,
        }
    }
}

/// `sessiond.v1.AdminRevokeSessionResponse`.
#[derive(Serialize)]
pub struct AdminRevokeSessionResponse {
    #[serde(skip_serializing_if = "is_false")]
    revoked: bool,
}

impl From<&pb::AdminRevokeSessionResponse> for AdminRevokeSessionResponse {
    fn from(r: &pb::AdminRevokeSessionResponse) -> Self {
        Self { revoked: r.revoked }
    }
}

/// `sessiond.v1.AdminRevokeUserResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminRevokeUserResponse {
    #[serde(skip_serializing_if = "is_zero")]
    revoked_count: u32,
}

impl From<&pb::AdminRevokeUserResponse> for AdminRevokeUserResponse {
    fn from(r: &pb::AdminRevokeUserResponse) -> Self {
        Self {
            revoked_count: r.revoked_count,
        }
    }
}

/// `sessiond.v1.AdminRevokeAllSessionsResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminRevokeAllSessionsResponse {
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "timestamp")]
    not_before: Option<prost_types::Timestamp>,
}

impl From<&pb::AdminRevokeAllSessionsResponse> for AdminRevokeAllSessionsResponse {
    fn from(r: &pb::AdminRevokeAllSessionsResponse) -> Self {
        Self {
            not_before: r.not_before,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_follow_the_proto3_json_mapping() {
        let session = pb::Session {
            session_id: "0190d1c0-0000-7000-8000-000000000001".into(),
            user_id: "alice".into(),
            created_at: Some(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 120_000_000,
            }),
            metadata: HashMap::from([("login_method".to_owned(), "password".to_owned())]),
            idle_timeout: Some(prost_types::Duration {
                seconds: 900,
                nanos: 0,
            }),
            auth_time: Some(prost_types::Timestamp {
                seconds: 1_767_225_590,
                nanos: 0,
            }),
            acr: "urn:example:mfa".into(),
            amr: vec!["pwd".into(), "otp".into()],
            ..Default::default()
        };
        let json = serde_json::to_value(Session::from(&session)).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "sessionId": "0190d1c0-0000-7000-8000-000000000001",
                "userId": "alice",
                "createdAt": "2026-01-01T00:00:00.120Z",
                "metadata": {"login_method": "password"},
                "idleTimeout": "900s",
                "authTime": "2025-12-31T23:59:50Z",
                "acr": "urn:example:mfa",
                "amr": ["pwd", "otp"],
            })
        );
    }

    #[test]
    fn defaults_are_left_out() {
        let empty = pb::AdminListResponse::default();
        let json = serde_json::to_value(AdminListResponse::from(&empty)).expect("serialises");
        assert_eq!(json, serde_json::json!({}));
        let count = pb::AdminRevokeUserResponse { revoked_count: 3 };
        let json = serde_json::to_value(AdminRevokeUserResponse::from(&count)).expect("ok");
        assert_eq!(json, serde_json::json!({"revokedCount": 3}));
    }

    #[test]
    fn bodies_refuse_unknown_fields() {
        let err = serde_json::from_str::<RevokeAllBody>(r#"{"confirmed": true}"#)
            .expect_err("a misspelt confirm is refused");
        assert!(err.to_string().contains("unknown field"), "{err}");
        let body: RevokeAllBody =
            serde_json::from_str(r#"{"confirm": true, "reason": "breach"}"#).expect("parses");
        assert!(body.confirm);
        assert_eq!(body.reason, "breach");
    }
}
