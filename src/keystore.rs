//! Loads the server's secrets: the signing key, retired verification keys, and the pepper.
//!
//! The signing key comes from `--signing-key-file` (PEM, PKCS#8: Ed25519, P-256 or RSA) or the
//! `SESSIOND_SIGNING_KEY` environment variable (the PEM text); without either, a key of
//! `--key-algorithm` is generated once into the key directory. Public keys given with
//! `--verification-key-file` keep verifying tokens of retired keys until those expire. The pepper
//! (`<key-dir>/pepper`, 32 random bytes) is generated on first start. Generated files are mode
//! 0600 in a 0700 directory, so tokens survive restarts; replicas share the key directory. A
//! secret file that group or others may read (a Kubernetes Secret is mounted 0644 by default)
//! is used, with a warning naming the file and its mode.
//!
//! Generated Ed25519 keys are written as PKCS#8 v1 (RFC 5208: the private key alone), which
//! every PKCS#8 reader accepts (OpenSSL 3.0 does not read the v2 form that carries the public
//! key too); both forms are read. [`generate_key_file`] and [`public_half`] serve the
//! `sessiond key` commands, so rotating a key needs no other tool.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::KeypairBytes;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rand::RngCore;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::domain::access;
use crate::domain::secrets::{Keyring, SigningKey, VerifyingKey};

const PEPPER_FILE: &str = "pepper";

/// Which algorithm a generated signing key uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// Ed25519 (`EdDSA`), the default: small, fast, deterministic.
    EdDsa,
    /// ECDSA P-256 with SHA-256 (`ES256`).
    Es256,
    /// RSA PKCS#1 v1.5 with SHA-256 (`RS256`), 2048-bit.
    Rs256,
}

impl KeyAlgorithm {
    /// Parses `eddsa`, `es256` or `rs256`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "eddsa" | "ed25519" => Some(Self::EdDsa),
            "es256" => Some(Self::Es256),
            "rs256" => Some(Self::Rs256),
            _ => None,
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Self::EdDsa => "signing-ed25519.pem",
            Self::Es256 => "signing-es256.pem",
            Self::Rs256 => "signing-rs256.pem",
        }
    }
}

/// Where the keys come from.
#[derive(Clone)]
pub struct KeySources {
    /// The directory for generated keys and the pepper.
    pub dir: PathBuf,
    /// A PEM private key file to sign with.
    pub signing_key_file: Option<PathBuf>,
    /// A PEM private key given inline (from the environment).
    pub signing_key_pem: Option<String>,
    /// PEM public keys that verify but no longer sign.
    pub verification_key_files: Vec<PathBuf>,
    /// The algorithm of a generated key.
    pub algorithm: KeyAlgorithm,
}

impl std::fmt::Debug for KeySources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySources")
            .field("dir", &self.dir)
            .field("signing_key_file", &self.signing_key_file)
            .field(
                "signing_key_pem",
                &self.signing_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("verification_key_files", &self.verification_key_files)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl KeySources {
    /// Generated keys in `dir`, Ed25519.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            signing_key_file: None,
            signing_key_pem: None,
            verification_key_files: Vec::new(),
            algorithm: KeyAlgorithm::EdDsa,
        }
    }
}

/// Why the secrets could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A key does not hold what it should.
    #[error("{path}: {message}")]
    Invalid {
        /// The file (or `SESSIOND_SIGNING_KEY`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads the keyring from `dir` with a generated Ed25519 key: the default set-up.
pub fn load_or_create(dir: &Path) -> Result<Keyring, KeyError> {
    load(&KeySources::in_dir(dir))
}

/// Loads the keyring the sources describe, generating what the key directory lacks.
pub fn load(sources: &KeySources) -> Result<Keyring, KeyError> {
    let dir = &sources.dir;
    // An existing directory may be a read-only mount (a Kubernetes Secret) that cannot be
    // changed: it is warned about rather than refused.
    crate::permissions::ensure_private_dir(dir, "key directory").map_err(io(dir))?;

    let (origin, pem) = match (&sources.signing_key_pem, &sources.signing_key_file) {
        (Some(pem), _) => (PathBuf::from("SESSIOND_SIGNING_KEY"), pem.clone()),
        (None, Some(path)) => (path.clone(), read_secret(path, "signing key")?),
        (None, None) => {
            let path = dir.join(sources.algorithm.file_name());
            if !path.exists() {
                let pem = generate(sources.algorithm, &path)?;
                // Another replica sharing the directory may have been first: keep its key.
                if create_secret(&path, pem.as_bytes())? {
                    tracing::info!(path = %path.display(), "generated a new signing key");
                }
            }
            (path.clone(), read_secret(&path, "signing key")?)
        }
    };
    let (signing, verifying) = private_key(&origin, &pem)?;
    let mut keys = HashMap::new();
    keys.insert(signing.kid.clone(), Arc::new(verifying));
    for path in &sources.verification_key_files {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let (kid, key) = public_key(path, &text)?;
        keys.entry(kid).or_insert_with(|| Arc::new(key));
    }

    let pepper_path = dir.join(PEPPER_FILE);
    if !pepper_path.exists() {
        let mut pepper = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut pepper);
        create_secret(&pepper_path, &pepper)?;
    }
    crate::permissions::warn_if_readable_by_others(&pepper_path, "pepper");
    let pepper = std::fs::read(&pepper_path).map_err(io(&pepper_path))?;
    tracing::info!(kid = %signing.kid, verification_keys = keys.len(), "keys loaded");
    Keyring::new(signing, keys, &pepper).map_err(|message| KeyError::Invalid {
        path: pepper_path,
        message,
    })
}

/// The public half of a key: what `sessiond key public` prints.
#[derive(Clone, Debug)]
pub struct PublicHalf {
    /// The key id tokens signed by this key carry (and the JWKS lists).
    pub kid: String,
    /// The JWS algorithm.
    pub algorithm: Algorithm,
    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), for
    /// `--verification-key-files`.
    pub pem: String,
}

/// Generates a new signing key of `algorithm` into `path` (PEM, PKCS#8 v1, mode 0600) and
/// returns its public half. Fails, writing nothing, when `path` exists already.
pub fn generate_key_file(algorithm: KeyAlgorithm, path: &Path) -> Result<PublicHalf, KeyError> {
    let pem = generate(algorithm, path)?;
    if !create_secret(path, pem.as_bytes())? {
        return Err(KeyError::Invalid {
            path: path.to_owned(),
            message: "exists already; a key file is never replaced".into(),
        });
    }
    public_half(path)
}

/// The public half of the PKCS#8 PEM private key (v1 or v2, of a supported type) in `path`.
/// The kid is the one the server derives, so it matches the tokens the key signs and the JWKS.
pub fn public_half(path: &Path) -> Result<PublicHalf, KeyError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let (_, pem) = private_kind(path, &text)?;
    let (kid, key) = public_key(path, &pem)?;
    Ok(PublicHalf {
        kid,
        algorithm: key.algorithm,
        pem,
    })
}

fn read_secret(path: &Path, what: &'static str) -> Result<String, KeyError> {
    crate::permissions::warn_if_readable_by_others(path, what);
    std::fs::read_to_string(path).map_err(io(path))
}

fn generate(algorithm: KeyAlgorithm, path: &Path) -> Result<String, KeyError> {
    let invalid = |e: String| KeyError::Invalid {
        path: path.to_owned(),
        message: e,
    };
    let pem = match algorithm {
        // PKCS#8 v1: the private key alone (`SigningKey::to_pkcs8_pem` writes v2, with the
        // public key, which OpenSSL 3.0 cannot read). The public key is derived on load.
        KeyAlgorithm::EdDsa => KeypairBytes {
            secret_key: ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng).to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| invalid(e.to_string()))?,
        KeyAlgorithm::Es256 => p256::SecretKey::random(&mut rand::rngs::OsRng)
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| invalid(e.to_string()))?,
        KeyAlgorithm::Rs256 => rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .map_err(|e| invalid(e.to_string()))?
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| invalid(e.to_string()))?,
    };
    Ok(pem.to_string())
}

/// The key id: a digest of the public key (SPKI DER), so it is stable and needs no registry.
fn kid_of(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    // 9 of SHA-256's 32 bytes: 12 characters of base64url, no padding.
    URL_SAFE_NO_PAD.encode(digest.get(..9).unwrap_or_default())
}

/// A signing key and its own verifying half from a PKCS#8 PEM private key of any supported type.
fn private_key(path: &Path, pem: &str) -> Result<(SigningKey, VerifyingKey), KeyError> {
    let invalid = |message: String| KeyError::Invalid {
        path: path.to_owned(),
        message,
    };
    let (algorithm, public_pem) = private_kind(path, pem)?;
    let encoding = match algorithm {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        other => return Err(invalid(format!("unsupported algorithm {other:?}"))),
    };
    let encoding = encoding.map_err(|e| invalid(e.to_string()))?;
    let (kid, verifying) = public_key(path, &public_pem)?;
    if verifying.algorithm != algorithm {
        return Err(invalid("public and private halves disagree".into()));
    }
    let ed25519 = match algorithm {
        Algorithm::EdDSA => Some(
            ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|e| invalid(e.to_string()))?,
        ),
        _ => None,
    };
    let signing =
        SigningKey::new(kid, algorithm, encoding, ed25519, access::TYP).map_err(invalid)?;
    Ok((signing, verifying))
}

/// The algorithm of a PKCS#8 PEM private key (v1 or v2) of any supported type, and its public
/// half as an SPKI PEM.
fn private_kind(path: &Path, pem: &str) -> Result<(Algorithm, String), KeyError> {
    let invalid = |message: String| KeyError::Invalid {
        path: path.to_owned(),
        message,
    };
    let (algorithm, public) = if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
        (
            Algorithm::EdDSA,
            k.verifying_key().to_public_key_pem(LineEnding::LF),
        )
    } else if let Ok(k) = p256::SecretKey::from_pkcs8_pem(pem) {
        (
            Algorithm::ES256,
            k.public_key().to_public_key_pem(LineEnding::LF),
        )
    } else if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
        (
            Algorithm::RS256,
            k.to_public_key().to_public_key_pem(LineEnding::LF),
        )
    } else {
        return Err(invalid(
            "not a PKCS#8 PEM private key of a supported type (Ed25519, P-256, RSA)".into(),
        ));
    };
    Ok((algorithm, public.map_err(|e| invalid(e.to_string()))?))
}

/// A verifying key, its kid and its JWK from a PEM public key (SPKI) of any supported type.
fn public_key(path: &Path, pem: &str) -> Result<(String, VerifyingKey), KeyError> {
    let invalid = |message: String| KeyError::Invalid {
        path: path.to_owned(),
        message,
    };
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let (algorithm, decoding, der, jwk) =
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            let der = k.to_public_key_der().map_err(|e| invalid(e.to_string()))?;
            let decoding = DecodingKey::from_ed_der(k.as_bytes());
            let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.as_bytes())});
            (Algorithm::EdDSA, decoding, der, jwk)
        } else if let Ok(k) = p256::PublicKey::from_public_key_pem(pem) {
            let der = k.to_public_key_der().map_err(|e| invalid(e.to_string()))?;
            let point = p256::EncodedPoint::from(k);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                return Err(invalid("P-256 key without coordinates".into()));
            };
            let decoding = DecodingKey::from_ec_der(point.as_bytes());
            let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)});
            (Algorithm::ES256, decoding, der, jwk)
        } else if let Ok(k) = rsa::RsaPublicKey::from_public_key_pem(pem) {
            let der = k.to_public_key_der().map_err(|e| invalid(e.to_string()))?;
            let (n, e) = (k.n().to_bytes_be(), k.e().to_bytes_be());
            let decoding = DecodingKey::from_rsa_raw_components(&n, &e);
            let jwk = serde_json::json!({"kty": "RSA", "n": b64(&n), "e": b64(&e)});
            (Algorithm::RS256, decoding, der, jwk)
        } else {
            return Err(invalid(
                "not a PEM public key of a supported type (Ed25519, P-256, RSA)".into(),
            ));
        };
    let kid = kid_of(der.as_bytes());
    let mut jwk = jwk;
    if let Some(map) = jwk.as_object_mut() {
        map.insert("kid".into(), kid.clone().into());
        map.insert("alg".into(), format!("{algorithm:?}").into());
        map.insert("use".into(), "sig".into());
    }
    Ok((
        kid,
        VerifyingKey {
            algorithm,
            decoding,
            jwk,
        },
    ))
}

/// Writes a new secret file with mode 0600 unless `path` exists; returns false (writing
/// nothing) when it does. The bytes go to a private temporary file first, which is then
/// hard-linked into place: the link is atomic and never replaces a file, so a reader never
/// sees a partly written secret and of two replicas generating at once, one key wins and both
/// use it.
fn create_secret(path: &Path, bytes: &[u8]) -> Result<bool, KeyError> {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = write_new(&tmp, bytes).and_then(|()| match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A filesystem without hard links: a rename, which cannot refuse to replace a file,
        // after a check (the window between them is the only difference).
        Err(_) if !path.exists() => std::fs::rename(&tmp, path).map(|()| true).map_err(io(path)),
        Err(e) => Err(io(path)(e)),
    });
    // The temporary name is removed whether or not the link was made.
    let _ = std::fs::remove_file(&tmp);
    let created = written?;
    if created {
        // The new name is durable only once its directory is.
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(created)
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::{self, AccessClaims};
    use crate::model::ids::{SessionId, TenantId, UserId};
    use crate::model::time::Timestamp;

    fn claims() -> AccessClaims {
        // A fixed instant long past: signing and verifying never read a clock (expiry is the
        // caller's, by the service's clock), so these tokens verify whenever the tests run.
        let now = Timestamp::from_micros(1_700_000_000_123_456);
        AccessClaims {
            session_id: SessionId::new(),
            user_id: UserId::parse("sub", "u").expect("user"),
            tenant_id: TenantId::none(),
            issued_at: now,
            expires_at: now.plus(std::time::Duration::from_secs(60)),
            grant: Some(access::Grant::new("login", "aud")),
            auth_time: Some(now),
            acr: String::new(),
            amr: Vec::new(),
            refresh_generation: Some(0),
        }
    }

    const ALGORITHMS: [KeyAlgorithm; 3] = [
        KeyAlgorithm::EdDsa,
        KeyAlgorithm::Es256,
        KeyAlgorithm::Rs256,
    ];

    /// A key of `algorithm` generated into a fresh directory: the directory (kept alive), its
    /// sources and the keyring loaded from them.
    fn generated(algorithm: KeyAlgorithm) -> (tempfile::TempDir, KeySources, Keyring) {
        let dir = tempfile::tempdir().expect("tempdir");
        let sources = KeySources {
            algorithm,
            ..KeySources::in_dir(dir.path())
        };
        let keys = load(&sources).expect("keys");
        (dir, sources, keys)
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        for algorithm in ALGORITHMS {
            let (_dir, sources, keys) = generated(algorithm);
            let token = access::sign(&keys, "iss", &claims()).expect("sign");
            let verified = access::verify(&keys, "iss", "aud", &token);
            assert!(verified.is_ok(), "{algorithm:?}: {verified:?}");
            // Loading again reads the same key back.
            let again = load(&sources).expect("keys");
            assert_eq!(again.signing.kid, keys.signing.kid);
        }
    }

    #[test]
    fn tokens_are_the_jws_jsonwebtoken_writes() {
        let body = serde_json::json!({"sub": "user-1", "exp": 1_700_000_060, "acr": "mfa"});
        for algorithm in ALGORITHMS {
            let (_dir, _, keys) = generated(algorithm);
            let ours = keys.signing.sign(&body).expect("sign");
            let mut header = jsonwebtoken::Header::new(keys.signing.algorithm);
            header.typ = Some(access::TYP.to_owned());
            header.kid = Some(keys.signing.kid.clone());
            let theirs =
                jsonwebtoken::encode(&header, &body, &keys.signing.encoding).expect("encode");
            if algorithm == KeyAlgorithm::EdDsa {
                // Deterministic signatures: the very same bytes.
                assert_eq!(ours, theirs);
            } else {
                let (input, _) = ours.rsplit_once('.').expect("jws");
                let (expected, _) = theirs.rsplit_once('.').expect("jws");
                assert_eq!(input, expected, "{algorithm:?}: header and claims");
            }
            let verifying = keys.verifying.get(&keys.signing.kid).expect("own key");
            let mut validation = jsonwebtoken::Validation::new(keys.signing.algorithm);
            validation.validate_exp = false;
            validation.required_spec_claims.clear();
            let decoded =
                jsonwebtoken::decode::<serde_json::Value>(&ours, &verifying.decoding, &validation);
            assert_eq!(decoded.expect("verifies").claims, body, "{algorithm:?}");
        }
    }

    #[test]
    fn retired_keys_verify_and_removed_keys_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = load(&KeySources::in_dir(dir.path().join("old"))).expect("old");
        let token = access::sign(&old, "iss", &claims()).expect("sign");
        let old_public = dir.path().join("old.pub.pem");
        let jwk_x = old
            .verifying
            .values()
            .next()
            .map(|k| k.jwk.clone())
            .expect("jwk");
        assert_eq!(jwk_x["kty"], "OKP");
        let private =
            std::fs::read_to_string(dir.path().join("old/signing-ed25519.pem")).expect("pem");
        let public = ed25519_dalek::SigningKey::from_pkcs8_pem(&private)
            .expect("parse")
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem");
        std::fs::write(&old_public, public).expect("write");

        let rotated = KeySources {
            verification_key_files: vec![old_public],
            ..KeySources::in_dir(dir.path().join("new"))
        };
        let new = load(&rotated).expect("new");
        assert_ne!(new.signing.kid, old.signing.kid);
        assert!(
            access::verify(&new, "iss", "aud", &token).is_ok(),
            "retired key still verifies"
        );
        let without = load(&KeySources::in_dir(dir.path().join("new"))).expect("new only");
        assert_eq!(
            access::verify(&without, "iss", "aud", &token).err(),
            Some(crate::domain::TokenProblem::BadSignature)
        );
    }

    /// The PKCS#8 structure of a PEM private key.
    fn private_key_info(pem: &str) -> (pkcs8::Version, bool) {
        let (label, der) = pkcs8::der::pem::decode_vec(pem.as_bytes()).expect("pem");
        assert_eq!(label, "PRIVATE KEY");
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).expect("pkcs8");
        (info.version(), info.public_key.is_some())
    }

    #[test]
    fn generated_keys_are_pkcs8_v1_without_a_public_key_field() {
        for algorithm in [
            KeyAlgorithm::EdDsa,
            KeyAlgorithm::Es256,
            KeyAlgorithm::Rs256,
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            load(&KeySources {
                algorithm,
                ..KeySources::in_dir(dir.path())
            })
            .expect("keys");
            let pem =
                std::fs::read_to_string(dir.path().join(algorithm.file_name())).expect("read");
            assert_eq!(
                private_key_info(&pem),
                (pkcs8::Version::V1, false),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn a_pkcs8_v2_ed25519_key_still_loads_with_the_same_kid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let v2 = key.to_pkcs8_pem(LineEnding::LF).expect("pem");
        assert_eq!(private_key_info(&v2), (pkcs8::Version::V2, true));
        let v1 = KeypairBytes {
            secret_key: key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .expect("pem");
        let mut kids = Vec::new();
        for (name, pem) in [("v2.pem", v2.as_str()), ("v1.pem", v1.as_str())] {
            let path = dir.path().join(name);
            write_new(&path, pem.as_bytes()).expect("write");
            let keys = load(&KeySources {
                signing_key_file: Some(path.clone()),
                ..KeySources::in_dir(dir.path().join("keys"))
            })
            .expect("keys");
            assert_eq!(public_half(&path).expect("public").kid, keys.signing.kid);
            kids.push(keys.signing.kid.clone());
        }
        assert_eq!(kids.first(), kids.last(), "one key, one kid");
    }

    #[test]
    fn key_files_are_generated_once_and_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        let first = generate_key_file(KeyAlgorithm::EdDsa, &path).expect("generate");
        let before = std::fs::read(&path).expect("read");
        assert!(generate_key_file(KeyAlgorithm::EdDsa, &path).is_err());
        assert_eq!(std::fs::read(&path).expect("read"), before);
        assert_eq!(public_half(&path).expect("public").kid, first.kid);
        let mode = std::fs::metadata(&path).expect("meta").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        // Nothing but the key is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn es256_tokens_are_low_s_and_their_high_s_twins_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = load(&KeySources {
            algorithm: KeyAlgorithm::Es256,
            ..KeySources::in_dir(dir.path())
        })
        .expect("keys");
        // Half of raw ECDSA signatures are high-S: 32 low-S ones in a row are not luck.
        for _ in 0..32 {
            let token = access::sign(&keys, "iss", &claims()).expect("sign");
            let (input, encoded) = token.rsplit_once('.').expect("jws");
            let bytes = URL_SAFE_NO_PAD.decode(encoded).expect("base64");
            let signature = p256::ecdsa::Signature::from_slice(&bytes).expect("signature");
            assert!(
                signature.normalize_s().is_none(),
                "issued a high-S signature"
            );
            assert!(access::verify(&keys, "iss", "aud", &token).is_ok());

            let twin =
                p256::ecdsa::Signature::from_scalars(signature.r(), -*signature.s()).expect("twin");
            assert!(twin.normalize_s().is_some(), "the twin is high-S");
            let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(twin.to_bytes()));
            assert_eq!(
                access::verify(&keys, "iss", "aud", &forged).err(),
                Some(crate::domain::TokenProblem::BadSignature)
            );
        }
    }

    /// Log lines written while `f` runs, without colours.
    fn logs_of<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&sink.0.lock().expect("lock")).into_owned();
        (out, text)
    }

    #[test]
    fn secret_files_readable_by_others_are_used_with_a_warning_naming_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let key_dir = dir.path().join("keys");
        let key = dir.path().join("operator.pem");
        generate_key_file(KeyAlgorithm::EdDsa, &key).expect("generate");
        let sources = KeySources {
            signing_key_file: Some(key.clone()),
            ..KeySources::in_dir(&key_dir)
        };
        let (keys, quiet) = logs_of(|| load(&sources));
        keys.expect("keys");
        assert!(!quiet.contains("accessible by other users"), "{quiet}");

        let pepper = key_dir.join(PEPPER_FILE);
        for path in [&key, &pepper] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let (keys, loud) = logs_of(|| load(&sources));
        keys.expect("a loose key is used, not refused");
        for (path, what) in [(&key, "signing key"), (&pepper, "pepper")] {
            let line = loud
                .lines()
                .find(|l| l.contains(&format!("path={}", path.display())))
                .unwrap_or_else(|| panic!("no warning names {}: {loud}", path.display()));
            assert!(line.contains("WARN"), "{line}");
            assert!(line.contains("mode=0644"), "{line}");
            assert!(line.contains(what), "{line}");
        }
    }
}
