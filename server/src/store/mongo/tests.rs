//! The adapter's unit tests, and the conformance suite against `TEST_MONGODB_URI`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::join_all;
use mongodb::bson::from_document;
use mongodb::error::{CommandError, ErrorKind, WriteConcernError, WriteError, WriteFailure};
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::options::ReadConcernLevel;
use shared::protocol::{DeliveredMessage, Envelope};
use shared::MessageId;

use super::*;
use crate::store::conformance::Harness;

/// The variable naming the MongoDB deployment the gated tests use.
const URI_VAR: &str = "TEST_MONGODB_URI";

/// A fresh database per test, dropped by `finish` (or, if the test panicked, by `Drop`).
struct MongoHarness {
    store: MongoStore,
    uri: String,
    database: String,
    dropped: bool,
}

fn test_uri() -> String {
    std::env::var(URI_VAR).unwrap_or_else(|_| {
        panic!(
            "{URI_VAR} is not set: the MongoDB tests need a MongoDB replica set \
             (they are #[ignore]d by default; run them with .ci/mongo-conformance)"
        )
    })
}

/// `e2e_chat_test_<pid>_<random>`: unique per test, valid as a MongoDB database name.
fn unique_database_name() -> String {
    format!(
        "e2e_chat_test_{}_{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

#[async_trait]
impl Harness for MongoHarness {
    async fn start() -> Self {
        let uri = test_uri();
        let database = unique_database_name();
        let store = MongoStore::connect(&uri, &database, Standalone::Allow)
            .await
            .unwrap_or_else(|e| panic!("connecting to {URI_VAR} failed: {e:?}"));
        Self {
            store,
            uri,
            database,
            dropped: false,
        }
    }

    fn store(&self) -> &dyn Store {
        &self.store
    }

    async fn reopen(&mut self) {
        self.store = MongoStore::connect(&self.uri, &self.database, Standalone::Allow)
            .await
            .unwrap_or_else(|e| panic!("reconnecting to {URI_VAR} failed: {e:?}"));
    }

    async fn finish(mut self) {
        self.store
            .db
            .drop()
            .await
            .unwrap_or_else(|e| panic!("dropping {} failed: {e:?}", self.database));
        self.dropped = true;
    }
}

impl Drop for MongoHarness {
    /// A test that panicked never reached `finish`: drop its database from a fresh
    /// runtime and client on another thread (this test's runtime is blocked here).
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (uri, database) = (self.uri.clone(), self.database.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                let store = MongoStore::connect(&uri, &database, Standalone::Allow).await?;
                store.db.drop().await.map_err(map_err)
            })
        });
        if !matches!(cleanup.join(), Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.database);
        }
    }
}

crate::conformance_tests!(
    #[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
    MongoHarness
);

/// Connecting again to a database that already has the indexes keeps them (start-up
/// is idempotent), and the indexes the module docs list are there.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_indexes_are_created_idempotently() {
    let h = MongoHarness::start().await;
    // A user makes the collection exist: it has no index of its own to create it.
    h.store
        .create_user(UserRecord {
            username: name("Alice"),
            public_key: vec![1],
            created_at_ms: 1,
        })
        .await
        .expect("create user");
    let again = MongoStore::connect(&h.uri, &h.database, Standalone::Allow)
        .await
        .expect("second connect to the same database");
    let mut names = Vec::new();
    for coll in [&again.users, &again.rooms, &again.messages] {
        names.extend(coll.list_index_names().await.expect("list indexes"));
    }
    names.sort();
    let mut expected = vec![
        "_id_",
        "_id_",
        "_id_",
        "member_rooms",
        "public_by_key",
        "room_key_unique",
        "room_message_id_unique",
        "retention_by_time",
        "room_recipient_seq",
        "room_seq_unique",
    ];
    expected.sort_unstable();
    assert_eq!(names, expected, "no collation index, nothing retired");
    h.finish().await;
}

/// A database written before schema versions (rooms without `canonical`, no owner
/// counters) is brought up to date on connect: the quota counts the old rooms, members
/// find their rooms by name, and the schema version is recorded.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_connect_migrates_an_unversioned_database() {
    let mut h = MongoHarness::start().await;
    let store = h.store.clone();
    // Version 1's shape: each room under its canonical name as `_id`, with no `key`,
    // no `canonical` and no counter.
    for (room, owner) in [("one", "Alice"), ("two", "alice"), ("three", "bob")] {
        let key = RoomKey::public(&RoomName::parse(room).expect("room"));
        let record = RoomRecord {
            name: RoomName::parse(room).expect("room"),
            owner: name(owner),
            ..sample_room()
        };
        let mut d = room_to_doc(&key, &record).expect("encode");
        d.insert("_id", key.as_str());
        d.remove("key");
        d.insert(
            "members",
            vec![Bson::Document(member_doc(&name(owner), 1).expect("member"))],
        );
        store.rooms.insert_one(d).await.expect("old room");
    }
    // Back to version 1's shape.
    store
        .meta
        .delete_one(doc! { "_id": "schema" })
        .await
        .expect("unversion");
    store
        .rooms
        .update_many(doc! {}, doc! { "$unset": { "canonical": "" } })
        .await
        .expect("no canonical names");

    h.reopen().await;
    let store = &h.store;
    assert_eq!(
        store.schema_version().await.expect("version"),
        super::migrate::SCHEMA_VERSION
    );
    assert_eq!(
        store.owned_room_count(&name("ALICE")).await.expect("count"),
        2
    );
    assert_eq!(
        store.owned_room_count(&name("bob")).await.expect("count"),
        1
    );
    let room_of = store
        .room_of(&name("alice"), &RoomName::parse("ONE").expect("room"))
        .await
        .expect("room_of");
    let room_of = room_of.expect("canonical names restored");
    assert_eq!(room_of.key.as_str(), "one", "the old `_id` became the key");
    assert!(
        store
            .find_room(&RoomKey::public(&RoomName::parse("Two").expect("room")))
            .await
            .expect("find")
            .is_some(),
        "found by key"
    );
    h.finish().await;
}

/// Indexes no query of this version uses (the collation ones) are dropped on connect.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_connect_drops_retired_indexes() {
    let mut h = MongoHarness::start().await;
    h.store
        .rooms
        .create_index(index(doc! { "owner": 1 }, "owner_ci", false))
        .await
        .expect("old index");
    h.reopen().await;
    let indexes = h.store.rooms.list_index_names().await.expect("indexes");
    assert!(!indexes.iter().any(|i| i == "owner_ci"), "{indexes:?}");
    h.finish().await;
}

/// A room whose messages were stored without the counter (before schema 2, or by an older
/// server during an upgrade) continues after its last stored number: the migration sets
/// the counter, and a number found held anyway is skipped, never reused.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_sequence_counters_continue_after_stored_messages() {
    let mut h = MongoHarness::start().await;
    h.store
        .create_room(&general(), sample_room(), 1)
        .await
        .expect("create room");
    let room_id = h
        .store
        .room_id(&general())
        .await
        .expect("read")
        .expect("room");
    let old = |id: u8, seq: i64| {
        let mut d = message_to_doc(
            &NewMessage {
                message_id: MessageId([id; 16]),
                ..sample_message()
            },
            &RoomName::parse("General").expect("room"),
        )
        .expect("encode");
        d.insert("seq", seq);
        d.insert("room", room_id.as_str());
        d
    };
    h.store
        .messages
        .insert_one(old(1, 5))
        .await
        .expect("old message");
    h.store
        .rooms
        .update_one(
            doc! { "_id": room_id.as_str() },
            doc! { "$unset": { "last_seq": "" } },
        )
        .await
        .expect("no counter");
    h.store
        .meta
        .delete_one(doc! { "_id": "schema" })
        .await
        .expect("unversion");
    h.reopen().await;
    let next = |id: u8| {
        h.store.append_message(NewMessage {
            message_id: MessageId([id; 16]),
            ..sample_message()
        })
    };
    assert_eq!(
        next(2).await.expect("append"),
        6,
        "the migration set the counter"
    );
    // An older server stores 7 behind the counter's back: the next message skips it.
    h.store
        .messages
        .insert_one(old(3, 7))
        .await
        .expect("old message");
    assert_eq!(next(4).await.expect("append"), 8);
    h.finish().await;
}

/// After a write whose outcome is unknown, reading back finds a written record as durable
/// and a missing one as absent.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_unknown_outcomes_are_read_back() {
    let h = MongoHarness::start().await;
    let user = UserRecord {
        username: name("Alice"),
        public_key: vec![1, 2],
        created_at_ms: 5,
    };
    h.store
        .create_user(user.clone())
        .await
        .expect("create user");
    let found = settle(&h.store.users, doc! { "_id": "alice" })
        .await
        .expect("read back");
    match found {
        Outcome::Durable(d) => assert_eq!(user_from_doc(&d).expect("decode"), user),
        other => panic!("{other:?}"),
    }
    let missing = settle(&h.store.users, doc! { "_id": "bob" })
        .await
        .expect("read back");
    assert!(matches!(missing, Outcome::Absent), "{missing:?}");
    h.finish().await;
}

/// A message stored before protocol 2 has no `recipients`; the migration gives it the list
/// of its copies' recipients, and it reads again.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_connect_gives_old_messages_their_recipients() {
    let mut h = MongoHarness::start().await;
    h.store
        .create_room(&general(), sample_room(), 1)
        .await
        .expect("create room");
    let mut old = message_to_doc(
        &sample_message(),
        &RoomName::parse("General").expect("room"),
    )
    .expect("encode");
    old.remove("recipients");
    old.insert("seq", 1_i64);
    h.store.messages.insert_one(old).await.expect("insert old");
    h.store
        .meta
        .delete_one(doc! { "_id": "schema" })
        .await
        .expect("unversion");

    h.reopen().await;
    let history = h
        .store
        .history_for(&general(), &name("bob"), None, 10)
        .await
        .expect("the old message reads");
    assert_eq!(history.messages[0].recipients, [name("Alice"), name("Bob")]);
    h.finish().await;
}

/// A database whose schema version is newer than this server's is refused at start-up,
/// with the versions named, rather than misread.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_a_newer_schema_is_refused() {
    let h = MongoHarness::start().await;
    h.store
        .meta
        .update_one(
            doc! { "_id": "schema" },
            doc! { "$set": { "version": 99_i64 } },
        )
        .await
        .expect("set version");
    let err = MongoStore::connect(&h.uri, &h.database, Standalone::Allow)
        .await
        .expect_err("newer schema");
    let source = std::error::Error::source(&err).expect("source").to_string();
    assert!(source.contains("schema version 99"), "{source}");
    h.finish().await;
}

/// A standalone server is refused unless allowed, with an error that says so; a replica
/// set or a sharded cluster is accepted either way. On the emulator (standalone, by its
/// README) the refusal must happen.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_a_standalone_is_refused_unless_allowed() {
    let h = MongoHarness::start().await;
    let deployment = h.store.deployment().await.expect("hello");
    let on_emulator = std::env::var_os("TEST_MONGODB_EMULATOR").is_some();
    assert!(
        !on_emulator || deployment == Deployment::Standalone,
        "{deployment}"
    );
    let refused = MongoStore::connect(&h.uri, &h.database, Standalone::Refuse).await;
    match (&deployment, refused) {
        (Deployment::Standalone, Err(e)) => {
            assert!(matches!(e, StoreError::Backend { .. }), "{e:?}");
            let source = std::error::Error::source(&e).expect("source").to_string();
            assert!(source.contains("standalone"), "{source}");
            assert!(source.contains("MONGODB_ALLOW_STANDALONE"), "{source}");
        }
        (Deployment::Standalone, Ok(_)) => panic!("a standalone server was accepted"),
        (_, refused) => {
            refused.expect("a replica set or a sharded cluster is accepted");
        }
    }
    h.finish().await;
}

/// Twenty concurrent appends to one room cost one `findAndModify` (the room's counter) and
/// one `insert` each, and nothing else: no reads of the last seq, no retries.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_appends_cost_two_commands_each_without_retries() {
    const N: u8 = 20;
    let h = MongoHarness::start().await;
    let commands: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut options = ClientOptions::parse(&h.uri).await.expect("parse");
    let seen = Arc::clone(&commands);
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(started) = event {
            let mut seen = seen.lock().expect("counts");
            *seen.entry(started.command_name).or_default() += 1;
        }
    }));
    let store = MongoStore::connect_with(options, &h.database, Standalone::Allow)
        .await
        .expect("connect");
    store
        .create_room(&general(), sample_room(), 1)
        .await
        .expect("create room");
    commands.lock().expect("counts").clear();
    let appends = join_all((1..=N).map(|i| {
        store.append_message(NewMessage {
            message_id: MessageId([i; 16]),
            ..sample_message()
        })
    }))
    .await;
    let mut seqs: Vec<u64> = appends.into_iter().map(|r| r.expect("append")).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=u64::from(N)).collect::<Vec<_>>());
    let counts = commands.lock().expect("counts").clone();
    eprintln!("commands for {N} concurrent appends: {counts:?}");
    let n = usize::from(N);
    assert_eq!(counts.get("insert"), Some(&n), "{counts:?}");
    assert_eq!(counts.get("findAndModify"), Some(&n), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 2 * n, "{counts:?}");
    h.finish().await;
}

/// Server instances that connect to a new database at the same moment all end up
/// with the same server id: one insert wins, the others read it.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_concurrent_first_connects_agree_on_the_server_id() {
    let uri = test_uri();
    let database = unique_database_name();
    let stores =
        join_all((0..4).map(|_| MongoStore::connect(&uri, &database, Standalone::Allow))).await;
    let mut ids = Vec::new();
    for store in &stores {
        let store = store.as_ref().expect("connect");
        ids.push(store.server_id().await.expect("server id"));
    }
    let cleanup = stores
        .into_iter()
        .next()
        .expect("a store")
        .expect("connect");
    cleanup
        .drop_database()
        .await
        .expect("drop the test database");
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

/// The stored message document is the shape the module docs describe: one document
/// with a copy per recipient, keyed by canonical recipient.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_message_is_one_document_with_all_copies() {
    let h = MongoHarness::start().await;
    let store = &h.store;
    store
        .create_room(&general(), sample_room(), 1)
        .await
        .expect("create room");
    let seq = store
        .append_message(sample_message())
        .await
        .expect("append");
    assert_eq!(seq, 1);
    let room_id = store
        .room_id(&general())
        .await
        .expect("read")
        .expect("room");
    let stored = store
        .messages
        .find_one(doc! { "room": room_id })
        .await
        .expect("find")
        .expect("message stored");
    assert_eq!(stored.get_i64("seq").expect("seq"), 1);
    let recipients: Vec<&str> = stored
        .get_array("copies")
        .expect("copies")
        .iter()
        .filter_map(|c| c.as_document()?.get_str("recipient").ok())
        .collect();
    assert_eq!(recipients, ["alice", "bob"]);
    h.finish().await;
}

fn driver_error(kind: ErrorKind) -> DriverError {
    DriverError::from(kind)
}

fn command_error(code: i32, errmsg: &str) -> DriverError {
    let e: CommandError = from_document(doc! { "code": code, "codeName": "X", "errmsg": errmsg })
        .expect("command error");
    driver_error(ErrorKind::Command(e))
}

fn write_error(code: i32, errmsg: &str) -> DriverError {
    let e: WriteError =
        from_document(doc! { "code": code, "errmsg": errmsg }).expect("write error");
    driver_error(ErrorKind::Write(WriteFailure::WriteError(e)))
}

const SECRET: &str =
    "E11000 duplicate key error collection: e2e_chat.users dup key: { _id: \"secret-detail\" }";

#[test]
fn duplicate_key_is_already_exists() {
    assert!(matches!(
        map_err(write_error(11000, SECRET)),
        StoreError::AlreadyExists
    ));
    assert!(matches!(
        map_err(command_error(11000, SECRET)),
        StoreError::AlreadyExists
    ));
}

#[test]
fn connectivity_failures_are_unavailable() {
    let io = driver_error(ErrorKind::from(std::io::Error::from(
        std::io::ErrorKind::ConnectionRefused,
    )));
    let not_primary = command_error(10107, "not primary");
    let wc: WriteConcernError = from_document(doc! {
        "code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication timed out",
    })
    .expect("write concern error");
    let wc = driver_error(ErrorKind::Write(WriteFailure::WriteConcernError(wc)));
    for err in [io, not_primary, wc] {
        let mapped = map_err(err);
        assert!(
            matches!(mapped, StoreError::Unavailable { store: STORE, .. }),
            "{mapped:?}"
        );
    }
}

#[test]
fn write_errors_from_a_failing_primary_or_a_full_disk_are_unavailable() {
    // Not-primary, a timeout and an interrupted shutdown, as write errors.
    for code in [10107, 50, 11600] {
        let mapped = map_err(write_error(code, "write refused"));
        assert!(
            matches!(mapped, StoreError::Unavailable { store: STORE, .. })
                && !mapped.is_storage_full(),
            "{code}: {mapped:?}"
        );
    }
    for err in [
        write_error(14031, "OutOfDiskSpace"),
        command_error(14031, "OutOfDiskSpace"),
    ] {
        let mapped = map_err(err);
        assert!(
            matches!(mapped, StoreError::Unavailable { store: STORE, .. })
                && mapped.is_storage_full(),
            "{mapped:?}"
        );
    }
}

#[test]
fn other_failures_are_backend_and_never_show_driver_text() {
    let mapped = map_err(command_error(2, "BadValue: secret-detail"));
    assert!(matches!(mapped, StoreError::Backend { store: STORE, .. }));
    assert_eq!(mapped.to_string(), "mongodb store failed");
    // The driver's text is kept for logs, as the source.
    let source = std::error::Error::source(&mapped)
        .expect("source")
        .to_string();
    assert!(source.contains("secret-detail"), "{source}");
    for err in [
        write_error(11000, SECRET),
        command_error(91, "secret-detail"),
    ] {
        assert!(!map_err(err).to_string().contains("secret"));
    }
}

#[tokio::test]
async fn collections_write_majority_journaled_and_read_majority_from_the_primary() {
    let options = ClientOptions::parse("mongodb://127.0.0.1:1/?w=1&readPreference=secondary")
        .await
        .expect("parse");
    let client = Client::with_options(options).expect("client");
    let store = MongoStore::with_client(&client, "e2e_chat");
    for coll in [
        &store.users,
        &store.rooms,
        &store.messages,
        &store.meta,
        &store.owners,
    ] {
        assert_eq!(
            coll.read_concern().map(|rc| &rc.level),
            Some(&ReadConcernLevel::Majority),
            "{}",
            coll.name()
        );
        let wc = coll.write_concern().expect("write concern set");
        assert_eq!(wc.w, Some(Acknowledgment::Majority), "{}", coll.name());
        assert_eq!(wc.journal, Some(true));
        assert_eq!(wc.w_timeout, Some(WRITE_CONCERN_TIMEOUT));
        assert!(matches!(
            coll.selection_criteria(),
            Some(SelectionCriteria::ReadPreference(ReadPreference::Primary))
        ));
    }
}

#[tokio::test]
async fn defaults_fill_only_what_the_uri_left_unset() {
    let mut bare = ClientOptions::parse("mongodb://db.example:27017/")
        .await
        .expect("parse");
    apply_defaults(&mut bare);
    assert_eq!(
        bare.server_selection_timeout,
        Some(DEFAULT_SERVER_SELECTION_TIMEOUT)
    );
    assert_eq!(bare.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
    assert_eq!(bare.app_name.as_deref(), Some("e2e-chat-server"));

    let mut explicit = ClientOptions::parse(
        "mongodb://db.example:27017/?serverSelectionTimeoutMS=1500&connectTimeoutMS=700&appName=ops",
    )
    .await
    .expect("parse");
    apply_defaults(&mut explicit);
    assert_eq!(
        explicit.server_selection_timeout,
        Some(Duration::from_millis(1500))
    );
    assert_eq!(explicit.connect_timeout, Some(Duration::from_millis(700)));
    assert_eq!(explicit.app_name.as_deref(), Some("ops"));
}

/// Nothing listens on port 1 of the loopback address: start-up must fail quickly with
/// `Unavailable`, and say which host it tried.
#[tokio::test]
async fn unreachable_server_fails_fast() {
    let started = Instant::now();
    let err = MongoStore::connect(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
        "e2e_chat",
        Standalone::Refuse,
    )
    .await
    .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, StoreError::Unavailable { store: STORE, .. }),
        "{err:?}"
    );
    let source = std::error::Error::source(&err).expect("source").to_string();
    assert!(source.contains("127.0.0.1:1"), "{source}");
}

#[tokio::test]
async fn bad_configuration_is_rejected_before_connecting() {
    for (uri, database) in [
        ("http://not-mongodb", "e2e_chat"),
        ("mongodb://127.0.0.1:1/", "bad.name"),
        ("mongodb://127.0.0.1:1/", ""),
    ] {
        let started = Instant::now();
        let err = MongoStore::connect(uri, database, Standalone::Refuse)
            .await
            .expect_err("invalid configuration");
        assert!(
            matches!(err, StoreError::Backend { .. }),
            "{uri} {database}: {err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

#[test]
fn literal_regex_escapes_everything_but_letters_and_digits() {
    assert_eq!(literal_regex("ab9"), "ab9");
    assert_eq!(literal_regex("a.b-c_d"), r"a\.b\-c\_d");
    assert_eq!(literal_regex(".*[x]$"), r"\.\*\[x\]\$");
}

#[test]
fn database_names_follow_mongodb_rules() {
    assert!(check_database_name("e2e_chat").is_ok());
    assert!(check_database_name(&unique_database_name()).is_ok());
    for bad in ["", "a.b", "a b", "a/b", "a$b", &"x".repeat(64)] {
        assert!(check_database_name(bad).is_err(), "{bad:?}");
    }
    assert_ne!(unique_database_name(), unique_database_name());
}

fn name(s: &str) -> Username {
    Username::parse(s).expect("valid username")
}

fn general() -> RoomKey {
    RoomKey::public(&RoomName::parse("General").expect("valid room"))
}

fn sample_room() -> RoomRecord {
    RoomRecord::group(
        RoomName::parse("General").expect("valid room"),
        name("Alice"),
        Some("$argon2id$v=19$stub".into()),
        true,
        1_700_000_000_123,
    )
}

fn envelope(recipient: &str, byte: u8) -> Envelope {
    Envelope {
        recipient: name(recipient),
        wrapped_key: vec![byte; 256],
        nonce: [byte; 12],
        ciphertext: vec![byte; 40],
    }
}

fn sample_message() -> NewMessage {
    NewMessage {
        room: general(),
        message_id: MessageId([7; 16]),
        sender: name("Alice"),
        server_time_ms: 1_700_000_000_456,
        envelopes: vec![envelope("Alice", 1), envelope("Bob", 2)],
    }
}

#[test]
fn user_and_room_documents_round_trip() {
    let user = UserRecord {
        username: name("Alice"),
        public_key: vec![1, 2, 3],
        created_at_ms: 1_700_000_000_000,
    };
    let d = user_to_doc(&user).expect("encode");
    assert_eq!(d.get_str("_id").expect("_id"), "alice");
    assert_eq!(user_from_doc(&d).expect("decode"), user);

    let room = sample_room();
    let mut d = room_to_doc(&general(), &room).expect("encode");
    assert_eq!(d.get_str("key").expect("key"), "general");
    assert!(
        d.get_str("_id").expect("_id").starts_with('#'),
        "a permanent id"
    );
    assert_ne!(
        room_to_doc(&general(), &room)
            .expect("encode")
            .get_str("_id"),
        d.get_str("_id"),
        "every room document gets an id of its own"
    );
    assert_eq!(room_from_doc(&d).expect("decode"), room);
    let direct = RoomRecord {
        kind: crate::store::RoomKindRecord::Direct {
            participants: [name("alice"), name("bob")],
        },
        admins: vec![name("bob")],
        topic: Some("hello".into()),
        ..sample_room()
    };
    let direct_doc = room_to_doc(&general(), &direct).expect("encode");
    assert_eq!(room_from_doc(&direct_doc).expect("decode"), direct);
    let open = RoomRecord {
        password_hash: None,
        ..sample_room()
    };
    let open_doc = room_to_doc(&general(), &open).expect("encode");
    assert!(!open_doc.contains_key("password_hash"));
    assert_eq!(room_from_doc(&open_doc).expect("decode"), open);

    d.insert(
        "members",
        vec![
            Bson::Document(member_doc(&name("carol"), 1).expect("member")),
            Bson::Document(member_doc(&name("Bob"), 2).expect("member")),
        ],
    );
    let members: Vec<_> = members_from_doc(&d).expect("members");
    assert_eq!(
        members,
        [
            ("bob".to_owned(), name("Bob")),
            ("carol".to_owned(), name("carol"))
        ]
    );
}

/// What `history_for` gets back after the `$elemMatch` projection decodes into the
/// recipient's delivered message.
#[test]
fn projected_message_decodes_to_the_recipients_copy() {
    let message = sample_message();
    let room = RoomName::parse("General").expect("valid room");
    let mut d = message_to_doc(&message, &room).expect("encode");
    d.insert("seq", 42_i64);
    let copies = d.get_array("copies").expect("copies").clone();
    assert_eq!(copies.len(), 2);
    // Simulate the projection: keep Bob's copy only.
    d.insert("copies", vec![copies[1].clone()]);
    let delivered = delivered_from_doc(&d).expect("decode");
    assert_eq!(
        delivered,
        DeliveredMessage {
            room,
            seq: 42,
            message_id: MessageId([7; 16]),
            sender: name("Alice"),
            server_time_ms: 1_700_000_000_456,
            recipients: vec![name("Alice"), name("Bob")],
            envelope: envelope("Bob", 2),
        }
    );
    // More than one copy is a malformed projection, not a leak.
    d.insert("copies", copies);
    assert!(matches!(
        delivered_from_doc(&d),
        Err(StoreError::Backend { .. })
    ));
}

#[test]
fn out_of_range_times_are_backend_errors() {
    let user = UserRecord {
        username: name("Alice"),
        public_key: Vec::new(),
        created_at_ms: u64::MAX,
    };
    assert!(matches!(
        user_to_doc(&user),
        Err(StoreError::Backend { .. })
    ));
}

/// A sequence number or counter stored as Int32 or as an integral Double (after an export
/// and import) reads as the same number; a fraction, a negative number or a string is
/// malformed, not zero.
#[test]
fn numbers_of_any_bson_type_are_read_by_value() {
    for value in [Bson::Int32(42), Bson::Int64(42), Bson::Double(42.0)] {
        let d = doc! { "seq": value.clone() };
        assert_eq!(
            Fields::new(MESSAGES, &d).seq("seq").expect("seq"),
            42,
            "{value}"
        );
    }
    for value in [
        Bson::Double(4.5),
        Bson::Int32(-1),
        Bson::Int64(-1),
        Bson::String("42".into()),
    ] {
        let d = doc! { "seq": value.clone() };
        assert!(
            matches!(
                Fields::new(MESSAGES, &d).seq("seq"),
                Err(StoreError::Backend { .. })
            ),
            "{value}"
        );
    }
    let empty = doc! {};
    assert_eq!(
        Fields::new(OWNERS, &empty)
            .counter("rooms")
            .expect("absent"),
        0
    );
    assert!(Fields::new(MESSAGES, &empty).seq("seq").is_err());
}

#[test]
fn hello_replies_tell_the_deployment() {
    assert_eq!(
        Deployment::from_hello(&doc! { "isWritablePrimary": true, "setName": "rs0" }),
        Deployment::ReplicaSet("rs0".into())
    );
    assert_eq!(
        Deployment::from_hello(&doc! { "isWritablePrimary": true, "msg": "isdbgrid" }),
        Deployment::Sharded
    );
    // The emulator's reply, as it gives it.
    assert_eq!(
        Deployment::from_hello(&doc! { "ok": 1, "isWritablePrimary": true, "maxWireVersion": 25 }),
        Deployment::Standalone
    );
}

/// A room deletion interrupted after it was recorded (the server stopped before the room
/// document or its messages were deleted) is finished by the next start-up.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_an_interrupted_room_deletion_is_finished_at_start_up() {
    let mut h = MongoHarness::start().await;
    let room_id = general_with_a_message(&h).await;
    // What `delete_room` writes first, and nothing after it.
    h.store
        .meta
        .insert_one(doc! { "_id": format!("room_deletion:{room_id}"), "room": &room_id })
        .await
        .expect("record the deletion");
    h.reopen().await;
    assert_eq!(h.store.find_room(&general()).await.expect("find"), None);
    let left = h
        .store
        .messages
        .count_documents(doc! { "room": &room_id })
        .await
        .expect("count");
    assert_eq!(left, 0, "the history went too");
    let records = h
        .store
        .meta
        .count_documents(doc! { "_id": format!("room_deletion:{room_id}") })
        .await
        .expect("count");
    assert_eq!(records, 0, "the record is gone once done");
    h.finish().await;
}

/// A move only changes the room document's key: its id, and so its messages, stay.
#[tokio::test]
#[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
async fn mongo_a_move_changes_only_the_key() {
    let h = MongoHarness::start().await;
    let before = general_with_a_message(&h).await;
    let hidden = RoomKey::from_stored("~open:general".into());
    h.store
        .move_room(&general(), &hidden, true, None)
        .await
        .expect("move");
    let after = h.store.room_id(&hidden).await.expect("read").expect("room");
    assert_eq!(before, after);
    assert_eq!(h.store.room_id(&general()).await.expect("read"), None);
    let messages = h
        .store
        .messages
        .count_documents(doc! { "room": &after })
        .await
        .expect("count");
    assert_eq!(messages, 1, "messages were not touched");
    h.finish().await;
}

/// Creates the room `general` with one message; returns the room's internal id.
async fn general_with_a_message(h: &MongoHarness) -> String {
    h.store
        .create_room(&general(), sample_room(), 1)
        .await
        .expect("create room");
    h.store
        .append_message(sample_message())
        .await
        .expect("append");
    h.store
        .room_id(&general())
        .await
        .expect("read")
        .expect("room")
}
