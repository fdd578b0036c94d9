//! Opening a room: the time from `Client::join_room` to the [`RoomView`] the room view
//! draws first, for a newest page of 50 and 200 messages from 10 senders (RSA-3072
//! fixture keys, `tests/fixtures/keys/rsa3072-*.pem`) to one reader.
//!
//! A scripted in-process WebSocket server answers the handshake, the login and the
//! `JoinRoom` with a snapshot of real sealed messages, so the timed part is the client's
//! whole path: the request, decoding the snapshot, pin-checking the members, decrypting
//! and verifying the page and admitting it to the ledger.
//!
//! - *cold*: a fresh profile directory (nothing the client kept from before);
//! - *warm*: the same profile opening the same page again (after one untimed open).
//!
//! Run: `cargo bench -p client-tui --bench open_room` (prints medians; the figures are in
//! docs/PERFORMANCE.md, "Opening a room").

#![allow(missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use client_tui::{Client, ClientConfig, Identity, PinStore, RoomView};
use futures_util::{SinkExt, StreamExt};
use shared::crypto::keys::{self, private_from_pem};
use shared::crypto::message::{seal_message, MessageBody, Recipient};
use shared::crypto::RsaPrivateKey;
use shared::protocol::{
    codec, recipients_of, Challenge, ClientMsg, DeliveredMessage, HelloAck, HistoryPage, LoggedIn,
    MemberInfo, Reply, RoomKind, RoomSnapshot, ServerMsg, PROTOCOL_VERSION,
};
use shared::{DeviceId, MessageId, RoomName, ServerId, Username};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// How many senders write the page (keys `rsa3072-1` … `rsa3072-10`; the reader is `-0`).
const SENDERS: usize = 10;
/// Timed runs per case; the median is reported.
const RUNS: usize = 9;
/// The page sizes measured.
const SIZES: [usize; 2] = [50, 200];

fn fixture(n: usize) -> RsaPrivateKey {
    let path = format!(
        "{}/../tests/fixtures/keys/rsa3072-{n}.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let pem = std::fs::read_to_string(path).expect("fixture exists");
    private_from_pem(&pem, None).expect("fixture parses")
}

fn user(name: &str) -> Username {
    Username::parse(name).expect("valid username")
}

fn room() -> RoomName {
    RoomName::parse("bench-room").expect("valid room")
}

/// The reader and the senders, in member order.
struct Cast {
    reader: RsaPrivateKey,
    senders: Vec<RsaPrivateKey>,
}

impl Cast {
    fn load() -> Self {
        Self {
            reader: fixture(0),
            senders: (1..=SENDERS).map(fixture).collect(),
        }
    }

    fn names(&self) -> Vec<Username> {
        let mut names = vec![user("reader")];
        names.extend((0..SENDERS).map(|i| user(&format!("sender{i}"))));
        names
    }

    fn members(&self) -> Vec<MemberInfo> {
        let keys = std::iter::once(&self.reader).chain(&self.senders);
        self.names()
            .into_iter()
            .zip(keys)
            .map(|(username, k)| MemberInfo {
                username,
                public_key: keys::public_to_der(&k.to_public_key()).expect("encodes"),
                fingerprint: String::new(),
            })
            .collect()
    }

    /// `count` messages, seq 1.., round-robin over the senders, each sealed for every
    /// member; the reader's copies.
    fn history(&self, count: usize) -> Vec<DeliveredMessage> {
        let names = self.names();
        let recipients: Vec<Recipient> = names
            .iter()
            .zip(std::iter::once(&self.reader).chain(&self.senders))
            .map(|(username, k)| Recipient {
                username: username.clone(),
                key: k.to_public_key(),
            })
            .collect();
        (0..count)
            .map(|i| {
                let s = i % SENDERS;
                let seq = i as u64 + 1;
                let message_id = MessageId::random();
                let body = MessageBody {
                    room: room(),
                    message_id,
                    sender: names[s + 1].clone(),
                    device: DeviceId([s as u8; 16]),
                    counter: (i / SENDERS) as u64 + 1,
                    sent_at_ms: 1_700_000_000_000 + seq,
                    recipients: names.clone(),
                    text: format!("message {seq}: {}", "lorem ipsum ".repeat(6)),
                };
                let envelopes = seal_message(&self.senders[s], body, &recipients).expect("seals");
                DeliveredMessage {
                    room: room(),
                    seq,
                    message_id,
                    sender: names[s + 1].clone(),
                    server_time_ms: 1_700_000_000_000 + seq,
                    recipients: recipients_of(&envelopes),
                    envelope: envelopes[0].clone(),
                }
            })
            .collect()
    }
}

/// Serves `connections` connections one after the other (one address, as the client pins
/// the server's id to it): hello, login as `reader`, then the join with `snapshot`.
async fn serve(snapshot: RoomSnapshot, connections: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("has address");
    tokio::spawn(async move {
        for _ in 0..connections {
            let (tcp, _) = listener.accept().await.expect("accepts");
            serve_one(tcp, snapshot.clone()).await;
        }
    });
    format!("ws://{addr}/ws")
}

async fn serve_one(tcp: tokio::net::TcpStream, snapshot: RoomSnapshot) {
    {
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("upgrades");
        let mut snapshot = Some(snapshot);
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Binary(bytes) = msg else {
                continue;
            };
            let frame = codec::decode_client(&bytes).expect("client frame decodes");
            let reply = match frame.msg {
                ClientMsg::Hello(_) => Reply::Hello(HelloAck {
                    protocol_version: PROTOCOL_VERSION,
                    server: "bench".into(),
                    server_id: ServerId([3; 16]),
                    max_frame_bytes: 16 << 20,
                    max_message_bytes: 65_536,
                }),
                ClientMsg::LoginStart(_) => Reply::Challenge(Challenge {
                    nonce: [7; 32],
                    expires_in_secs: 30,
                }),
                ClientMsg::LoginProof(_) => Reply::LoggedIn(LoggedIn {
                    username: user("reader"),
                    rooms: vec![room()],
                    blocked: Vec::new(),
                }),
                ClientMsg::JoinRoom(_) => match snapshot.take() {
                    Some(s) => Reply::Joined(s),
                    None => break,
                },
                _ => break,
            };
            let out = ServerMsg::Reply {
                request_id: frame.request_id,
                reply,
            };
            let bytes = codec::encode_server(&out).expect("encodes");
            if ws.send(Message::Binary(bytes.into())).await.is_err() {
                break;
            }
        }
    }
}

fn snapshot(cast: &Cast, page: &[DeliveredMessage]) -> RoomSnapshot {
    RoomSnapshot {
        room: room(),
        kind: RoomKind::Group,
        owner: user("reader"),
        admins: Vec::new(),
        topic: None,
        has_password: false,
        hidden: false,
        read_up_to: 0,
        online: Vec::new(),
        members: cast.members(),
        history: HistoryPage {
            room: room(),
            messages: page.to_vec(),
            has_more: false,
            next_before_seq: None,
        },
    }
}

/// Connects with the profile in `dir`, logs in, and times `join_room`.
async fn open_once(dir: &Path, identity: &Identity, url: &str) -> (Duration, usize) {
    let pins = PinStore::open(dir.join("reader.pem.pins.json")).expect("pin store opens");
    let config = ClientConfig {
        history_limit: 200,
        request_timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    };
    let (client, mut events) = Client::connect_with(url, pins, config)
        .await
        .expect("connects");
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    client.login(identity).await.expect("logs in");
    let start = Instant::now();
    let view: RoomView = client.join_room(&room(), None).await.expect("joins");
    let took = start.elapsed();
    assert!(view.history.rejected.is_empty(), "every message verifies");
    client.close().await;
    (took, view.history.messages.len())
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick { 1 } else { RUNS };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cast = Cast::load();
    let reader = Identity::new(user("reader"), cast.reader.clone()).expect("identity");
    let largest = if quick {
        SIZES[0]
    } else {
        SIZES[SIZES.len() - 1]
    };
    let all = cast.history(largest);
    println!(
        "open_room: {SENDERS} senders, RSA-3072, {} cores, {runs} runs per case",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for n in SIZES.into_iter().filter(|n| *n <= largest) {
        let page = &all[all.len() - n..];
        let mut cold = Vec::with_capacity(runs);
        let mut warm = Vec::with_capacity(runs);
        for _ in 0..runs {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = rt.block_on(serve(snapshot(&cast, page), 2));
            let (took, shown) = rt.block_on(open_once(dir.path(), &reader, &url));
            assert_eq!(shown, n);
            cold.push(took);
            let (took, shown) = rt.block_on(open_once(dir.path(), &reader, &url));
            assert_eq!(shown, n);
            warm.push(took);
        }
        let (cold, warm) = (median(cold), median(warm));
        println!(
            "open_room/{n}: cold {:.1} ms, warm {:.1} ms (median), cold/warm {:.1}x",
            ms(cold),
            ms(warm),
            ms(cold) / ms(warm)
        );
    }
}
