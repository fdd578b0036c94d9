//! Scale-out: two server processes on one MongoDB (or the wire-protocol emulator) behind
//! nginx as a WebSocket load balancer, serving one room as one server would — across a
//! kill and a restart of either instance.
//!
//! These tests need `TEST_MONGODB_URI` and nginx (see `tests::scale`); without them they
//! print why and pass without running. `.ci/mongo` runs them through the emulator.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shared::crypto::RsaPrivateKey;
use shared::protocol::{
    ClientMsg, CreateRoom, JoinRoom, LeaveRoom, ListRooms, ModerationAction, Push, Reply,
    RoomChange, SendMessage,
};
use shared::{ErrorCode, MessageId, RoomName};
use tests::scale::{drop_database, fresh_database, unavailable, Balancer, Instance};
use tests::{history_ids, name, open_text, room, rotation, seal_text, test_key, RawClient};

const EXE: &str = env!("CARGO_BIN_EXE_chat-server");

/// Whether the test cannot run here; says why on stderr.
fn skipped(test: &str) -> bool {
    match unavailable() {
        Some(why) => {
            eprintln!("SKIPPED {test} (two instances behind nginx): {why}");
            true
        }
        None => false,
    }
}

/// A user of the tests: name, key, and their connection.
struct Member {
    name: &'static str,
    /// The index of its test key.
    key_index: usize,
    key: Arc<RsaPrivateKey>,
    client: RawClient,
    /// The instance's port this connection reached.
    port: u16,
}

impl Member {
    /// Connects through `balancer` until the connection reaches the instance on `port`
    /// (the balancer takes turns, and leaves out an instance that failed for 2 s), then
    /// registers or logs in.
    async fn on(
        balancer: &Balancer,
        port: u16,
        name: &'static str,
        key_index: usize,
        register: bool,
    ) -> Self {
        let key = test_key(key_index);
        let mut reached_instead = Vec::new();
        for _ in 0..40 {
            let (mut client, reached) = balancer.greeted().await;
            if reached != port {
                reached_instead.push(reached);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if register {
                client.register(name, &key).await.expect("register");
            }
            client.login(name, &key).await.expect("login");
            return Self {
                name,
                key_index,
                key,
                client,
                port,
            };
        }
        panic!(
            "the balancer never sent {name} to the instance on port {port}: {reached_instead:?}"
        );
    }

    /// The same user logged in again through `balancer`, on the instance on `port`.
    async fn again(&self, balancer: &Balancer, port: u16) -> Self {
        Self::on(balancer, port, self.name, self.key_index, false).await
    }

    async fn join(&mut self, r: &RoomName) {
        match self
            .client
            .request(ClientMsg::JoinRoom(JoinRoom {
                name: r.clone(),
                password: None,
                history_limit: 0,
            }))
            .await
        {
            Ok(Reply::Joined(_)) => {}
            other => panic!("{} could not join: {other:?}", self.name),
        }
    }

    /// Sends `text` to `members` (all of the room) and returns its id once acknowledged.
    async fn send(
        &mut self,
        r: &RoomName,
        members: &[(&str, &RsaPrivateKey)],
        text: &str,
    ) -> MessageId {
        let (id, envelopes) = seal_text(r, self.name, &self.key, members, text);
        match self
            .client
            .request(ClientMsg::SendMessage(SendMessage {
                room: r.clone(),
                message_id: id,
                envelopes,
            }))
            .await
        {
            Ok(Reply::Sent(ack)) => assert_eq!(ack.message_id, id),
            other => panic!("{} could not send: {other:?}", self.name),
        }
        id
    }

    /// The ids of the next `n` message pushes (other pushes are skipped), in arrival order.
    async fn messages(&mut self, n: usize) -> Vec<MessageId> {
        let mut ids = Vec::new();
        while ids.len() < n {
            if let Push::Message(m) = self.client.next_push().await {
                ids.push(m.message_id);
            }
        }
        ids
    }

    /// Asserts no further message push arrives for a while: nothing delivered twice.
    async fn no_more_messages(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.client.next_frame()).await {
            if let Some(shared::protocol::ServerMsg::Push(Push::Message(m))) = frame {
                panic!(
                    "{} got message {:?} once more (seq {})",
                    self.name, m.message_id, m.seq
                );
            }
        }
        self.client
            .pushes
            .retain(|p| !matches!(p, Push::Message(_)) || panic!("queued message push: {p:?}"));
    }
}

/// `ids` hold each of `expected` exactly once (in any order).
fn exactly_once(who: &str, ids: &[MessageId], expected: &[MessageId]) {
    let got: HashSet<_> = ids.iter().collect();
    assert_eq!(got.len(), ids.len(), "{who} got a message twice: {ids:?}");
    let want: HashSet<_> = expected.iter().collect();
    assert_eq!(got, want, "{who} got other messages than were acknowledged");
}

/// A fresh database named after `test`, instances "a" and "b" on it, and nginx in front
/// of both.
async fn two_instances(test: &str) -> (String, Instance, Instance, Balancer) {
    let db = fresh_database(test);
    let a = Instance::start(Path::new(EXE), "a", &db).await;
    let b = Instance::start(Path::new(EXE), "b", &db).await;
    let lb = Balancer::start(&[a.port, b.port]).await;
    (db, a, b, lb)
}

async fn create(m: &mut Member, r: &RoomName) {
    match m
        .client
        .request(ClientMsg::CreateRoom(CreateRoom {
            name: r.clone(),
            password: None,
            hidden: false,
        }))
        .await
    {
        Ok(Reply::RoomCreated(_)) => {}
        other => panic!("room not created: {other:?}"),
    }
}

/// The room listing's online counts (`users_online`, the room's `members_online`), polled
/// until they are `want` (presence crosses instances within a heartbeat or two).
async fn wait_for_online(m: &mut Member, r: &RoomName, want: (u32, u32)) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = match m
            .client
            .request(ClientMsg::ListRooms(ListRooms::default()))
            .await
        {
            Ok(Reply::Rooms(list)) => list,
            other => panic!("unexpected {other:?}"),
        };
        let in_room = list
            .rooms
            .iter()
            .find(|s| &s.name == r)
            .map_or(0, |s| s.members_online);
        let got = (list.users_online, in_room);
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "online counts seen from {}: {got:?}, want {want:?}",
            m.name
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_nginx_serve_one_room_as_one_server() {
    if skipped("two_instances_behind_nginx_serve_one_room_as_one_server") {
        return;
    }
    let (db, a, b, lb) = two_instances("one-room").await;
    let r = room("lobby");

    let mut alice = Member::on(&lb, a.port, "alice", 0, true).await;
    let mut bob = Member::on(&lb, b.port, "bob", 1, true).await;
    let mut carol = Member::on(&lb, a.port, "carol", 2, true).await;
    let mut dave = Member::on(&lb, b.port, "dave", 3, true).await;
    create(&mut alice, &r).await;

    // Joins reach the members on both instances.
    bob.join(&r).await;
    assert!(
        matches!(alice.client.next_push().await, Push::MemberJoined { member, .. } if member.username.as_str() == "bob")
    );
    carol.join(&r).await;
    for m in [&mut alice, &mut bob] {
        assert!(
            matches!(m.client.next_push().await, Push::MemberJoined { member, .. } if member.username.as_str() == "carol"),
            "{}",
            m.name
        );
    }
    dave.join(&r).await;
    for m in [&mut alice, &mut bob, &mut carol] {
        assert!(
            matches!(m.client.next_push().await, Push::MemberJoined { member, .. } if member.username.as_str() == "dave"),
            "{}",
            m.name
        );
    }

    // Every member's message reaches the three others once, whichever instance they use,
    // and opens intact.
    let keys = [test_key(0), test_key(1), test_key(2), test_key(3)];
    let all = [
        ("alice", &*keys[0]),
        ("bob", &*keys[1]),
        ("carol", &*keys[2]),
        ("dave", &*keys[3]),
    ];
    let mut sent = Vec::new();
    for m in [&mut alice, &mut bob, &mut carol, &mut dave] {
        let text = format!("hello from {}", m.name);
        sent.push((m.name, m.send(&r, &all, &text).await));
    }
    for m in [&mut alice, &mut bob, &mut carol, &mut dave] {
        let mut got = Vec::new();
        while got.len() < 3 {
            if let Push::Message(msg) = m.client.next_push().await {
                let sender = all
                    .iter()
                    .find(|(n, _)| *n == msg.sender.as_str())
                    .expect("a member");
                let text = open_text(&msg, m.name, &m.key, sender.1).expect("opens");
                assert_eq!(text, format!("hello from {}", sender.0));
                got.push(msg.message_id);
            }
        }
        let others: Vec<MessageId> = sent
            .iter()
            .filter(|(n, _)| *n != m.name)
            .map(|(_, id)| *id)
            .collect();
        exactly_once(m.name, &got, &others);
        m.no_more_messages().await;
    }

    // Online counts take in both instances.
    wait_for_online(&mut alice, &r, (4, 4)).await;
    wait_for_online(&mut bob, &r, (4, 4)).await;

    // Moderation by the owner on A reaches the members on both instances, and a ban made
    // on A is enforced by B.
    let topic = alice
        .client
        .moderate(
            "lobby",
            ModerationAction::SetTopic {
                topic: Some("across instances".into()),
            },
        )
        .await
        .expect("the owner sets the topic");
    for m in [&mut bob, &mut carol, &mut dave] {
        assert_eq!(m.client.next_room_event().await, topic, "{}", m.name);
    }
    let ban = alice
        .client
        .moderate(
            "lobby",
            ModerationAction::Ban {
                user: name("carol"),
            },
        )
        .await
        .expect("the owner bans carol");
    assert_eq!(
        ban.change,
        RoomChange::Banned {
            user: name("carol")
        }
    );
    for m in [&mut bob, &mut carol, &mut dave] {
        assert_eq!(m.client.next_room_event().await, ban, "{}", m.name);
    }
    let mut carol_on_b = carol.again(&lb, b.port).await;
    assert_eq!(
        carol_on_b
            .client
            .join_room("lobby", None)
            .await
            .expect_err("a banned user cannot rejoin through the other instance")
            .code,
        ErrorCode::Banned
    );
    drop(carol_on_b);

    // A leave reaches the members on both instances; a user gone from B is soon offline
    // on A.
    match dave
        .client
        .request(ClientMsg::LeaveRoom(LeaveRoom { room: r.clone() }))
        .await
    {
        Ok(Reply::Left(_)) => {}
        other => panic!("leave: {other:?}"),
    }
    for m in [&mut alice, &mut bob] {
        assert!(
            matches!(m.client.next_push().await, Push::MemberLeft { username, .. } if username.as_str() == "dave"),
            "{}",
            m.name
        );
    }
    drop(dave);
    // carol, banned, is still online (on A) but no longer in the room.
    wait_for_online(&mut alice, &r, (3, 2)).await;

    // Presence crosses instances: bob's only session (on B) ends, and alice, a co-member
    // on A, is told he is offline.
    assert_ne!(alice.port, bob.port);
    drop(bob);
    loop {
        match alice.client.next_push().await {
            Push::Presence { username, online } if username.as_str() == "bob" => {
                assert!(!online, "bob's session ended, yet he is reported online");
                break;
            }
            _ => {}
        }
    }

    for instance in [&a, &b] {
        let (status, body) = instance.health().await.expect("health answers");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""stream":"live""#), "{body}");
    }
    drop((a, b, lb));
    drop_database(&db).await;
}

/// Five messages from each sender, interleaved; each reader gets all ten once, whichever
/// instances the four are on. The senders' own pushes are not looked at.
async fn round(
    phase: &str,
    senders: &mut [Member; 2],
    readers: &mut [Member; 2],
    r: &RoomName,
    all: &[(&str, &RsaPrivateKey)],
    acked: &mut Vec<MessageId>,
) {
    let mut sent = Vec::new();
    for i in 0..5 {
        for s in senders.iter_mut() {
            s.client.pushes.clear();
            sent.push(s.send(r, all, &format!("{phase} {i}")).await);
        }
    }
    for reader in readers.iter_mut() {
        let got = reader.messages(sent.len()).await;
        exactly_once(&format!("{} ({phase})", reader.name), &got, &sent);
        reader.no_more_messages().await;
    }
    acked.extend(sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_or_restarting_either_instance_loses_and_repeats_nothing_acknowledged() {
    if skipped("killing_or_restarting_either_instance_loses_and_repeats_nothing_acknowledged") {
        return;
    }
    let (db, a, b, lb) = two_instances("kill").await;
    let mut instances = [a, b];
    let ports = [instances[0].port, instances[1].port];
    let r = room("ops");
    // A sender and a reader on each instance: senda and reada on a, sendb and readb on b.
    let keys = [test_key(4), test_key(5), test_key(6), test_key(7)];
    let all = [
        ("senda", &*keys[0]),
        ("sendb", &*keys[1]),
        ("reada", &*keys[2]),
        ("readb", &*keys[3]),
    ];
    let mut senders = [
        Member::on(&lb, ports[0], "senda", 4, true).await,
        Member::on(&lb, ports[1], "sendb", 5, true).await,
    ];
    let mut readers = [
        Member::on(&lb, ports[0], "reada", 6, true).await,
        Member::on(&lb, ports[1], "readb", 7, true).await,
    ];
    create(&mut senders[0], &r).await;
    senders[1].join(&r).await;
    for reader in &mut readers {
        reader.join(&r).await;
    }
    let mut acked: Vec<MessageId> = Vec::new();
    round("both up", &mut senders, &mut readers, &r, &all, &mut acked).await;

    for (down, id) in [(0, "a"), (1, "b")] {
        let other = 1 - down;
        // Kill it: its sender and reader lose their connections without a goodbye, come
        // back through the balancer on the other instance, and find every acknowledged
        // message in history.
        instances[down].kill();
        for m in [&mut senders[down], &mut readers[down]] {
            assert_eq!(
                m.client.close_code().await,
                None,
                "{}: no close frame",
                m.name
            );
            *m = m.again(&lb, ports[other]).await;
        }
        assert_eq!(
            history_ids(&mut readers[down].client, &r).await,
            acked,
            "history after moving from {id}"
        );
        round(
            &format!("{id} down"),
            &mut senders,
            &mut readers,
            &r,
            &all,
            &mut acked,
        )
        .await;

        // Restart it (it resumes its saved stream position); its two come back to it.
        instances[down].restart().await;
        for m in [&mut senders[down], &mut readers[down]] {
            *m = m.again(&lb, ports[down]).await;
        }
        round(
            &format!("{id} restarted"),
            &mut senders,
            &mut readers,
            &r,
            &all,
            &mut acked,
        )
        .await;
    }

    // Fifty acknowledged messages, each in history once, in the order they were sent.
    assert_eq!(acked.len(), 50);
    for reader in &mut readers {
        assert_eq!(
            history_ids(&mut reader.client, &r).await,
            acked,
            "{}",
            reader.name
        );
    }
    drop((instances, lb));
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_on_one_instance_reaches_members_and_ends_sessions_on_the_other() {
    if skipped("a_key_rotation_on_one_instance_reaches_members_and_ends_sessions_on_the_other") {
        return;
    }
    let (db, a, b, lb) = two_instances("rotation").await;
    let r = room("keys");
    let mut alice = Member::on(&lb, a.port, "alice", 8, true).await;
    let mut alice_elsewhere = Member::on(&lb, b.port, "alice", 8, false).await;
    let mut bob = Member::on(&lb, b.port, "bob", 9, true).await;
    create(&mut alice, &r).await;
    bob.join(&r).await;
    alice.client.pushes.clear();

    let new_key = test_key(10);
    match alice
        .client
        .request(ClientMsg::RotateKey(rotation(
            "alice",
            &test_key(8),
            &new_key,
        )))
        .await
    {
        Ok(Reply::KeyRotated(_)) => {}
        other => panic!("rotation refused: {other:?}"),
    }
    // Bob, on the other instance, hears of the new key.
    loop {
        if let Push::KeyChanged { member, rooms } = bob.client.next_push().await {
            assert_eq!(member.username.as_str(), "alice");
            assert_eq!(member.public_key, tests::public_der(&new_key));
            assert_eq!(rooms, vec![r.clone()]);
            break;
        }
    }
    // Alice's session on the other instance is ended as on a single server.
    assert_eq!(
        alice_elsewhere.client.close_code().await,
        Some(shared::protocol::CLOSE_KEY_ROTATED)
    );
    drop((a, b, lb));
    drop_database(&db).await;
}
