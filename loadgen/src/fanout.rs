//! Scenario 1 (and 4): fan-out.
//!
//! `R` rooms of `M` members, every member online on its own connection; the first `S`
//! members of each room send. The same driver measures the real server and the bare relay
//! ([`crate::relay`]); only the set-up differs (the relay has no accounts or rooms).
//!
//! # Modes
//! - [`Mode::Replay`]: each room's envelopes are sealed once, for real, at set-up; every
//!   send replays them byte for byte under a fresh message id (see
//!   [`crate::wire::SendTemplate`]). The client side then costs almost nothing, so the
//!   figure is the server's. The copies no longer decrypt (the id is bound into each
//!   copy), so latency is measured from the send time the driver writes into the message
//!   id itself.
//! - [`Mode::Live`]: every send signs and seals a fresh message whose text starts with the
//!   send time; one probe member per room decrypts and verifies every copy it receives and
//!   reads the time from the plaintext, so clock and decrypt cost are in the figure.
//!
//! # Load
//! With `rate = 0` every sender runs closed-loop with `window` sends outstanding; with a
//! rate, senders post on a fixed schedule (total `rate` messages/s spread evenly), still
//! never more than `window` unanswered. Counting happens in a window of `duration` after
//! `warmup`; then the driver waits (up to `drain`) for every answer and every copy, so it
//! can say how many deliveries were lost.
//!
//! # Phases
//! [`run`] is [`prepare`] (accounts, rooms, sealing) then one [`Prepared::measure`]. The
//! abuse scenario ([`crate::abuse`]) measures the same prepared connections twice, without
//! and with an attacker, and has an account of its own join a room first ([`Outsider`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::stream::{self, SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use shared::crypto::message::{open_message, seal_message, MessageBody, Received, Recipient};
use shared::crypto::RsaPublicKey;
use shared::protocol::{codec, ClientFrame, ClientMsg, Push, SendMessage, ServerMsg};
use shared::{RequestId, RoomName, Username};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::clock;
use crate::keys::{KeyPool, TestKey};
use crate::machine;
use crate::stats::{summarize, LatencySummary};
use crate::wire::{
    classify, sent_at_nanos, timestamped_id, Incoming, SendTemplate, SetupConn, Ws,
    PATCHABLE_REQUEST_BASE,
};

/// What the driver is talking to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The chat server: accounts, login, rooms, store.
    Server,
    /// The bare relay: `LoginStart` registers a name, nothing else is checked.
    Relay,
}

/// An endpoint to measure.
#[derive(Debug, Clone)]
pub struct Target {
    /// `ws://host:port/ws`.
    pub url: String,
    /// Server or relay.
    pub kind: TargetKind,
    /// The process serving it, for CPU and RSS figures (optional).
    pub pid: Option<u32>,
    /// More instances of the same server (scale-out): members connect round-robin to
    /// `url` and these, so that each room's members are spread over all of them.
    pub also: Vec<String>,
}

impl Target {
    /// The URL member `i` connects to.
    pub fn url_for(&self, i: usize) -> &str {
        match i % (1 + self.also.len()) {
            0 => &self.url,
            n => &self.also[n - 1],
        }
    }

    /// Every URL, for reports.
    pub fn describe_urls(&self) -> String {
        std::iter::once(self.url.as_str())
            .chain(self.also.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// How messages are produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Precomputed envelopes replayed under fresh message ids.
    Replay,
    /// Sign and seal every message; probes decrypt.
    Live,
}

impl Mode {
    /// What the mode means for the figures, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Replay => {
                "replay: envelopes sealed once per room and replayed with fresh message ids; \
                 latency from the send time carried in the message id"
            }
            Self::Live => {
                "live: every message signed and sealed per recipient; latency from the send \
                 time inside the decrypted payload, at one probe member per room"
            }
        }
    }
}

/// Parameters of one fan-out run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutParams {
    /// Rooms.
    pub rooms: usize,
    /// Members per room (2–256), each on its own connection.
    pub members: usize,
    /// Senders per room (the first members); 0 means every member sends.
    pub senders_per_room: usize,
    /// Length of each message's text, bytes.
    pub payload_bytes: usize,
    /// Total messages per second to offer; 0 runs closed-loop (as fast as answers come).
    pub rate: f64,
    /// Unanswered sends allowed per sender.
    pub window: usize,
    /// Time before counting starts.
    pub warmup: Duration,
    /// Counting window.
    pub duration: Duration,
    /// How long to wait after the window for outstanding answers and copies.
    pub drain: Duration,
    /// Replay or live.
    pub mode: Mode,
    /// Connections set up concurrently.
    pub setup_concurrency: usize,
}

impl Default for FanoutParams {
    fn default() -> Self {
        Self {
            rooms: 1,
            members: 100,
            senders_per_room: 0,
            payload_bytes: 256,
            rate: 0.0,
            window: 2,
            warmup: Duration::from_secs(3),
            duration: Duration::from_secs(15),
            drain: Duration::from_secs(15),
            mode: Mode::Replay,
            setup_concurrency: 32,
        }
    }
}

impl FanoutParams {
    fn senders(&self) -> usize {
        if self.senders_per_room == 0 {
            self.members
        } else {
            self.senders_per_room.min(self.members)
        }
    }
}

/// What one fan-out run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutResult {
    /// Server or relay.
    pub target: TargetKind,
    /// The URL measured.
    pub url: String,
    /// Replay or live.
    pub mode: Mode,
    /// What the mode means.
    pub mode_note: String,
    /// The parameters.
    pub params: FanoutParams,
    /// Size of one `SendMessage` frame, bytes.
    pub send_frame_bytes: usize,
    /// Messages offered per second in the window (sends written).
    pub offered_msgs_per_sec: f64,
    /// Messages acknowledged (`Sent`) per second in the window.
    pub acked_msgs_per_sec: f64,
    /// Copies delivered per second in the window: the headline figure.
    pub delivered_envelopes_per_sec: f64,
    /// Send → deliver latency of copies delivered in the window.
    pub latency: LatencySummary,
    /// Where the latency samples come from.
    pub latency_source: String,
    /// Messages sent in total (window, warm-up and tail).
    pub sent: u64,
    /// Messages acknowledged in total.
    pub acked: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Copies that should have arrived: acknowledged messages × (members − 1).
    pub expected_deliveries: u64,
    /// Copies that arrived.
    pub delivered: u64,
    /// `expected − delivered` after the drain.
    pub lost: u64,
    /// Connections the target closed during the run.
    pub disconnects: u64,
    /// The target's CPU use in the window, in cores (when its pid is known).
    pub target_cpu_cores: Option<f64>,
    /// The target's resident set at the end of the window, KiB (when its pid is known).
    pub target_rss_kib: Option<u64>,
    /// This driver process's CPU use in the window, in cores: what the load itself took
    /// from a machine it shares with the target.
    #[serde(default)]
    pub driver_cpu_cores: Option<f64>,
    /// Seconds spent connecting, registering, logging in and joining.
    pub setup_secs: f64,
}

/// A relay run and a server run with the same parameters, and their ratio.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// The bare relay's run.
    pub relay: FanoutResult,
    /// The server's run.
    pub server: FanoutResult,
    /// server delivered envelopes/s ÷ relay delivered envelopes/s.
    pub ratio: f64,
}

/// Runs the same fan-out against the relay, then the server, and relates them.
///
/// # Errors
/// As [`run`].
pub async fn compare(
    params: &FanoutParams,
    keys: &KeyPool,
    relay: &Target,
    server: &Target,
) -> anyhow::Result<Comparison> {
    let relay = run(params, keys, relay).await?;
    let server = run(params, keys, server).await?;
    let ratio = if relay.delivered_envelopes_per_sec > 0.0 {
        server.delivered_envelopes_per_sec / relay.delivered_envelopes_per_sec
    } else {
        0.0
    };
    Ok(Comparison {
        relay,
        server,
        ratio,
    })
}

/// One member's place in the run.
struct Member {
    room: usize,
    index: usize,
    name: Username,
    key: TestKey,
}

/// Counters every task updates.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    sent_in_window: AtomicU64,
    acked: AtomicU64,
    acked_in_window: AtomicU64,
    errors: AtomicU64,
    delivered: AtomicU64,
    delivered_in_window: AtomicU64,
    disconnects: AtomicU64,
    senders_done: AtomicU64,
    error_logged: AtomicBool,
}

/// The counting window, in [`clock`] nanoseconds.
#[derive(Clone, Copy)]
struct Window {
    start: u64,
    end: u64,
}

impl Window {
    fn contains(self, t: u64) -> bool {
        (self.start..self.end).contains(&t)
    }
}

/// A short random tag so names never collide with an earlier run's.
pub fn run_tag() -> String {
    format!("lg{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// Runs one fan-out measurement against `target`: [`prepare`], one
/// [`Prepared::measure`], and the connections closed.
///
/// # Errors
/// Invalid parameters, or any failure during set-up (connect, register, login, join).
/// Failures during the measurement are counted, not returned.
pub async fn run(
    params: &FanoutParams,
    keys: &KeyPool,
    target: &Target,
) -> anyhow::Result<FanoutResult> {
    let mut prepared = prepare(params, keys, target, Vec::new()).await?;
    let result = prepared.measure().await;
    prepared.close().await;
    Ok(result)
}

/// An account from outside the run that joins one of its rooms during set-up, before the
/// envelopes are sealed, so every message in that room carries a copy for it too. Its
/// copies are not counted in the run's deliveries: it is not one of the run's members.
pub struct Outsider {
    /// Index of the room it joins.
    pub room: usize,
    /// Its account.
    pub name: Username,
    /// Its public key, which the members seal a copy to.
    pub public_key: RsaPublicKey,
    /// A logged-in connection of it, used for the join and then closed.
    pub conn: SetupConn,
}

/// A fan-out set up and ready to measure: every member connected, logged in and in its
/// room, and each room's envelopes sealed.
pub struct Prepared {
    params: FanoutParams,
    target: Target,
    members: Vec<Member>,
    /// Each member's connection; `None` once the target has closed it.
    conns: Vec<Option<Ws>>,
    templates: Arc<Vec<SendTemplate>>,
    room_recipients: Arc<Vec<Vec<Recipient>>>,
    room_names: Arc<Vec<RoomName>>,
    public_keys: Arc<HashMap<String, RsaPublicKey>>,
    send_frame_bytes: usize,
    setup_secs: f64,
}

/// Sets up a fan-out: connects, registers and logs in every member, creates and joins
/// the rooms, lets each outsider join its room, and seals one message per room.
///
/// # Errors
/// Invalid parameters (outsiders need a server target and an existing room), or any
/// failure during set-up (connect, register, login, join).
pub async fn prepare(
    params: &FanoutParams,
    keys: &KeyPool,
    target: &Target,
    outsiders: Vec<Outsider>,
) -> anyhow::Result<Prepared> {
    if !(2..=shared::protocol::MAX_ROOM_MEMBERS).contains(&params.members) {
        bail!(
            "members per room must be 2–{}",
            shared::protocol::MAX_ROOM_MEMBERS
        );
    }
    if params.rooms == 0 || params.window == 0 {
        bail!("rooms and window must be at least 1");
    }
    if params.mode == Mode::Live && params.payload_bytes < 20 {
        bail!("live mode needs payloads of at least 20 bytes (the timestamp)");
    }
    if !outsiders.is_empty() && target.kind != TargetKind::Server {
        bail!("only a server has rooms for outsiders to join");
    }
    if outsiders.iter().any(|o| o.room >= params.rooms) {
        bail!("an outsider names a room the run does not have");
    }
    clock::start();
    let setup_started = Instant::now();
    let tag = run_tag();
    let room_names: Vec<RoomName> = (0..params.rooms)
        .map(|r| RoomName::parse(&format!("{tag}-room{r}")))
        .collect::<Result<_, _>>()?;
    let members: Vec<Member> = (0..params.rooms)
        .flat_map(|r| (0..params.members).map(move |m| (r, m)))
        .map(|(room, index)| {
            Ok(Member {
                room,
                index,
                name: Username::parse(&format!("{tag}r{room}m{index}"))?,
                key: keys.key(room * params.members + index).clone(),
            })
        })
        .collect::<anyhow::Result<_>>()?;

    let conns = connect_all(params, target, &members).await?;
    let conns = if target.kind == TargetKind::Server {
        join_rooms(params, &room_names, &members, conns).await?
    } else {
        conns
    };

    // One real sealing per room: the template for replay, the key set for live.
    let mut room_recipients: Vec<Vec<Recipient>> = (0..params.rooms)
        .map(|r| {
            members[r * params.members..(r + 1) * params.members]
                .iter()
                .map(|m| Recipient {
                    username: m.name.clone(),
                    key: m.key.public.clone(),
                })
                .collect()
        })
        .collect();
    for mut outsider in outsiders {
        outsider
            .conn
            .join_room(&room_names[outsider.room])
            .await
            .context("an outsider could not join its room")?;
        outsider.conn.close().await;
        room_recipients[outsider.room].push(Recipient {
            username: outsider.name,
            key: outsider.public_key,
        });
    }
    let mut templates = Vec::with_capacity(params.rooms);
    for (r, recipients) in room_recipients.iter().enumerate() {
        let author = &members[r * params.members];
        let body = message_body(
            &room_names[r],
            &author.name,
            recipients,
            params.payload_bytes,
            0,
        );
        let key = Arc::clone(&author.key.private);
        let recipients = recipients.clone();
        let envelopes =
            tokio::task::spawn_blocking(move || seal_message(&key, body, &recipients)).await??;
        templates.push(SendTemplate::new(&room_names[r], envelopes)?);
    }
    let send_frame_bytes = templates.first().map_or(0, SendTemplate::len);
    let public_keys = members
        .iter()
        .map(|m| (m.name.canonical(), m.key.public.clone()))
        .collect();
    Ok(Prepared {
        params: params.clone(),
        target: target.clone(),
        members,
        conns: conns.into_iter().map(|c| Some(c.into_ws())).collect(),
        templates: Arc::new(templates),
        room_recipients: Arc::new(room_recipients),
        room_names: Arc::new(room_names),
        public_keys: Arc::new(public_keys),
        send_frame_bytes,
        setup_secs: setup_started.elapsed().as_secs_f64(),
    })
}

impl Prepared {
    /// The names of the run's rooms, in room order.
    pub fn room_names(&self) -> &[RoomName] {
        &self.room_names
    }

    /// The accounts of the run's members, room by room.
    pub fn member_names(&self) -> impl Iterator<Item = &Username> {
        self.members.iter().map(|m| &m.name)
    }

    /// Measures once: warm-up, the counting window, then the drain. The window starts
    /// `warmup` after the call. It can be called again on the same connections; a
    /// connection the target closed stays closed (its member no longer sends or receives)
    /// and was counted as a disconnect in the measurement that saw it close.
    pub async fn measure(&mut self) -> FanoutResult {
        let params = &self.params;
        let counters = Arc::new(Counters::default());
        let now = clock::now_nanos();
        let window = Window {
            start: now + nanos(params.warmup),
            end: now + nanos(params.warmup) + nanos(params.duration),
        };
        let (finish_tx, finish_rx) = watch::channel(false);
        let senders = params.senders();
        let total_senders = senders * params.rooms;
        let per_sender_interval = (params.rate > 0.0)
            .then(|| Duration::from_secs_f64(total_senders as f64 / params.rate));

        let mut tasks: Vec<Option<MemberTasks>> = Vec::with_capacity(self.members.len());
        let member_count = self.members.len();
        for (sender_no, (member, conn)) in self.members.iter().zip(&mut self.conns).enumerate() {
            let is_sender = member.index < senders;
            let Some(ws) = conn.take() else {
                if is_sender {
                    counters.senders_done.fetch_add(1, Ordering::Relaxed);
                }
                tasks.push(None);
                continue;
            };
            let (sink, source) = ws.split();
            let permits = Arc::new(Semaphore::new(params.window));
            let probe = (params.mode == Mode::Live && member.index == 1).then(|| Probe {
                name: member.name.clone(),
                key: Arc::clone(&member.key.private),
                public_keys: Arc::clone(&self.public_keys),
            });
            let reader = tokio::spawn(read_loop(
                source,
                Arc::clone(&permits),
                Arc::clone(&counters),
                window,
                params.mode,
                probe,
                finish_rx.clone(),
            ));
            let plan = is_sender.then(|| SendPlan {
                sender_no: u32::try_from(sender_no).unwrap_or(u32::MAX),
                room: member.room,
                name: member.name.clone(),
                key: Arc::clone(&member.key.private),
                interval: per_sender_interval,
                // Spread the senders' schedules evenly over one interval.
                offset: per_sender_interval
                    .map(|i| i.mul_f64(sender_no as f64 / member_count as f64)),
            });
            let writer = tokio::spawn(write_loop(
                sink,
                plan,
                params.mode,
                params.payload_bytes,
                Arc::clone(&self.templates),
                Arc::clone(&self.room_recipients),
                Arc::clone(&self.room_names),
                permits,
                Arc::clone(&counters),
                window,
                finish_rx.clone(),
            ));
            tasks.push(Some(MemberTasks { reader, writer }));
        }

        // Target and driver CPU over the window.
        let target_pid = self.target.pid;
        let cpu_probe = tokio::spawn(async move {
            let read = |pid: Option<u32>| pid.and_then(|p| machine::cpu_seconds(p).ok());
            let driver = Some(std::process::id());
            tokio::time::sleep_until(clock::instant_at(window.start).into()).await;
            let before = (read(target_pid), read(driver));
            tokio::time::sleep_until(clock::instant_at(window.end).into()).await;
            let after = (read(target_pid), read(driver));
            let rss = target_pid.and_then(|p| machine::rss_kib(p).ok());
            let used = |b: Option<f64>, a: Option<f64>| b.zip(a).map(|(b, a)| a - b);
            (used(before.0, after.0), used(before.1, after.1), rss)
        });

        tokio::time::sleep_until(clock::instant_at(window.end).into()).await;
        // Senders stop at the window's end; wait for every answer and copy, or the drain
        // limit.
        let drain_deadline = Instant::now() + params.drain;
        loop {
            let sent = counters.sent.load(Ordering::Relaxed);
            let answered =
                counters.acked.load(Ordering::Relaxed) + counters.errors.load(Ordering::Relaxed);
            let expected = counters.acked.load(Ordering::Relaxed) * (params.members as u64 - 1);
            let senders_done =
                counters.senders_done.load(Ordering::Relaxed) >= total_senders as u64;
            if senders_done
                && answered >= sent
                && counters.delivered.load(Ordering::Relaxed) >= expected
            {
                break;
            }
            if Instant::now() > drain_deadline {
                tracing::warn!(sent, answered, expected, "drain limit reached");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = finish_tx.send(true);
        let mut samples = Vec::new();
        for (slot, member_tasks) in self.conns.iter_mut().zip(tasks) {
            let Some(MemberTasks { reader, writer }) = member_tasks else {
                continue;
            };
            let source = match reader.await {
                Ok(out) => {
                    samples.extend(out.latencies);
                    out.source
                }
                Err(_) => None,
            };
            let sink = writer.await.ok();
            // Both halves back, and the connection still open: keep it for the next
            // measurement.
            *slot = source
                .zip(sink)
                .and_then(|(source, sink)| source.reunite(sink).ok());
        }
        let (cpu, driver_cpu, rss) = cpu_probe.await.unwrap_or((None, None, None));

        let secs = params.duration.as_secs_f64();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let acked = load(&counters.acked);
        let expected = acked * (params.members as u64 - 1);
        let delivered = load(&counters.delivered);
        FanoutResult {
            target: self.target.kind,
            url: self.target.describe_urls(),
            mode: params.mode,
            mode_note: params.mode.describe().to_owned(),
            params: params.clone(),
            send_frame_bytes: self.send_frame_bytes,
            offered_msgs_per_sec: load(&counters.sent_in_window) as f64 / secs,
            acked_msgs_per_sec: load(&counters.acked_in_window) as f64 / secs,
            delivered_envelopes_per_sec: load(&counters.delivered_in_window) as f64 / secs,
            latency: summarize(&mut samples),
            latency_source: match params.mode {
                Mode::Replay => "message-id send time, every receiver".into(),
                Mode::Live => "decrypted payload send time, one probe member per room".into(),
            },
            sent: load(&counters.sent),
            acked,
            errors: load(&counters.errors),
            expected_deliveries: expected,
            delivered,
            lost: expected.saturating_sub(delivered),
            disconnects: load(&counters.disconnects),
            target_cpu_cores: cpu.map(|c| c / secs),
            target_rss_kib: rss,
            driver_cpu_cores: driver_cpu.map(|c| c / secs),
            setup_secs: self.setup_secs,
        }
    }

    /// Closes every connection still open, politely.
    pub async fn close(self) {
        for mut ws in self.conns.into_iter().flatten() {
            let _ = ws.close(None).await;
        }
    }
}

/// One member's reading and writing tasks during a measurement.
struct MemberTasks {
    reader: JoinHandle<ReaderOutput>,
    writer: JoinHandle<SplitSink<Ws, Message>>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The body of a message: `text` is the send time (20 digits) padded to `payload_bytes`.
fn message_body(
    room: &RoomName,
    sender: &Username,
    recipients: &[Recipient],
    payload_bytes: usize,
    sent_at_nanos: u64,
) -> MessageBody {
    let mut text = format!("{sent_at_nanos:020}");
    if text.len() < payload_bytes {
        text.push_str(&"x".repeat(payload_bytes - text.len()));
    } else {
        text.truncate(payload_bytes);
    }
    MessageBody {
        room: room.clone(),
        message_id: shared::MessageId([0; 16]),
        sender: sender.clone(),
        device: shared::DeviceId([0; 16]),
        counter: 1,
        sent_at_ms: 0,
        recipients: recipients.iter().map(|r| r.username.clone()).collect(),
        text,
    }
}

/// Connects every member: account and login on the server, a name on the relay.
async fn connect_all(
    params: &FanoutParams,
    target: &Target,
    members: &[Member],
) -> anyhow::Result<Vec<SetupConn>> {
    let mut conns: Vec<(usize, SetupConn)> = stream::iter(members.iter().enumerate())
        .map(|(i, m)| async move {
            let mut conn = SetupConn::open(target.url_for(i), false).await?;
            match target.kind {
                TargetKind::Server => {
                    conn.register(&m.name, &m.key.der).await?;
                    conn.login(&m.name, &m.key.login_signer).await?;
                }
                TargetKind::Relay => conn.relay_login(&m.name).await?,
            }
            anyhow::Ok((i, conn))
        })
        .buffer_unordered(params.setup_concurrency.max(1))
        .try_collect()
        .await
        .context("fan-out set-up (connect, register, login) failed")?;
    conns.sort_by_key(|(i, _)| *i);
    Ok(conns.into_iter().map(|(_, c)| c).collect())
}

/// Member 0 of each room creates it; then everyone else joins.
async fn join_rooms(
    params: &FanoutParams,
    rooms: &[RoomName],
    members: &[Member],
    conns: Vec<SetupConn>,
) -> anyhow::Result<Vec<SetupConn>> {
    let mut slots: Vec<Option<SetupConn>> = conns.into_iter().map(Some).collect();
    for (r, room) in rooms.iter().enumerate() {
        let creator = slots[r * params.members]
            .as_mut()
            .context("missing connection")?;
        creator.create_room(room).await?;
    }
    let joiners: Vec<(usize, SetupConn)> = slots
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| members[*i].index != 0)
        .filter_map(|(i, s)| s.take().map(|c| (i, c)))
        .collect();
    let joined: Vec<(usize, SetupConn)> = stream::iter(joiners)
        .map(|(i, mut conn)| async move {
            conn.join_room(&rooms[members[i].room]).await?;
            anyhow::Ok((i, conn))
        })
        .buffer_unordered(params.setup_concurrency.max(1))
        .try_collect()
        .await
        .context("fan-out set-up (join rooms) failed")?;
    for (i, conn) in joined {
        slots[i] = Some(conn);
    }
    slots
        .into_iter()
        .map(|s| s.context("missing connection"))
        .collect()
}

/// A live-mode member that decrypts what it receives.
struct Probe {
    name: Username,
    key: Arc<shared::crypto::RsaPrivateKey>,
    public_keys: Arc<HashMap<String, RsaPublicKey>>,
}

struct ReaderOutput {
    latencies: Vec<u64>,
    /// The socket's reading half, unless the target closed it.
    source: Option<SplitStream<Ws>>,
}

async fn read_loop(
    mut source: SplitStream<Ws>,
    permits: Arc<Semaphore>,
    counters: Arc<Counters>,
    window: Window,
    mode: Mode,
    probe: Option<Probe>,
    mut finish: watch::Receiver<bool>,
) -> ReaderOutput {
    let mut latencies = Vec::new();
    loop {
        let msg = tokio::select! {
            msg = source.next() => msg,
            _ = finish.changed() => break,
        };
        let bytes = match msg {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                // A close after the driver said "finish" is our own.
                if !*finish.borrow() {
                    counters.disconnects.fetch_add(1, Ordering::Relaxed);
                }
                // Nothing more will come; release the sender so it can notice.
                permits.close();
                let _ = finish.changed().await;
                return ReaderOutput {
                    latencies,
                    source: None,
                };
            }
            Some(Ok(_)) => continue,
        };
        let now = clock::now_nanos();
        match classify(&bytes) {
            Incoming::Reply => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
                if window.contains(now) {
                    counters.acked_in_window.fetch_add(1, Ordering::Relaxed);
                }
                permits.add_permits(1);
            }
            Incoming::Error => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                if !counters.error_logged.swap(true, Ordering::Relaxed) {
                    if let Ok(ServerMsg::Error { code, message, .. }) = codec::decode_server(&bytes)
                    {
                        tracing::warn!(?code, message, "first error answer during fan-out");
                    }
                }
                permits.add_permits(1);
            }
            Incoming::Message { message_id } => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                if window.contains(now) {
                    counters.delivered_in_window.fetch_add(1, Ordering::Relaxed);
                }
                match &probe {
                    None if mode == Mode::Replay && window.contains(now) => {
                        latencies.push(now.saturating_sub(sent_at_nanos(&message_id)));
                    }
                    None => {}
                    Some(p) => {
                        if let Some(sent) = open_probe(p, bytes).await {
                            let done = clock::now_nanos();
                            if window.contains(now) {
                                latencies.push(done.saturating_sub(sent));
                            }
                        }
                    }
                }
            }
            Incoming::OtherPush | Incoming::Unknown => {}
        }
    }
    ReaderOutput {
        latencies,
        source: Some(source),
    }
}

/// Decrypts and verifies one copy; returns the send time written in its text.
async fn open_probe(probe: &Probe, frame: Bytes) -> Option<u64> {
    let name = probe.name.clone();
    let key = Arc::clone(&probe.key);
    let public_keys = Arc::clone(&probe.public_keys);
    let opened = tokio::task::spawn_blocking(move || {
        let ServerMsg::Push(Push::Message(m)) = codec::decode_server(&frame).ok()? else {
            return None;
        };
        let sender_key = public_keys.get(&m.sender.canonical())?;
        let body = open_message(
            Received {
                room: &m.room,
                message_id: &m.message_id,
                sender: &m.sender,
                recipients: &m.recipients,
            },
            &name,
            &key,
            &m.envelope,
            sender_key,
        )
        .ok()?;
        body.text.get(..20)?.parse::<u64>().ok()
    })
    .await
    .ok()?;
    if opened.is_none() {
        tracing::warn!("a probe could not open or verify a copy");
    }
    opened
}

/// A sender's schedule.
struct SendPlan {
    sender_no: u32,
    room: usize,
    name: Username,
    key: Arc<shared::crypto::RsaPrivateKey>,
    interval: Option<Duration>,
    offset: Option<Duration>,
}

#[allow(clippy::too_many_arguments)]
async fn write_loop(
    mut sink: SplitSink<Ws, Message>,
    plan: Option<SendPlan>,
    mode: Mode,
    payload_bytes: usize,
    templates: Arc<Vec<SendTemplate>>,
    recipients: Arc<Vec<Vec<Recipient>>>,
    rooms: Arc<Vec<RoomName>>,
    permits: Arc<Semaphore>,
    counters: Arc<Counters>,
    window: Window,
    mut finish: watch::Receiver<bool>,
) -> SplitSink<Ws, Message> {
    if let Some(plan) = plan {
        let end = clock::instant_at(window.end);
        let start = Instant::now() + plan.offset.unwrap_or_default();
        let mut counter: u32 = 0;
        loop {
            if let Some(interval) = plan.interval {
                let due = start + interval.mul_f64(f64::from(counter));
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
            }
            match tokio::time::timeout_at(end.into(), permits.acquire()).await {
                Ok(Ok(permit)) => permit.forget(),
                // Window over, or the connection is gone.
                Ok(Err(_)) | Err(_) => break,
            }
            let sent_at = clock::now_nanos();
            if sent_at >= window.end {
                break;
            }
            let message_id = timestamped_id(sent_at, plan.sender_no, counter);
            let request_id = PATCHABLE_REQUEST_BASE + u64::from(counter);
            let frame = match mode {
                Mode::Replay => templates[plan.room].frame(request_id, message_id),
                Mode::Live => {
                    match live_frame(
                        &plan,
                        &rooms,
                        &recipients,
                        payload_bytes,
                        sent_at,
                        message_id,
                        request_id,
                    )
                    .await
                    {
                        Some(f) => f,
                        None => break,
                    }
                }
            };
            if sink.send(Message::Binary(frame)).await.is_err() {
                break;
            }
            counters.sent.fetch_add(1, Ordering::Relaxed);
            if window.contains(sent_at) {
                counters.sent_in_window.fetch_add(1, Ordering::Relaxed);
            }
            counter = counter.wrapping_add(1);
        }
        counters.senders_done.fetch_add(1, Ordering::Relaxed);
    }
    // Keep the connection open until the driver has counted everything; the caller
    // closes it or measures again.
    let _ = finish.wait_for(|done| *done).await;
    sink
}

/// Signs and seals one message whose text carries `sent_at`.
async fn live_frame(
    plan: &SendPlan,
    rooms: &Arc<Vec<RoomName>>,
    recipients: &Arc<Vec<Vec<Recipient>>>,
    payload_bytes: usize,
    sent_at: u64,
    message_id: shared::MessageId,
    request_id: u64,
) -> Option<Bytes> {
    let room = rooms[plan.room].clone();
    let mut body = message_body(
        &room,
        &plan.name,
        &recipients[plan.room],
        payload_bytes,
        sent_at,
    );
    body.message_id = message_id;
    let key = Arc::clone(&plan.key);
    let recipients = Arc::clone(recipients);
    let index = plan.room;
    let envelopes =
        tokio::task::spawn_blocking(move || seal_message(&key, body, &recipients[index]))
            .await
            .ok()?
            .ok()?;
    let frame = ClientFrame {
        request_id: RequestId(request_id),
        msg: ClientMsg::SendMessage(SendMessage {
            room,
            message_id,
            envelopes,
        }),
    };
    codec::encode_client(&frame).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_spread_round_robin_over_every_instance() {
        let target = Target {
            url: "ws://a/ws".into(),
            kind: TargetKind::Server,
            pid: None,
            also: vec!["ws://b/ws".into()],
        };
        let urls: Vec<&str> = (0..4).map(|i| target.url_for(i)).collect();
        assert_eq!(urls, ["ws://a/ws", "ws://b/ws", "ws://a/ws", "ws://b/ws"]);
        assert_eq!(target.describe_urls(), "ws://a/ws + ws://b/ws");
        let single = Target {
            also: Vec::new(),
            ..target
        };
        assert!((0..3).all(|i| single.url_for(i) == "ws://a/ws"));
    }
}
