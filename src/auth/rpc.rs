//! Every RPC served on the gRPC port, and the role each one needs.
//!
//! One enum and exhaustive matches with no fall-through: a new RPC does not compile until it
//! is given a path and a role, and a test checks the list against the served descriptor.

use super::role::Role;

/// An RPC of one of the services on the gRPC port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rpc {
    /// `SessionService/Issue`.
    Issue,
    /// `SessionService/Refresh`.
    Refresh,
    /// `SessionService/Validate`.
    Validate,
    /// `SessionService/List`.
    List,
    /// `SessionService/Revoke`.
    Revoke,
    /// `SessionService/RevokeAll`.
    RevokeAll,
    /// `SessionService/AdminList`.
    AdminList,
    /// `SessionService/AdminRevokeUser`.
    AdminRevokeUser,
    /// `SessionService/AdminRevokeSession`.
    AdminRevokeSession,
    /// `SessionService/AdminRevokeAllSessions`.
    AdminRevokeAllSessions,
    /// `SessionService/AdminListAuditEvents`.
    AdminListAuditEvents,
    /// `SessionService/StepUp`.
    StepUp,
    /// Envoy's external authorization `Check`.
    EnvoyCheck,
    /// `grpc.health.v1.Health/Check`.
    HealthCheck,
    /// `grpc.health.v1.Health/Watch`.
    HealthWatch,
    /// `grpc.health.v1.Health/List`.
    HealthList,
    /// Server reflection, v1.
    Reflection,
    /// Server reflection, v1alpha.
    ReflectionV1Alpha,
}

/// The service `sessiond.v1.SessionService`.
pub const SESSION_SERVICE: &str = "sessiond.v1.SessionService";

impl Rpc {
    /// Every RPC, in the order metrics list them.
    pub const ALL: [Rpc; 18] = [
        Rpc::Issue,
        Rpc::Refresh,
        Rpc::Validate,
        Rpc::List,
        Rpc::Revoke,
        Rpc::RevokeAll,
        Rpc::AdminList,
        Rpc::AdminRevokeUser,
        Rpc::AdminRevokeSession,
        Rpc::AdminRevokeAllSessions,
        Rpc::AdminListAuditEvents,
        Rpc::StepUp,
        Rpc::EnvoyCheck,
        Rpc::HealthCheck,
        Rpc::HealthWatch,
        Rpc::HealthList,
        Rpc::Reflection,
        Rpc::ReflectionV1Alpha,
    ];

    /// The fully qualified service name.
    pub fn service(self) -> &'static str {
        match self {
            Rpc::Issue
            | Rpc::Refresh
            | Rpc::Validate
            | Rpc::List
            | Rpc::Revoke
            | Rpc::RevokeAll
            | Rpc::AdminList
            | Rpc::AdminRevokeUser
            | Rpc::AdminRevokeSession
            | Rpc::AdminRevokeAllSessions
            | Rpc::AdminListAuditEvents
            | Rpc::StepUp => SESSION_SERVICE,
            Rpc::EnvoyCheck => "envoy.service.auth.v3.Authorization",
            Rpc::HealthCheck | Rpc::HealthWatch | Rpc::HealthList => "grpc.health.v1.Health",
            Rpc::Reflection => "grpc.reflection.v1.ServerReflection",
            Rpc::ReflectionV1Alpha => "grpc.reflection.v1alpha.ServerReflection",
        }
    }

    /// The method name within its service.
    pub fn method(self) -> &'static str {
        match self {
            Rpc::Issue => "Issue",
            Rpc::Refresh => "Refresh",
            Rpc::Validate => "Validate",
            Rpc::List => "List",
            Rpc::Revoke => "Revoke",
            Rpc::RevokeAll => "RevokeAll",
            Rpc::AdminList => "AdminList",
            Rpc::AdminRevokeUser => "AdminRevokeUser",
            Rpc::AdminRevokeSession => "AdminRevokeSession",
            Rpc::AdminRevokeAllSessions => "AdminRevokeAllSessions",
            Rpc::AdminListAuditEvents => "AdminListAuditEvents",
            Rpc::StepUp => "StepUp",
            Rpc::EnvoyCheck | Rpc::HealthCheck => "Check",
            Rpc::HealthWatch => "Watch",
            Rpc::HealthList => "List",
            Rpc::Reflection | Rpc::ReflectionV1Alpha => "ServerReflectionInfo",
        }
    }

    /// The role a caller needs; `None` for the open services (health, reflection).
    pub fn role(self) -> Option<Role> {
        match self {
            Rpc::Issue | Rpc::Refresh | Rpc::StepUp => Some(Role::Issuer),
            Rpc::Validate | Rpc::List | Rpc::Revoke | Rpc::RevokeAll | Rpc::EnvoyCheck => {
                Some(Role::Validator)
            }
            Rpc::AdminList
            | Rpc::AdminRevokeUser
            | Rpc::AdminRevokeSession
            | Rpc::AdminRevokeAllSessions
            | Rpc::AdminListAuditEvents => Some(Role::Admin),
            Rpc::HealthCheck
            | Rpc::HealthWatch
            | Rpc::HealthList
            | Rpc::Reflection
            | Rpc::ReflectionV1Alpha => None,
        }
    }

    /// The RPC at an HTTP/2 `:path` (`/service/method`); `None` for a path no service answers.
    pub fn from_path(path: &str) -> Option<Rpc> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        Rpc::ALL
            .into_iter()
            .find(|rpc| rpc.service() == service && rpc.method() == method)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn every_rpc_has_its_own_path() {
        for rpc in Rpc::ALL {
            let path = format!("/{}/{}", rpc.service(), rpc.method());
            assert_eq!(Rpc::from_path(&path), Some(rpc), "{path}");
        }
        assert_eq!(Rpc::from_path("/sessiond.v1.SessionService/Nope"), None);
        assert_eq!(Rpc::from_path("sessiond.v1.SessionService/Issue"), None);
        assert_eq!(Rpc::from_path("/"), None);
    }

    #[test]
    fn the_list_matches_the_served_descriptor() {
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("the built-in descriptor decodes");
        let mut served = Vec::new();
        for file in &set.file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                for method in &service.method {
                    served.push(format!("/{name}/{}", method.name()));
                }
            }
        }
        assert!(!served.is_empty());
        for path in &served {
            assert!(Rpc::from_path(path).is_some(), "{path} has no role");
        }
        let listed = Rpc::ALL
            .iter()
            .filter(|rpc| rpc.service() == SESSION_SERVICE)
            .count();
        assert_eq!(listed, served.len(), "an RPC is listed that is not served");
    }

    #[test]
    fn roles_by_method() {
        assert_eq!(Rpc::Issue.role(), Some(Role::Issuer));
        assert_eq!(Rpc::Refresh.role(), Some(Role::Issuer));
        assert_eq!(Rpc::Validate.role(), Some(Role::Validator));
        assert_eq!(Rpc::EnvoyCheck.role(), Some(Role::Validator));
        assert_eq!(Rpc::AdminList.role(), Some(Role::Admin));
        assert_eq!(Rpc::AdminListAuditEvents.role(), Some(Role::Admin));
        assert_eq!(Rpc::HealthCheck.role(), None);
        assert_eq!(Rpc::Reflection.role(), None);
    }
}
