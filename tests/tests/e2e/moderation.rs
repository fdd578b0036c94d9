//! Running a group room: roles, kicks, bans, topic, password, visibility, ownership and
//! deletion, with every refusal.

use std::time::Duration;

use shared::protocol::{
    ClientMsg, CreateRoom, FetchHistory, LeaveRoom, ListRooms, ModerationAction, Push, Reply, Role,
    RoomChange, MAX_TOPIC_CHARS,
};
use shared::ErrorCode;
use tests::{name, room, test_key, RawClient, TestServer};

const QUIET: Duration = Duration::from_millis(300);

/// "alice" owns `den`; "bob" and "carol" are members.
async fn trio(url: &str) -> (RawClient, RawClient, RawClient) {
    let mut alice = RawClient::registered(url, "alice", &test_key(0)).await;
    let mut bob = RawClient::registered(url, "bob", &test_key(1)).await;
    let mut carol = RawClient::registered(url, "carol", &test_key(2)).await;
    alice.create_room("den", None, false).await;
    bob.join_room("den", None).await.expect("bob joins");
    carol.join_room("den", None).await.expect("carol joins");
    alice.drain().await;
    bob.drain().await;
    (alice, bob, carol)
}

fn code(result: Result<impl std::fmt::Debug, tests::WireError>) -> ErrorCode {
    result.expect_err("refused").code
}

#[tokio::test]
async fn an_owner_and_an_admin_run_the_room_and_every_member_is_told() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (mut alice, mut bob, mut carol) = trio(&url).await;
    let (ka, kb, kc) = (test_key(0), test_key(1), test_key(2));

    let event = alice
        .moderate(
            "den",
            ModerationAction::SetRole {
                user: name("BOB"),
                role: Role::Admin,
            },
        )
        .await
        .expect("owner appoints an admin");
    assert_eq!(
        event.change,
        RoomChange::RoleChanged {
            user: name("bob"),
            role: Role::Admin
        }
    );
    assert_eq!(event.actor, name("alice"));
    assert_eq!(bob.next_room_event().await, event);
    assert_eq!(carol.next_room_event().await, event);

    let topic = bob
        .moderate(
            "den",
            ModerationAction::SetTopic {
                topic: Some("Plans — Tuesday".into()),
            },
        )
        .await
        .expect("an admin sets the topic");
    assert_eq!(alice.next_room_event().await, topic);
    assert_eq!(carol.next_room_event().await, topic);
    let listing = match alice
        .request(ClientMsg::ListRooms(ListRooms::default()))
        .await
    {
        Ok(Reply::Rooms(l)) => l,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(listing.rooms[0].topic.as_deref(), Some("Plans — Tuesday"));

    // An admin kicks a plain member; the removed member's connection is told too.
    let kicked = bob
        .moderate(
            "den",
            ModerationAction::Kick {
                user: name("carol"),
            },
        )
        .await
        .expect("an admin kicks a member");
    assert_eq!(
        kicked.change,
        RoomChange::Kicked {
            user: name("carol")
        }
    );
    assert_eq!(carol.next_room_event().await, kicked);
    assert_eq!(alice.next_room_event().await, kicked);
    // Encryption follows membership: a copy for the kicked member is refused...
    let refused = alice
        .send_text(
            "den",
            ("alice", &ka),
            &[("alice", &ka), ("bob", &kb), ("carol", &kc)],
            "x",
        )
        .await;
    assert_eq!(code(refused), ErrorCode::RecipientMismatch);
    // ...and the kicked member gets nothing of the next message.
    alice
        .send_text(
            "den",
            ("alice", &ka),
            &[("alice", &ka), ("bob", &kb)],
            "after",
        )
        .await
        .expect("sent to the members");
    carol.expect_silence(QUIET).await;
    assert_eq!(
        code(
            carol
                .request(ClientMsg::FetchHistory(FetchHistory {
                    room: room("den"),
                    before_seq: None,
                    limit: 10,
                }))
                .await
        ),
        ErrorCode::NotAMember
    );

    // A kicked user may come back; a banned one may not, also after leaving.
    carol
        .join_room("den", None)
        .await
        .expect("a kick is not a ban");
    alice.drain().await;
    bob.drain().await;
    let banned = bob
        .moderate(
            "den",
            ModerationAction::Ban {
                user: name("Carol"),
            },
        )
        .await
        .expect("an admin bans a member");
    assert_eq!(
        banned.change,
        RoomChange::Banned {
            user: name("carol")
        }
    );
    assert_eq!(carol.next_room_event().await, banned);
    assert_eq!(code(carol.join_room("den", None).await), ErrorCode::Banned);
    let lifted = alice
        .moderate(
            "den",
            ModerationAction::Unban {
                user: name("carol"),
            },
        )
        .await
        .expect("unban");
    assert_eq!(
        lifted.change,
        RoomChange::Unbanned {
            user: name("carol")
        }
    );
    carol.join_room("den", None).await.expect("unbanned joins");

    // Ownership moves; the old owner is an admin now.
    let moved = alice
        .moderate(
            "den",
            ModerationAction::TransferOwnership { to: name("carol") },
        )
        .await
        .expect("transfer");
    assert_eq!(moved.change, RoomChange::OwnerChanged { to: name("carol") });
    let snapshot = carol.join_room("den", None).await.expect("re-open");
    assert_eq!(snapshot.owner, name("carol"));
    assert_eq!(snapshot.admins, [name("alice"), name("bob")]);
    assert_eq!(snapshot.topic.as_deref(), Some("Plans — Tuesday"));
    assert_eq!(snapshot.role_of(&name("alice")), Role::Admin);
    assert_eq!(
        code(alice.moderate("den", ModerationAction::DeleteRoom).await),
        ErrorCode::NotPermitted,
        "the old owner lost the owner's rights"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn every_refusal_is_typed() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (mut alice, mut bob, mut carol) = trio(&url).await;
    let mut dave = RawClient::registered(&url, "dave", &test_key(3)).await;
    dave.join_room("den", None).await.expect("dave joins");
    for admin in ["bob", "dave"] {
        alice
            .moderate(
                "den",
                ModerationAction::SetRole {
                    user: name(admin),
                    role: Role::Admin,
                },
            )
            .await
            .expect("admin");
    }
    // A plain member can do nothing.
    for action in [
        ModerationAction::Kick { user: name("bob") },
        ModerationAction::Ban { user: name("bob") },
        ModerationAction::Unban { user: name("bob") },
        ModerationAction::SetTopic { topic: None },
        ModerationAction::SetRole {
            user: name("bob"),
            role: Role::Member,
        },
        ModerationAction::SetPassword { password: None },
        ModerationAction::SetHidden { hidden: true },
        ModerationAction::TransferOwnership { to: name("bob") },
        ModerationAction::DeleteRoom,
    ] {
        assert_eq!(
            code(carol.moderate("den", action.clone()).await),
            ErrorCode::NotPermitted,
            "{action:?}"
        );
    }
    // An admin can do none of the owner's actions, and nothing to another admin or the owner.
    for action in [
        ModerationAction::SetRole {
            user: name("carol"),
            role: Role::Admin,
        },
        ModerationAction::SetPassword {
            password: Some("pw".into()),
        },
        ModerationAction::SetHidden { hidden: true },
        ModerationAction::TransferOwnership { to: name("carol") },
        ModerationAction::DeleteRoom,
        ModerationAction::Kick { user: name("dave") },
        ModerationAction::Ban { user: name("dave") },
        ModerationAction::Kick {
            user: name("alice"),
        },
        ModerationAction::Ban {
            user: name("alice"),
        },
    ] {
        assert_eq!(
            code(bob.moderate("den", action.clone()).await),
            ErrorCode::NotPermitted,
            "{action:?}"
        );
    }
    // Nobody acts on themselves or on the owner, nor on a non-member where a member is needed.
    let invalid = [
        ModerationAction::Kick {
            user: name("alice"),
        },
        ModerationAction::SetRole {
            user: name("alice"),
            role: Role::Member,
        },
        ModerationAction::TransferOwnership { to: name("alice") },
    ];
    for action in invalid {
        assert_eq!(
            code(alice.moderate("den", action.clone()).await),
            ErrorCode::InvalidInput,
            "{action:?}"
        );
    }
    let mut erin = RawClient::registered(&url, "erin", &test_key(4)).await;
    for action in [
        ModerationAction::Kick { user: name("erin") },
        ModerationAction::SetRole {
            user: name("erin"),
            role: Role::Admin,
        },
        ModerationAction::TransferOwnership { to: name("erin") },
        ModerationAction::SetRole {
            user: name("bob"),
            role: Role::Owner,
        },
        ModerationAction::Unban { user: name("erin") },
        ModerationAction::SetTopic {
            topic: Some("x".repeat(MAX_TOPIC_CHARS + 1)),
        },
        ModerationAction::SetTopic {
            topic: Some("line\\nbreak".replace("\\n", "\n")),
        },
        ModerationAction::SetTopic {
            topic: Some("\u{1b}[2J".into()),
        },
    ] {
        assert_eq!(
            code(alice.moderate("den", action.clone()).await),
            ErrorCode::InvalidInput,
            "{action:?}"
        );
    }
    assert_eq!(
        code(
            alice
                .moderate(
                    "den",
                    ModerationAction::Ban {
                        user: name("nobody")
                    }
                )
                .await
        ),
        ErrorCode::UnknownUser
    );
    assert_eq!(
        code(erin.moderate("den", ModerationAction::DeleteRoom).await),
        ErrorCode::NotAMember
    );
    // A ban may name a non-member; an admin may ban one.
    bob.moderate("den", ModerationAction::Ban { user: name("erin") })
        .await
        .expect("ban a non-member");
    assert_eq!(code(erin.join_room("den", None).await), ErrorCode::Banned);
    // `dm.` names are kept for direct conversations.
    assert_eq!(
        code(
            alice
                .request(ClientMsg::CreateRoom(CreateRoom {
                    name: room("dm.mine"),
                    password: None,
                    hidden: false,
                }))
                .await
        ),
        ErrorCode::InvalidInput
    );
    server.shutdown().await;
}

#[tokio::test]
async fn password_and_visibility_changes_move_the_room_and_keep_its_members() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    let mut bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    let mut carol = RawClient::registered(&url, "carol", &test_key(2)).await;
    let (ka, kb) = (test_key(0), test_key(1));
    alice.create_room("vault", Some("one"), true).await;
    bob.join_room("vault", Some("one"))
        .await
        .expect("bob joins");
    alice
        .send_text(
            "vault",
            ("alice", &ka),
            &[("alice", &ka), ("bob", &kb)],
            "before",
        )
        .await
        .expect("sent");
    let changed = alice
        .moderate(
            "vault",
            ModerationAction::SetPassword {
                password: Some("two".into()),
            },
        )
        .await
        .expect("new password");
    assert_eq!(
        changed.change,
        RoomChange::PasswordChanged { has_password: true }
    );
    assert_eq!(bob.next_room_event().await, changed);
    // The old password finds nothing, exactly like a missing room.
    assert_eq!(
        code(carol.join_room("vault", Some("one")).await),
        ErrorCode::RoomUnavailable
    );
    // A member keeps the room, its history and needs no password.
    let again = bob.join_room("vault", None).await.expect("member re-opens");
    assert_eq!(again.history.messages.len(), 1);
    assert!(again.has_password && again.hidden);
    // The old name and password are free for a new room.
    let mut dave = RawClient::registered(&url, "dave", &test_key(3)).await;
    dave.create_room("vault", Some("one"), true).await;
    let joined = carol
        .join_room("vault", Some("two"))
        .await
        .expect("new password works");
    assert_eq!(joined.members.len(), 3);
    assert_eq!(
        joined.history.messages.len(),
        0,
        "no copy from before carol joined"
    );

    // A room with a password cannot switch visibility.
    assert_eq!(
        code(
            alice
                .moderate("vault", ModerationAction::SetHidden { hidden: false })
                .await
        ),
        ErrorCode::InvalidInput
    );
    alice
        .moderate("vault", ModerationAction::SetPassword { password: None })
        .await
        .expect("password removed");
    let public = alice
        .moderate("vault", ModerationAction::SetHidden { hidden: false })
        .await
        .expect("made public");
    assert_eq!(
        public.change,
        RoomChange::VisibilityChanged { hidden: false }
    );
    let listing = match bob
        .request(ClientMsg::ListRooms(ListRooms::default()))
        .await
    {
        Ok(Reply::Rooms(l)) => l,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(listing.rooms.len(), 1);
    assert_eq!(listing.rooms[0].members, 3);
    // A public room's password: wrong ones are WrongPassword, members keep their place.
    alice
        .moderate(
            "vault",
            ModerationAction::SetPassword {
                password: Some("three".into()),
            },
        )
        .await
        .expect("public password");
    let mut erin = RawClient::registered(&url, "erin", &test_key(4)).await;
    assert_eq!(
        code(erin.join_room("vault", Some("nope")).await),
        ErrorCode::WrongPassword
    );
    erin.join_room("vault", Some("three"))
        .await
        .expect("right password");
    bob.join_room("vault", None)
        .await
        .expect("members keep their membership");

    // Making a room public under a name a public room has is refused.
    let mut frank = RawClient::registered(&url, "frank", &test_key(5)).await;
    frank.create_room("twin", None, true).await;
    let mut gina = RawClient::registered(&url, "gina", &test_key(6)).await;
    gina.create_room("twin", None, false).await;
    assert_eq!(
        code(
            frank
                .moderate("twin", ModerationAction::SetHidden { hidden: false })
                .await
        ),
        ErrorCode::RoomExists
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_deleted_room_is_gone_with_its_history_and_its_quota_slot_stays_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server::config::Config::for_tests(dir.path().to_path_buf());
    config.rooms_per_user = 1;
    let server = TestServer::start_with(config).await;
    let url = server.ws_url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    let mut bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    let (ka, kb) = (test_key(0), test_key(1));
    alice.create_room("gone", None, false).await;
    bob.join_room("gone", None).await.expect("joins");
    alice
        .send_text(
            "gone",
            ("alice", &ka),
            &[("alice", &ka), ("bob", &kb)],
            "soon gone",
        )
        .await
        .expect("sent");
    bob.drain().await;
    let deleted = alice
        .moderate("gone", ModerationAction::DeleteRoom)
        .await
        .expect("owner deletes");
    assert_eq!(deleted.change, RoomChange::RoomDeleted);
    assert_eq!(bob.next_room_event().await, deleted);
    assert_eq!(
        code(
            bob.request(ClientMsg::FetchHistory(FetchHistory {
                room: room("gone"),
                before_seq: None,
                limit: 10,
            }))
            .await
        ),
        ErrorCode::NotAMember
    );
    assert_eq!(
        code(bob.join_room("gone", None).await),
        ErrorCode::RoomUnavailable
    );
    // The quota slot is not given back.
    assert_eq!(
        code(
            alice
                .request(ClientMsg::CreateRoom(CreateRoom {
                    name: room("gone"),
                    password: None,
                    hidden: false,
                }))
                .await
        ),
        ErrorCode::QuotaExceeded
    );
    // Another user's new room of that name starts empty: the history went with the room.
    bob.create_room("gone", None, false).await;
    let fresh = bob.join_room("gone", None).await.expect("re-open");
    assert!(fresh.history.messages.is_empty());
    assert_eq!(fresh.owner, name("bob"));
    server.shutdown().await;
}

#[tokio::test]
async fn an_owner_who_leaves_hands_the_room_to_the_first_admin() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (mut alice, mut bob, mut carol) = trio(&url).await;
    alice
        .moderate(
            "den",
            ModerationAction::SetRole {
                user: name("carol"),
                role: Role::Admin,
            },
        )
        .await
        .expect("admin");
    bob.drain().await;
    carol.drain().await;
    let left = alice
        .request(ClientMsg::LeaveRoom(LeaveRoom { room: room("den") }))
        .await
        .expect("owner leaves");
    assert!(matches!(left, Reply::Left(_)));
    for member in [&mut bob, &mut carol] {
        let event = member.next_room_event().await;
        assert_eq!(event.actor, name("alice"));
        assert_eq!(event.change, RoomChange::OwnerChanged { to: name("carol") });
        assert_eq!(
            member.next_push().await,
            Push::MemberLeft {
                room: room("den"),
                username: name("alice")
            }
        );
    }
    let snapshot = bob.join_room("den", None).await.expect("re-open");
    assert_eq!(snapshot.owner, name("carol"));
    assert!(snapshot.admins.is_empty());
    // The last member leaving keeps the room as before.
    for member in [&mut bob, &mut carol] {
        member
            .request(ClientMsg::LeaveRoom(LeaveRoom { room: room("den") }))
            .await
            .expect("leave");
    }
    alice.join_room("den", None).await.expect("the room stays");
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_ban_list_and_a_full_block_list_are_refused() {
    if tests::e2e_uses_mongo() {
        // The full lists are planted in the embedded store directly.
        return;
    }
    use server::store::embedded::EmbeddedStore;
    use server::store::{RoomKey, RoomRecord, Store, UserRecord};
    use shared::protocol::{SetBlocked, MAX_BLOCKED_USERS, MAX_ROOM_BANS};

    let dir = tempfile::tempdir().expect("tempdir");
    let den = room("den");
    {
        let store = EmbeddedStore::open(dir.path()).expect("store opens");
        for (i, user) in ["alice", "bob"].into_iter().enumerate() {
            store
                .create_user(UserRecord {
                    username: name(user),
                    public_key: tests::public_der(&test_key(i)),
                    created_at_ms: 0,
                })
                .await
                .expect("user");
        }
        let key = RoomKey::public(&den);
        store
            .create_room(
                &key,
                RoomRecord::group(den.clone(), name("alice"), None, false, 0),
                1,
            )
            .await
            .expect("room");
        store
            .add_member(&key, &name("bob"))
            .await
            .expect("bob joins");
        // Stores do not require banned or blocked names to have accounts.
        for i in 0..MAX_ROOM_BANS.max(MAX_BLOCKED_USERS) {
            let filler = name(&format!("u{i:04}"));
            if i < MAX_ROOM_BANS {
                store.ban(&key, &filler, MAX_ROOM_BANS).await.expect("ban");
            }
            if i < MAX_BLOCKED_USERS {
                store
                    .set_blocked(&name("alice"), &filler, true, MAX_BLOCKED_USERS)
                    .await
                    .expect("block");
            }
        }
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .expect("store closes");
    }
    let server =
        TestServer::start_with(server::config::Config::for_tests(dir.path().to_path_buf())).await;
    let mut alice = RawClient::logged_in(&server.ws_url(), "alice", &test_key(0)).await;
    assert_eq!(
        code(
            alice
                .moderate("den", ModerationAction::Ban { user: name("bob") })
                .await
        ),
        ErrorCode::QuotaExceeded
    );
    alice
        .join_room("den", None)
        .await
        .expect("bob is still a member");
    alice
        .moderate(
            "den",
            ModerationAction::Unban {
                user: name("u0000"),
            },
        )
        .await
        .expect("unban one");
    alice
        .moderate("den", ModerationAction::Ban { user: name("bob") })
        .await
        .expect("room on the list again");
    let blocked = alice
        .request(ClientMsg::SetBlocked(SetBlocked {
            user: name("bob"),
            blocked: true,
        }))
        .await;
    assert_eq!(code(blocked), ErrorCode::QuotaExceeded);
    server.shutdown().await;
}
