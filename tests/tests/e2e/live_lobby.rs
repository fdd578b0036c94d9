//! Presence and the live lobby (protocol 5): who is told when a user comes online or goes
//! offline, and which connections hear that the public listing changed, how often.

use std::time::{Duration, Instant};

use shared::protocol::{
    ClientMsg, ModerationAction, Push, Reply, WatchLobby, LOBBY_PUSH_INTERVAL_SECS,
};
use tests::{name, room, test_key, RawClient, TestServer};

/// Longer than the server takes to tell a presence change.
const QUIET: Duration = Duration::from_millis(700);

/// Every push that arrives within `limit` (after those already queued).
async fn pushes_within(c: &mut RawClient, limit: Duration) -> Vec<Push> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_frame_within(left).await {
            Some(Some(shared::protocol::ServerMsg::Push(p))) => out.push(p),
            Some(other) => panic!("expected only pushes, got {other:?}"),
            None => return out,
        }
    }
}

fn presence(user: &str, online: bool) -> Push {
    Push::Presence {
        username: name(user),
        online,
    }
}

async fn watch(c: &mut RawClient, on: bool) {
    assert_eq!(
        c.request(ClientMsg::WatchLobby(WatchLobby { watch: on }))
            .await
            .expect("watching"),
        Reply::Done
    );
}

#[tokio::test]
async fn live_lobby_presence_reaches_co_members_and_nobody_else() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    let mut bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    let mut carol = RawClient::registered(&url, "carol", &test_key(2)).await;
    alice.create_room("den", None, true).await;
    let snapshot = bob.join_room("den", None).await.expect("joins");
    let mut online: Vec<String> = snapshot.online.iter().map(|u| u.canonical()).collect();
    online.sort();
    assert_eq!(online, ["alice", "bob"], "the snapshot says who is online");
    alice.drain().await;
    carol.drain().await;

    // Bob goes: alice is told, carol (no shared room) is not.
    drop(bob);
    assert_eq!(alice.next_push().await, presence("bob", false));
    // Bob comes back.
    let mut bob = RawClient::logged_in(&url, "bob", &test_key(1)).await;
    assert_eq!(alice.next_push().await, presence("bob", true));
    carol.expect_silence(QUIET).await;
    // A second session of alice's coming and going is nothing new for bob.
    let alice2 = RawClient::logged_in(&url, "alice", &test_key(0)).await;
    drop(alice2);
    bob.expect_silence(QUIET).await;
    drop(alice);
    assert_eq!(bob.next_push().await, presence("alice", false));
    // Once they share no room, nothing more is told.
    bob.request(ClientMsg::LeaveRoom(shared::protocol::LeaveRoom {
        room: room("den"),
    }))
    .await
    .expect("left");
    let alice = RawClient::logged_in(&url, "alice", &test_key(0)).await;
    bob.expect_silence(QUIET).await;
    drop(alice);
    bob.expect_silence(QUIET).await;
    carol.expect_silence(QUIET).await;
    server.shutdown().await;
}

#[tokio::test]
async fn live_lobby_several_sessions_of_one_user_count_once() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    let bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    alice.create_room("den", None, false).await;
    let mut bob = bob;
    bob.join_room("den", None).await.expect("joins");
    let bob2 = RawClient::logged_in(&url, "bob", &test_key(1)).await;
    let bob3 = RawClient::logged_in(&url, "bob", &test_key(1)).await;
    alice.drain().await;
    alice.expect_silence(QUIET).await;
    drop(bob);
    drop(bob2);
    alice.expect_silence(QUIET).await;
    // The snapshot still lists bob while one session is left.
    let snapshot = alice.join_room("den", None).await.expect("re-opens");
    assert!(snapshot.online.iter().any(|u| u.same_as(&name("bob"))));
    drop(bob3);
    assert_eq!(alice.next_push().await, presence("bob", false));
    let snapshot = alice.join_room("den", None).await.expect("re-opens");
    assert!(!snapshot.online.iter().any(|u| u.same_as(&name("bob"))));
    server.shutdown().await;
}

#[tokio::test]
async fn live_lobby_watchers_hear_of_public_rooms_only() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    let mut carol = RawClient::registered(&url, "carol", &test_key(2)).await;
    let mut dave = RawClient::registered(&url, "dave", &test_key(3)).await;
    watch(&mut carol, true).await;
    // A hidden room and a direct conversation are never announced.
    alice.create_room("secret", Some("pw"), true).await;
    alice.create_room("quiet", None, true).await;
    alice
        .request(ClientMsg::OpenDirect(shared::protocol::OpenDirect {
            with: name("dave"),
            history_limit: 0,
        }))
        .await
        .expect("opened");
    carol.expect_silence(QUIET).await;
    // A public room is, to watchers only.
    alice.create_room("plaza", None, false).await;
    assert_eq!(carol.next_push().await, Push::LobbyChanged);
    dave.drain().await;
    assert!(
        !pushes_within(&mut dave, QUIET)
            .await
            .contains(&Push::LobbyChanged),
        "dave does not watch"
    );
    // A hidden room made public is a change of the listing.
    tokio::time::sleep(Duration::from_secs(LOBBY_PUSH_INTERVAL_SECS)).await;
    alice
        .moderate("quiet", ModerationAction::SetHidden { hidden: false })
        .await
        .expect("made public");
    assert_eq!(carol.next_push().await, Push::LobbyChanged);
    // Stopped watching: nothing more.
    watch(&mut carol, false).await;
    tokio::time::sleep(Duration::from_secs(LOBBY_PUSH_INTERVAL_SECS)).await;
    alice.create_room("forum", None, false).await;
    carol.expect_silence(QUIET).await;
    server.shutdown().await;
}

#[tokio::test]
async fn live_lobby_a_flood_of_room_changes_is_coalesced() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    let mut carol = RawClient::registered(&url, "carol", &test_key(2)).await;
    watch(&mut carol, true).await;
    let started = Instant::now();
    let mut changes = 0;
    for i in 0..10 {
        let r = format!("flood{i}");
        alice.create_room(&r, None, false).await;
        alice
            .moderate(&r, ModerationAction::DeleteRoom)
            .await
            .expect("deleted");
        changes += 2;
    }
    let busy = started.elapsed();
    let interval = Duration::from_secs(LOBBY_PUSH_INTERVAL_SECS);
    let hints = pushes_within(&mut carol, interval + QUIET)
        .await
        .into_iter()
        .filter(|p| *p == Push::LobbyChanged)
        .count();
    // One at once, then at most one per interval while the flood lasted, plus the last.
    let bound = 2 + usize::try_from(busy.as_secs() / LOBBY_PUSH_INTERVAL_SECS).unwrap_or(0);
    assert!(hints >= 1, "the watcher hears of the changes");
    assert!(
        hints <= bound && hints < changes,
        "{hints} hints for {changes} changes in {busy:?}"
    );
    server.shutdown().await;
}
