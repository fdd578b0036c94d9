//! Hidden rooms reveal nothing to non-members: for every request a non-member can make
//! about a room name, a hidden room's name and a name never used get the same answer, and
//! latencies a rank test cannot tell apart. Plus the behaviour around shared names (a
//! public and a hidden room of one name; one room per name per member).
//!
//! The timing test interleaves the two kinds of request (in a scrambled order) so
//! that drift in the machine's load falls on both alike, and compares the latency samples
//! with a two-sided Mann–Whitney U test. It asserts |z| < [`Z_BOUND`], a generous bound
//! for a shared machine; a real difference such as a durable write against a lookup, or
//! an argon2 run against none, gives |z| far above it, which the positive control (a
//! password-protected public room against a missing name) shows on every run.

use std::time::{Duration, Instant};

use server::config::Config;
use shared::protocol::{
    ClientMsg, CreateRoom, Envelope, FetchHistory, GetKeyHistory, GetUserKey, JoinRoom, LeaveRoom,
    ListRooms, Reply, SendMessage,
};
use shared::{ErrorCode, MessageId};
use tests::{name, room, test_key, RawClient, TestServer, WireError};

/// Samples per kind of name and request.
const SAMPLES: usize = 200;

/// The largest |z| of the Mann–Whitney U test taken as "indistinguishable": generous for
/// a shared 2-core machine, where identical work gave |z| up to 3.6 over several runs
/// (two-sided p > 3·10⁻⁴), while a real leak separates the samples almost completely
/// (|z| ≈ 17 at 200 samples each; the durable write `LeaveRoom` used to make against a
/// lookup was such a leak). With strictly alternating order instead of a scrambled one,
/// identical work drifted to |z| ≈ 5.
const Z_BOUND: f64 = 5.0;

/// A reply reduced to what must not differ between a hidden room's name and a missing
/// one: the reply's kind and everything in it but the room's name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A room snapshot: (owner is the caller, members, hidden, has a password, history).
    Snapshot(bool, usize, bool, bool, usize),
    /// A room list: (rooms, users online, a next page).
    Rooms(usize, u32, bool),
    /// A user's key or key history.
    Key,
    /// An error with its code and message.
    Error(ErrorCode, String),
    /// Anything else (never expected here).
    Other(String),
}

fn outcome(caller: &str, reply: Result<Reply, WireError>) -> Outcome {
    match reply {
        Ok(Reply::RoomCreated(s) | Reply::Joined(s)) => Outcome::Snapshot(
            s.owner.same_as(&name(caller)),
            s.members.len(),
            s.hidden,
            s.has_password,
            s.history.messages.len(),
        ),
        Ok(Reply::Rooms(l)) => {
            Outcome::Rooms(l.rooms.len(), l.users_online, l.next_after.is_some())
        }
        Ok(Reply::UserKey(_) | Reply::KeyHistory(_)) => Outcome::Key,
        Ok(other) => Outcome::Other(format!("{other:?}")),
        Err(e) => Outcome::Error(e.code, e.message),
    }
}

/// The two-sided Mann–Whitney U statistic of `a` against `b` as a z-score (normal
/// approximation, with the correction for ties).
fn mann_whitney_z(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut rank_sum_a, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_sum_a += average_rank * all[i..=j].iter().filter(|(_, in_a)| *in_a).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    (u - n1 * n2 / 2.0) / variance.sqrt()
}

/// Sends `hidden(i)` and `missing(i)` in turn, `samples` times each (in a scrambled
/// order), checks that each pair gets the same [`Outcome`] and returns the z-score of
/// their latencies.
async fn compare(
    c: &mut RawClient,
    caller: &str,
    what: &str,
    samples: usize,
    hidden: impl Fn(usize) -> ClientMsg,
    missing: impl Fn(usize) -> ClientMsg,
) -> f64 {
    let (mut hidden_ns, mut missing_ns) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let timed = |ns: &mut Vec<f64>, reply: Result<Reply, WireError>, started: Instant| {
            ns.push(started.elapsed().as_nanos() as f64);
            outcome(caller, reply)
        };
        // Which goes first: a fixed scramble of `i`, so neither kind follows the other in
        // a regular pattern.
        let hidden_first = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63 == 0;
        let (h, m) = if hidden_first {
            let started = Instant::now();
            let h = c.request(hidden(i)).await;
            let h = timed(&mut hidden_ns, h, started);
            let started = Instant::now();
            let m = c.request(missing(i)).await;
            (h, timed(&mut missing_ns, m, started))
        } else {
            let started = Instant::now();
            let m = c.request(missing(i)).await;
            let m = timed(&mut missing_ns, m, started);
            let started = Instant::now();
            let h = c.request(hidden(i)).await;
            (timed(&mut hidden_ns, h, started), m)
        };
        assert_eq!(
            h, m,
            "{what}: a hidden room's name and a missing name, sample {i}"
        );
        assert!(!matches!(h, Outcome::Other(_)), "{what}: {h:?}");
    }
    let z = mann_whitney_z(&hidden_ns, &missing_ns);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] / 1e3
    };
    eprintln!(
        "{what:<28} z = {z:+.2}  medians {:.0} µs (hidden) / {:.0} µs (missing)",
        median(&mut hidden_ns),
        median(&mut missing_ns)
    );
    z
}

/// Request number `i` of one kind.
type Request = Box<dyn Fn(usize) -> ClientMsg>;

/// The name of hidden room `i` of a pool.
fn hidden_name(pool: &str, i: usize) -> String {
    format!("{pool}{i:03}h")
}

/// The never-used twin of [`hidden_name`]: next to it in name order, so both are looked
/// up in the same neighbourhood of every index.
fn missing_name(pool: &str, i: usize) -> String {
    format!("{pool}{i:03}m")
}

fn create(n: &str, password: Option<&str>, hidden: bool) -> ClientMsg {
    ClientMsg::CreateRoom(CreateRoom {
        name: room(n),
        password: password.map(str::to_owned),
        hidden,
    })
}

fn join(n: &str, password: Option<&str>) -> ClientMsg {
    ClientMsg::JoinRoom(JoinRoom {
        name: room(n),
        password: password.map(str::to_owned),
        history_limit: 20,
    })
}

fn send(n: &str, to: &str) -> ClientMsg {
    ClientMsg::SendMessage(SendMessage {
        room: room(n),
        message_id: MessageId::random(),
        envelopes: vec![Envelope {
            recipient: name(to),
            wrapped_key: vec![7; 256],
            nonce: [1; 12],
            ciphertext: vec![2; 64],
        }],
    })
}

#[tokio::test]
async fn hidden_rooms_answer_and_time_like_missing_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(Config {
        // Thousands of requests on one connection, hundreds of them failed joins: the rate
        // limit and the join throttle are not under test.
        requests_per_sec: 1_000_000,
        join_failures_per_room: u32::MAX,
        join_failures_per_user: u32::MAX,
        ..Config::for_tests(dir.path().to_path_buf())
    })
    .await;
    let url = server.ws_url();
    let mut keeper = RawClient::registered(&url, "keeper", &test_key(0)).await;

    // The keeper's hidden rooms: pool `c` for the public creates, `d` for the hidden
    // creates, `x` for everything else. Each hidden room's name has a missing twin right
    // next to it in name order, which nobody uses.
    for pool in ["c", "d", "x"] {
        for i in 0..SAMPLES {
            keeper
                .request(create(&hidden_name(pool, i), Some(&format!("pw{i}")), true))
                .await
                .expect("hidden room created");
        }
    }
    // A password-protected public room, for the positive control.
    keeper
        .request(create("guarded", Some("the real one"), false))
        .await
        .expect("public room created");
    // The other two log in only now: a client that reads nothing answers no heartbeat, and
    // the creates above take longer than the server's silence limit through the emulator
    // (the prober's connection was closed while it waited).
    let mut prober = RawClient::registered(&url, "prober", &test_key(1)).await;
    // For the key queries: a user in no room, against the hidden rooms' owner.
    let _loner = RawClient::registered(&url, "loner", &test_key(2)).await;

    let cases: [(&str, Request, Request); 7] = [
        (
            "JoinRoom (wrong password)",
            Box::new(|i| join(&hidden_name("x", i), Some("guess"))),
            Box::new(|i| join(&missing_name("x", i), Some("guess"))),
        ),
        (
            "JoinRoom (no password)",
            Box::new(|i| join(&hidden_name("x", i), None)),
            Box::new(|i| join(&missing_name("x", i), None)),
        ),
        (
            "LeaveRoom",
            Box::new(|i| {
                ClientMsg::LeaveRoom(LeaveRoom {
                    room: room(&hidden_name("x", i)),
                })
            }),
            Box::new(|i| {
                ClientMsg::LeaveRoom(LeaveRoom {
                    room: room(&missing_name("x", i)),
                })
            }),
        ),
        (
            "FetchHistory",
            Box::new(|i| {
                ClientMsg::FetchHistory(FetchHistory {
                    room: room(&hidden_name("x", i)),
                    before_seq: None,
                    limit: 20,
                })
            }),
            Box::new(|i| {
                ClientMsg::FetchHistory(FetchHistory {
                    room: room(&missing_name("x", i)),
                    before_seq: None,
                    limit: 20,
                })
            }),
        ),
        (
            "SendMessage",
            Box::new(|i| send(&hidden_name("x", i), "keeper")),
            Box::new(|i| send(&missing_name("x", i), "keeper")),
        ),
        (
            "ListRooms (filter)",
            Box::new(|i| {
                ClientMsg::ListRooms(ListRooms {
                    after: None,
                    filter: Some(hidden_name("x", i)),
                    limit: 0,
                })
            }),
            Box::new(|i| {
                ClientMsg::ListRooms(ListRooms {
                    after: None,
                    filter: Some(missing_name("x", i)),
                    limit: 0,
                })
            }),
        ),
        (
            // The hidden rooms' owner against a user who is in no room at all.
            "GetUserKey / GetKeyHistory",
            Box::new(|i| {
                let username = name("keeper");
                if i % 4 < 2 {
                    ClientMsg::GetUserKey(GetUserKey { username })
                } else {
                    ClientMsg::GetKeyHistory(GetKeyHistory { username })
                }
            }),
            Box::new(|i| {
                let username = name("loner");
                if i % 4 < 2 {
                    ClientMsg::GetUserKey(GetUserKey { username })
                } else {
                    ClientMsg::GetKeyHistory(GetKeyHistory { username })
                }
            }),
        ),
    ];
    // The requests that change nothing come first, from a user in no room; the creates,
    // which make the prober a member of rooms, after them.
    let p = "prober";
    let mut results = Vec::new();
    for (what, hidden, missing) in &cases {
        let z = compare(&mut prober, p, what, SAMPLES, hidden, missing).await;
        results.push((*what, z));
    }
    let z = compare(
        &mut prober,
        p,
        "CreateRoom (public)",
        SAMPLES,
        |i| create(&hidden_name("c", i), None, false),
        |i| create(&missing_name("c", i), None, false),
    )
    .await;
    results.push(("CreateRoom (public)", z));
    let z = compare(
        &mut prober,
        p,
        "CreateRoom (hidden)",
        SAMPLES,
        |i| create(&hidden_name("d", i), Some("guess"), true),
        |i| create(&missing_name("d", i), Some("guess"), true),
    )
    .await;
    results.push(("CreateRoom (hidden)", z));

    // Positive control: the test can see a real difference (an argon2 check of a public
    // room's password against a lookup that finds nothing).
    let control = compare_control(&mut prober).await;
    assert!(
        control > Z_BOUND,
        "the rank test should tell an argon2 run from none (z = {control:.2})"
    );

    for (what, z) in &results {
        assert!(
            z.abs() < Z_BOUND,
            "{what}: hidden and missing latencies differ (z = {z:.2}); all: {results:?}"
        );
    }
    server.shutdown().await;
}

/// The z-score of a wrong-password join of a password-protected public room against a
/// join of a missing name, on 50 samples each (their answers differ, by design: the
/// public room is listed).
async fn compare_control(c: &mut RawClient) -> f64 {
    let (mut public_ns, mut missing_ns) = (Vec::new(), Vec::new());
    for i in 0..50 {
        for (ns, n) in [(&mut public_ns, "guarded"), (&mut missing_ns, "absent")] {
            let started = Instant::now();
            let err = c
                .request(join(n, Some(&format!("guess{i}"))))
                .await
                .expect_err("refused");
            ns.push(started.elapsed().as_nanos() as f64);
            assert!(matches!(
                err.code,
                ErrorCode::WrongPassword | ErrorCode::RoomUnavailable
            ));
        }
    }
    let z = mann_whitney_z(&public_ns, &missing_ns);
    eprintln!("{:<28} z = {z:+.2}", "control (argon2 vs none)");
    z
}

#[test]
fn the_rank_test_tells_shifted_samples_apart_and_equal_ones_not() {
    let a: Vec<f64> = (0..200).map(|i| f64::from(i % 50)).collect();
    let shifted: Vec<f64> = a.iter().map(|x| x + 20.0).collect();
    assert!(mann_whitney_z(&a, &a).abs() < 1e-9);
    assert!(mann_whitney_z(&a, &shifted) < -Z_BOUND);
    assert!(mann_whitney_z(&shifted, &a) > Z_BOUND);
}

#[tokio::test]
async fn a_public_and_a_hidden_room_share_a_name_and_each_member_keeps_theirs() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut pub_owner = RawClient::registered(&url, "alice", &test_key(0)).await;
    let mut hid_owner = RawClient::registered(&url, "bob", &test_key(1)).await;
    let mut guest = RawClient::registered(&url, "carol", &test_key(2)).await;
    hid_owner
        .request(create("Den", Some("sesame"), true))
        .await
        .expect("hidden den");
    // Creating the public room of that name does not collide with the hidden one.
    pub_owner
        .request(create("den", None, false))
        .await
        .expect("public den beside it");

    // A joiner without the password gets the public room; with it, the hidden one.
    let Reply::Joined(snap) = guest
        .request(join("DEN", Some("sesame")))
        .await
        .expect("joins")
    else {
        panic!("not a snapshot")
    };
    assert!(snap.hidden && snap.has_password);
    assert_eq!(snap.room.as_str(), "Den");
    assert_eq!(snap.owner.as_str(), "bob");
    // Re-opening needs no password and finds the member's own room.
    let Reply::Joined(again) = guest.request(join("den", None)).await.expect("re-opens") else {
        panic!("not a snapshot")
    };
    assert!(again.hidden);
    // Joining or creating another den while holding one is refused.
    for (msg, what) in [
        (create("den", None, true), "a hidden den without a password"),
        (create("den", Some("other"), true), "another hidden den"),
    ] {
        let err = guest.request(msg).await.expect_err(what);
        assert_eq!(err.code, ErrorCode::InvalidState, "{what}");
    }
    // Messages go to the hidden room's members only, labelled with its display name.
    let Reply::Sent(ack) = guest
        .request(ClientMsg::SendMessage(SendMessage {
            room: room("den"),
            message_id: MessageId::random(),
            envelopes: ["bob", "carol"]
                .iter()
                .map(|r| Envelope {
                    recipient: name(r),
                    wrapped_key: vec![7; 256],
                    nonce: [1; 12],
                    ciphertext: vec![2; 64],
                })
                .collect(),
        }))
        .await
        .expect("sent")
    else {
        panic!("not an ack")
    };
    assert_eq!(ack.room.as_str(), "Den");
    pub_owner.expect_silence(Duration::from_millis(200)).await;
    // Leaving the hidden den frees the name for the public one.
    guest
        .request(ClientMsg::LeaveRoom(LeaveRoom { room: room("DEN") }))
        .await
        .expect("leaves");
    let Reply::Joined(public) = guest.request(join("den", None)).await.expect("joins") else {
        panic!("not a snapshot")
    };
    assert!(!public.hidden);
    assert_eq!(public.owner.as_str(), "alice");
    // Now a join with the hidden room's password names the other den: refused.
    let err = guest
        .request(join("den", Some("sesame")))
        .await
        .expect_err("holds the public den");
    assert_eq!(err.code, ErrorCode::InvalidState);
    // Someone in neither room with a password that keys no hidden den gets the public
    // den, which has no password and so takes any.
    let mut dave = RawClient::registered(&url, "dave", &test_key(3)).await;
    let Reply::Joined(d) = dave
        .request(join("den", Some("wrong")))
        .await
        .expect("joins")
    else {
        panic!("not a snapshot")
    };
    assert!(!d.hidden);
    server.shutdown().await;
}
