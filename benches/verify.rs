//! What a first-sight `Validate` cannot avoid: checking the token's signature. Times the
//! service's own token check (`access::verify`: header, signature, claims) and the Ed25519
//! verification alone, on a token as `Issue` signs it, so the cold path can be set beside it;
//! and what every `Issue` and `Refresh` cannot avoid: signing the token (`access::sign`:
//! claims to JSON, Ed25519, base64) and the Ed25519 signature alone.
//!
//! `cargo bench --locked --bench verify` (release profile); prints microseconds per call, the
//! median of 7 rounds of 2,000 calls.

// A benchmark fails by panicking, and indexes what it has just sized.
#![allow(clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use ed25519_dalek::Verifier;
use sessiond::domain::access::{self, AccessClaims, Grant};
use sessiond::model::ids::{SessionId, TenantId, UserId};
use sessiond::model::time::Timestamp;

const ROUNDS: usize = 7;
const CALLS: u32 = 2_000;

fn median_per_call(mut f: impl FnMut()) -> Duration {
    let mut rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..CALLS {
                f();
            }
            started.elapsed() / CALLS
        })
        .collect();
    rounds.sort();
    rounds[ROUNDS / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = sessiond::keystore::load_or_create(dir.path()).expect("keys");
    let now = Timestamp::from_micros(1_800_000_000_000_000);
    let claims = AccessClaims {
        session_id: SessionId::new(),
        user_id: UserId::parse("sub", "user-123456").expect("user"),
        tenant_id: TenantId::none(),
        issued_at: now,
        expires_at: now.plus(Duration::from_secs(900)),
        grant: Some(Grant::new("anonymous", "sessiond")),
        auth_time: Some(now),
        acr: String::new(),
        amr: Vec::new(),
        refresh_generation: Some(0),
    };
    let token = access::sign(&keys, "sessiond", &claims).expect("sign");

    let check = median_per_call(|| {
        let verified = access::verify(&keys, "sessiond", "sessiond", &token);
        assert!(verified.is_ok());
    });

    // The same signing input, signed and verified by ed25519-dalek directly.
    let (input, _) = token.rsplit_once('.').expect("jws");
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let signature = ed25519_dalek::Signer::sign(&key, input.as_bytes());
    let verifying = key.verifying_key();
    let ed25519 = median_per_call(|| {
        assert!(verifying.verify(input.as_bytes(), &signature).is_ok());
    });

    let mint = median_per_call(|| {
        let signed = access::sign(&keys, "sessiond", &claims);
        assert!(signed.is_ok());
    });
    let ed25519_sign = median_per_call(|| {
        let signature = ed25519_dalek::Signer::sign(&key, input.as_bytes());
        assert_eq!(signature.to_bytes().len(), 64);
    });

    println!("token of {} bytes", token.len());
    println!(
        "access::verify (header, Ed25519, claims): {:.1} µs",
        micros(check)
    );
    println!(
        "Ed25519 verify alone:                     {:.1} µs",
        micros(ed25519)
    );
    println!(
        "access::sign (claims, Ed25519, base64):   {:.1} µs",
        micros(mint)
    );
    println!(
        "Ed25519 sign alone:                       {:.1} µs",
        micros(ed25519_sign)
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
