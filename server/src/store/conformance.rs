//! The store conformance suite: every behaviour the server relies on, written once and run
//! against every adapter, so the embedded store and MongoDB cannot drift apart.
//!
//! Most cases are a `pub async fn` taking a fresh, empty `&dyn Store`; the few that need
//! more than one store, or to reopen one, are generic over the [`Harness`] and make their
//! own. An adapter provides a [`Harness`] (how to make, reopen and clean up an isolated
//! store) and invokes [`conformance_tests!`](crate::conformance_tests), which generates
//! one named `#[tokio::test]` per case:
//!
//! ```ignore
//! crate::conformance_tests!(EmbeddedHarness);
//! crate::conformance_tests!(#[ignore = "needs TEST_MONGODB_URI"] MongoHarness);
//! ```
//!
//! Compiled for this crate's tests and, with the `test-util` feature, for other crates.

use async_trait::async_trait;
use futures_util::future::join_all;
use shared::crypto::rotation::{CounterMark, RotationCertificate};
use shared::protocol::{Envelope, MAX_KEY_HISTORY, MAX_ROOM_MEMBERS, MAX_ROTATION_MARKS};
use shared::{DeviceId, MessageId, RoomName, Username};

use super::{
    Membership, NewMessage, Retention, RoomFilter, RoomKey, RoomKindRecord, RoomQuery, RoomRecord,
    RoomSecret, RoomUpdate, Store, StoreError, UserRecord,
};

#[doc(inline)]
pub use crate::conformance_tests;

/// Creates and disposes of one isolated store for one test case.
#[async_trait]
pub trait Harness: Sized + Send {
    /// Creates a fresh, empty store that no other test can see (a temporary directory, a
    /// uniquely named database). Panics if it cannot.
    async fn start() -> Self;

    /// The store under test.
    fn store(&self) -> &dyn Store;

    /// Closes the store and opens it again on the same data (the same directory, the same
    /// database), as a restarted server does. Panics if it cannot.
    async fn reopen(&mut self);

    /// Closes the store and removes everything [`Harness::start`] created.
    async fn finish(self);
}

/// Generates one `#[tokio::test]` per conformance case for a [`Harness`] type.
///
/// Attributes before the harness type (such as `#[ignore = "…"]`) are put on every
/// generated test.
#[macro_export]
macro_rules! conformance_tests {
    (@cases $attrs:tt $harness:ty; $($case:ident),* $(,)?) => {
        $( $crate::conformance_tests!(@case $attrs $harness; $case); )*
    };
    (@case [$(#[$attr:meta])*] $harness:ty; $case:ident) => {
        #[::tokio::test]
        $(#[$attr])*
        async fn $case() {
            let harness =
                <$harness as $crate::store::conformance::Harness>::start().await;
            $crate::store::conformance::$case(
                $crate::store::conformance::Harness::store(&harness),
            )
            .await;
            $crate::store::conformance::Harness::finish(harness).await;
        }
    };
    (@harness_cases $attrs:tt $harness:ty; $($case:ident),* $(,)?) => {
        $( $crate::conformance_tests!(@harness_case $attrs $harness; $case); )*
    };
    (@harness_case [$(#[$attr:meta])*] $harness:ty; $case:ident) => {
        #[::tokio::test]
        $(#[$attr])*
        async fn $case() {
            $crate::store::conformance::$case::<$harness>().await;
        }
    };
    ($(#[$attr:meta])* $harness:ty) => {
        $crate::conformance_tests!(@cases [$(#[$attr])*] $harness;
            ping_succeeds,
            create_and_find_user,
            duplicate_username_rejected,
            rotate_key_replaces_key_and_records_certificate,
            rotate_key_unknown_user,
            rotate_key_from_a_stale_key_conflicts,
            concurrent_rotations_one_wins,
            key_history_keeps_the_newest,
            key_history_holds_large_certificates,
            key_history_of_unknown_user_not_found,
            create_room_makes_owner_member,
            duplicate_room_name_rejected,
            owned_rooms_are_counted,
            concurrent_creations_stop_at_the_quota,
            find_room_ignores_case,
            public_listing_hides_hidden_rooms_and_sorts,
            room_listing_pages_after_a_name,
            room_listing_filters_ignoring_case,
            add_member_reports_outcomes,
            add_member_room_full,
            remove_member_reports_membership,
            members_have_current_keys_sorted,
            members_of_missing_room_not_found,
            member_names_match_members,
            rooms_of_lists_memberships,
            append_assigns_contiguous_seqs,
            sequences_are_per_room,
            duplicate_message_id_rejected,
            append_to_missing_room_not_found,
            history_has_only_recipients_copies,
            history_pages_with_before_seq,
            history_of_missing_room_is_empty,
            prefix_room_names_do_not_mix,
            concurrent_appends_get_distinct_seqs,
            queued_messages_keep_their_order,
            queued_messages_are_stored_without_being_awaited,
            concurrent_create_user_one_wins,
            hidden_namespaces_do_not_collide,
            room_of_resolves_through_memberships,
            one_room_per_name_per_member,
            hidden_rooms_keep_their_own_messages,
            retention_keeps_the_newest_per_room,
            retention_deletes_by_age,
            retention_never_reuses_sequence_numbers,
            moving_a_room_takes_everything_with_it,
            moving_onto_a_taken_key_changes_nothing,
            deleting_a_room_deletes_its_history_and_memberships,
            bans_end_membership_and_refuse_joins,
            roles_topic_and_ownership_are_atomic_updates,
            hand_over_prefers_admins_then_members,
            direct_conversations_hold_both_participants,
            block_lists_are_bounded,
            read_markers_only_move_forward,
            deleting_an_account_reserves_the_name_and_keeps_sent_copies,
            operators_page_through_every_account,
            operators_page_through_every_room,
            statistics_count_what_the_store_holds,
        );
        $crate::conformance_tests!(@harness_cases [$(#[$attr])*] $harness;
            server_id_survives_reopening,
            server_ids_differ_between_stores,
            room_secret_survives_reopening,
            room_secrets_differ_between_stores,
        );
    };
}

const T0: u64 = 1_700_000_000_000;

/// The rooms quota for the cases that do not test it.
const UNLIMITED: usize = usize::MAX;

fn name(s: &str) -> Username {
    Username::parse(s).expect("test username is valid")
}

fn room_name(s: &str) -> RoomName {
    RoomName::parse(s).expect("test room name is valid")
}

/// The key of the public room named `s`.
fn key(s: &str) -> RoomKey {
    RoomKey::public(&room_name(s))
}

fn user(username: &str, key: &[u8]) -> UserRecord {
    UserRecord {
        username: name(username),
        public_key: key.to_vec(),
        created_at_ms: T0,
    }
}

fn room(room: &str, owner: &str, hidden: bool) -> RoomRecord {
    RoomRecord::group(room_name(room), name(owner), None, hidden, T0)
}

/// The ciphertext of `recipient`'s copy of message `id` in `room`, unique per copy.
fn marker(room: &str, id: u8, recipient: &str) -> Vec<u8> {
    format!("{room}/{id}/{}", recipient.to_ascii_lowercase()).into_bytes()
}

fn message(room: &str, id: u8, sender: &str, recipients: &[&str]) -> NewMessage {
    NewMessage {
        room: key(room),
        message_id: MessageId([id; 16]),
        sender: name(sender),
        server_time_ms: T0 + u64::from(id),
        envelopes: recipients
            .iter()
            .map(|r| Envelope {
                recipient: name(r),
                wrapped_key: vec![id; 4],
                nonce: [id; 12],
                ciphertext: marker(room, id, r),
            })
            .collect(),
    }
}

async fn create_users(store: &dyn Store, names: &[&str]) {
    for n in names {
        store
            .create_user(user(n, n.as_bytes()))
            .await
            .expect("create user");
    }
}

async fn create_room(store: &dyn Store, room_: &str, owner: &str) {
    store
        .create_room(&key(room_), room(room_, owner, false), UNLIMITED)
        .await
        .expect("create room");
}

async fn append(store: &dyn Store, msg: NewMessage) -> u64 {
    store.append_message(msg).await.expect("append message")
}

fn names_of(memberships: &[Membership]) -> Vec<RoomName> {
    memberships.iter().map(|m| m.name.clone()).collect()
}

fn usernames(users: &[UserRecord]) -> Vec<&str> {
    users.iter().map(|u| u.username.as_str()).collect()
}

fn seqs(slice: &super::HistorySlice) -> Vec<u64> {
    slice.messages.iter().map(|m| m.seq).collect()
}

/// `ping` succeeds on a healthy store.
pub async fn ping_succeeds(store: &dyn Store) {
    store.ping().await.expect("ping");
    assert!(!store.backend().is_empty());
}

/// A user is found by any case of their name and keeps the case they registered with.
pub async fn create_and_find_user(store: &dyn Store) {
    store
        .create_user(user("Alice_1", b"key-a"))
        .await
        .expect("create");
    for query in ["Alice_1", "alice_1", "ALICE_1"] {
        let found = store
            .find_user(&name(query))
            .await
            .expect("find")
            .expect("user exists");
        assert_eq!(found, user("Alice_1", b"key-a"));
    }
    assert_eq!(store.find_user(&name("bob")).await.expect("find"), None);
}

/// A second registration of a name in another case fails and leaves the account alone.
pub async fn duplicate_username_rejected(store: &dyn Store) {
    store
        .create_user(user("Alice", b"original"))
        .await
        .expect("create");
    for dup in ["Alice", "alice", "ALICE"] {
        let err = store
            .create_user(user(dup, b"intruder"))
            .await
            .expect_err("duplicate must fail");
        assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    }
    let found = store.find_user(&name("alice")).await.expect("find");
    assert_eq!(found, Some(user("Alice", b"original")));
}

/// A certificate moving `username` from key `old` to key `new`. The store never checks
/// signatures, so these are placeholders; `issued_at_ms` tells certificates apart.
fn cert(username: &str, old: &[u8], new: &[u8], issued_at_ms: u64) -> RotationCertificate {
    RotationCertificate {
        username: name(username),
        old_public_key: old.to_vec(),
        new_public_key: new.to_vec(),
        issued_at_ms,
        final_counters: Vec::new(),
        old_key_signature: b"old-signature".to_vec(),
        new_key_signature: b"new-signature".to_vec(),
    }
}

fn issued(history: &[RotationCertificate]) -> Vec<u64> {
    history.iter().map(|c| c.issued_at_ms).collect()
}

/// The server id is the same after the store is closed and opened again.
pub async fn server_id_survives_reopening<H: Harness>() {
    let mut h = H::start().await;
    let first = h.store().server_id().await.expect("server id");
    assert_eq!(
        h.store().server_id().await.expect("server id"),
        first,
        "stable while open"
    );
    h.reopen().await;
    assert_eq!(
        h.store()
            .server_id()
            .await
            .expect("server id after reopening"),
        first
    );
    h.finish().await;
}

/// Two fresh stores have different server ids.
pub async fn server_ids_differ_between_stores<H: Harness>() {
    let (a, b) = (H::start().await, H::start().await);
    let (id_a, id_b) = (
        a.store().server_id().await.expect("server id"),
        b.store().server_id().await.expect("server id"),
    );
    assert_ne!(id_a, id_b);
    assert_ne!(id_a.0, [0; 16]);
    a.finish().await;
    b.finish().await;
}

/// A rotation replaces the key, whatever case the name is given in, and records the
/// certificate; other accounts are untouched.
pub async fn rotate_key_replaces_key_and_records_certificate(store: &dyn Store) {
    create_users(store, &["Alice", "Bob"]).await;
    assert!(store
        .key_history(&name("alice"))
        .await
        .expect("history")
        .is_empty());
    let first = cert("alice", b"Alice", b"rotated", 1);
    store
        .rotate_key(&name("ALICE"), &first)
        .await
        .expect("rotate");
    let alice = store.find_user(&name("alice")).await.expect("find");
    assert_eq!(alice, Some(user("Alice", b"rotated")));
    assert_eq!(
        store.key_history(&name("Alice")).await.expect("history"),
        std::slice::from_ref(&first)
    );
    let second = cert("alice", b"rotated", b"again", 2);
    store
        .rotate_key(&name("alice"), &second)
        .await
        .expect("rotate again");
    assert_eq!(
        store.key_history(&name("alice")).await.expect("history"),
        [first, second],
        "oldest first"
    );
    let bob = store.find_user(&name("bob")).await.expect("find");
    assert_eq!(bob, Some(user("Bob", b"Bob")), "other accounts untouched");
    assert!(store
        .key_history(&name("bob"))
        .await
        .expect("history")
        .is_empty());
}

/// A rotation for an unknown user is `NotFound` and creates nothing.
pub async fn rotate_key_unknown_user(store: &dyn Store) {
    let err = store
        .rotate_key(&name("ghost"), &cert("ghost", b"k", b"k2", 1))
        .await
        .expect_err("unknown user");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.find_user(&name("ghost")).await.expect("find"), None);
}

/// A rotation whose certificate retires a key that is not the current one is a
/// `Conflict` and writes nothing.
pub async fn rotate_key_from_a_stale_key_conflicts(store: &dyn Store) {
    create_users(store, &["alice"]).await;
    store
        .rotate_key(&name("alice"), &cert("alice", b"alice", b"k2", 1))
        .await
        .expect("rotate");
    // Retires the original key again, which is no longer current.
    let err = store
        .rotate_key(&name("alice"), &cert("alice", b"alice", b"k3", 2))
        .await
        .expect_err("stale key");
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    let alice = store.find_user(&name("alice")).await.expect("find");
    assert_eq!(alice, Some(user("alice", b"k2")));
    assert_eq!(
        issued(&store.key_history(&name("alice")).await.expect("history")),
        [1]
    );
}

/// Of many simultaneous rotations from the same key, exactly one wins; the others are
/// `Conflict`, and only the winner's certificate is kept.
pub async fn concurrent_rotations_one_wins(store: &dyn Store) {
    create_users(store, &["racer"]).await;
    let certs: Vec<RotationCertificate> = (1..=8u8)
        .map(|i| cert("racer", b"racer", &[b'n', i], u64::from(i)))
        .collect();
    let racer = name("racer");
    let results = join_all(certs.iter().map(|c| store.rotate_key(&racer, c))).await;
    let mut winner = None;
    for (c, result) in certs.iter().zip(results) {
        match result {
            Ok(()) => {
                assert!(winner.is_none(), "two rotations succeeded");
                winner = Some(c.clone());
            }
            Err(StoreError::Conflict) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    let winner = winner.expect("one rotation succeeded");
    let racer = store.find_user(&name("racer")).await.expect("find");
    assert_eq!(racer, Some(user("racer", &winner.new_public_key)));
    assert_eq!(
        store.key_history(&name("racer")).await.expect("history"),
        [winner]
    );
}

/// The history keeps the newest `MAX_KEY_HISTORY` certificates, oldest first.
pub async fn key_history_keeps_the_newest(store: &dyn Store) {
    create_users(store, &["alice"]).await;
    let total = MAX_KEY_HISTORY as u64 + 3;
    let key = |i: u64| format!("key-{i}").into_bytes();
    let mut current = b"alice".to_vec();
    for i in 1..=total {
        store
            .rotate_key(&name("alice"), &cert("alice", &current, &key(i), i))
            .await
            .expect("rotate");
        current = key(i);
    }
    let history = store.key_history(&name("alice")).await.expect("history");
    assert_eq!(issued(&history), (4..=total).collect::<Vec<_>>());
    assert_eq!(
        history.last().map(|c| c.new_public_key.clone()),
        Some(current.clone())
    );
    // Consecutive: each certificate retires the key the previous one introduced.
    for pair in history.windows(2) {
        assert_eq!(pair[0].new_public_key, pair[1].old_public_key);
    }
    let alice = store.find_user(&name("alice")).await.expect("find");
    assert_eq!(alice, Some(user("alice", &current)));
}

/// A certificate with the most counter marks a rotation may carry is stored and read
/// back whole.
pub async fn key_history_holds_large_certificates(store: &dyn Store) {
    create_users(store, &["alice"]).await;
    let marks = (0..MAX_ROTATION_MARKS)
        .map(|i| {
            let device = u8::try_from(i % 251).expect("below 251");
            CounterMark {
                room: room_name(&format!("room-{i:0>43}")),
                device: DeviceId([device; 16]),
                last_counter: u64::MAX - i as u64,
            }
        })
        .collect();
    let big = RotationCertificate {
        final_counters: marks,
        ..cert("alice", b"alice", b"k2", 1)
    };
    store
        .rotate_key(&name("alice"), &big)
        .await
        .expect("rotate");
    assert_eq!(
        store.key_history(&name("alice")).await.expect("history"),
        [big]
    );
    // Account reads do not carry the history along.
    let alice = store.find_user(&name("alice")).await.expect("find");
    assert_eq!(alice, Some(user("alice", b"k2")));
}

/// The history of an unknown user is `NotFound`.
pub async fn key_history_of_unknown_user_not_found(store: &dyn Store) {
    let err = store
        .key_history(&name("ghost"))
        .await
        .expect_err("unknown user");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

/// Creating a room makes its owner a member in the same step.
pub async fn create_room_makes_owner_member(store: &dyn Store) {
    create_users(store, &["Owner"]).await;
    store
        .create_room(
            &key("Lounge"),
            RoomRecord {
                password_hash: Some("$argon2id$v=19$stub".into()),
                ..room("Lounge", "Owner", false)
            },
            UNLIMITED,
        )
        .await
        .expect("create room");
    let members = store.members(&key("lounge")).await.expect("members");
    assert_eq!(usernames(&members), ["Owner"]);
    let rooms = store.rooms_of(&name("owner")).await.expect("rooms_of");
    assert_eq!(names_of(&rooms), [room_name("Lounge")]);
    let found = store.find_room(&key("Lounge")).await.expect("find");
    assert_eq!(
        found.and_then(|r| r.password_hash),
        Some("$argon2id$v=19$stub".into())
    );
}

/// Every room a user created counts as theirs, in any case of their name, also after they
/// left it; a refused duplicate does not count.
pub async fn owned_rooms_are_counted(store: &dyn Store) {
    create_users(store, &["Alice", "bob"]).await;
    assert_eq!(
        store.owned_room_count(&name("alice")).await.expect("count"),
        0
    );
    create_room(store, "one", "Alice").await;
    create_room(store, "two", "Alice").await;
    create_room(store, "three", "bob").await;
    let _ = store
        .create_room(&key("ONE"), room("ONE", "Alice", false), UNLIMITED)
        .await;
    assert!(store
        .remove_member(&key("two"), &name("alice"))
        .await
        .expect("leave"));
    assert_eq!(
        store.owned_room_count(&name("ALICE")).await.expect("count"),
        2
    );
    assert_eq!(
        store.owned_room_count(&name("bob")).await.expect("count"),
        1
    );
    assert_eq!(
        store.owned_room_count(&name("carol")).await.expect("count"),
        0
    );
}

/// Of many simultaneous creations by one owner (in various cases of their name), exactly
/// as many succeed as the quota leaves after their earlier rooms; the others are
/// `QuotaExceeded` and leave nothing behind. A creation refused for another reason does not
/// use up the quota, and another owner's quota is their own.
pub async fn concurrent_creations_stop_at_the_quota(store: &dyn Store) {
    const QUOTA: usize = 5;
    const TRIES: usize = 16;
    create_users(store, &["Alice", "bob"]).await;
    store
        .create_room(&key("earlier"), room("earlier", "Alice", false), QUOTA)
        .await
        .expect("first room");
    let names: Vec<String> = (0..TRIES).map(|i| format!("race-{i}")).collect();
    let keys: Vec<RoomKey> = names.iter().map(|n| key(n)).collect();
    let results = join_all(names.iter().zip(&keys).enumerate().map(|(i, (n, k))| {
        let owner = if i % 2 == 0 { "alice" } else { "ALICE" };
        store.create_room(k, room(n, owner, false), QUOTA)
    }))
    .await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, QUOTA - 1, "{results:?}");
    for r in &results {
        assert!(
            matches!(r, Ok(()) | Err(StoreError::QuotaExceeded)),
            "{r:?}"
        );
    }
    assert_eq!(
        store.owned_room_count(&name("alice")).await.expect("count"),
        QUOTA
    );
    assert_eq!(
        store.rooms_of(&name("alice")).await.expect("rooms").len(),
        QUOTA
    );
    let mut stored = 0;
    for n in &names {
        stored += usize::from(store.find_room(&key(n)).await.expect("find").is_some());
    }
    assert_eq!(stored, QUOTA - 1, "refused creations left no room behind");

    // Refused for a taken name: bob's quota is untouched, and it is his own.
    let err = store
        .create_room(&key("earlier"), room("earlier", "bob", false), 1)
        .await
        .expect_err("the key is taken");
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    assert_eq!(
        store.owned_room_count(&name("bob")).await.expect("count"),
        0
    );
    store
        .create_room(&key("bobs"), room("bobs", "bob", false), 1)
        .await
        .expect("bob's only room");
    let err = store
        .create_room(&key("more"), room("more", "bob", false), 1)
        .await
        .expect_err("bob's quota is used up");
    assert!(matches!(err, StoreError::QuotaExceeded), "{err:?}");
}

/// A room name taken in another case is refused; the first room is unchanged.
pub async fn duplicate_room_name_rejected(store: &dyn Store) {
    create_users(store, &["alice", "bob"]).await;
    create_room(store, "General", "alice").await;
    let err = store
        .create_room(&key("GENERAL"), room("GENERAL", "bob", true), UNLIMITED)
        .await
        .expect_err("duplicate room");
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    let found = store.find_room(&key("general")).await.expect("find");
    assert_eq!(found, Some(room("General", "alice", false)));
    let members = store.members(&key("general")).await.expect("members");
    assert_eq!(
        usernames(&members),
        ["alice"],
        "loser did not become a member"
    );
    assert!(store
        .rooms_of(&name("bob"))
        .await
        .expect("rooms")
        .is_empty());
}

/// Rooms are found by any case of their name and keep their display case.
pub async fn find_room_ignores_case(store: &dyn Store) {
    create_room(store, "Book.Club-2", "alice").await;
    for query in ["Book.Club-2", "book.club-2", "BOOK.CLUB-2"] {
        let found = store.find_room(&key(query)).await.expect("find");
        assert_eq!(found, Some(room("Book.Club-2", "alice", false)));
    }
    assert_eq!(store.find_room(&key("Book")).await.expect("find"), None);
}

/// Hidden rooms are never listed; the rest come sorted by canonical name, with members.
pub async fn public_listing_hides_hidden_rooms_and_sorts(store: &dyn Store) {
    create_users(store, &["alice", "Bob", "carol"]).await;
    create_room(store, "zeta", "alice").await;
    create_room(store, "Alpha", "Bob").await;
    store
        .create_room(&key("Secret"), room("Secret", "carol", true), UNLIMITED)
        .await
        .expect("create hidden");
    create_room(store, "beta", "carol").await;
    assert!(store
        .add_member(&key("alpha"), &name("carol"))
        .await
        .expect("join"));
    assert!(store
        .add_member(&key("alpha"), &name("alice"))
        .await
        .expect("join"));

    let page = store
        .list_public_rooms(&query(None, None, 10))
        .await
        .expect("list");
    assert!(!page.more);
    let listing = page.rooms;
    let names: Vec<&str> = listing.iter().map(|l| l.room.name.as_str()).collect();
    assert_eq!(names, ["Alpha", "beta", "zeta"]);
    assert_eq!(listing[0].room, room("Alpha", "Bob", false));
    let mut alpha_members: Vec<String> =
        listing[0].members.iter().map(Username::canonical).collect();
    alpha_members.sort();
    assert_eq!(alpha_members, ["alice", "bob", "carol"]);
    let beta_members: Vec<String> = listing[1].members.iter().map(Username::canonical).collect();
    assert_eq!(beta_members, ["carol"]);

    // The hidden room still exists; it is only unlisted.
    assert!(store
        .find_room(&key("secret"))
        .await
        .expect("find")
        .is_some());
}

fn query(after: Option<&str>, filter: Option<&str>, limit: usize) -> RoomQuery {
    RoomQuery {
        after: after.map(room_name),
        filter: filter.and_then(|f| RoomFilter::new(f).expect("filter is short enough")),
        limit,
    }
}

/// The names on one page of the listing, and whether more follow.
async fn page_names(store: &dyn Store, query: RoomQuery) -> (Vec<String>, bool) {
    let page = store.list_public_rooms(&query).await.expect("list");
    let names = page
        .rooms
        .iter()
        .map(|l| l.room.name.as_str().to_owned())
        .collect();
    (names, page.more)
}

/// Pages are windows of the public rooms in canonical-name order after a name, which need
/// not exist; hidden rooms never count towards a page.
pub async fn room_listing_pages_after_a_name(store: &dyn Store) {
    create_users(store, &["alice"]).await;
    for r in ["r1", "R2", "r3", "r4", "R5", "r6", "r7"] {
        create_room(store, r, "alice").await;
    }
    // One hidden room in each namespace: keyed by a password, without a password, and a
    // legacy one under its name.
    let secret = RoomSecret::random();
    for (hidden, key) in [
        ("r25", secret.hidden_key(&room_name("r25"), Some("pw"))),
        ("r45", secret.hidden_key(&room_name("r45"), None)),
        ("r8", key("r8")),
    ] {
        store
            .create_room(&key, room(hidden, "alice", true), UNLIMITED)
            .await
            .expect("create hidden");
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let (names, more) = page_names(store, query(after.as_deref(), None, 3)).await;
        pages += 1;
        assert!(names.len() <= 3);
        seen.extend(names.iter().cloned());
        if !more {
            break;
        }
        after = names.last().cloned();
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen, ["r1", "R2", "r3", "r4", "R5", "r6", "r7"]);
    assert_eq!(pages, 3);
    // A full last page says no more: the hidden `r8` after it does not count.
    assert_eq!(
        page_names(store, query(Some("r4"), None, 3)).await,
        (
            vec!["R5".to_owned(), "r6".to_owned(), "r7".to_owned()],
            false
        )
    );
    // `after` compares canonical names and need not name a room.
    assert_eq!(
        page_names(store, query(Some("R35"), None, 2)).await,
        (vec!["r4".to_owned(), "R5".to_owned()], true)
    );
    assert_eq!(
        page_names(store, query(Some("zzz"), None, 3)).await,
        (Vec::new(), false)
    );
}

/// The filter is a case-insensitive substring of the name, combines with paging, and a
/// filter no room name can contain matches nothing.
pub async fn room_listing_filters_ignoring_case(store: &dyn Store) {
    create_users(store, &["alice"]).await;
    for r in ["Cab.Team", "abc", "xyz", "tab-abacus", "ZAB", "a.b"] {
        create_room(store, r, "alice").await;
    }
    store
        .create_room(
            &key("hidden-ab"),
            room("hidden-ab", "alice", true),
            UNLIMITED,
        )
        .await
        .expect("create hidden");
    assert_eq!(
        page_names(store, query(None, Some("AB"), 10)).await.0,
        ["abc", "Cab.Team", "tab-abacus", "ZAB"]
    );
    let (first, more) = page_names(store, query(None, Some("ab"), 2)).await;
    assert_eq!(
        (first, more),
        (vec!["abc".to_owned(), "Cab.Team".to_owned()], true)
    );
    assert_eq!(
        page_names(store, query(Some("cab.team"), Some("ab"), 2)).await,
        (vec!["tab-abacus".to_owned(), "ZAB".to_owned()], false)
    );
    // `.` is literal, not "any character".
    assert_eq!(
        page_names(store, query(None, Some("a.b"), 10)).await.0,
        ["a.b"]
    );
    assert_eq!(
        page_names(store, query(None, Some("b.t"), 10)).await.0,
        ["Cab.Team"]
    );
    for nothing in ["a b", "a*", "ab$", "é", "[a]"] {
        assert_eq!(
            page_names(store, query(None, Some(nothing), 10)).await,
            (Vec::new(), false),
            "{nothing}"
        );
    }
}

/// `add_member` says whether the user was new, ignores case and needs the room to exist.
pub async fn add_member_reports_outcomes(store: &dyn Store) {
    create_users(store, &["alice", "Bob"]).await;
    create_room(store, "room", "alice").await;
    assert!(store
        .add_member(&key("Room"), &name("Bob"))
        .await
        .expect("join"));
    assert!(!store
        .add_member(&key("ROOM"), &name("bob"))
        .await
        .expect("join again"));
    assert!(!store
        .add_member(&key("room"), &name("ALICE"))
        .await
        .expect("owner joins again"));
    let members = store.members(&key("room")).await.expect("members");
    assert_eq!(usernames(&members), ["alice", "Bob"]);

    let err = store
        .add_member(&key("nowhere"), &name("bob"))
        .await
        .expect_err("missing room");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(store
        .rooms_of(&name("bob"))
        .await
        .expect("rooms_of")
        .iter()
        .all(|r| r.name.canonical() != "nowhere"));
}

/// A room takes at most `MAX_ROOM_MEMBERS` members; a current member may still rejoin.
pub async fn add_member_room_full(store: &dyn Store) {
    create_room(store, "crowded", "owner").await;
    // The owner is the first member.
    for i in 1..MAX_ROOM_MEMBERS {
        let joined = store
            .add_member(&key("crowded"), &name(&format!("user{i:03}")))
            .await
            .expect("join while there is room");
        assert!(joined);
    }
    let err = store
        .add_member(&key("crowded"), &name("latecomer"))
        .await
        .expect_err("room is full");
    assert!(matches!(err, StoreError::RoomFull), "{err:?}");
    assert!(!store
        .add_member(&key("crowded"), &name("user001"))
        .await
        .expect("an existing member rejoining a full room is a no-op"));
    assert!(store
        .rooms_of(&name("latecomer"))
        .await
        .expect("rooms_of")
        .is_empty());

    // Leaving frees a place.
    assert!(store
        .remove_member(&key("crowded"), &name("user001"))
        .await
        .expect("leave"));
    assert!(store
        .add_member(&key("crowded"), &name("latecomer"))
        .await
        .expect("join after someone left"));
}

/// `remove_member` says whether the user was a member, and updates both directions.
pub async fn remove_member_reports_membership(store: &dyn Store) {
    create_users(store, &["alice", "bob"]).await;
    create_room(store, "room", "alice").await;
    store
        .add_member(&key("room"), &name("bob"))
        .await
        .expect("join");
    assert!(store
        .remove_member(&key("ROOM"), &name("BOB"))
        .await
        .expect("leave"));
    assert!(!store
        .remove_member(&key("room"), &name("bob"))
        .await
        .expect("leave again"));
    assert!(!store
        .remove_member(&key("nowhere"), &name("bob"))
        .await
        .expect("leave a missing room"));
    let members = store.members(&key("room")).await.expect("members");
    assert_eq!(usernames(&members), ["alice"]);
    assert!(store
        .rooms_of(&name("bob"))
        .await
        .expect("rooms")
        .is_empty());
}

/// `members` reports current keys (after rotation) and sorts by canonical username.
pub async fn members_have_current_keys_sorted(store: &dyn Store) {
    create_users(store, &["mallory", "Carol", "alice", "Bob"]).await;
    create_room(store, "team", "mallory").await;
    for m in ["Carol", "alice", "Bob"] {
        store
            .add_member(&key("team"), &name(m))
            .await
            .expect("join");
    }
    store
        .rotate_key(&name("bob"), &cert("Bob", b"Bob", b"bob-rotated", 1))
        .await
        .expect("rotate");
    let members = store.members(&key("TEAM")).await.expect("members");
    assert_eq!(usernames(&members), ["alice", "Bob", "Carol", "mallory"]);
    let bob = members
        .iter()
        .find(|u| u.username.as_str() == "Bob")
        .expect("bob is listed");
    assert_eq!(bob.public_key, b"bob-rotated");
    assert_eq!(members[0], user("alice", b"alice"));
}

/// `members` of a room that does not exist is `NotFound`.
pub async fn members_of_missing_room_not_found(store: &dyn Store) {
    let err = store
        .members(&key("nowhere"))
        .await
        .expect_err("missing room");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

/// `rooms_of` lists exactly the user's rooms, sorted by canonical name, display case kept.
pub async fn rooms_of_lists_memberships(store: &dyn Store) {
    create_users(store, &["alice", "bob"]).await;
    create_room(store, "Zoo", "alice").await;
    create_room(store, "apple", "alice").await;
    create_room(store, "Mid", "alice").await;
    create_room(store, "other", "bob").await;
    store
        .add_member(&key("ZOO"), &name("bob"))
        .await
        .expect("join");
    assert_eq!(
        names_of(&store.rooms_of(&name("ALICE")).await.expect("rooms_of")),
        [room_name("apple"), room_name("Mid"), room_name("Zoo")]
    );
    assert_eq!(
        names_of(&store.rooms_of(&name("bob")).await.expect("rooms_of")),
        [room_name("other"), room_name("Zoo")]
    );
    assert!(store
        .rooms_of(&name("nobody"))
        .await
        .expect("rooms_of")
        .is_empty());
}

/// Sequence numbers start at 1 and go up by one per message.
pub async fn append_assigns_contiguous_seqs(store: &dyn Store) {
    create_room(store, "room", "alice").await;
    for (id, expected) in [(10u8, 1u64), (11, 2), (12, 3), (13, 4)] {
        let seq = append(store, message("room", id, "alice", &["alice"])).await;
        assert_eq!(seq, expected);
    }
}

/// Each room has its own sequence.
pub async fn sequences_are_per_room(store: &dyn Store) {
    create_room(store, "one", "alice").await;
    create_room(store, "two", "alice").await;
    assert_eq!(
        append(store, message("one", 1, "alice", &["alice"])).await,
        1
    );
    assert_eq!(
        append(store, message("one", 2, "alice", &["alice"])).await,
        2
    );
    assert_eq!(
        append(store, message("two", 3, "alice", &["alice"])).await,
        1
    );
    assert_eq!(
        append(store, message("ONE", 4, "alice", &["alice"])).await,
        3
    );
    assert_eq!(
        append(store, message("two", 5, "alice", &["alice"])).await,
        2
    );
}

/// A reused message id in a room is refused without using up a sequence number or
/// touching the original; the same id in another room is fine.
pub async fn duplicate_message_id_rejected(store: &dyn Store) {
    create_room(store, "room", "alice").await;
    create_room(store, "elsewhere", "alice").await;
    assert_eq!(
        append(store, message("room", 7, "alice", &["alice"])).await,
        1
    );

    let mut replay = message("room", 7, "alice", &["alice"]);
    replay.envelopes[0].ciphertext = b"replayed".to_vec();
    let err = store
        .append_message(replay)
        .await
        .expect_err("duplicate id");
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");

    assert_eq!(
        append(store, message("room", 8, "alice", &["alice"])).await,
        2
    );
    assert_eq!(
        append(store, message("elsewhere", 7, "alice", &["alice"])).await,
        1
    );
    let history = store
        .history_for(&key("room"), &name("alice"), None, 10)
        .await
        .expect("history");
    assert_eq!(seqs(&history), [1, 2]);
    assert_eq!(history.messages[0].message_id, MessageId([7; 16]));
    assert_eq!(
        history.messages[0].envelope.ciphertext,
        marker("room", 7, "alice")
    );
}

/// Appending to a room that does not exist is `NotFound`.
pub async fn append_to_missing_room_not_found(store: &dyn Store) {
    let err = store
        .append_message(message("nowhere", 1, "alice", &["alice"]))
        .await
        .expect_err("missing room");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

/// History holds only the recipient's own copy, and only of messages addressed to them.
pub async fn history_has_only_recipients_copies(store: &dyn Store) {
    create_users(store, &["Alice", "bob", "carol"]).await;
    create_room(store, "Room", "Alice").await;
    // Message 1 before carol joined; message 2 to all three; message 3 without bob.
    append(store, message("room", 1, "Alice", &["Alice", "bob"])).await;
    append(store, message("room", 2, "bob", &["bob", "Alice", "carol"])).await;
    append(store, message("room", 3, "carol", &["Alice", "carol"])).await;

    let bob = store
        .history_for(&key("ROOM"), &name("Bob"), None, 50)
        .await
        .expect("history");
    assert_eq!(seqs(&bob), [1, 2]);
    assert!(!bob.has_more);
    for m in &bob.messages {
        assert_eq!(m.envelope.recipient.canonical(), "bob");
        assert_eq!(
            m.envelope.ciphertext,
            marker("room", m.message_id.0[0], "bob")
        );
        assert!(m.room.same_as(&room_name("Room")));
    }
    assert_eq!(bob.messages[0].sender, name("Alice"));
    assert_eq!(bob.messages[0].server_time_ms, T0 + 1);
    assert_eq!(bob.messages[1].message_id, MessageId([2; 16]));
    assert_eq!(bob.messages[1].sender, name("bob"));
    // Every reader gets the whole recipient list, in the order the sender gave the copies
    // (the sender's signature covers that order), with the names as the sender wrote them.
    assert_eq!(*bob.messages[0].recipients, [name("Alice"), name("bob")]);
    assert_eq!(
        *bob.messages[1].recipients,
        [name("bob"), name("Alice"), name("carol")]
    );

    let carol = store
        .history_for(&key("room"), &name("carol"), None, 50)
        .await
        .expect("history");
    assert_eq!(seqs(&carol), [2, 3]);
    assert!(carol
        .messages
        .iter()
        .all(|m| m.envelope.ciphertext == marker("room", m.message_id.0[0], "carol")));
    assert_eq!(
        *carol.messages[1].recipients,
        [name("Alice"), name("carol")]
    );

    let alice = store
        .history_for(&key("room"), &name("alice"), None, 50)
        .await
        .expect("history");
    assert_eq!(seqs(&alice), [1, 2, 3]);

    let stranger = store
        .history_for(&key("room"), &name("mallory"), None, 50)
        .await
        .expect("history");
    assert!(stranger.messages.is_empty());
    assert!(!stranger.has_more);
}

/// Paging: newest first by `limit`, returned ascending, `before_seq` exclusive,
/// `has_more` exactly when older messages for the recipient remain.
pub async fn history_pages_with_before_seq(store: &dyn Store) {
    create_room(store, "room", "alice").await;
    // Seqs 1..=7; bob has copies of the odd ones only.
    for id in 1..=7u8 {
        let recipients: &[&str] = if id % 2 == 1 {
            &["alice", "bob"]
        } else {
            &["alice"]
        };
        assert_eq!(
            append(store, message("room", id, "alice", recipients)).await,
            u64::from(id)
        );
    }
    let (room_, bob) = (key("room"), name("bob"));
    let page = |before: Option<u64>, limit: usize| store.history_for(&room_, &bob, before, limit);

    let newest = page(None, 2).await.expect("page");
    assert_eq!(seqs(&newest), [5, 7]);
    assert!(newest.has_more);
    let older = page(Some(5), 2).await.expect("page");
    assert_eq!(seqs(&older), [1, 3]);
    assert!(!older.has_more, "nothing before seq 1");
    let exact = page(Some(4), 2).await.expect("page");
    assert_eq!(seqs(&exact), [1, 3]);
    assert!(!exact.has_more);
    let one = page(Some(4), 1).await.expect("page");
    assert_eq!(seqs(&one), [3]);
    assert!(one.has_more);
    let all = page(None, 100).await.expect("page");
    assert_eq!(seqs(&all), [1, 3, 5, 7]);
    assert!(!all.has_more);
    let beyond = page(Some(1_000), 3).await.expect("page");
    assert_eq!(seqs(&beyond), [3, 5, 7]);
    assert!(beyond.has_more);
    let first = page(Some(1), 10).await.expect("page");
    assert!(first.messages.is_empty());
    assert!(!first.has_more);
    let none = page(None, 0).await.expect("page");
    assert!(none.messages.is_empty());
    assert!(none.has_more, "limit 0 still reports older messages");

    let alice = store
        .history_for(&key("room"), &name("alice"), Some(7), 3)
        .await
        .expect("page");
    assert_eq!(seqs(&alice), [4, 5, 6]);
    assert!(alice.has_more);
}

/// History of a room that does not exist is empty.
pub async fn history_of_missing_room_is_empty(store: &dyn Store) {
    let slice = store
        .history_for(&key("nowhere"), &name("alice"), None, 10)
        .await
        .expect("history");
    assert!(slice.messages.is_empty());
    assert!(!slice.has_more);
}

/// Rooms whose names are prefixes of each other keep separate members, sequences and
/// history.
pub async fn prefix_room_names_do_not_mix(store: &dyn Store) {
    create_users(store, &["alice", "bob"]).await;
    create_room(store, "ab", "alice").await;
    create_room(store, "abc", "bob").await;
    create_room(store, "a", "bob").await;
    store
        .add_member(&key("abc"), &name("alice"))
        .await
        .expect("join");
    assert_eq!(
        append(store, message("ab", 1, "alice", &["alice"])).await,
        1
    );
    assert_eq!(
        append(store, message("abc", 2, "alice", &["alice", "bob"])).await,
        1
    );
    assert_eq!(
        append(store, message("abc", 3, "bob", &["alice", "bob"])).await,
        2
    );
    assert_eq!(
        append(store, message("ab", 4, "alice", &["alice"])).await,
        2
    );

    let ab = store
        .history_for(&key("ab"), &name("alice"), None, 10)
        .await
        .expect("history");
    let ids: Vec<u8> = ab.messages.iter().map(|m| m.message_id.0[0]).collect();
    assert_eq!(ids, [1, 4]);
    let abc = store
        .history_for(&key("abc"), &name("alice"), None, 10)
        .await
        .expect("history");
    let ids: Vec<u8> = abc.messages.iter().map(|m| m.message_id.0[0]).collect();
    assert_eq!(ids, [2, 3]);
    assert!(store
        .history_for(&key("a"), &name("alice"), None, 10)
        .await
        .expect("history")
        .messages
        .is_empty());

    let ab_members = store.members(&key("ab")).await.expect("members");
    assert_eq!(usernames(&ab_members), ["alice"]);
    let a_members = store.members(&key("a")).await.expect("members");
    assert_eq!(usernames(&a_members), ["bob"]);
    // Removing from the shorter name does not touch the longer one.
    assert!(!store
        .remove_member(&key("ab"), &name("bob"))
        .await
        .expect("leave"));
    let abc_members = store.members(&key("abc")).await.expect("members");
    assert_eq!(usernames(&abc_members), ["alice", "bob"]);
}

/// `member_names` lists the same people as `members`, in the same order and display
/// case, follows joins and leaves, and reports a missing room.
pub async fn member_names_match_members(store: &dyn Store) {
    for u in ["Carol", "alice", "Bob"] {
        store
            .create_user(user(u, u.as_bytes()))
            .await
            .expect("create user");
    }
    create_room(store, "names", "Carol").await;
    for u in ["alice", "Bob"] {
        store
            .add_member(&key("names"), &name(u))
            .await
            .expect("join");
    }
    let full: Vec<Username> = store
        .members(&key("NAMES"))
        .await
        .expect("members")
        .into_iter()
        .map(|m| m.username)
        .collect();
    let names = store.member_names(&key("NAMES")).await.expect("names");
    assert_eq!(names, full);
    assert_eq!(
        names.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["alice", "Bob", "Carol"]
    );
    store
        .remove_member(&key("names"), &name("bob"))
        .await
        .expect("leave");
    let names = store.member_names(&key("names")).await.expect("names");
    assert_eq!(
        names.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["alice", "Carol"]
    );
    assert!(matches!(
        store.member_names(&key("nowhere")).await,
        Err(StoreError::NotFound)
    ));
}

/// Twenty simultaneous appends get twenty distinct, contiguous sequence numbers, and every
/// one is in the history.
pub async fn concurrent_appends_get_distinct_seqs(store: &dyn Store) {
    const N: u8 = 20;
    create_room(store, "busy", "alice").await;
    let results = join_all(
        (1..=N).map(|id| store.append_message(message("busy", id, "alice", &["alice", "bob"]))),
    )
    .await;
    let mut got: Vec<u64> = results
        .into_iter()
        .map(|r| r.expect("concurrent append"))
        .collect();
    got.sort_unstable();
    assert_eq!(got, (1..=u64::from(N)).collect::<Vec<_>>());

    let history = store
        .history_for(&key("busy"), &name("bob"), None, 100)
        .await
        .expect("history");
    assert_eq!(seqs(&history), (1..=u64::from(N)).collect::<Vec<_>>());
    let mut ids: Vec<u8> = history.messages.iter().map(|m| m.message_id.0[0]).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=N).collect::<Vec<_>>());
}

/// Messages queued one after another keep that order in their sequence numbers even when
/// their completions are awaited in reverse, and a refusal in the middle (a repeated id)
/// comes out of its own completion without disturbing the others.
pub async fn queued_messages_keep_their_order(store: &dyn Store) {
    create_room(store, "queue", "alice").await;
    let mut pending = Vec::new();
    for id in [1, 2, 1, 3] {
        pending.push(
            store
                .queue_message(&message("queue", id, "alice", &["alice", "bob"]))
                .await,
        );
    }
    let mut outcomes = Vec::new();
    while let Some(queued) = pending.pop() {
        outcomes.push(match queued {
            Ok(stored) => stored.await,
            Err(refused) => Err(refused),
        });
    }
    outcomes.reverse();
    let seqs_in_queue_order: Vec<Option<u64>> = outcomes
        .iter()
        .map(|o| match o {
            Ok(seq) => Some(*seq),
            Err(StoreError::AlreadyExists) => None,
            Err(other) => panic!("unexpected error: {other:?}"),
        })
        .collect();
    assert_eq!(seqs_in_queue_order, [Some(1), Some(2), None, Some(3)]);
    let history = store
        .history_for(&key("queue"), &name("bob"), None, 10)
        .await
        .expect("history");
    let ids: Vec<u8> = history.messages.iter().map(|m| m.message_id.0[0]).collect();
    assert_eq!(ids, [1, 2, 3]);
}

/// A queued message is stored even when nobody awaits its completion (a connection that
/// closed with sends in flight), and a copy of its id queued meanwhile is a duplicate that
/// takes no number: the next message gets the very next one.
pub async fn queued_messages_are_stored_without_being_awaited(store: &dyn Store) {
    create_room(store, "unawaited", "alice").await;
    let first = store
        .queue_message(&message("unawaited", 1, "alice", &["alice", "bob"]))
        .await
        .expect("queued");
    drop(first);
    let again = store
        .queue_message(&message("unawaited", 1, "alice", &["alice", "bob"]))
        .await;
    let again = match again {
        Ok(pending) => pending.await,
        Err(refused) => Err(refused),
    };
    assert!(
        matches!(again, Err(StoreError::AlreadyExists)),
        "a copy of a stored id: {again:?}"
    );
    let next = store
        .append_message(message("unawaited", 2, "alice", &["alice", "bob"]))
        .await
        .expect("stored");
    assert_eq!(next, 2, "the duplicate took no number");
    let history = store
        .history_for(&key("unawaited"), &name("bob"), None, 10)
        .await
        .expect("history");
    let stored: Vec<(u8, u64)> = history
        .messages
        .iter()
        .map(|m| (m.message_id.0[0], m.seq))
        .collect();
    assert_eq!(stored, [(1, 1), (2, 2)]);
}

/// Of many simultaneous registrations of one name (in various cases), exactly one wins.
pub async fn concurrent_create_user_one_wins(store: &dyn Store) {
    let spellings = [
        "Racer", "racer", "RACER", "rAcer", "raCer", "racEr", "raceR", "RAcer",
    ];
    let results = join_all(
        spellings
            .iter()
            .map(|s| store.create_user(user(s, s.as_bytes()))),
    )
    .await;
    let mut winner = None;
    for (spelling, result) in spellings.iter().zip(results) {
        match result {
            Ok(()) => {
                assert!(winner.is_none(), "two registrations succeeded");
                winner = Some(*spelling);
            }
            Err(StoreError::AlreadyExists) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    let winner = winner.expect("one registration succeeded");
    let found = store.find_user(&name("racer")).await.expect("find");
    assert_eq!(found, Some(user(winner, winner.as_bytes())));
}

/// The keys of the four rooms named `den` the namespace cases use: public, hidden with
/// password `a`, hidden with password `b`, hidden without a password.
fn den_keys(secret: &RoomSecret) -> [RoomKey; 4] {
    let den = room_name("den");
    [
        key("den"),
        secret.hidden_key(&den, Some("a")),
        secret.hidden_key(&den, Some("b")),
        secret.hidden_key(&den, None),
    ]
}

/// A public room, two hidden rooms with different passwords and a hidden room without a
/// password can all share a name, each under its own key; a key is taken only by the room
/// created under it.
pub async fn hidden_namespaces_do_not_collide(store: &dyn Store) {
    create_users(store, &["pub", "key_a", "key_b", "open", "fresh"]).await;
    let secret = store.room_secret().await.expect("room secret");
    let keys = den_keys(&secret);
    let spellings = ["den", "Den", "DEN", "dEn"];
    let owners = ["pub", "key_a", "key_b", "open"];
    for ((key, spelling), owner) in keys.iter().zip(spellings).zip(owners) {
        let hidden = key.is_hidden();
        store
            .create_room(key, room(spelling, owner, hidden), UNLIMITED)
            .await
            .expect("a room of the same name in another namespace");
    }
    for ((key, spelling), owner) in keys.iter().zip(spellings).zip(owners) {
        let found = store.find_room(key).await.expect("find");
        assert_eq!(found, Some(room(spelling, owner, key.is_hidden())));
        let members = store.members(key).await.expect("members");
        assert_eq!(usernames(&members), [owner]);
        let err = store
            .create_room(key, room("den", "fresh", false), UNLIMITED)
            .await
            .expect_err("the key is taken");
        assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
        // A creator holding a room of the name hears that first, whatever the key.
        let holder = if *key == keys[0] { "key_a" } else { "pub" };
        let err = store
            .create_room(key, room("den", holder, false), UNLIMITED)
            .await
            .expect_err("the creator holds a den");
        assert!(matches!(err, StoreError::NameInUse), "{err:?}");
    }
    assert!(keys[1].password_in_key() && keys[2].password_in_key());
    assert!(!keys[0].password_in_key() && !keys[3].password_in_key());
    assert!(!keys[0].is_hidden() && keys[3].is_hidden());
    // The listing shows only the public one.
    let (names, more) = page_names(store, query(None, None, 10)).await;
    assert_eq!(names, ["den"]);
    assert!(!more);
    let (names, _) = page_names(store, query(None, Some("DE"), 10)).await;
    assert_eq!(names, ["den"]);
    // The derivation is the store's: another secret finds nothing.
    for other in &den_keys(&RoomSecret::random())[1..3] {
        assert_eq!(store.find_room(other).await.expect("find"), None);
    }
}

/// `room_of` finds the caller's own room of a name, in any case, whichever namespace it
/// is in, and nothing for a user who is not a member of one, however many rooms of that
/// name exist; it follows joins and leaves.
pub async fn room_of_resolves_through_memberships(store: &dyn Store) {
    create_users(store, &["owner", "guest", "stranger"]).await;
    let secret = store.room_secret().await.expect("room secret");
    let [public, keyed, _, open] = den_keys(&secret);
    store
        .create_room(&keyed, room("Den", "owner", true), UNLIMITED)
        .await
        .expect("hidden room");
    store
        .create_room(&public, room("den", "stranger", false), UNLIMITED)
        .await
        .expect("public room");
    store
        .create_room(&open, room("den", "stranger2", true), UNLIMITED)
        .await
        .expect("open hidden room");
    let mine = Membership {
        key: keyed.clone(),
        name: room_name("Den"),
    };
    for spelling in ["den", "DEN"] {
        assert_eq!(
            store
                .room_of(&name("OWNER"), &room_name(spelling))
                .await
                .expect("room_of"),
            Some(mine.clone())
        );
    }
    assert_eq!(
        store
            .room_of(&name("guest"), &room_name("den"))
            .await
            .expect("room_of"),
        None,
        "rooms of that name exist, but the guest is in none"
    );
    assert_eq!(
        store
            .room_of(&name("stranger"), &room_name("den"))
            .await
            .expect("room_of")
            .map(|m| m.key),
        Some(public)
    );
    assert!(store
        .add_member(&keyed, &name("guest"))
        .await
        .expect("join"));
    assert_eq!(
        store
            .room_of(&name("guest"), &room_name("Den"))
            .await
            .expect("room_of"),
        Some(mine.clone())
    );
    assert_eq!(
        store.rooms_of(&name("guest")).await.expect("rooms_of"),
        [mine]
    );
    assert!(store
        .remove_member(&keyed, &name("guest"))
        .await
        .expect("leave"));
    assert_eq!(
        store
            .room_of(&name("guest"), &room_name("den"))
            .await
            .expect("room_of"),
        None
    );
    assert!(store
        .rooms_of(&name("guest"))
        .await
        .expect("rooms_of")
        .is_empty());
}

/// A user is a member of at most one room per name: joining or creating a second room of
/// a name they hold is `NameInUse` and writes nothing; joining their own again is no
/// change; once they leave, the other room is theirs to join.
pub async fn one_room_per_name_per_member(store: &dyn Store) {
    create_users(store, &["alice", "bob"]).await;
    let secret = store.room_secret().await.expect("room secret");
    let [public, keyed, other_keyed, open] = den_keys(&secret);
    create_room(store, "Den", "alice").await;
    store
        .create_room(&keyed, room("den", "bob", true), UNLIMITED)
        .await
        .expect("bob's hidden room");
    let err = store
        .add_member(&keyed, &name("ALICE"))
        .await
        .expect_err("alice holds a den");
    assert!(matches!(err, StoreError::NameInUse), "{err:?}");
    assert_eq!(
        usernames(&store.members(&keyed).await.expect("members")),
        ["bob"]
    );
    for key in [&other_keyed, &open] {
        let err = store
            .create_room(key, room("DEN", "alice", true), UNLIMITED)
            .await
            .expect_err("alice holds a den");
        assert!(matches!(err, StoreError::NameInUse), "{err:?}");
        assert_eq!(store.find_room(key).await.expect("find"), None);
    }
    assert!(!store
        .add_member(&public, &name("alice"))
        .await
        .expect("her own room again"));
    let err = store
        .add_member(&public, &name("bob"))
        .await
        .expect_err("bob holds a den");
    assert!(matches!(err, StoreError::NameInUse), "{err:?}");
    assert_eq!(
        names_of(&store.rooms_of(&name("alice")).await.expect("rooms_of")),
        [room_name("Den")]
    );

    assert!(store
        .remove_member(&public, &name("alice"))
        .await
        .expect("leave"));
    assert!(store
        .add_member(&keyed, &name("alice"))
        .await
        .expect("now she may"));
    assert_eq!(
        store
            .room_of(&name("alice"), &room_name("den"))
            .await
            .expect("room_of")
            .map(|m| m.key),
        Some(keyed)
    );
}

/// Messages and history follow the room's key: a hidden room and a public room of the same
/// name keep separate sequences and histories, each labelled with its display name.
pub async fn hidden_rooms_keep_their_own_messages(store: &dyn Store) {
    create_users(store, &["alice", "bob"]).await;
    let secret = store.room_secret().await.expect("room secret");
    let [public, keyed, _, _] = den_keys(&secret);
    create_room(store, "den", "alice").await;
    store
        .create_room(&keyed, room("Den", "bob", true), UNLIMITED)
        .await
        .expect("hidden room");
    let to = |key: &RoomKey, id: u8, who: &str| NewMessage {
        room: key.clone(),
        ..message("den", id, who, &[who])
    };
    assert_eq!(append(store, to(&keyed, 1, "bob")).await, 1);
    assert_eq!(append(store, to(&keyed, 2, "bob")).await, 2);
    assert_eq!(append(store, to(&public, 1, "alice")).await, 1);
    let hidden = store
        .history_for(&keyed, &name("bob"), None, 10)
        .await
        .expect("history");
    assert_eq!(seqs(&hidden), [1, 2]);
    assert!(hidden.messages.iter().all(|m| m.room.as_str() == "Den"));
    let public = store
        .history_for(&public, &name("alice"), None, 10)
        .await
        .expect("history");
    assert_eq!(seqs(&public), [1]);
    assert_eq!(public.messages[0].room.as_str(), "den");
}

/// The room secret is the same after the store is closed and opened again (every hidden
/// room's key depends on it).
pub async fn room_secret_survives_reopening<H: Harness>() {
    let mut h = H::start().await;
    let first = h.store().room_secret().await.expect("room secret");
    h.reopen().await;
    assert_eq!(
        h.store()
            .room_secret()
            .await
            .expect("room secret after reopening"),
        first
    );
    h.finish().await;
}

/// Two fresh stores have different room secrets, so a hidden room's key in one says
/// nothing about the other.
pub async fn room_secrets_differ_between_stores<H: Harness>() {
    let (a, b) = (H::start().await, H::start().await);
    let (secret_a, secret_b) = (
        a.store().room_secret().await.expect("room secret"),
        b.store().room_secret().await.expect("room secret"),
    );
    assert_ne!(secret_a, secret_b);
    assert_ne!(secret_a.to_bytes(), [0; 32]);
    a.finish().await;
    b.finish().await;
}

/// Retention by count keeps each room's newest `keep_newest` messages, room by room; what it
/// deletes is gone from history, ids included (a deleted message's id may be sent again,
/// under a new number), and the other rooms are untouched.
pub async fn retention_keeps_the_newest_per_room(store: &dyn Store) {
    create_room(store, "busy", "alice").await;
    create_room(store, "quiet", "alice").await;
    for id in 1..=6 {
        append(store, message("busy", id, "alice", &["alice"])).await;
    }
    append(store, message("quiet", 1, "alice", &["alice"])).await;
    assert_eq!(
        store
            .prune_messages(&Retention::default())
            .await
            .expect("keep all"),
        0
    );
    let by_count = Retention {
        older_than_ms: None,
        keep_newest: Some(4),
    };
    assert_eq!(store.prune_messages(&by_count).await.expect("prune"), 2);
    assert_eq!(alice_seqs(store, "busy").await, [3, 4, 5, 6]);
    assert_eq!(alice_seqs(store, "quiet").await, [1]);
    assert_eq!(store.prune_messages(&by_count).await.expect("again"), 0);
    assert_eq!(
        append(store, message("busy", 1, "alice", &["alice"])).await,
        7
    );
}

/// Retention by age deletes the messages accepted before the cutoff, in every room.
pub async fn retention_deletes_by_age(store: &dyn Store) {
    create_room(store, "busy", "alice").await;
    create_room(store, "quiet", "alice").await;
    for id in 1..=6 {
        append(store, message("busy", id, "alice", &["alice"])).await;
    }
    append(store, message("quiet", 1, "alice", &["alice"])).await;
    // Message `id` was accepted at T0 + id: older than T0 + 5 are ids 1 to 4 (and the quiet
    // room's 1).
    let by_age = Retention {
        older_than_ms: Some(T0 + 5),
        keep_newest: None,
    };
    assert_eq!(store.prune_messages(&by_age).await.expect("prune"), 5);
    assert_eq!(alice_seqs(store, "busy").await, [5, 6]);
    assert!(alice_seqs(store, "quiet").await.is_empty());
}

async fn alice_seqs(store: &dyn Store, room: &str) -> Vec<u64> {
    seqs(
        &store
            .history_for(&key(room), &name("alice"), None, 100)
            .await
            .expect("history"),
    )
}

/// Sequence numbers continue after the newest messages were deleted: a room emptied by
/// retention, and then written to, never hands out an old number again.
pub async fn retention_never_reuses_sequence_numbers(store: &dyn Store) {
    create_room(store, "room", "alice").await;
    for id in 1..=3 {
        append(store, message("room", id, "alice", &["alice"])).await;
    }
    let everything = Retention {
        older_than_ms: None,
        keep_newest: Some(0),
    };
    assert_eq!(store.prune_messages(&everything).await.expect("prune"), 3);
    assert_eq!(
        append(store, message("room", 4, "alice", &["alice"])).await,
        4
    );
    assert_eq!(store.prune_messages(&everything).await.expect("prune"), 1);
    assert_eq!(
        append(store, message("room", 5, "alice", &["alice"])).await,
        5
    );
    let history = store
        .history_for(&key("room"), &name("alice"), None, 10)
        .await
        .expect("history");
    assert_eq!(seqs(&history), [5]);
}

/// The texts of `recipient`'s copies in the room under `key`, oldest first.
async fn copies_of(store: &dyn Store, key: &RoomKey, recipient: &str) -> Vec<Vec<u8>> {
    store
        .history_for(key, &name(recipient), None, 100)
        .await
        .expect("history")
        .messages
        .into_iter()
        .map(|m| m.envelope.ciphertext)
        .collect()
}

/// A room moved to another key keeps its members (their memberships point at the new
/// key), messages and their numbering, message ids, roles and bans (read markers:
/// [`read_markers_only_move_forward`]); its old
/// key is free, and the move does not touch the creator's room count.
pub async fn moving_a_room_takes_everything_with_it(store: &dyn Store) {
    create_users(store, &["Alice", "Bob", "Carol", "Dave"]).await;
    create_room(store, "Den", "Alice").await;
    let old = key("den");
    store.add_member(&old, &name("bob")).await.expect("join");
    append(store, message("den", 1, "alice", &["alice", "bob"])).await;
    append(store, message("den", 2, "bob", &["alice", "bob"])).await;
    store.ban(&old, &name("carol"), 8).await.expect("ban");
    store
        .update_room(
            &old,
            RoomUpdate::Admin {
                user: name("Bob"),
                admin: true,
            },
        )
        .await
        .expect("admin");
    store
        .update_room(&old, RoomUpdate::Topic(Some("plans".into())))
        .await
        .expect("topic");

    let new = RoomSecret::random().hidden_key(&room_name("Den"), Some("secret"));
    store.move_room(&old, &new, true, None).await.expect("move");
    assert_eq!(
        store.find_room(&old).await.expect("find"),
        None,
        "old key is free"
    );
    let moved = store.find_room(&new).await.expect("find").expect("moved");
    assert!(moved.hidden);
    assert_eq!(moved.admins, [name("bob")]);
    assert_eq!(moved.topic.as_deref(), Some("plans"));
    for member in ["alice", "Bob"] {
        let mine = store
            .room_of(&name(member), &room_name("DEN"))
            .await
            .expect("room_of")
            .expect("still a member");
        assert_eq!(mine.key, new);
    }
    assert_eq!(
        copies_of(store, &new, "bob").await,
        [marker("den", 1, "bob"), marker("den", 2, "bob")]
    );
    assert!(copies_of(store, &old, "bob").await.is_empty());
    assert_eq!(store.bans(&new).await.expect("bans"), [name("carol")]);
    let mut third = message("den", 3, "alice", &["alice", "bob"]);
    third.room = new.clone();
    assert_eq!(append(store, third).await, 3, "numbering goes on");
    let mut repeat = message("den", 2, "alice", &["alice", "bob"]);
    repeat.room = new.clone();
    assert!(matches!(
        store.append_message(repeat).await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        store.add_member(&new, &name("carol")).await,
        Err(StoreError::Banned)
    ));
    assert_eq!(
        store.owned_room_count(&name("alice")).await.expect("count"),
        1
    );
    assert!(store
        .list_public_rooms(&RoomQuery {
            after: None,
            filter: None,
            limit: 10
        })
        .await
        .expect("list")
        .rooms
        .is_empty());
    // A new room can take the old key; it shares nothing with the moved one.
    store
        .create_room(&old, room("Den", "Dave", false), UNLIMITED)
        .await
        .expect("old key reused");
    assert!(copies_of(store, &old, "dave").await.is_empty());
    assert_eq!(
        usernames(&store.members(&old).await.expect("members")),
        ["Dave"]
    );
    assert_eq!(
        usernames(&store.members(&new).await.expect("members")),
        ["Alice", "Bob"]
    );
}

/// Moving a room onto a key another room has is refused and changes nothing.
pub async fn moving_onto_a_taken_key_changes_nothing(store: &dyn Store) {
    create_users(store, &["Alice"]).await;
    create_room(store, "One", "Alice").await;
    let hidden = RoomSecret::random().hidden_key(&room_name("Two"), None);
    store
        .create_room(&hidden, room("Two", "Alice", true), UNLIMITED)
        .await
        .expect("create");
    append(store, message("one", 1, "alice", &["alice"])).await;
    assert!(matches!(
        store.move_room(&key("one"), &hidden, true, None).await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        store
            .move_room(&key("nowhere"), &key("elsewhere"), false, None)
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        copies_of(store, &key("one"), "alice").await,
        [marker("one", 1, "alice")]
    );
    assert_eq!(
        store
            .find_room(&hidden)
            .await
            .expect("find")
            .map(|r| r.name),
        Some(room_name("Two"))
    );
}

/// Deleting a room deletes its record, memberships and every message, and returns its
/// members; the creator's room count stays, and the key can be used again afresh.
pub async fn deleting_a_room_deletes_its_history_and_memberships(store: &dyn Store) {
    create_users(store, &["Alice", "Bob"]).await;
    create_room(store, "Den", "Alice").await;
    store
        .add_member(&key("den"), &name("bob"))
        .await
        .expect("join");
    append(store, message("den", 1, "alice", &["alice", "bob"])).await;
    store.ban(&key("den"), &name("zed"), 8).await.expect("ban");
    let former = store.delete_room(&key("den")).await.expect("delete");
    assert_eq!(former, [name("Alice"), name("Bob")]);
    assert_eq!(store.find_room(&key("den")).await.expect("find"), None);
    assert!(store
        .rooms_of(&name("bob"))
        .await
        .expect("rooms")
        .is_empty());
    assert!(copies_of(store, &key("den"), "bob").await.is_empty());
    assert!(matches!(
        store.delete_room(&key("den")).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.owned_room_count(&name("alice")).await.expect("count"),
        1
    );
    create_room(store, "Den", "Alice").await;
    assert_eq!(
        store.owned_room_count(&name("alice")).await.expect("count"),
        2
    );
    assert!(copies_of(store, &key("den"), "alice").await.is_empty());
    assert!(store.bans(&key("den")).await.expect("bans").is_empty());
    store
        .add_member(&key("den"), &name("zed"))
        .await
        .expect("no ban survives");
    // The old message id is free in the new room.
    append(store, message("den", 1, "alice", &["alice", "zed"])).await;
}

/// A ban ends a membership (with its role) in the same write, refuses later joins until
/// it is lifted, may name non-members, and the list is bounded.
pub async fn bans_end_membership_and_refuse_joins(store: &dyn Store) {
    create_users(store, &["Alice", "Bob", "Carol", "Dave"]).await;
    create_room(store, "Den", "Alice").await;
    let den = key("den");
    store.add_member(&den, &name("bob")).await.expect("join");
    store
        .update_room(
            &den,
            RoomUpdate::Admin {
                user: name("bob"),
                admin: true,
            },
        )
        .await
        .expect("admin");
    assert!(
        store.ban(&den, &name("BOB"), 2).await.expect("ban"),
        "was a member"
    );
    assert_eq!(
        usernames(&store.members(&den).await.expect("members")),
        ["Alice"]
    );
    assert!(store
        .rooms_of(&name("bob"))
        .await
        .expect("rooms")
        .is_empty());
    let record = store.find_room(&den).await.expect("find").expect("room");
    assert!(
        record.admins.is_empty(),
        "the role went with the membership"
    );
    assert!(matches!(
        store.add_member(&den, &name("bob")).await,
        Err(StoreError::Banned)
    ));
    assert!(
        !store.ban(&den, &name("carol"), 2).await.expect("ban"),
        "not a member"
    );
    assert!(matches!(
        store.ban(&den, &name("dave"), 2).await,
        Err(StoreError::QuotaExceeded)
    ));
    assert!(!store
        .ban(&den, &name("carol"), 2)
        .await
        .expect("again, when full"));
    assert_eq!(
        store.bans(&den).await.expect("bans"),
        [name("bob"), name("carol")]
    );
    assert!(store.unban(&den, &name("Bob")).await.expect("unban"));
    assert!(!store.unban(&den, &name("bob")).await.expect("unban twice"));
    assert!(store
        .add_member(&den, &name("bob"))
        .await
        .expect("join again"));
    assert!(matches!(
        store.ban(&key("nowhere"), &name("bob"), 2).await,
        Err(StoreError::NotFound)
    ));
}

/// Topic, password hash, admin roles and ownership transfers are single updates; roles and
/// transfers name members only, and a transfer makes the old owner an admin.
pub async fn roles_topic_and_ownership_are_atomic_updates(store: &dyn Store) {
    create_users(store, &["Alice", "Bob", "Carol"]).await;
    create_room(store, "Den", "Alice").await;
    let den = key("den");
    store.add_member(&den, &name("bob")).await.expect("join");
    let topic = store
        .update_room(&den, RoomUpdate::Topic(Some("Plans — Tuesday".into())))
        .await
        .expect("topic");
    assert_eq!(topic.topic.as_deref(), Some("Plans — Tuesday"));
    let cleared = store
        .update_room(&den, RoomUpdate::Topic(None))
        .await
        .expect("clear");
    assert_eq!(cleared.topic, None);
    let hashed = store
        .update_room(
            &den,
            RoomUpdate::PasswordHash(Some("$argon2id$stub".into())),
        )
        .await
        .expect("hash");
    assert_eq!(hashed.password_hash.as_deref(), Some("$argon2id$stub"));
    assert!(matches!(
        store
            .update_room(
                &den,
                RoomUpdate::Admin {
                    user: name("carol"),
                    admin: true
                }
            )
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .update_room(&den, RoomUpdate::Owner { to: name("carol") })
            .await,
        Err(StoreError::NotFound)
    ));
    let admin = store
        .update_room(
            &den,
            RoomUpdate::Admin {
                user: name("BOB"),
                admin: true,
            },
        )
        .await
        .expect("admin");
    assert_eq!(admin.admins, [name("bob")]);
    let moved = store
        .update_room(&den, RoomUpdate::Owner { to: name("bob") })
        .await
        .expect("transfer");
    assert_eq!(moved.owner, name("Bob"));
    assert_eq!(
        moved.admins,
        [name("alice")],
        "the old owner is an admin now"
    );
    let demoted = store
        .update_room(
            &den,
            RoomUpdate::Admin {
                user: name("alice"),
                admin: false,
            },
        )
        .await
        .expect("demote");
    assert!(demoted.admins.is_empty());
    assert_eq!(
        store.find_room(&den).await.expect("find"),
        Some(demoted),
        "what update_room returns is what is stored"
    );
    assert!(matches!(
        store
            .update_room(&key("nowhere"), RoomUpdate::Topic(None))
            .await,
        Err(StoreError::NotFound)
    ));
}

/// An owner's room passes to the first admin by canonical name, else to the first other
/// member; nothing passes when the leaver is not the owner or nobody else is in.
pub async fn hand_over_prefers_admins_then_members(store: &dyn Store) {
    create_users(store, &["Owner", "zed", "Amy", "bob", "Cyd"]).await;
    create_room(store, "Den", "Owner").await;
    let den = key("den");
    for member in ["zed", "Amy", "bob", "Cyd"] {
        store.add_member(&den, &name(member)).await.expect("join");
    }
    for admin in ["zed", "cyd"] {
        store
            .update_room(
                &den,
                RoomUpdate::Admin {
                    user: name(admin),
                    admin: true,
                },
            )
            .await
            .expect("admin");
    }
    assert_eq!(
        store
            .hand_over(&den, &name("amy"))
            .await
            .expect("not owner"),
        None
    );
    assert_eq!(
        store
            .hand_over(&den, &name("OWNER"))
            .await
            .expect("hand over"),
        Some(name("Cyd"))
    );
    let record = store.find_room(&den).await.expect("find").expect("room");
    assert_eq!(record.owner, name("Cyd"));
    assert_eq!(record.admins, [name("zed")]);
    store
        .remove_member(&den, &name("cyd"))
        .await
        .expect("leave");
    store
        .remove_member(&den, &name("zed"))
        .await
        .expect("leave");
    // Cyd left while owner (the caller hands over first; here it did not): the next
    // hand-over from Cy picks the first member by canonical name.
    assert_eq!(
        store
            .hand_over(&den, &name("cyd"))
            .await
            .expect("hand over"),
        Some(name("Amy"))
    );
    create_room(store, "Solo", "Owner").await;
    assert_eq!(
        store
            .hand_over(&key("solo"), &name("owner"))
            .await
            .expect("alone"),
        None
    );
}

/// A direct conversation is made with both participants at once, re-adds one who left,
/// is never listed, and counts against nobody's room quota.
pub async fn direct_conversations_hold_both_participants(store: &dyn Store) {
    create_users(store, &["Alice", "Bob"]).await;
    let conversation = shared::protocol::direct_room_name(&name("alice"), &name("bob"));
    let at = RoomKey::direct(&conversation);
    let record = RoomRecord {
        kind: RoomKindRecord::Direct {
            participants: [name("alice"), name("bob")],
        },
        ..RoomRecord::group(conversation.clone(), name("Alice"), None, true, T0)
    };
    let added = store.open_direct(&at, record.clone()).await.expect("open");
    assert_eq!(added, [name("Alice"), name("Bob")]);
    assert!(store
        .open_direct(&at, record.clone())
        .await
        .expect("again")
        .is_empty());
    assert_eq!(
        usernames(&store.members(&at).await.expect("members")),
        ["Alice", "Bob"]
    );
    let found = store.find_room(&at).await.expect("find").expect("room");
    assert_eq!(found.participants(), Some(&[name("alice"), name("bob")]));
    let mine = store
        .room_of(&name("bob"), &conversation)
        .await
        .expect("room_of")
        .expect("member");
    assert_eq!(mine.key, at);
    store.remove_member(&at, &name("bob")).await.expect("leave");
    assert_eq!(
        store.open_direct(&at, record).await.expect("reopen"),
        [name("Bob")]
    );
    assert_eq!(
        store.owned_room_count(&name("alice")).await.expect("count"),
        0
    );
    let listed = store
        .list_public_rooms(&RoomQuery {
            after: None,
            filter: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert!(listed.rooms.is_empty(), "never listed");
    assert_eq!(
        store
            .find_room(&key(conversation.as_str()))
            .await
            .expect("find"),
        None,
        "not under its name"
    );
}

/// A block list holds each user once, is bounded, and unblocking takes a user off it.
pub async fn block_lists_are_bounded(store: &dyn Store) {
    create_users(store, &["Alice", "Bob", "Carol"]).await;
    let (alice, bob, carol) = (name("Alice"), name("Bob"), name("Carol"));
    assert!(store
        .set_blocked(&alice, &bob, true, 1)
        .await
        .expect("block"));
    assert!(!store
        .set_blocked(&alice, &name("BOB"), true, 1)
        .await
        .expect("again"));
    assert!(store.has_blocked(&alice, &bob).await.expect("has"));
    assert!(!store
        .has_blocked(&bob, &alice)
        .await
        .expect("not the other way"));
    assert!(matches!(
        store.set_blocked(&alice, &carol, true, 1).await,
        Err(StoreError::QuotaExceeded)
    ));
    assert_eq!(
        store.blocked_users(&alice).await.expect("list"),
        [name("bob")]
    );
    assert!(store
        .set_blocked(&alice, &bob, false, 1)
        .await
        .expect("unblock"));
    assert!(!store
        .set_blocked(&alice, &bob, false, 1)
        .await
        .expect("unblock again"));
    assert!(!store.has_blocked(&alice, &bob).await.expect("has"));
    assert!(store
        .set_blocked(&alice, &carol, true, 1)
        .await
        .expect("room again"));
    assert!(store.blocked_users(&bob).await.expect("list").is_empty());
}

/// A read marker only moves forward, never past the room's newest message, only for
/// members, moves with its room, and goes with the membership.
pub async fn read_markers_only_move_forward(store: &dyn Store) {
    create_users(store, &["Alice", "Bob", "Carol"]).await;
    create_room(store, "Den", "Alice").await;
    let den = key("den");
    store.add_member(&den, &name("bob")).await.expect("join");
    let bob = name("Bob");
    assert_eq!(
        store.mark_read(&den, &bob, 5).await.expect("mark"),
        None,
        "no messages"
    );
    for id in 1..=3 {
        append(store, message("den", id, "alice", &["alice", "bob"])).await;
    }
    assert_eq!(store.mark_read(&den, &bob, 2).await.expect("mark"), Some(2));
    assert_eq!(store.mark_read(&den, &bob, 1).await.expect("back"), None);
    assert_eq!(store.mark_read(&den, &bob, 2).await.expect("same"), None);
    assert_eq!(store.read_marker(&den, &bob).await.expect("marker"), 2);
    assert_eq!(
        store.mark_read(&den, &bob, u64::MAX).await.expect("far"),
        Some(3)
    );
    assert_eq!(
        store.read_marker(&den, &name("BOB")).await.expect("marker"),
        3
    );
    assert_eq!(
        store.read_marker(&den, &name("alice")).await.expect("none"),
        0
    );
    assert_eq!(
        store
            .mark_read(&den, &name("carol"), 2)
            .await
            .expect("non-member"),
        None
    );
    assert_eq!(
        store
            .read_marker(&den, &name("carol"))
            .await
            .expect("marker"),
        0
    );
    // A marker moves with its room.
    let moved = RoomSecret::random().hidden_key(&room_name("Den"), None);
    store
        .move_room(&den, &moved, true, None)
        .await
        .expect("move");
    assert_eq!(store.read_marker(&moved, &bob).await.expect("moved"), 3);
    store
        .move_room(&moved, &den, false, None)
        .await
        .expect("move back");
    store.remove_member(&den, &bob).await.expect("leave");
    assert_eq!(store.read_marker(&den, &bob).await.expect("gone"), 0);
    store.add_member(&den, &bob).await.expect("rejoin");
    assert_eq!(store.read_marker(&den, &bob).await.expect("fresh"), 0);
    assert!(matches!(
        store.mark_read(&key("nowhere"), &bob, 1).await,
        Err(StoreError::NotFound)
    ));
}

/// A deleted account's name stays taken and finds no account; its memberships, block
/// list and its own copies are gone, and the copies it sent to others stay.
pub async fn deleting_an_account_reserves_the_name_and_keeps_sent_copies(store: &dyn Store) {
    create_users(store, &["Alice", "Bob"]).await;
    create_room(store, "Den", "Bob").await;
    let den = key("den");
    store.add_member(&den, &name("alice")).await.expect("join");
    append(store, message("den", 1, "alice", &["alice", "bob"])).await;
    append(store, message("den", 2, "bob", &["alice", "bob"])).await;
    store
        .mark_read(&den, &name("alice"), 2)
        .await
        .expect("mark");
    store
        .set_blocked(&name("alice"), &name("bob"), true, 8)
        .await
        .expect("block");
    store.delete_account(&name("ALICE")).await.expect("delete");
    assert_eq!(store.find_user(&name("alice")).await.expect("find"), None);
    assert!(matches!(
        store.create_user(user("aLiCe", b"new key")).await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(store
        .rooms_of(&name("alice"))
        .await
        .expect("rooms")
        .is_empty());
    assert_eq!(
        usernames(&store.members(&den).await.expect("members")),
        ["Bob"]
    );
    assert!(store
        .blocked_users(&name("alice"))
        .await
        .expect("blocks")
        .is_empty());
    assert!(
        copies_of(store, &den, "alice").await.is_empty(),
        "their own copies are gone"
    );
    assert_eq!(
        copies_of(store, &den, "bob").await,
        [marker("den", 1, "bob"), marker("den", 2, "bob")],
        "what they sent stays in the recipients' history"
    );
    store
        .delete_account(&name("alice"))
        .await
        .expect("again finishes");
    assert!(matches!(
        store.delete_account(&name("nobody")).await,
        Err(StoreError::NotFound)
    ));
    // Numbering is untouched.
    assert_eq!(append(store, message("den", 3, "bob", &["bob"])).await, 3);
}

/// Operators list every account a page at a time, by canonical name; deleted accounts are
/// not listed.
pub async fn operators_page_through_every_account(store: &dyn Store) {
    assert!(store.list_users(None, 10).await.expect("empty").is_empty());
    create_users(store, &["Carol", "alice", "Bob", "dave"]).await;
    store.delete_account(&name("dave")).await.expect("delete");
    let first = store.list_users(None, 2).await.expect("first page");
    assert_eq!(usernames(&first), ["alice", "Bob"]);
    assert_eq!(first[0], user("alice", b"alice"), "whole records");
    let next = store
        .list_users(Some(&name("BOB")), 2)
        .await
        .expect("next page");
    assert_eq!(usernames(&next), ["Carol"], "after any case of the name");
    assert!(store
        .list_users(Some(&name("carol")), 2)
        .await
        .expect("past the end")
        .is_empty());
    assert!(store.list_users(None, 0).await.expect("no page").is_empty());
}

/// Operators list every room, hidden ones and direct conversations included, by key, a page
/// at a time, with their members.
pub async fn operators_page_through_every_room(store: &dyn Store) {
    create_users(store, &["alice", "bob"]).await;
    create_room(store, "Public", "alice").await;
    store
        .add_member(&key("public"), &name("bob"))
        .await
        .expect("join");
    let secret = RoomSecret::random();
    let keyed = secret.hidden_key(&room_name("den"), Some("pw"));
    let open = secret.hidden_key(&room_name("den"), None);
    store
        .create_room(&keyed, room("den", "alice", true), UNLIMITED)
        .await
        .expect("keyed hidden room");
    store
        .create_room(&open, room("den", "bob", true), UNLIMITED)
        .await
        .expect("open hidden room");
    let conversation = shared::protocol::direct_room_name(&name("alice"), &name("bob"));
    let direct = RoomKey::direct(&conversation);
    let record = RoomRecord {
        kind: RoomKindRecord::Direct {
            participants: [name("alice"), name("bob")],
        },
        ..RoomRecord::group(conversation, name("alice"), None, true, T0)
    };
    store.open_direct(&direct, record).await.expect("direct");
    let mut expected = vec![key("public"), keyed, open, direct];
    expected.sort();
    let first = store.list_all_rooms(None, 3).await.expect("first page");
    let rest = store
        .list_all_rooms(Some(&first[2].0), 3)
        .await
        .expect("next page");
    let keys: Vec<RoomKey> = first.iter().chain(&rest).map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, expected, "every room once, by key");
    let public = first
        .iter()
        .chain(&rest)
        .find(|(k, _)| *k == key("public"))
        .expect("public room listed");
    assert_eq!(public.1.room.name, room_name("Public"));
    assert_eq!(public.1.members, [name("alice"), name("bob")]);
    assert!(store
        .list_all_rooms(Some(&expected[3]), 3)
        .await
        .expect("past the end")
        .is_empty());
}

/// The statistics count accounts (not deleted ones), rooms of every kind and messages, and
/// a room's own messages are counted apart.
pub async fn statistics_count_what_the_store_holds(store: &dyn Store) {
    let empty = store.stats().await.expect("stats");
    assert_eq!((empty.users, empty.rooms, empty.messages), (0, 0, 0));
    create_users(store, &["alice", "bob", "carol"]).await;
    store.delete_account(&name("carol")).await.expect("delete");
    create_room(store, "one", "alice").await;
    create_room(store, "two", "bob").await;
    let hidden = RoomSecret::random().hidden_key(&room_name("three"), None);
    store
        .create_room(&hidden, room("three", "bob", true), UNLIMITED)
        .await
        .expect("hidden room");
    for id in 1..=3 {
        append(store, message("one", id, "alice", &["alice"])).await;
    }
    append(store, message("two", 9, "bob", &["bob"])).await;
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.users, stats.rooms, stats.messages), (2, 3, 4));
    if let Some(bytes) = stats.bytes {
        assert!(bytes > 0, "a store holding data has a size");
    }
    assert_eq!(store.message_count(&key("one")).await.expect("one"), 3);
    assert_eq!(store.message_count(&hidden).await.expect("three"), 0);
    assert!(matches!(
        store.message_count(&key("missing")).await,
        Err(StoreError::NotFound)
    ));
}
