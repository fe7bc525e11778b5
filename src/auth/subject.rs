//! Client certificate subjects, in the one form configured subjects are compared in.

/// The subject of a verified client certificate, in the forms a caller's
/// `client_cert_subject` is compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSubject {
    /// The whole subject in RFC 4514 form, RDNs joined by `", "` and every value escaped
    /// (`CN=gateway, O=Example\, Inc.`), so no attribute value can pose as another attribute.
    pub full: String,
    /// `CN=<value>`, escaped alike, when the subject has exactly one common name.
    pub common_name: Option<String>,
}

impl CertSubject {
    /// Reads the subject of a DER certificate; `None` when the certificate does not parse.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let full = subject
            .iter_rdn()
            .map(|rdn| rdn.iter().map(attribute).collect::<Vec<_>>().join("+"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut common_names = subject.iter_common_name();
        let common_name = match (common_names.next(), common_names.next()) {
            (Some(cn), None) => Some(attribute(cn)),
            _ => None,
        };
        Some(Self { full, common_name })
    }
}

/// `TYPE=value` with the value escaped as RFC 4514 asks; a value that is not a string is
/// written `#<hex>`.
fn attribute(attr: &x509_parser::x509::AttributeTypeAndValue<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let name = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
        .map(str::to_owned)
        .unwrap_or_else(|_| attr.attr_type().to_id_string());
    let value = match attr.as_str() {
        Ok(text) => escape_value(text),
        Err(_) => format!("#{}", hex::encode(attr.as_slice())),
    };
    format!("{name}={value}")
}

/// Escapes an attribute value (RFC 4514, section 2.4), control characters included.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A configured subject in the form [`CertSubject::full`] takes: RDNs separated by `", "`,
/// however many spaces the configuration put after each unescaped comma.
pub(super) fn normalize_subject(configured: &str) -> String {
    let mut out = String::with_capacity(configured.len() + 8);
    let mut chars = configured.trim_start().chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '\\' => out.extend(chars.next()),
            ',' => {
                out.push(' ');
                while chars.next_if_eq(&' ').is_some() {}
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Authenticator, CallerSpec, Refusal, Role, hash_credential};

    #[test]
    fn configured_subjects_take_the_rendered_form() {
        assert_eq!(normalize_subject("CN=gateway"), "CN=gateway");
        assert_eq!(
            normalize_subject("CN=gateway,O=example"),
            "CN=gateway, O=example"
        );
        assert_eq!(
            normalize_subject("CN=gateway,  O=example"),
            "CN=gateway, O=example"
        );
        assert_eq!(
            normalize_subject(r"CN=gateway, O=Example\, Inc."),
            r"CN=gateway, O=Example\, Inc."
        );
        assert_eq!(escape_value("Example, Inc."), r"Example\, Inc.");
        assert_eq!(escape_value(r#" #a+b;"<c>\ "#), r#"\ #a\+b\;\"\<c\>\\\ "#);
        assert_eq!(escape_value("a\nb"), r"a\0Ab");
    }

    #[test]
    fn an_attribute_value_cannot_pose_as_another_attribute() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, CN=gateway");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "intern");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("certificate");
        let subject = CertSubject::from_der(cert.der()).expect("parses");
        assert_eq!(subject.full, r"O=Example\, CN=gateway, CN=intern");
        assert_eq!(subject.common_name.as_deref(), Some("CN=intern"));

        let gateway = CallerSpec {
            name: "gateway".into(),
            credential_sha256: Some(hash_credential("unused")),
            client_cert_subject: Some("CN=gateway".into()),
            roles: vec![Role::Validator],
            rate_limit: None,
        };
        let auth = Authenticator::new(vec![gateway], 10);
        let refused = auth
            .admit_role(Role::Validator, None, Some(&subject))
            .expect_err("the intern is not the gateway");
        assert_eq!(refused, Refusal::CertificateUnknown);
    }
}
