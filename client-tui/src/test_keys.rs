//! The pre-generated test keys (`tests/fixtures/keys`), for the crate's unit tests.

use std::sync::Arc;

use shared::crypto::keys::private_from_pem;
use shared::crypto::RsaPrivateKey;

/// Test key `n` (RSA-2048, `rsa2048-NN.pem`).
pub(crate) fn key(n: usize) -> Arc<RsaPrivateKey> {
    let path = format!(
        "{}/../tests/fixtures/keys/rsa2048-{n:02}.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let pem = std::fs::read_to_string(path).expect("fixture exists");
    Arc::new(private_from_pem(&pem, None).expect("fixture parses"))
}
