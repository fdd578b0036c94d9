//! The server as an adversary over protocol 4's room pushes: what a tampering server
//! injects about rooms (moderation events, direct conversations, typing, read markers) is
//! checked by the client before anything acts on it. Every event is also applied to the
//! TUI's state, so the tests read what the user is shown.

use std::time::Duration;

use client_tui::{ClientError, ClientEvent, KeyStatus, MembershipSource};
use shared::protocol::{direct_room_name, Push, RoomChange, RoomEvent, ServerMsg};
use tests::tamper::TamperingProxy;
use tests::{name, room, TestServer};

use super::adversary::{alice_and_bob, member, Device};

fn event(r: &str, actor: &str, change: RoomChange) -> ServerMsg {
    ServerMsg::Push(Push::RoomEvent(RoomEvent {
        room: room(r),
        actor: name(actor),
        at_ms: 1,
        change,
    }))
}

/// Injected pushes about rooms the user is not in, a conversation named for another
/// pair, a topic that would rewrite the terminal and a marker that moves back are
/// dropped; a conversation whose peer key is substituted raises the key alarm and is not
/// trusted.
#[tokio::test]
async fn forged_room_pushes_are_dropped_and_a_substituted_peer_key_is_an_alarm() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (mut a, bob) = alice_and_bob(&server, &proxy, &alice).await;
    proxy.inject(event(
        "elsewhere",
        "mallory",
        RoomChange::Kicked {
            user: name("alice"),
        },
    ));
    proxy.inject(event(
        "r",
        "bob",
        RoomChange::TopicChanged {
            topic: Some("\u{1b}[2Jpwned".into()),
        },
    ));
    proxy.inject(ServerMsg::Push(Push::Typing {
        room: room("elsewhere"),
        username: name("bob"),
        typing: true,
    }));
    proxy.inject(ServerMsg::Push(Push::DirectOpened {
        room: direct_room_name(&name("alice"), &name("carol")),
        peer: member("bob", 1),
    }));
    // The right name, but not bob's key.
    proxy.inject(ServerMsg::Push(Push::DirectOpened {
        room: direct_room_name(&name("alice"), &name("bob")),
        peer: member("bob", 5),
    }));
    match a.event().await {
        ClientEvent::KeyChanged { username, .. } => assert_eq!(username, name("bob")),
        other => panic!("expected the key alarm first, got {other:?}"),
    }
    match a.event().await {
        ClientEvent::DirectOpened { peer, .. } => {
            assert!(
                matches!(peer.status, KeyStatus::Unaccepted { .. }),
                "{peer:?}"
            );
        }
        other => panic!("expected the conversation, got {other:?}"),
    }
    // Nothing else came of the injections: bob's genuine message is next.
    bob.client
        .send_text(&room("r"), "still here")
        .await
        .expect("bob sends");
    match a.event().await {
        ClientEvent::Message(m) => assert_eq!(m.text, "still here"),
        other => panic!("expected bob's message, got {other:?}"),
    }
    assert!(a.ui.room(&room("r")).is_some_and(|r| r.topic.is_none()));
    assert!(a.ui.room(&room("elsewhere")).is_none());
    assert!(!a.status().contains("pwned"), "{}", a.status());
}

/// A kick the server did not make stops encryption to the member at once; the real
/// server, still listing them, can only get them back as an addition the user is shown
/// before anything is encrypted to them.
#[tokio::test]
async fn a_forged_kick_stops_encryption_and_the_member_comes_back_only_as_a_shown_addition() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (mut a, _bob) = alice_and_bob(&server, &proxy, &alice).await;
    proxy.inject(event(
        "r",
        "mallory",
        RoomChange::Kicked { user: name("bob") },
    ));
    a.until("the kick", |e| matches!(e, ClientEvent::RoomChanged(_)))
        .await;
    assert!(a.shows("r", "mallory kicked bob"), "{:?}", a.lines("r"));
    let refused = a.client.send_text(&room("r"), "who is here?").await;
    assert!(
        matches!(refused, Err(ClientError::MembersAdded { ref added, .. }) if added == &[name("bob")]),
        "{refused:?}"
    );
    match a.event().await {
        ClientEvent::MemberJoined { member, source, .. } => {
            assert_eq!(member.username, name("bob"));
            assert_eq!(source, MembershipSource::SendRefused);
        }
        other => panic!("expected bob's return to be shown, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sends: Vec<_> = proxy
        .from_clients()
        .into_iter()
        .filter_map(|f| match f.msg {
            shared::protocol::ClientMsg::SendMessage(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1);
    let names: Vec<_> = sends[0]
        .envelopes
        .iter()
        .map(|e| e.recipient.canonical())
        .collect();
    assert_eq!(names, ["alice"], "no copy sealed for bob after the kick");
}
