//! Loads the server's secrets from a key directory, creating them on first start.
//!
//! The directory holds `signing-ed25519.pem` (PKCS#8) and `pepper` (32 random bytes), each
//! mode 0600, so tokens and refresh tokens stay valid across restarts. Replicas that must
//! accept each other's tokens share this directory (a mounted secret in production).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::domain::secrets::{Keyring, SigningKey, VerifyingKey};

const SIGNING_FILE: &str = "signing-ed25519.pem";
const PEPPER_FILE: &str = "pepper";

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
    /// A file exists but does not hold what it should.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
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

/// Loads the keyring from `dir`, generating a signing key and a pepper that do not exist yet.
pub fn load_or_create(dir: &Path) -> Result<Keyring, KeyError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;

    let signing_path = dir.join(SIGNING_FILE);
    if !signing_path.exists() {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = key
            .to_pkcs8_pem(Default::default())
            .map_err(|e| KeyError::Invalid {
                path: signing_path.clone(),
                message: e.to_string(),
            })?;
        write_secret(&signing_path, pem.as_bytes())?;
        tracing::info!(path = %signing_path.display(), "generated a new signing key");
    }
    let pem = std::fs::read_to_string(&signing_path).map_err(io(&signing_path))?;
    let (signing, verifying) = ed25519_pair(&signing_path, &pem)?;

    let pepper_path = dir.join(PEPPER_FILE);
    if !pepper_path.exists() {
        let mut pepper = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut pepper);
        write_secret(&pepper_path, &pepper)?;
    }
    let pepper = std::fs::read(&pepper_path).map_err(io(&pepper_path))?;

    let mut keys = HashMap::new();
    keys.insert(signing.kid.clone(), Arc::new(verifying));
    Keyring::new(signing, keys, &pepper).map_err(|message| KeyError::Invalid {
        path: pepper_path,
        message,
    })
}

fn ed25519_pair(path: &Path, pem: &str) -> Result<(SigningKey, VerifyingKey), KeyError> {
    let invalid = |message: String| KeyError::Invalid {
        path: path.to_owned(),
        message,
    };
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| invalid(format!("not an Ed25519 PKCS#8 private key: {e}")))?;
    let public = key.verifying_key();
    let public_pem = public
        .to_public_key_pem(Default::default())
        .map_err(|e| invalid(e.to_string()))?;
    let raw = public.as_bytes();
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(raw)[..9]);
    let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    let decoding =
        DecodingKey::from_ed_pem(public_pem.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    let jwk = serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
        "kid": kid, "x": URL_SAFE_NO_PAD.encode(raw),
    });
    Ok((
        SigningKey {
            kid,
            algorithm: Algorithm::EdDSA,
            encoding,
        },
        VerifyingKey {
            algorithm: Algorithm::EdDSA,
            decoding,
            jwk,
        },
    ))
}

/// Writes a new secret file with mode 0600, never leaving a partly written file behind.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
