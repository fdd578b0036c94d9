//! Pre-generated RSA keys for load runs.
//!
//! Generating an RSA-3072 key takes about a second, so load runs reuse the fixture keys in
//! `tests/fixtures/keys/rsa3072-*.pem`. Many users share one key; their usernames differ,
//! which is all the server and the envelope format care about.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use shared::crypto::{keys, RsaPrivateKey, RsaPublicKey};

/// One key in three forms.
#[derive(Debug, Clone)]
pub struct TestKey {
    /// The private key (for login proofs and message signatures).
    pub private: Arc<RsaPrivateKey>,
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
