//! Scenario 5: abuse. One attacker against 100 ordinary users.
//!
//! The ordinary users are a [`crate::fanout`] run (by default 10 rooms of 10 members,
//! every member sending, 200 messages/s in all), measured twice on the same connections:
//! once alone (the baseline), then with an attacker running for the whole counting
//! window. Their latency, errors, lost copies and dropped connections are measured exactly
//! as in the fan-out scenario. One set-up serves both measurements because the server's
//! global registration quota (200 an hour by default) would not let a second set of 100
//! users register after the attacker's flood, which is itself part of the result.
//!
//! The attacker is one account (plus the accounts it manages to register) on
//! [`AbuseParams::attack_connections`] connections, each running one [`Tactic`] in turn:
//! registration floods, room-creation floods, wrong-password and missing-room joins, a
//! slow reader that asks for large history pages and never reads, malformed and oversized
//! sends, and request bursts over the rate limit. Every tactic except the bursts and the
//! slow reader writes at [`AbuseParams::attack_rate`] frames per second per connection,
//! over the server's default limit of 200. The attacker's account is a member of the first
//! ordinary room (it joins before the envelopes are sealed, see [`fanout::Outsider`]), so
//! that room's messages carry a copy for it, its connections receive them, and its
//! malformed sends get as far into the server's checks as a member's can.
//!
//! What the server answers the attacker is tallied per tactic: requests served, refusals
//! per error code, and the close codes of the connections the server ended. A connection
//! the server closes is opened again (and logged in again) until the window ends.
//!
//! The attacker runs on a thread and runtime of its own (it shares the machine's cores, as
//! everything here does, but not the scheduler that timestamps the ordinary users' copies).
//! It starts at the beginning of the counting window, not before it, so its
//! opening burst (the registrations and rooms its quotas still allow, the first password
//! checks) falls inside what is measured.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use shared::protocol::{
    codec, ClientFrame, ClientMsg, CreateRoom, Envelope, FetchHistory, GetUserKey, JoinRoom,
    ListRooms, Register, Reply, SendMessage, ServerMsg, MAX_FRAME_BYTES, MAX_HISTORY_PAGE,
};
use shared::{MessageId, RequestId, RoomName, Username};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::clock;
use crate::fanout::{self, FanoutParams, FanoutResult, Mode, Outsider, Target, TargetKind};
use crate::keys::{KeyPool, TestKey};
use crate::wire::{classify, Incoming, SetupConn, Ws};

/// How long after the window the attacker's connections keep reading, to count the
/// answers to what they sent last (and, for the slow reader, everything it left unread).
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// Pause before a closed attacker connection is opened again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Of every this many malformed sends, one is a frame over `MAX_FRAME_BYTES`, which the
/// server answers by closing the connection.
const OVER_LIMIT_EVERY: u64 = 250;

/// The byte length of a wrapped key that fits no RSA key size.
const WRONG_WRAPPED_KEY_BYTES: usize = 100;

/// One kind of abuse; attacker connection `i` runs `Tactic::ALL[i % 6]`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Tactic {
    /// Not logged in: `Register` with a fresh name each time (one key for all).
    Register,
    /// `CreateRoom` with a fresh name each time; every other one with a password (an
    /// argon2 hash), every fourth one hidden.
    CreateRooms,
    /// `JoinRoom` with wrong passwords: a password-protected public room someone else
    /// owns, a hidden one, missing names, and overlong passwords, in turn.
    GuessPasswords,
    /// Re-opens the busy room asking for a full history page, then asks for full history
    /// pages, and never reads its socket (it reads what is left only after the window).
    SlowReader,
    /// `SendMessage` to the busy room with copies over the size cap, wrapped keys of the
    /// wrong size, copies of unequal length; undecodable frames; text frames; and now and
    /// then a frame over `MAX_FRAME_BYTES`.
    BadSends,
    /// Once a second, a burst of cheap requests (`GetUserKey`, `ListRooms`) back to back,
    /// well over the rate limit's burst allowance.
    Burst,
}

impl Tactic {
    /// Every tactic, in the order connections are given them.
    pub const ALL: [Self; 6] = [
        Self::Register,
        Self::CreateRooms,
        Self::GuessPasswords,
        Self::SlowReader,
        Self::BadSends,
        Self::Burst,
    ];

    /// The tactic's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::CreateRooms => "create-rooms",
            Self::GuessPasswords => "guess-passwords",
            Self::SlowReader => "slow-reader",
            Self::BadSends => "bad-sends",
            Self::Burst => "burst",
        }
    }

    /// Whether the tactic's connections log in as the attacker.
    fn logs_in(self) -> bool {
        self != Self::Register
    }
}

/// Parameters of an abuse run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbuseParams {
    /// The ordinary users' fan-out (measured without, then with the attacker).
    pub ordinary: FanoutParams,
    /// The attacker's connections (each runs one of [`AbuseParams::tactics`],
    /// round-robin).
    pub attack_connections: usize,
    /// The tactics the attacker's connections run (all of them unless a run looks at one
    /// alone, to find which costs the ordinary users what).
    pub tactics: Vec<Tactic>,
    /// Frames per second each attacking connection writes (bursts and the slow reader
    /// aside).
    pub attack_rate: f64,
    /// Requests in each of the burst tactic's once-a-second bursts.
    pub burst: usize,
    /// The ciphertext size the server accepts per copy (its `--max-message-bytes`); the
    /// oversized copies are one byte over it.
    pub max_message_bytes: usize,
    /// Pause between the baseline and the attacked measurement.
    pub settle: Duration,
}

impl Default for AbuseParams {
    /// 10 rooms × 10 members at 200 messages/s; 12 attacking connections at 500 frames/s
    /// each (2.5 × the default rate limit), bursts of 1,000.
    fn default() -> Self {
        Self {
            ordinary: FanoutParams {
                rooms: 10,
                members: 10,
                rate: 200.0,
                window: 16,
                mode: Mode::Replay,
                ..FanoutParams::default()
            },
            attack_connections: 12,
            tactics: Tactic::ALL.to_vec(),
            attack_rate: 500.0,
            burst: 1000,
            max_message_bytes: 65_536,
            settle: Duration::from_secs(2),
        }
    }
}

/// What one tactic's connections got from the server during the attacked run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TacticTally {
    /// Connections running the tactic.
    pub connections: usize,
    /// Sessions opened (first ones and reopenings after the server closed one).
    pub sessions: u64,
    /// Sessions that could not be opened (connect, upgrade, hello or login), by reason.
    pub setup_failures: BTreeMap<String, u64>,
    /// Frames written.
    pub frames_sent: u64,
    /// Requests answered with a `Reply`: what the attacker was served.
    pub served: u64,
    /// Requests answered with an `Error`, by error code.
    pub refused: BTreeMap<String, u64>,
    /// Frames sent that got no answer before the connection ended or the grace ran out.
    pub unanswered: u64,
    /// Pushes received (copies of the busy room's messages and room events).
    pub pushes: u64,
    /// How the server ended sessions: close code and reason, or how the socket failed.
    pub closes: BTreeMap<String, u64>,
}

impl TacticTally {
    fn merge(&mut self, other: Self) {
        self.connections += other.connections;
        self.sessions += other.sessions;
        self.frames_sent += other.frames_sent;
        self.served += other.served;
        self.unanswered += other.unanswered;
        self.pushes += other.pushes;
        add_counts(&mut self.setup_failures, other.setup_failures);
        add_counts(&mut self.refused, other.refused);
        add_counts(&mut self.closes, other.closes);
    }

    /// Refusals of every code.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

/// Everything the attacker got, per tactic and in total.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttackerReport {
    /// Per tactic, by [`Tactic::name`].
    pub tactics: BTreeMap<String, TacticTally>,
    /// Frames written, all tactics.
    pub frames_sent: u64,
    /// Requests served, all tactics.
    pub served: u64,
    /// Refusals by error code, all tactics.
    pub refused: BTreeMap<String, u64>,
    /// Session ends by close code, all tactics.
    pub closes: BTreeMap<String, u64>,
}

/// What an abuse run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbuseResult {
    /// The parameters.
    pub params: AbuseParams,
    /// The ordinary users alone.
    pub baseline: FanoutResult,
    /// The ordinary users while the attacker ran.
    pub attacked: FanoutResult,
    /// Attacked p99 ÷ baseline p99 (0 when the baseline has no samples).
    pub p99_ratio: f64,
    /// The goal for the ratio: under this.
    pub p99_ratio_goal: f64,
    /// Whether the ratio is under its goal.
    pub p99_goal_met: bool,
    /// Whether no ordinary request failed with the attacker on: no error answer, no lost
    /// copy, no dropped connection.
    pub no_failures: bool,
    /// What the attacker got.
    pub attacker: AttackerReport,
}

/// The goal: with the attacker on, the ordinary users' p99 stays under twice its value
/// without.
pub const P99_RATIO_GOAL: f64 = 2.0;

/// Runs the baseline, then the attacked measurement, against one server.
///
/// # Errors
/// Invalid parameters, a target that is not a server, or a failed set-up (the ordinary
/// users', the attacker's account or the victim's rooms). What happens during the
/// measurements is counted, not returned.
pub async fn run(
    params: &AbuseParams,
    keys: &KeyPool,
    target: &Target,
) -> anyhow::Result<AbuseResult> {
    if target.kind != TargetKind::Server {
        bail!("the abuse scenario needs the chat server, not the relay");
    }
    if params.tactics.is_empty() {
        bail!("the attacker needs at least one tactic");
    }
    if params.attack_connections == 0 {
        bail!("the attacker needs at least one connection");
    }
    if !(params.attack_rate.is_finite() && params.attack_rate > 0.0) {
        bail!("the attack rate must be a positive number of frames per second");
    }
    clock::start();
    let tag = fanout::run_tag();
    let ordinary = &params.ordinary;
    let first_free_key = ordinary.rooms * ordinary.members;

    // Someone else's rooms to guess at: a password-protected public one and a hidden one.
    let victim = Username::parse(&format!("{tag}victim"))?;
    let victim_room = RoomName::parse(&format!("{tag}-locked"))?;
    let hidden_room = RoomName::parse(&format!("{tag}-hidden"))?;
    let victim_key = keys.key(first_free_key + 1);
    let mut conn = SetupConn::open(&target.url, false).await?;
    conn.register(&victim, &victim_key.der).await?;
    conn.login(&victim, &victim_key.login_signer).await?;
    for (room, hidden) in [(&victim_room, false), (&hidden_room, true)] {
        create_locked_room(&mut conn, room, hidden).await?;
    }
    conn.close().await;

    // The attacker's account, a member of the first ordinary room.
    let attacker = Username::parse(&format!("{tag}attacker"))?;
    let attacker_key = keys.key(first_free_key).clone();
    let mut conn = SetupConn::open(&target.url, false).await?;
    conn.register(&attacker, &attacker_key.der).await?;
    conn.login(&attacker, &attacker_key.login_signer).await?;
    let outsider = Outsider {
        room: 0,
        name: attacker.clone(),
        public_key: attacker_key.public.clone(),
        conn,
    };
    let mut prepared = fanout::prepare(ordinary, keys, target, vec![outsider]).await?;
    let busy_room = prepared
        .room_names()
        .first()
        .cloned()
        .context("no ordinary room")?;
    let busy_members: Vec<Username> = prepared
        .member_names()
        .take(ordinary.members)
        .cloned()
        .chain(std::iter::once(attacker.clone()))
        .collect();

    let baseline = prepared.measure().await;
    tokio::time::sleep(params.settle).await;

    let start = Instant::now() + ordinary.warmup;
    let arena = Arc::new(Arena {
        url: target.url.clone(),
        tag,
        attacker,
        key: attacker_key.clone(),
        frames: BadFrames::new(
            &busy_room,
            &busy_members,
            modulus_bytes(&attacker_key),
            params.max_message_bytes,
        )?,
        busy_room,
        victim_room,
        hidden_room,
        start,
        stop: start + ordinary.duration,
        interval: Duration::from_secs_f64(1.0 / params.attack_rate),
        burst: params.burst,
    });
    // The attacker runs on a runtime and thread of its own, as it would on a machine of its
    // own: its bursts of frame building and its blocked writers must not sit in the queue
    // of the runtime that timestamps the ordinary users' copies.
    let (connections, tactics) = (params.attack_connections, params.tactics.clone());
    let attack = std::thread::Builder::new()
        .name("attacker".into())
        .spawn(move || -> anyhow::Result<AttackerReport> {
            lower_this_threads_priority();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("the attacker's runtime")?;
            Ok(runtime.block_on(attack(arena, connections, tactics)))
        })
        .context("the attacker's thread")?;
    let attacked = prepared.measure().await;
    let attacker = tokio::task::spawn_blocking(move || attack.join())
        .await
        .context("joining the attacker")?
        .map_err(|_| anyhow::anyhow!("the attacker's thread panicked"))??;
    prepared.close().await;

    let p99_ratio = if baseline.latency.p99_ms > 0.0 {
        attacked.latency.p99_ms / baseline.latency.p99_ms
    } else {
        0.0
    };
    Ok(AbuseResult {
        params: params.clone(),
        p99_ratio,
        p99_ratio_goal: P99_RATIO_GOAL,
        p99_goal_met: p99_ratio > 0.0 && p99_ratio < P99_RATIO_GOAL,
        no_failures: attacked.errors == 0 && attacked.lost == 0 && attacked.disconnects == 0,
        baseline,
        attacked,
        attacker,
    })
}

/// Puts the calling thread at the lowest scheduling priority (`renice 19` on its thread
/// id, Linux only; elsewhere, or if `renice` is missing, it stays as it is). The attacker
/// would run on a machine of its own; here it shares two cores with the server and the
/// ordinary users' driver, and its own frame building must not preempt either, or the
/// ordinary users' latency would measure the load generator rather than the server. It
/// still gets every cycle the others leave idle (the report counts its frames).
fn lower_this_threads_priority() {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(str::to_owned) else {
        return;
    };
    let reniced = std::process::Command::new("renice")
        .args(["-n", "19", "-p", &tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !reniced.is_ok_and(|s| s.success()) {
        tracing::warn!(
            "could not lower the attacker thread's priority; it competes at full priority"
        );
    }
}

/// Creates a room with a password the attacker does not know.
async fn create_locked_room(
    conn: &mut SetupConn,
    room: &RoomName,
    hidden: bool,
) -> anyhow::Result<()> {
    let password = format!("{:032x}", rand::random::<u128>());
    match conn
        .request(ClientMsg::CreateRoom(CreateRoom {
            name: room.clone(),
            password: Some(password),
            hidden,
        }))
        .await?
    {
        Ok(Reply::RoomCreated(_)) => Ok(()),
        Ok(other) => bail!("expected RoomCreated, got {other:?}"),
        Err(r) => bail!("create room {room} refused: {r}"),
    }
}

/// What every attacking connection shares.
struct Arena {
    url: String,
    /// Prefix of every name the attacker makes up.
    tag: String,
    attacker: Username,
    key: TestKey,
    /// The malformed sends, encoded once.
    frames: BadFrames,
    /// The ordinary room the attacker is a member of.
    busy_room: RoomName,
    /// The victim's password-protected public room.
    victim_room: RoomName,
    /// The victim's hidden, password-protected room.
    hidden_room: RoomName,
    /// When the attacker starts writing (the counting window's start).
    start: Instant,
    /// When it stops (the window's end).
    stop: Instant,
    /// Between two frames of a paced tactic.
    interval: Duration,
    burst: usize,
}

/// The malformed and over-limit frames of [`Tactic::BadSends`] and the burst requests,
/// encoded once and cloned per send.
struct BadFrames {
    oversized_copies: Bytes,
    wrong_wrapped_keys: Bytes,
    unequal_copies: Bytes,
    garbage: Bytes,
    over_limit: Bytes,
    /// A lookup of an ordinary user's key.
    get_user_key: Option<Bytes>,
    list_rooms: Bytes,
}

impl BadFrames {
    fn new(
        room: &RoomName,
        members: &[Username],
        modulus_bytes: usize,
        max_message_bytes: usize,
    ) -> anyhow::Result<Self> {
        let send = |wrapped: usize, ciphertext: &dyn Fn(usize) -> usize| {
            let envelopes = members
                .iter()
                .enumerate()
                .map(|(i, m)| Envelope {
                    recipient: m.clone(),
                    wrapped_key: vec![0x5a; wrapped],
                    nonce: [0; 12],
                    ciphertext: vec![0xa5; ciphertext(i)],
                })
                .collect();
            encode(ClientMsg::SendMessage(SendMessage {
                room: room.clone(),
                message_id: MessageId(rand::random()),
                envelopes,
            }))
        };
        let garbage: Vec<u8> = (0..64).map(|_| rand::random::<u8>() | 0x80).collect();
        Ok(Self {
            oversized_copies: send(modulus_bytes, &|_| max_message_bytes + 1)?,
            wrong_wrapped_keys: send(WRONG_WRAPPED_KEY_BYTES, &|_| 300)?,
            unequal_copies: send(modulus_bytes, &|i| 300 + i)?,
            garbage: Bytes::from(garbage),
            over_limit: Bytes::from(vec![0xff; MAX_FRAME_BYTES + 1]),
            get_user_key: members
                .first()
                .map(|u| {
                    encode(ClientMsg::GetUserKey(GetUserKey {
                        username: u.clone(),
                    }))
                })
                .transpose()?,
            list_rooms: encode(ClientMsg::ListRooms(ListRooms::default()))?,
        })
    }
}

/// Encodes a request under a fixed id (the attacker never matches answers to requests).
fn encode(msg: ClientMsg) -> anyhow::Result<Bytes> {
    let frame = ClientFrame {
        request_id: RequestId(1),
        msg,
    };
    Ok(Bytes::from(codec::encode_client(&frame)?))
}

/// The modulus size of `key`'s public half in bytes: what a wrapped key to it measures.
fn modulus_bytes(key: &TestKey) -> usize {
    key.public.size()
}

/// Runs every attacking connection until the window ends and sums what they got.
async fn attack(arena: Arc<Arena>, connections: usize, tactics: Vec<Tactic>) -> AttackerReport {
    let tasks: Vec<_> = (0..connections)
        .zip(tactics.iter().copied().cycle())
        .map(|(slot, tactic)| {
            (
                tactic,
                tokio::spawn(attack_connection(Arc::clone(&arena), tactic, slot)),
            )
        })
        .collect();
    let mut report = AttackerReport::default();
    for (tactic, task) in tasks {
        let tally = task.await.unwrap_or_else(|_| TacticTally {
            connections: 1,
            ..TacticTally::default()
        });
        report.frames_sent += tally.frames_sent;
        report.served += tally.served;
        add_counts(&mut report.refused, tally.refused.clone());
        add_counts(&mut report.closes, tally.closes.clone());
        report
            .tactics
            .entry(tactic.name().to_owned())
            .or_default()
            .merge(tally);
    }
    report
}

/// One attacking connection: opens a session, runs its tactic, and opens another when the
/// server ends one, until the window is over.
async fn attack_connection(arena: Arc<Arena>, tactic: Tactic, slot: usize) -> TacticTally {
    let mut tally = TacticTally {
        connections: 1,
        ..TacticTally::default()
    };
    // Numbers the frames across sessions, so made-up names never repeat.
    let mut next = 0u64;
    while Instant::now() < arena.stop {
        let opened = tokio::time::timeout_at(arena.stop.into(), open_session(&arena, tactic)).await;
        let ws = match opened {
            Err(_) => break,
            Ok(Err(e)) => {
                let reason = format!("{e:#}");
                let reason: String = reason.chars().take(80).collect();
                *tally.setup_failures.entry(reason).or_default() += 1;
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
            Ok(Ok(ws)) => ws,
        };
        tally.sessions += 1;
        let sent_before = tally.frames_sent;
        let (sink, source) = ws.split();
        let mut answers = if tactic == Tactic::SlowReader {
            // Never read while writing; read what is left once writing is over.
            let (sink, sent) = write_session(&arena, tactic, slot, &mut next, sink, None).await;
            tally.frames_sent += sent;
            let answers = read_session(source, arena.stop + ANSWER_GRACE, None).await;
            close_politely(sink).await;
            answers
        } else {
            let (closed_tx, closed_rx) = watch::channel(false);
            let reader = tokio::spawn(read_session(
                source,
                arena.stop + ANSWER_GRACE,
                Some(closed_tx),
            ));
            let (sink, sent) =
                write_session(&arena, tactic, slot, &mut next, sink, Some(closed_rx)).await;
            tally.frames_sent += sent;
            let answers = reader.await.unwrap_or_default();
            close_politely(sink).await;
            answers
        };
        let sent = tally.frames_sent - sent_before;
        let answered = answers.served + answers.refused_total();
        answers.unanswered = sent.saturating_sub(answered);
        answers.connections = 0;
        answers.sessions = 0;
        tally.merge(answers);
        if Instant::now() < arena.stop {
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    }
    tally
}

async fn close_politely(mut sink: SplitSink<Ws, Message>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// Connects, says hello and (unless the tactic works unauthenticated) logs in.
async fn open_session(arena: &Arena, tactic: Tactic) -> anyhow::Result<Ws> {
    let mut conn = SetupConn::open(&arena.url, false).await?;
    if tactic.logs_in() {
        conn.login(&arena.attacker, &arena.key.login_signer).await?;
    }
    Ok(conn.into_ws())
}

/// Runs `fut` unless the window ends or the reader saw the connection close first.
async fn unless_over<F: Future>(
    stop: Instant,
    closed: &mut Option<watch::Receiver<bool>>,
    fut: F,
) -> Option<F::Output> {
    let closed_signal = async {
        match closed {
            Some(rx) => {
                let _ = rx.wait_for(|c| *c).await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        out = fut => Some(out),
        () = tokio::time::sleep_until(stop.into()) => None,
        () = closed_signal => None,
    }
}

/// Writes the tactic's frames from the window's start to its end (or until the
/// connection fails); returns the sink and how many frames went out.
async fn write_session(
    arena: &Arena,
    tactic: Tactic,
    slot: usize,
    next: &mut u64,
    mut sink: SplitSink<Ws, Message>,
    mut closed: Option<watch::Receiver<bool>>,
) -> (SplitSink<Ws, Message>, u64) {
    let mut sent = 0u64;
    let begin = arena.start.max(Instant::now());
    if unless_over(
        arena.stop,
        &mut closed,
        tokio::time::sleep_until(begin.into()),
    )
    .await
    .is_none()
    {
        return (sink, sent);
    }
    let period = if tactic == Tactic::Burst {
        Duration::from_secs(1)
    } else {
        arena.interval
    };
    let mut ticks = tokio::time::interval_at(begin.into(), period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        if unless_over(arena.stop, &mut closed, ticks.tick())
            .await
            .is_none()
        {
            break;
        }
        let frames: Vec<Message> = if tactic == Tactic::Burst {
            (0..arena.burst)
                .filter_map(|i| burst_frame(arena, *next + i as u64))
                .collect()
        } else {
            frame(arena, tactic, slot, *next).into_iter().collect()
        };
        let count = frames.len() as u64;
        *next += count.max(1);
        let written = unless_over(arena.stop, &mut closed, async {
            for f in frames {
                sink.feed(f).await?;
            }
            sink.flush().await
        })
        .await;
        match written {
            Some(Ok(())) => sent += count,
            // The window is over, or the connection failed.
            None | Some(Err(_)) => break,
        }
    }
    (sink, sent)
}

/// Frame `n` of a paced tactic (`None` only if a made-up name would be invalid).
fn frame(arena: &Arena, tactic: Tactic, slot: usize, n: u64) -> Option<Message> {
    let tag = &arena.tag;
    let msg = match tactic {
        Tactic::Register => ClientMsg::Register(Register {
            username: Username::parse(&format!("{tag}f{slot}n{n}")).ok()?,
            public_key: arena.key.der.clone(),
        }),
        Tactic::CreateRooms => ClientMsg::CreateRoom(CreateRoom {
            name: RoomName::parse(&format!("{tag}-flood{slot}-{n}")).ok()?,
            password: (n % 2 == 1).then(|| format!("pw{n}")),
            hidden: n % 4 == 3,
        }),
        Tactic::GuessPasswords => {
            let (name, password) = match n % 4 {
                0 => (arena.victim_room.clone(), format!("guess{n}")),
                1 => (arena.hidden_room.clone(), format!("guess{n}")),
                2 => (
                    RoomName::parse(&format!("{tag}-nothing{slot}-{n}")).ok()?,
                    format!("guess{n}"),
                ),
                _ => (arena.victim_room.clone(), "x".repeat(300)),
            };
            ClientMsg::JoinRoom(JoinRoom {
                name,
                password: Some(password),
                history_limit: 0,
            })
        }
        Tactic::SlowReader if n == 0 => ClientMsg::JoinRoom(JoinRoom {
            name: arena.busy_room.clone(),
            password: None,
            history_limit: MAX_HISTORY_PAGE,
        }),
        Tactic::SlowReader => ClientMsg::FetchHistory(FetchHistory {
            room: arena.busy_room.clone(),
            before_seq: None,
            limit: MAX_HISTORY_PAGE,
        }),
        Tactic::BadSends => {
            let f = &arena.frames;
            if n % OVER_LIMIT_EVERY == OVER_LIMIT_EVERY - 1 {
                return Some(Message::Binary(f.over_limit.clone()));
            }
            return Some(match n % 5 {
                0 => Message::Binary(f.oversized_copies.clone()),
                1 => Message::Binary(f.wrong_wrapped_keys.clone()),
                2 => Message::Binary(f.unequal_copies.clone()),
                3 => Message::Binary(f.garbage.clone()),
                _ => Message::text("not a frame"),
            });
        }
        Tactic::Burst => return burst_frame(arena, n),
    };
    let frame = ClientFrame {
        request_id: RequestId(n + 1),
        msg,
    };
    codec::encode_client(&frame).ok().map(Message::binary)
}

/// Request `n` of a burst: a key lookup and a room listing in turn.
fn burst_frame(arena: &Arena, n: u64) -> Option<Message> {
    let f = &arena.frames;
    let bytes = if n.is_multiple_of(2) {
        f.get_user_key.clone()
    } else {
        Some(f.list_rooms.clone())
    };
    bytes.map(Message::Binary)
}

/// Reads and tallies everything the server sends until `until` or the connection ends;
/// tells the writer (through `closed`) when the server has ended it.
async fn read_session(
    mut source: SplitStream<Ws>,
    until: Instant,
    closed: Option<watch::Sender<bool>>,
) -> TacticTally {
    let mut tally = TacticTally::default();
    let ended = loop {
        let Ok(msg) = tokio::time::timeout_at(until.into(), source.next()).await else {
            break None;
        };
        match msg {
            Some(Ok(Message::Binary(bytes))) => match classify(&bytes) {
                Incoming::Reply => tally.served += 1,
                Incoming::Error => {
                    let code = match codec::decode_server(&bytes) {
                        Ok(ServerMsg::Error { code, .. }) => format!("{code:?}"),
                        _ => "undecodable".to_owned(),
                    };
                    *tally.refused.entry(code).or_default() += 1;
                }
                Incoming::Message { .. } | Incoming::OtherPush => tally.pushes += 1,
                Incoming::Unknown => *tally.refused.entry("unknown".into()).or_default() += 1,
            },
            Some(Ok(Message::Close(frame))) => {
                break Some(frame.map_or_else(
                    || "close without a code".to_owned(),
                    |f| format!("{} {}", u16::from(f.code), f.reason),
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break Some(format!("socket error: {e}")),
            None => break Some("socket ended without a close".to_owned()),
        }
    };
    if let Some(how) = ended {
        *tally.closes.entry(how).or_default() += 1;
        if let Some(tx) = closed {
            let _ = tx.send(true);
        }
    }
    tally
}
