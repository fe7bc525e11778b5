//! Request inputs that describe the end user's client, checked once at the edge.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::device;
use super::error::DomainError;
use crate::model::limits::{
    MAX_DEVICE_NAME_BYTES, MAX_IP_BYTES, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_BYTES,
    MAX_METADATA_TOTAL_BYTES, MAX_METADATA_VALUE_BYTES, MAX_USER_AGENT_BYTES, check_text,
};

/// Where a session is used from: checked, with a device label filled in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Client {
    /// A parseable IP address in canonical text, or empty.
    pub ip: String,
    /// The user agent, or empty.
    pub user_agent: String,
    /// The given device name, or one derived from the user agent.
    pub device_name: String,
}

impl Client {
    /// Checks each field against its bound; the IP must parse. An empty device name is derived
    /// from the user agent.
    pub fn parse(ip: &str, user_agent: &str, device_name: &str) -> Result<Self, DomainError> {
        check_text("client.ip", ip, MAX_IP_BYTES)?;
        check_text("client.user_agent", user_agent, MAX_USER_AGENT_BYTES)?;
        check_text("client.device_name", device_name, MAX_DEVICE_NAME_BYTES)?;
        let ip = if ip.is_empty() {
            String::new()
        } else {
            ip.parse::<IpAddr>()
                .map_err(|_| DomainError::invalid("client.ip", "must be an IPv4 or IPv6 address"))?
                .to_string()
        };
        let device_name = if device_name.is_empty() {
            device::label(user_agent)
        } else {
            device_name.to_owned()
        };
        Ok(Self {
            ip,
            user_agent: user_agent.to_owned(),
            device_name,
        })
    }
}

/// Checks session metadata: at most `MAX_METADATA_ENTRIES` entries, bounded keys, values and
/// total size; keys non-empty.
pub fn parse_metadata(
    map: HashMap<String, String>,
) -> Result<BTreeMap<String, String>, DomainError> {
    if map.len() > MAX_METADATA_ENTRIES {
        return Err(DomainError::invalid_owned(
            "metadata",
            format!(
                "has {} entries, at most {MAX_METADATA_ENTRIES} are allowed",
                map.len()
            ),
        ));
    }
    let mut total = 0;
    for (k, v) in &map {
        if k.is_empty() {
            return Err(DomainError::invalid("metadata", "keys must not be empty"));
        }
        check_text("metadata key", k, MAX_METADATA_KEY_BYTES)?;
        if v.len() > MAX_METADATA_VALUE_BYTES {
            return Err(DomainError::invalid_owned(
                "metadata value",
                format!(
                    "is {} bytes, at most {MAX_METADATA_VALUE_BYTES} are allowed",
                    v.len()
                ),
            ));
        }
        total += k.len() + v.len();
    }
    if total > MAX_METADATA_TOTAL_BYTES {
        return Err(DomainError::invalid_owned(
            "metadata",
            format!("is {total} bytes, at most {MAX_METADATA_TOTAL_BYTES} are allowed"),
        ));
    }
    Ok(map.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_must_parse_and_is_canonical() {
        assert!(Client::parse("not-an-ip", "", "").is_err());
        let c = Client::parse("2001:DB8::1", "", "laptop").expect("valid");
        assert_eq!(c.ip, "2001:db8::1");
        assert_eq!(c.device_name, "laptop");
    }

    #[test]
    fn metadata_bounds() {
        let big: HashMap<_, _> = (0..=MAX_METADATA_ENTRIES)
            .map(|i| (i.to_string(), String::new()))
            .collect();
        assert!(parse_metadata(big).is_err());
        let one = HashMap::from([("k".to_owned(), "x".repeat(MAX_METADATA_VALUE_BYTES + 1))]);
        assert!(parse_metadata(one).is_err());
        let ok = HashMap::from([("k".to_owned(), "v".to_owned())]);
        assert_eq!(
            parse_metadata(ok)
                .expect("valid")
                .get("k")
                .map(String::as_str),
            Some("v")
        );
    }
}
