//! The fan-out's unit tests, and its tests against `TEST_MONGODB_URI` (MongoDB or the
//! emulator; `#[ignore]`d by default, run by `.ci/mongo-conformance`).

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::hub::{Eviction, Registration};

/// A registration and its receiving ends.
fn registration() -> (
    Registration,
    mpsc::Receiver<PushFrame>,
    oneshot::Receiver<Eviction>,
) {
    let (pushes, rx) = crate::ws::outbound::push_queue(16, 1 << 20);
    let (evicted, why) = oneshot::channel();
    (Registration { pushes, evicted }, rx, why)
}

#[tokio::test]
async fn online_counts_add_remote_users_once() {
    let (hub, _task) = HubHandle::spawn();
    let (alice, _rx, _why) = registration();
    hub.connect(1, "alice".into(), alice).await.expect("hub");
    // alice is online here and elsewhere; bob elsewhere only; carol nowhere.
    let remote: HashSet<String> = ["alice".to_owned(), "bob".to_owned()].into();
    let counts = combine(
        &hub,
        &remote,
        vec![
            vec!["alice".into(), "bob".into(), "carol".into()],
            vec!["carol".into()],
        ],
    )
    .await
    .expect("hub");
    assert_eq!(counts.per_group, vec![2, 0]);
    assert_eq!(counts.users_online, 2);
}

/// Settings for instance `id` on a fresh database of `TEST_MONGODB_URI`.
fn settings(database: &str, id: &str) -> Settings {
    Settings {
        uri: std::env::var("TEST_MONGODB_URI").unwrap_or_else(|_| {
            panic!("TEST_MONGODB_URI is not set (these tests are #[ignore]d by default; run .ci/mongo-conformance)")
        }),
        database: database.to_owned(),
        instance: id.to_owned(),
        presence_interval: Duration::from_secs(1),
    }
}

fn fresh_database() -> String {
    format!("e2e_chat_fanout_{:016x}", rand::random::<u64>())
}

async fn drop_database(database: &str) {
    let db = connect(&settings(database, "cleanup"))
        .await
        .expect("connects");
    db.drop().await.expect("drops");
}

/// The next frame within a few seconds.
async fn next(rx: &mut mpsc::Receiver<PushFrame>) -> PushFrame {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a frame in time")
        .expect("queue open")
}

/// Nothing more arrives for a while.
async fn quiet(rx: &mut mpsc::Receiver<PushFrame>) {
    if let Ok(frame) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        panic!("unexpected frame {frame:?}");
    }
}

#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_fanout_delivers_evicts_and_counts_across_instances() {
    let database = fresh_database();
    let stop = CancellationToken::new();
    let (a, a_status) =
        ChangeStreamFanout::start(settings(&database, "a"), Default::default(), stop.clone())
            .await
            .expect("a starts");
    let (b, _) =
        ChangeStreamFanout::start(settings(&database, "b"), Default::default(), stop.clone())
            .await
            .expect("b starts");
    assert_eq!(a_status.state(), StreamState::Live);
    assert_eq!(a_status.instance(), "a");
    let (alice, mut alice_rx, alice_why) = registration();
    let (bob, mut bob_rx, _bob_why) = registration();
    b.connect(1, "alice".into(), alice).await.expect("b");
    a.connect(1, "bob".into(), bob).await.expect("a");

    // A message's copies: each recipient gets their own, once, on whichever instance.
    let shared = Arc::new(Bytes::from_static(b"head "));
    let to_alice = PushFrame::new(Arc::clone(&shared), Bytes::from_static(b"alice's copy"));
    let to_bob = PushFrame::new(Arc::clone(&shared), Bytes::from_static(b"bob's copy"));
    a.deliver(
        vec![
            ("alice".into(), to_alice.clone()),
            ("bob".into(), to_bob.clone()),
        ],
        None,
    )
    .await
    .expect("delivered");
    assert_eq!(next(&mut alice_rx).await, to_alice);
    assert_eq!(next(&mut bob_rx).await, to_bob);
    // And a broadcast from the other side.
    b.broadcast(
        vec!["alice".into(), "bob".into()],
        Bytes::from_static(b"joined"),
        None,
    )
    .await
    .expect("broadcast");
    assert_eq!(
        next(&mut alice_rx).await,
        Bytes::from_static(b"joined").into()
    );
    assert_eq!(
        next(&mut bob_rx).await,
        Bytes::from_static(b"joined").into()
    );
    quiet(&mut alice_rx).await;
    quiet(&mut bob_rx).await;

    // Each instance counts the other's users within a heartbeat or two.
    let group = || {
        vec![vec![
            "alice".to_owned(),
            "bob".to_owned(),
            "carol".to_owned(),
        ]]
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (from_a, from_b) = (a.online(group()).await, b.online(group()).await);
        let (from_a, from_b) = (from_a.expect("a"), from_b.expect("b"));
        if from_a.per_group == [2] && from_b.per_group == [2] {
            assert_eq!((from_a.users_online, from_b.users_online), (2, 2));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{from_a:?} {from_b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An eviction asked for on a ends alice's connection on b.
    a.evict("alice".into(), None, Eviction::KeyRotated)
        .await
        .expect("evicted");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), alice_why).await,
        Ok(Ok(Eviction::KeyRotated))
    );
    stop.cancel();
    drop((a, b));
    drop_database(&database).await;
}

#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_fanout_resumes_after_a_restart_from_its_saved_position() {
    let database = fresh_database();
    let stop_a = CancellationToken::new();
    let (a, _) =
        ChangeStreamFanout::start(settings(&database, "a"), Default::default(), stop_a.clone())
            .await
            .expect("a starts");
    let db = connect(&settings(&database, "b")).await.expect("connects");
    let watcher = |hub: &HubHandle| Watcher {
        events: db.collection(EVENTS),
        cursors: db.collection(CURSORS),
        instance: "b".into(),
        hub: hub.clone(),
        state: watch::channel(StreamState::Resuming).0,
    };

    // b runs, then stops (saving its position).
    let (hub, _task) = HubHandle::spawn();
    let running = watcher(&hub).start().await.expect("b starts");
    assert_eq!(running.backlog(), 0, "nothing saved yet");
    let stop_b = CancellationToken::new();
    let task = tokio::spawn(running.run(stop_b.clone()));
    stop_b.cancel();
    task.await.expect("b stops");

    // Three deliveries while b is down.
    for text in ["one", "two", "three"] {
        a.broadcast(
            vec!["alice".into()],
            Bytes::from_static(text.as_bytes()),
            None,
        )
        .await
        .expect("published");
    }

    // b comes back after its saved position: exactly those three, then live.
    let (hub, _task) = HubHandle::spawn();
    let running = watcher(&hub).start().await.expect("b restarts");
    assert_eq!(running.backlog(), 3, "the events written while b was down");
    let stop_b = CancellationToken::new();
    let task = tokio::spawn(running.run(stop_b.clone()));
    let (alice, mut alice_rx, _why) = registration();
    hub.connect(1, "alice".into(), alice).await.expect("hub");
    a.broadcast(vec!["alice".into()], Bytes::from_static(b"four"), None)
        .await
        .expect("published");
    assert_eq!(
        next(&mut alice_rx).await,
        Bytes::from_static(b"four").into()
    );
    quiet(&mut alice_rx).await;

    stop_b.cancel();
    task.await.expect("b stops");
    stop_a.cancel();
    drop(a);
    drop_database(&database).await;
}
