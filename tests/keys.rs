//! Signing-key rotation through the public surface: a new key signs while the retired one
//! still verifies; once the retired key is removed, its tokens are `BAD_SIGNATURE`.

mod support;

use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
use sessiond::pb::InvalidReason;
use support::{TestServer, config};

/// Writes a fresh Ed25519 key pair as PEM files; returns (private, public) paths.
fn key_pair(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes(),
    )
    .expect("write");
    std::fs::write(
        &public,
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem"),
    )
    .expect("write");
    (private, public)
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_old_tokens_until_their_key_is_removed() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (old_private, old_public) = key_pair(keys.path(), "old");
    let (new_private, _) = key_pair(keys.path(), "new");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut before = config(dir.path());
    before.signing_key_file = Some(old_private);
    let server = TestServer::start_in(dir, before).await;
    let old = server.issue("alice").await;
    let dir = server.stop().await;

    // Rotated: the new key signs, the old one still verifies.
    let mut rotated = config(dir.path());
    rotated.signing_key_file = Some(new_private.clone());
    rotated.verification_key_files = vec![old_public];
    let server = TestServer::start_in(dir, rotated).await;
    assert_eq!(
        server.validate(&old.access).await,
        (true, InvalidReason::Unspecified)
    );
    let new = server.issue("bob").await;
    assert_ne!(
        kid_of(&new.access),
        kid_of(&old.access),
        "new tokens carry the new kid"
    );
    let dir = server.stop().await;

    // Retired key removed: its tokens no longer verify; the new key's still do.
    let mut after = config(dir.path());
    after.signing_key_file = Some(new_private);
    let server = TestServer::start_in(dir, after).await;
    assert_eq!(
        server.validate(&old.access).await,
        (false, InvalidReason::BadSignature)
    );
    assert_eq!(
        server.validate(&new.access).await,
        (true, InvalidReason::Unspecified)
    );
    server.stop().await;
}
