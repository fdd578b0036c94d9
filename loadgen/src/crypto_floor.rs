//! The client's crypto floor, measured in-process (`loadgen crypto`).
//!
//! For `n` recipients a client signs once (RSA-PSS-3072) and seals `n` copies (each an
//! RSA-OAEP-3072 encryption of a fresh AES key plus AES-256-GCM of the payload). The floor
//! is `n` bare OAEP encryptions plus one signature, timed alone on one thread. The report
//! relates `seal_message` to it two ways:
//!
//! - **CPU ratio**: process CPU time per `seal_message` ÷ floor: overhead beyond the RSA
//!   work (target ≤ 1.2).
//! - **Wall ratio and speed-up**: wall time per `seal_message` ÷ floor, and floor ÷ wall:
//!   how well the work is spread over the cores (ideal speed-up = cores, less the serial
//!   signature).
//!
//! The criterion benchmark `benches/crypto.rs` measures the same operations with
//! statistical rigour; this command gives the ratio in one quick run.

use std::time::{Duration, Instant};

use rsa::Oaep;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use shared::crypto::message::{seal_message, MessageBody, Recipient};
use shared::crypto::signing::{self, Purpose};
use shared::{MessageId, RoomName, Username};

use crate::keys::KeyPool;
use crate::machine;

/// One recipient count's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealFloor {
    /// Recipients per message.
    pub recipients: usize,
    /// Wall time per `seal_message`, ms.
    pub seal_wall_ms: f64,
    /// Process CPU time per `seal_message`, ms (all threads).
    pub seal_cpu_ms: f64,
    /// `recipients` × OAEP encrypt + 1 sign, one thread, ms.
    pub floor_ms: f64,
    /// seal CPU ÷ floor (target ≤ 1.2).
    pub cpu_ratio: f64,
    /// seal wall ÷ floor.
    pub wall_ratio: f64,
    /// floor ÷ seal wall (≈ cores when perfectly spread).
    pub speedup: f64,
}

/// The whole crypto-floor report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CryptoReport {
    /// Cores on this machine.
    pub cores: usize,
    /// One RSA-OAEP-3072 encryption (32-byte key), µs.
    pub oaep_encrypt_us: f64,
    /// One RSA-PSS-3072 signature, ms.
    pub sign_ms: f64,
    /// One RSA-PSS-3072 verification, µs.
    pub verify_us: f64,
    /// Per recipient count.
    pub seal: Vec<SealFloor>,
}

/// Runs `f` repeatedly for about `time` (at least `min` times); returns seconds per call.
fn per_call(time: Duration, min: u32, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut n = 0u32;
    while n < min || started.elapsed() < time {
        f();
        n += 1;
    }
    started.elapsed().as_secs_f64() / f64::from(n)
}

/// Measures the floor and `seal_message` for each recipient count, about `time` each.
///
/// # Errors
/// When a key or name is unusable or sealing fails.
pub fn measure(
    keys: &KeyPool,
    recipient_counts: &[usize],
    time: Duration,
) -> anyhow::Result<CryptoReport> {
    let author = keys.key(0);
    let mut rng = rand::rngs::OsRng;
    let aes_key = [0x42u8; 32];
    let public = &keys.key(1).public;
    let oaep = per_call(time, 20, || {
        std::hint::black_box(
            public
                .encrypt(&mut rng, Oaep::new::<Sha256>(), &aes_key)
                .ok(),
        );
    });
    let sign = per_call(time, 5, || {
        std::hint::black_box(signing::sign(&author.private, Purpose::Message, &[b"body"]));
    });
    let signature = signing::sign(&author.private, Purpose::Message, &[b"body"]);
    let verify = per_call(time, 20, || {
        std::hint::black_box(
            signing::verify(&author.public, Purpose::Message, &[b"body"], &signature).is_ok(),
        );
    });
    let room = RoomName::parse("floor-room")?;
    let sender = Username::parse("floor0")?;
    let pid = std::process::id();
    let mut seal = Vec::new();
    for &n in recipient_counts {
        let recipients: Vec<Recipient> = (0..n)
            .map(|i| {
                Ok(Recipient {
                    username: Username::parse(&format!("floor{i}"))?,
                    key: keys.key(i).public.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let body = MessageBody {
            room: room.clone(),
            message_id: MessageId([1; 16]),
            sender: sender.clone(),
            device: shared::DeviceId([0; 16]),
            counter: 1,
            sent_at_ms: 0,
            recipients: recipients.iter().map(|r| r.username.clone()).collect(),
            text: "x".repeat(256),
        };
        // Floor: n OAEP encryptions and one signature, one thread.
        let floor = per_call(time, 2, || {
            std::hint::black_box(signing::sign(&author.private, Purpose::Message, &[b"body"]));
            for r in &recipients {
                std::hint::black_box(
                    r.key
                        .encrypt(&mut rng, Oaep::new::<Sha256>(), &aes_key)
                        .ok(),
                );
            }
        });
        let cpu_before = machine::cpu_seconds(pid)?;
        let started = Instant::now();
        let mut calls = 0u32;
        let mut failed = None;
        while calls < 2 || started.elapsed() < time {
            if let Err(e) = seal_message(&author.private, body.clone(), &recipients) {
                failed = Some(e);
                break;
            }
            calls += 1;
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        let wall = started.elapsed().as_secs_f64() / f64::from(calls);
        let cpu = (machine::cpu_seconds(pid)? - cpu_before) / f64::from(calls);
        seal.push(SealFloor {
            recipients: n,
            seal_wall_ms: wall * 1e3,
            seal_cpu_ms: cpu * 1e3,
            floor_ms: floor * 1e3,
            cpu_ratio: cpu / floor,
            wall_ratio: wall / floor,
            speedup: floor / wall,
        });
    }
    Ok(CryptoReport {
        cores: machine::cores(),
        oaep_encrypt_us: oaep * 1e6,
        sign_ms: sign * 1e3,
        verify_us: verify * 1e6,
        seal,
    })
}
