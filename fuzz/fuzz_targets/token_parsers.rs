//! Feeds arbitrary bytes to every parser of client-supplied tokens: access tokens (JWT),
//! refresh tokens and page tokens. Each must answer with an error value, never panic.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sessiond::domain::secrets::Keyring;
use sessiond::domain::{access, page_token, refresh::RefreshToken};

static KEYS: LazyLock<Keyring> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("tempdir");
    sessiond::keystore::load_or_create(dir.path()).expect("keys")
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = access::verify(&KEYS, "sessiond", "sessiond", &text);
    let _ = RefreshToken::parse(&KEYS, &text);
    let _ = page_token::decode(&KEYS, "sessions", &text);
});
