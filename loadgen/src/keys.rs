//! Pre-generated RSA keys for load runs.
//!
//! Generating an RSA-3072 key takes about a second, so load runs reuse the fixture keys in
//! `tests/fixtures/keys/rsa3072-*.pem`. Many users share one key; their usernames differ,
//! which is all the server and the envelope format care about.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PSS_SHA256};
use rsa::pkcs8::EncodePrivateKey;
use shared::crypto::signing::{signing_input, Purpose};
use shared::crypto::{keys, RsaPrivateKey, RsaPublicKey};
use shared::{ServerId, Username};

/// One key in the forms the driver needs.
#[derive(Debug, Clone)]
pub struct TestKey {
    /// The private key (for message signatures).
    pub private: Arc<RsaPrivateKey>,
    /// The same key for ring, which signs the login proofs (see [`LoginSigner`]).
    pub login_signer: LoginSigner,
    /// Its public half (for sealing copies to it).
    pub public: RsaPublicKey,
    /// The public half as SubjectPublicKeyInfo DER (what `Register` carries).
    pub der: Vec<u8>,
}

/// A small set of keys handed out round-robin.
#[derive(Debug, Clone)]
pub struct KeyPool {
    keys: Vec<TestKey>,
}

impl KeyPool {
    /// The fixture directory of this workspace.
    pub fn default_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/keys")
    }

    /// Loads every `<prefix>-*.pem` in `dir` (e.g. prefix `rsa3072`), in name order.
    ///
    /// # Errors
    /// When the directory has no such key or a key does not parse.
    pub fn load(dir: &Path, prefix: &str) -> anyhow::Result<Self> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list key directory {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{prefix}-")) && n.ends_with(".pem"))
            })
            .collect();
        paths.sort();
        if paths.is_empty() {
            bail!("no {prefix}-*.pem keys in {}", dir.display());
        }
        let keys = paths
            .iter()
            .map(|p| {
                let pem = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                let private = keys::private_from_pem(&pem, None)
                    .with_context(|| format!("bad key {}", p.display()))?;
                let public = private.to_public_key();
                let der = keys::public_to_der(&public)?;
                Ok(TestKey {
                    login_signer: LoginSigner::new(&private)
                        .with_context(|| format!("ring refuses key {}", p.display()))?,
                    private: Arc::new(private),
                    public,
                    der,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { keys })
    }

    /// The RSA-3072 fixture keys (what the performance targets are stated for).
    ///
    /// # Errors
    /// See [`KeyPool::load`].
    pub fn rsa3072(dir: Option<&Path>) -> anyhow::Result<Self> {
        let dir = dir.map_or_else(Self::default_dir, Path::to_path_buf);
        Self::load(&dir, "rsa3072")
    }

    /// Key number `i`, wrapping around.
    pub fn key(&self, i: usize) -> &TestKey {
        &self.keys[i % self.keys.len()]
    }

    /// How many distinct keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the pool is empty (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Signs login proofs with ring: the same RSA-PSS-SHA256 (MGF1-SHA256, 32-byte salt) over
/// the same domain-separated bytes as `shared::crypto::signing::sign_login`, in a quarter of
/// its time. A login costs the client an RSA private-key operation and the server only a
/// public-key one, so with the `rsa` crate's signer the driver used 13 times the server's
/// CPU per login and the server sat mostly idle; this lets the same cores load it harder.
#[derive(Debug, Clone)]
pub struct LoginSigner {
    key: Arc<RsaKeyPair>,
    rng: SystemRandom,
}

impl LoginSigner {
    /// Converts `private` for ring.
    ///
    /// # Errors
    /// When the key cannot be encoded or ring rejects it.
    pub fn new(private: &RsaPrivateKey) -> anyhow::Result<Self> {
        let pkcs8 = private.to_pkcs8_der()?;
        let key = RsaKeyPair::from_pkcs8(pkcs8.as_bytes())
            .map_err(|e| anyhow!("ring rejects the key: {e}"))?;
        Ok(Self {
            key: Arc::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// The proof for `user` answering `nonce`.
    ///
    /// # Errors
    /// When ring fails to sign (it does not for a key it accepted).
    pub fn sign_login(
        &self,
        user: &Username,
        nonce: &[u8; 32],
        server: &ServerId,
    ) -> anyhow::Result<Vec<u8>> {
        let input = signing_input(
            Purpose::Login,
            &[user.canonical().as_bytes(), nonce, &server.0],
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PSS_SHA256, &self.rng, &input, &mut signature)
            .map_err(|_| anyhow!("ring could not sign"))?;
        Ok(signature)
    }
}

#[cfg(test)]
mod tests {
    use shared::crypto::signing;

    use super::*;

    #[test]
    fn rings_login_proofs_verify_as_the_server_checks_them() {
        let pool = KeyPool::rsa3072(None).expect("fixture keys");
        let key = pool.key(0);
        let user = Username::parse("Alice").expect("valid");
        let nonce = [9u8; 32];
        let server = ServerId([5; 16]);
        let proof = key
            .login_signer
            .sign_login(&user, &nonce, &server)
            .expect("signs");
        signing::verify_login(&key.public, &user, &nonce, &server, &proof).expect("verifies");
        // Bound to the nonce, the server, the user and the key, like the rsa crate's proofs.
        assert!(signing::verify_login(&key.public, &user, &[8u8; 32], &server, &proof).is_err());
        assert!(
            signing::verify_login(&key.public, &user, &nonce, &ServerId([6; 16]), &proof).is_err()
        );
        let bob = Username::parse("bob").expect("valid");
        assert!(signing::verify_login(&key.public, &bob, &nonce, &server, &proof).is_err());
        assert!(
            signing::verify_login(&pool.key(1).public, &user, &nonce, &server, &proof).is_err()
        );
    }
}
