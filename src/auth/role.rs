//! What a caller may do.

/// A role of a caller, as written in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `Issue`, `Refresh`.
    Issuer,
    /// `Validate`, `List`, `Revoke`, `RevokeAll`, Envoy `Check`, `/auth/check`, token
    /// introspection and revocation.
    Validator,
    /// Every `Admin*` RPC.
    Admin,
}

impl Role {
    /// Parses a role name as written in the configuration.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "issuer" => Some(Role::Issuer),
            "validator" => Some(Role::Validator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Role::Issuer => "issuer",
            Role::Validator => "validator",
            Role::Admin => "admin",
        }
    }
}
