//! Scenario 2: concurrent challenge-response logins with RSA-3072 keys.
//!
//! `concurrency` workers each loop: open a WebSocket, `Hello`, `LoginStart`, sign the
//! nonce, `LoginProof`, close. A login counts when `LoggedIn` arrives.
//!
//! In the same run, before and after the load, the tool measures how many PSS
//! verifications one core of this machine does per second with the `rsa` crate the server
//! uses ([`verify_rate`]), and keeps the faster; the target relates logins/s to that times
//! the number of cores. The *client's* signature is an RSA private-key operation, which
//! costs several times the server's verification even with ring's signer
//! ([`crate::keys::LoginSigner`], about a quarter of the `rsa` crate's time), so a driver
//! on the same machine cannot saturate the server: the report therefore also gives the
//! server's CPU time per login (from `/proc/<pid>/stat`) and the capacity that implies
//! (`cores ÷ CPU per login`), which is the server's own figure.
//!
//! Every login opens a fresh TCP and WebSocket connection, which the target's ratio leaves
//! out. With a relay given, the same logins run against the bare relay first (same
//! connection, same frames, no store, no verification): its CPU per login plus one
//! verification is the least a login can cost a server on this machine, the ceiling the
//! server's CPU per login is related to ([`RelayLogins`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use shared::crypto::signing;
use shared::Username;

use crate::clock;
use crate::fanout::{run_tag, Target};
use crate::keys::KeyPool;
use crate::machine;
use crate::stats::{summarize, LatencySummary};
use crate::wire::SetupConn;

/// Parameters of a login run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginParams {
    /// Distinct accounts to log in to (round-robin over the key pool).
    pub users: usize,
    /// Logins in flight at once (one connection each).
    pub concurrency: usize,
    /// How long to run.
    pub duration: Duration,
    /// How long to measure the one-core verify and sign rates.
    pub floor_time: Duration,
}

impl Default for LoginParams {
    fn default() -> Self {
        Self {
            users: 64,
            concurrency: 16,
            duration: Duration::from_secs(15),
            floor_time: Duration::from_secs(1),
        }
    }
}

/// What a login run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResult {
    /// The parameters.
    pub params: LoginParams,
    /// Logins completed.
    pub logins: u64,
    /// Logins that failed (refused or connection errors).
    pub failures: u64,
    /// Completed logins per second of wall time.
    pub logins_per_sec: f64,
    /// Connect → `LoggedIn`, per login.
    pub latency: LatencySummary,
    /// RSA-PSS-3072 verifications per second on one core, measured in this run: the faster
    /// of a measurement before the load and one after it.
    pub verify_per_sec_one_core: f64,
    /// RSA-PSS-3072 signatures per second on one core with the driver's signer, ring (the
    /// driver's cost per login); the faster of two measurements, like the verify rate.
    pub sign_per_sec_one_core: f64,
    /// Cores on this machine.
    pub cores: usize,
    /// logins/s ÷ (verify/s of one core × cores): the target's ratio, wall-clock.
    pub ratio: f64,
    /// Server CPU seconds per login (when its pid is known).
    pub server_cpu_ms_per_login: Option<f64>,
    /// `cores ÷ server CPU per login`: logins/s the server could do with the whole machine.
    pub server_capacity_logins_per_sec: Option<f64>,
    /// capacity ÷ (verify/s × cores) = verify time ÷ server CPU per login.
    pub server_capacity_ratio: Option<f64>,
    /// The same logins against the bare relay (`--compare`), run just before the server's.
    pub relay: Option<RelayLogins>,
    /// Seconds spent registering the accounts.
    pub setup_secs: f64,
}

/// The login scenario's ceiling: the same logins, on fresh connections with the same
/// frames, against the bare relay, which has no store and verifies nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayLogins {
    /// Logins per second against the relay (driver-bound, like the server's).
    pub logins_per_sec: f64,
    /// Logins that failed.
    pub failures: u64,
    /// The relay's CPU per login: a connection, its upgrade, three exchanges and a close.
    pub cpu_ms_per_login: Option<f64>,
    /// The relay's CPU per login plus one verification on one core: the least a login
    /// costs a server on this machine.
    pub floor_ms_per_login: Option<f64>,
    /// floor ÷ the server's CPU per login, in the same run.
    pub ceiling_ratio: Option<f64>,
}

/// One-core RSA-PSS-3072 verifications per second, over about `time`.
///
/// # Errors
/// When the key pool's first key cannot sign/verify.
pub fn verify_rate(keys: &KeyPool, time: Duration) -> anyhow::Result<f64> {
    let key = keys.key(0);
    let user = Username::parse("floor-user")?;
    let nonce = [7u8; 32];
    let server = shared::ServerId([7; 16]);
    let sig = signing::sign_login(&key.private, &user, &nonce, &server);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < time || n == 0 {
        signing::verify_login(&key.public, &user, &nonce, &server, &sig)
            .context("fixture signature does not verify")?;
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// One-core RSA-PSS-3072 login signatures per second with the driver's signer (ring),
/// over about `time`.
///
/// # Errors
/// When ring fails to sign.
pub fn sign_rate(keys: &KeyPool, time: Duration) -> anyhow::Result<f64> {
    let key = keys.key(0);
    let user = Username::parse("floor-user")?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < time || n == 0 {
        std::hint::black_box(key.login_signer.sign_login(
            &user,
            &[n as u8; 32],
            &shared::ServerId([7; 16]),
        )?);
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Runs the login scenario against the server at `url` (pid for CPU figures), and first,
/// when `relay` is given, the same logins against the bare relay: the ceiling.
///
/// # Errors
/// Invalid parameters or a failed registration.
pub async fn run(
    params: &LoginParams,
    keys: &KeyPool,
    url: &str,
    server_pid: Option<u32>,
    relay: Option<&Target>,
) -> anyhow::Result<LoginResult> {
    if params.users == 0 || params.concurrency == 0 {
        bail!("users and concurrency must be at least 1");
    }
    clock::start();
    let setup_started = Instant::now();
    let tag = run_tag();
    let users: Vec<(Username, usize)> = (0..params.users)
        .map(|i| Ok((Username::parse(&format!("{tag}login{i}"))?, i)))
        .collect::<anyhow::Result<_>>()?;
    // Register over a few connections (each connection is rate-limited on the server).
    for chunk in users.chunks(100) {
        let mut conn = SetupConn::open(url, false).await?;
        for (name, i) in chunk {
            conn.register(name, &keys.key(*i).der).await?;
        }
        conn.close().await;
    }
    let setup_secs = setup_started.elapsed().as_secs_f64();

    // The floors are measured before and after the load, and the faster of each pair is
    // kept: on a shared machine a busy second during one measurement would otherwise
    // lower the verify rate and flatter the ratios taken against it.
    let (verify_before, sign_before) = floors(keys, params.floor_time).await?;
    let users = Arc::new(users);
    let ceiling = match relay {
        Some(relay) => Some(drive(params, keys, &users, &relay.url, relay.pid).await),
        None => None,
    };
    let load = drive(params, keys, &users, url, server_pid).await;
    let (verify_after, sign_after) = floors(keys, params.floor_time).await?;
    let (verify, sign) = (verify_before.max(verify_after), sign_before.max(sign_after));

    let cores = machine::cores();
    let logins_per_sec = load.logins as f64 / load.elapsed_secs;
    let cpu_per_login = load.cpu_secs_per_login;
    let capacity = cpu_per_login.filter(|c| *c > 0.0).map(|c| cores as f64 / c);
    let relay = ceiling.map(|c| {
        let floor = c.cpu_secs_per_login.map(|cpu| cpu + 1.0 / verify);
        RelayLogins {
            logins_per_sec: c.logins as f64 / c.elapsed_secs,
            failures: c.failures,
            cpu_ms_per_login: c.cpu_secs_per_login.map(|x| x * 1e3),
            floor_ms_per_login: floor.map(|x| x * 1e3),
            ceiling_ratio: floor
                .zip(cpu_per_login)
                .filter(|(_, server)| *server > 0.0)
                .map(|(floor, server)| floor / server),
        }
    });
    let mut samples = load.samples;
    Ok(LoginResult {
        params: params.clone(),
        logins: load.logins,
        failures: load.failures,
        logins_per_sec,
        latency: summarize(&mut samples),
        verify_per_sec_one_core: verify,
        sign_per_sec_one_core: sign,
        cores,
        ratio: logins_per_sec / (verify * cores as f64),
        server_cpu_ms_per_login: cpu_per_login.map(|c| c * 1e3),
        server_capacity_logins_per_sec: capacity,
        server_capacity_ratio: capacity.map(|c| c / (verify * cores as f64)),
        relay,
        setup_secs,
    })
}

/// One-core verify and sign rates, measured on the blocking pool.
async fn floors(keys: &KeyPool, time: Duration) -> anyhow::Result<(f64, f64)> {
    let keys = keys.clone();
    tokio::task::spawn_blocking(move || {
        anyhow::Ok((verify_rate(&keys, time)?, sign_rate(&keys, time)?))
    })
    .await?
}

/// What one target did under the login load.
struct LoginLoad {
    logins: u64,
    failures: u64,
    /// Connect → `LoggedIn`, in nanoseconds, per login.
    samples: Vec<u64>,
    elapsed_secs: f64,
    /// The target process's CPU seconds per login, when its pid is known.
    cpu_secs_per_login: Option<f64>,
}

/// `concurrency` workers log in to `url` over and over for the run's duration, each login
/// on a fresh connection; the CPU of process `pid` is read before and after.
async fn drive(
    params: &LoginParams,
    keys: &KeyPool,
    users: &Arc<Vec<(Username, usize)>>,
    url: &str,
    pid: Option<u32>,
) -> LoginLoad {
    let started = Instant::now();
    let deadline = started + params.duration;
    let cpu_before = pid.and_then(|p| machine::cpu_seconds(p).ok());
    let results: Vec<(u64, u64, Vec<u64>)> = futures_util::stream::iter(0..params.concurrency)
        .map(|w| {
            let users = Arc::clone(users);
            let keys = keys.clone();
            let url = url.to_owned();
            let concurrency = params.concurrency;
            tokio::spawn(async move {
                let (mut ok, mut failed, mut lat) = (0u64, 0u64, Vec::new());
                let mut k = w;
                while Instant::now() < deadline {
                    let (name, i) = &users[k % users.len()];
                    k += concurrency;
                    let t0 = clock::now_nanos();
                    match login_once(&url, name, keys.key(*i)).await {
                        Ok(()) => {
                            ok += 1;
                            lat.push(clock::now_nanos() - t0);
                        }
                        Err(e) => {
                            if failed == 0 {
                                tracing::warn!(error = %format!("{e:#}"), "login failed");
                            }
                            failed += 1;
                        }
                    }
                }
                (ok, failed, lat)
            })
        })
        .buffer_unordered(params.concurrency)
        .map(|r| r.unwrap_or((0, 1, Vec::new())))
        .collect()
        .await;
    let elapsed_secs = started.elapsed().as_secs_f64();
    let cpu_after = pid.and_then(|p| machine::cpu_seconds(p).ok());
    let logins: u64 = results.iter().map(|r| r.0).sum();
    LoginLoad {
        logins,
        failures: results.iter().map(|r| r.1).sum(),
        samples: results.into_iter().flat_map(|r| r.2).collect(),
        elapsed_secs,
        cpu_secs_per_login: cpu_before
            .zip(cpu_after)
            .filter(|_| logins > 0)
            .map(|(b, a)| (a - b) / logins as f64),
    }
}

async fn login_once(url: &str, user: &Username, key: &crate::keys::TestKey) -> anyhow::Result<()> {
    let mut conn = SetupConn::open(url, false).await?;
    conn.login(user, &key.login_signer).await?;
    conn.close().await;
    Ok(())
}
