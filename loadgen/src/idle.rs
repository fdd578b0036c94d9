//! Scenario 3: many authenticated, idle connections.
//!
//! `connections` users each register (or reuse an account from an earlier run with the
//! same prefix), log in, and sit in a room of `room_size` members; then every connection
//! just reads (so the client library answers the server's pings) for `hold`. The report
//! gives the server's resident-set growth per connection, how many connections survived
//! the hold (the server drops a peer silent for three heartbeats), and how many still
//! answer a WebSocket ping through the server's session loop afterwards.
//!
//! Needs a file-descriptor limit above the connection count in both processes; the run
//! checks that first and says what to do ([`crate::machine::check_fd_limit`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{stream, SinkExt, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use shared::{RoomName, Username};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::keys::KeyPool;
use crate::machine;
use crate::wire::{SetupConn, Ws};

/// Parameters of an idle run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleParams {
    /// Connections to open and hold.
    pub connections: usize,
    /// Members per room (each connection joins one room).
    pub room_size: usize,
    /// How long to hold them after set-up.
    pub hold: Duration,
    /// Connections set up concurrently.
    pub setup_concurrency: usize,
    /// Account and room name prefix; reusing it lets a rerun skip registration.
    pub user_prefix: String,
    /// How long each connection may take to answer the final ping.
    pub ping_timeout: Duration,
}

impl Default for IdleParams {
    fn default() -> Self {
        Self {
            connections: 1000,
            room_size: 10,
            hold: Duration::from_secs(35),
            setup_concurrency: 64,
            user_prefix: "idle".into(),
            ping_timeout: Duration::from_secs(20),
        }
    }
}

/// What an idle run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleResult {
    /// The parameters.
    pub params: IdleParams,
    /// Connections logged in and in their room after set-up.
    pub established: u64,
    /// Connections still open after the hold.
    pub alive_after_hold: u64,
    /// Of those, how many answered a ping within the timeout.
    pub answered_ping: u64,
    /// Server RSS before set-up, KiB.
    pub rss_before_kib: Option<u64>,
    /// Server RSS after the hold, KiB.
    pub rss_after_kib: Option<u64>,
    /// (after − before) ÷ established, KiB.
    pub rss_per_connection_kib: Option<f64>,
    /// Seconds spent on set-up.
    pub setup_secs: f64,
}

/// Runs the idle scenario against `url`; `server_pid` gives the RSS figures.
///
/// # Errors
/// A file-descriptor limit that is too low, invalid parameters, or a failed set-up.
pub async fn run(
    params: &IdleParams,
    keys: &KeyPool,
    url: &str,
    server_pid: Option<u32>,
) -> anyhow::Result<IdleResult> {
    if params.connections == 0
        || !(1..=shared::protocol::MAX_ROOM_MEMBERS).contains(&params.room_size)
    {
        bail!("connections must be at least 1 and room size 1–256");
    }
    machine::check_fd_limit(params.connections, server_pid)?;
    let rss_before = server_pid.map(machine::rss_kib).transpose()?;
    let setup_started = Instant::now();
    let prefix = &params.user_prefix;
    let n = params.connections;
    let user = |i: usize| Username::parse(&format!("{prefix}u{i}"));
    let room = |i: usize| RoomName::parse(&format!("{prefix}-room{}", i / params.room_size));

    // Room creators first, so every joiner finds its room.
    let setup = |i: usize| {
        let keys = keys.clone();
        async move {
            let name = user(i)?;
            let key = keys.key(i);
            let mut conn = SetupConn::open(url, true).await?;
            conn.register(&name, &key.der).await?;
            conn.login(&name, &key.login_signer).await?;
            let room = room(i)?;
            if i.is_multiple_of(params.room_size) {
                conn.create_room(&room).await?;
            }
            conn.join_room(&room).await?;
            anyhow::Ok(conn.into_ws())
        }
    };
    // Each connection starts reading (so it answers the server's pings) as soon as it is
    // set up: a connection left unread during a long set-up would be dropped as silent.
    let alive = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let (ping_tx, ping_rx) = watch::channel(false);
    let (finish_tx, finish_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(n);
    let creators: Vec<usize> = (0..n).step_by(params.room_size).collect();
    let joiners: Vec<usize> = (0..n)
        .filter(|i| !i.is_multiple_of(params.room_size))
        .collect();
    for batch in [creators, joiners] {
        let mut opened = stream::iter(batch)
            .map(setup)
            .buffer_unordered(params.setup_concurrency.max(1));
        while let Some(ws) = opened.try_next().await.context("idle set-up failed")? {
            alive.fetch_add(1, Ordering::Relaxed);
            tasks.push(tokio::spawn(hold(
                ws,
                Arc::clone(&alive),
                Arc::clone(&answered),
                ping_rx.clone(),
                finish_rx.clone(),
            )));
        }
    }
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let established = tasks.len() as u64;

    tokio::time::sleep(params.hold).await;
    let rss_after = server_pid.map(machine::rss_kib).transpose()?;
    let alive_after_hold = alive.load(Ordering::Relaxed);
    let _ = ping_tx.send(true);
    let ping_deadline = Instant::now() + params.ping_timeout;
    while answered.load(Ordering::Relaxed) < alive_after_hold && Instant::now() < ping_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answered_ping = answered.load(Ordering::Relaxed);
    let _ = finish_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let rss_per_connection_kib = rss_before
        .zip(rss_after)
        .filter(|_| established > 0)
        .map(|(b, a)| (a as f64 - b as f64) / established as f64);
    Ok(IdleResult {
        params: params.clone(),
        established,
        alive_after_hold,
        answered_ping,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_per_connection_kib,
        setup_secs,
    })
}

/// Reads (answering pings) until told to ping, counts the pong, and closes when told.
async fn hold(
    mut ws: Ws,
    alive: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    mut ping: watch::Receiver<bool>,
    mut finish: watch::Receiver<bool>,
) {
    let mut waiting_for_pong = false;
    let mut pinged = false;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Pong(p))) if waiting_for_pong && p.as_ref() == b"loadgen" => {
                    waiting_for_pong = false;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    alive.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            },
            changed = ping.changed(), if !pinged => {
                pinged = true;
                if changed.is_ok() && ws.send(Message::Ping(b"loadgen".to_vec().into())).await.is_ok() {
                    waiting_for_pong = true;
                }
            }
            _ = finish.changed() => {
                let _ = ws.close(None).await;
                return;
            }
        }
    }
}
