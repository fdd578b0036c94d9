//! Crypto floors, measured separately from any I/O (RSA-3072 fixture keys).
//!
//! - `seal_message/N`: what a client does per message for N recipients (sign once, seal N
//!   copies, spread over the cores).
//! - `floor/N`: N bare RSA-OAEP encryptions of a 32-byte key plus one PSS signature, on one
//!   thread: the RSA work `seal_message` cannot avoid.
//! - `oaep_encrypt`, `pss_sign`, `pss_verify_login`: the single operations (the last is
//!   what the server does per login).
//!
//! Run: `cargo bench -p loadgen --bench crypto`. The ratio seal ÷ floor is reported in
//! docs/PERFORMANCE.md (`loadgen crypto` prints it directly).

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use loadgen::keys::KeyPool;
use rsa::Oaep;
use sha2::Sha256;
use shared::crypto::message::{seal_message, MessageBody, Recipient};
use shared::crypto::signing::{self, Purpose};
use shared::{MessageId, RoomName, Username};

fn pool() -> KeyPool {
    KeyPool::rsa3072(None).expect("fixture keys load")
}

fn recipients(pool: &KeyPool, n: usize) -> Vec<Recipient> {
    (0..n)
        .map(|i| Recipient {
            username: Username::parse(&format!("bench{i}")).expect("name"),
            key: pool.key(i).public.clone(),
        })
        .collect()
}

fn body(recipients: &[Recipient]) -> MessageBody {
    MessageBody {
        room: RoomName::parse("bench-room").expect("room"),
        message_id: MessageId([1; 16]),
        sender: Username::parse("bench0").expect("name"),
        device: shared::DeviceId([0; 16]),
        counter: 1,
        sent_at_ms: 0,
        recipients: recipients.iter().map(|r| r.username.clone()).collect(),
        text: "x".repeat(256),
    }
}

fn seal(c: &mut Criterion) {
    let pool = pool();
    let author = pool.key(0).private.clone();
    let mut group = c.benchmark_group("seal_message");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for n in [1usize, 10, 100] {
        let rs = recipients(&pool, n);
        let b = body(&rs);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| seal_message(&author, b.clone(), &rs).expect("seals"));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("floor");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for n in [1usize, 10, 100] {
        let rs = recipients(&pool, n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            let mut rng = rand::rngs::OsRng;
            bench.iter(|| {
                let sig = signing::sign(&author, Purpose::Message, &[b"body"]);
                let wrapped: Vec<_> = rs
                    .iter()
                    .map(|r| {
                        r.key
                            .encrypt(&mut rng, Oaep::new::<Sha256>(), &[0x42; 32])
                            .expect("encrypts")
                    })
                    .collect();
                (sig, wrapped)
            });
        });
    }
    group.finish();
}

fn single_ops(c: &mut Criterion) {
    let pool = pool();
    let key = pool.key(0);
    let user = Username::parse("bench-user").expect("name");
    let nonce = [9u8; 32];
    let server = shared::ServerId([3; 16]);
    let sig = signing::sign_login(&key.private, &user, &nonce, &server);
    let mut group = c.benchmark_group("rsa3072");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("oaep_encrypt", |b| {
        let mut rng = rand::rngs::OsRng;
        b.iter(|| {
            key.public
                .encrypt(&mut rng, Oaep::new::<Sha256>(), &[0x42; 32])
                .expect("encrypts")
        });
    });
    group.bench_function("pss_sign", |b| {
        b.iter(|| signing::sign_login(&key.private, &user, &nonce, &server));
    });
    group.bench_function("pss_verify_login", |b| {
        b.iter(|| {
            signing::verify_login(&key.public, &user, &nonce, &server, &sig).expect("verifies")
        });
    });
    group.finish();
}

criterion_group!(benches, seal, single_ops);
criterion_main!(benches);
