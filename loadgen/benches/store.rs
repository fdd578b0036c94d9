//! The embedded store's message write path, without the network.
//!
//! A 100-member room; each message carries 100 copies of the size a 256-byte text makes
//! with RSA-3072 keys (384-byte wrapped key, ~1.9 KB ciphertext). Printed: messages/s
//! and write-path CPU per message for
//!
//! 1. the real `EmbeddedStore::append_message` (schema 3: a message and all its copies
//!    are one value), one append in flight (one sender), and with 8 in flight (group
//!    commit can batch);
//! 2. raw redb, one durable transaction per message, in the three layouts that came
//!    before it:
//!    - `copies (room, recipient, seq)`: schema 1, one row per copy keyed by recipient;
//!    - `copies (room, seq, recipient)`: schema 2, the same rows keyed so a message's
//!      copies are adjacent and appended at the end of the room's range;
//!    - `blob (room, seq)` + `index (room, recipient, seq) → ()`: the copies stored once as
//!      one value, plus a small index row per recipient.
//!
//! Run: `cargo bench -p loadgen --bench store` (release). Quicker: `-- --quick`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use redb::{Database, Durability, TableDefinition};
use server::store::embedded::EmbeddedStore;
use server::store::{NewMessage, RoomKey, RoomRecord, Store, UserRecord};
use shared::protocol::{codec, Envelope};
use shared::{MessageId, RoomName, Username};

const MEMBERS: usize = 100;
const CIPHERTEXT: usize = 1_900;

fn cpu_seconds() -> f64 {
    loadgen::machine::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

fn envelopes() -> Vec<Envelope> {
    (0..MEMBERS)
        .map(|i| Envelope {
            recipient: Username::parse(&format!("member{i:03}")).unwrap(),
            wrapped_key: vec![0x5a; 384],
            nonce: [1; 12],
            ciphertext: vec![0xa5; CIPHERTEXT],
        })
        .collect()
}

fn report(label: &str, messages: usize, wall: f64, cpu: f64) {
    println!(
        "{label:<58} {:>8.0} msg/s {:>8.0} copies/s  {:>6.2} ms CPU/msg",
        messages as f64 / wall,
        (messages * MEMBERS) as f64 / wall,
        cpu * 1e3 / messages as f64
    );
}

async fn real_store(messages: usize, in_flight: usize) {
    settle();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let room = RoomName::parse("bench-room").unwrap();
    let envs = envelopes();
    for e in &envs {
        store
            .create_user(UserRecord {
                username: e.recipient.clone(),
                public_key: vec![1; 400],
                created_at_ms: 0,
            })
            .await
            .unwrap();
    }
    let key = RoomKey::public(&room);
    store
        .create_room(
            &key,
            RoomRecord::group(room.clone(), envs[0].recipient.clone(), None, false, 0),
            1,
        )
        .await
        .unwrap();
    for e in &envs[1..] {
        store.add_member(&key, &e.recipient).await.unwrap();
    }
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let per_task = messages / in_flight;
    let tasks: Vec<_> = (0..in_flight)
        .map(|t| {
            let (store, key, envs) = (Arc::clone(&store), key.clone(), envs.clone());
            tokio::spawn(async move {
                for i in 0..per_task {
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&((t * per_task + i) as u64).to_le_bytes());
                    store
                        .append_message(NewMessage {
                            room: key.clone(),
                            message_id: MessageId(id),
                            sender: envs[0].recipient.clone(),
                            server_time_ms: 0,
                            envelopes: envs.clone(),
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    report(
        &format!("EmbeddedStore::append_message, {in_flight} in flight"),
        per_task * in_flight,
        t0.elapsed().as_secs_f64(),
        cpu_seconds() - cpu0,
    );
}

const BY_RECIPIENT: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("by_rcpt");
const BY_SEQ: TableDefinition<(&str, u64, &str), &[u8]> = TableDefinition::new("by_seq");
const BLOBS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("blobs");
const INDEX: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("index");

/// Lets the kernel finish writing back the previous run's data first, so runs do not
/// pay for each other's page-cache writeback.
fn settle() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(std::time::Duration::from_millis(500));
}

fn raw_layout(label: &str, messages: usize, write: impl Fn(&redb::WriteTransaction, u64)) {
    settle();
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("bench.redb")).unwrap();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    for seq in 1..=messages as u64 {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(Durability::Immediate).unwrap();
        write(&txn, seq);
        txn.commit().unwrap();
    }
    report(
        label,
        messages,
        t0.elapsed().as_secs_f64(),
        cpu_seconds() - cpu0,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. `cargo test --benches`) gets a
    // tiny run that only checks the code works.
    let args: Vec<String> = std::env::args().collect();
    let messages = match (
        args.iter().any(|a| a == "--bench"),
        args.iter().any(|a| a == "--quick"),
    ) {
        (true, false) => 400,
        (true, true) => 100,
        (false, _) => 8,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let envs = envelopes();
    let encoded: Vec<(String, Vec<u8>)> = envs
        .iter()
        .map(|e| (e.recipient.canonical(), codec::encode(e).unwrap()))
        .collect();
    let blob = codec::encode(&envs).unwrap();
    let current = |txn: &redb::WriteTransaction, seq: u64| {
        let mut t = txn.open_table(BY_RECIPIENT).unwrap();
        for (r, bytes) in &encoded {
            t.insert(("bench-room", r.as_str(), seq), bytes.as_slice())
                .unwrap();
        }
    };
    let by_seq = |txn: &redb::WriteTransaction, seq: u64| {
        let mut t = txn.open_table(BY_SEQ).unwrap();
        for (r, bytes) in &encoded {
            t.insert(("bench-room", seq, r.as_str()), bytes.as_slice())
                .unwrap();
        }
    };
    let blob_index = |txn: &redb::WriteTransaction, seq: u64| {
        let mut b = txn.open_table(BLOBS).unwrap();
        b.insert(("bench-room", seq), blob.as_slice()).unwrap();
        let mut i = txn.open_table(INDEX).unwrap();
        for (r, _) in &encoded {
            i.insert(("bench-room", r.as_str(), seq), ()).unwrap();
        }
    };
    // Two rounds in opposite orders, so no configuration always runs first.
    for round in 0..2 {
        println!("-- round {}", round + 1);
        let mut steps: Vec<Box<dyn Fn()>> = vec![
            Box::new(|| runtime.block_on(real_store(messages, 1))),
            Box::new(|| runtime.block_on(real_store(messages, 8))),
            Box::new(|| {
                raw_layout(
                    "raw redb: copies (room, recipient, seq) [schema 1]",
                    messages,
                    current,
                )
            }),
            Box::new(|| {
                raw_layout(
                    "raw redb: copies (room, seq, recipient) [schema 2]",
                    messages,
                    by_seq,
                )
            }),
            Box::new(|| {
                raw_layout(
                    "raw redb: one blob (room, seq) + index rows",
                    messages,
                    blob_index,
                )
            }),
        ];
        if round == 1 {
            steps.reverse();
        }
        for step in steps {
            step();
        }
    }
}
