//! The properties the fuzz targets check, as plain functions, so the test suite can replay
//! the committed corpus (`fuzz/corpus/<target>/`) without libFuzzer.
//!
//! - [`frame_decode`]: any bytes given to the codec either decode or are refused with a
//!   typed error, never a panic; whatever decodes re-encodes to a value that decodes to
//!   itself; a delivered message's frame built by the shared-prefix encoder equals the
//!   plain encoding.
//!
//! - [`Session`]: sequences of client frames handled by the real server's request
//!   handlers in-process, on a real embedded store, as an anonymous or a logged-in
//!   connection: every frame is answered with a reply or a typed error, never a panic,
//!   and nothing hangs.
//!
//! docs/FUZZING.md says how to run the targets and what they found.

use std::sync::Arc;
use std::time::Duration;

use server::config::Config;
use server::handlers::{dispatch, AppState, Auth, Connection, Handled};
use server::hub::Registration;
use server::limits::address::ClientAddress;
use server::passwords::Hasher;
use server::startup::app_state;
use server::store::embedded::EmbeddedStore;
use server::store::{Store, UserRecord};
use server::ws::outbound::push_queue;
use shared::crypto::message::SignedMessage;
use shared::crypto::rotation::RotationCertificate;
use shared::protocol::codec::{self, Deliveries};
use shared::protocol::{DeliveryHead, Push, ServerMsg};

/// The frame-decoding property (see the crate docs). Panics when it does not hold.
pub fn frame_decode(data: &[u8]) {
    if let Ok(frame) = codec::decode_client(data) {
        let again = codec::encode_client(&frame).expect("a decoded client frame re-encodes");
        assert_eq!(
            codec::decode_client(&again).expect("a re-encoded client frame decodes"),
            frame
        );
    }
    if let Ok(msg) = codec::decode_server(data) {
        let again = codec::encode_server(&msg).expect("a decoded server frame re-encodes");
        assert_eq!(
            codec::decode_server(&again).expect("a re-encoded server frame decodes"),
            msg
        );
        if let ServerMsg::Push(Push::Message(delivered)) = &msg {
            let head = DeliveryHead {
                room: delivered.room.clone(),
                seq: delivered.seq,
                message_id: delivered.message_id,
                sender: delivered.sender.clone(),
                server_time_ms: delivered.server_time_ms,
            };
            // Only a list that the copies could have spelt out goes through the encoder.
            if delivered.recipients == [delivered.envelope.recipient.clone()] {
                let copies = std::slice::from_ref(&delivered.envelope);
                let frames = Deliveries::new(head, copies).expect("one copy");
                assert_eq!(
                    frames.whole(&delivered.envelope).expect("fits"),
                    again,
                    "the shared-prefix encoder agrees with the plain one"
                );
            }
        }
    }
    // What a client decodes inside a copy, and what a server decodes from a rotation.
    if let Ok(signed) = codec::decode::<SignedMessage>(data) {
        let again = codec::encode(&signed).expect("re-encodes");
        assert_eq!(
            codec::decode::<SignedMessage>(&again).expect("decodes"),
            signed
        );
    }
    if let Ok(cert) = codec::decode::<RotationCertificate>(data) {
        // A certificate off the wire never verifies by accident, and checking it never
        // panics whatever its keys and marks.
        let _ = cert.verify();
        let again = codec::encode(&cert).expect("re-encodes");
        assert_eq!(
            codec::decode::<RotationCertificate>(&again).expect("decodes"),
            cert
        );
    }
}

/// How often the session harness starts over on a fresh store, so that what the inputs
/// create (accounts, rooms, messages) stays bounded over millions of runs.
const RUNS_PER_STORE: u32 = 5_000;

/// The most frames one input may carry (the rest is ignored).
const MAX_FRAMES: usize = 16;

/// How long one frame may take before the harness calls it a hang.
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// The logged-in user of the session harness (registered with a real key, so the key
/// handlers have something to read).
const FUZZ_USER: &str = "fuzzer";

/// The session property's in-process server (see the crate docs).
pub struct Session {
    runtime: tokio::runtime::Runtime,
    state: Option<(Arc<AppState>, tempfile::TempDir)>,
    runs: u32,
    next_conn: u64,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A harness with its own single-threaded runtime.
    ///
    /// # Panics
    /// If the runtime cannot be built.
    pub fn new() -> Self {
        Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            state: None,
            runs: 0,
            next_conn: 1,
        }
    }

    /// Runs one input. Its first byte chooses the connection (even: anonymous, after
    /// `Hello`; odd: logged in as `fuzzer`); the rest is frames, each a little-endian
    /// `u16` length and that many bytes, decoded as the server's session does and handed
    /// to the handlers in order.
    ///
    /// # Panics
    /// When a handler panics or a frame takes longer than ten seconds: the property fails.
    pub fn run(&mut self, data: &[u8]) {
        let Some((&mode, mut rest)) = data.split_first() else {
            return;
        };
        if self.runs.is_multiple_of(RUNS_PER_STORE) {
            self.state = None;
        }
        self.runs += 1;
        let id = self.next_conn;
        self.next_conn += 1;
        let state = match &self.state {
            Some((state, _)) => Arc::clone(state),
            None => {
                let fresh = self.runtime.block_on(fresh_state());
                let state = Arc::clone(&fresh.0);
                self.state = Some(fresh);
                state
            }
        };
        self.runtime.block_on(async move {
            let (pushes, _queued) = push_queue(1024, 8 << 20);
            let (evicted, _why) = tokio::sync::oneshot::channel();
            let address = ClientAddress::of(std::net::IpAddr::from([127, 0, 0, 1]));
            let mut conn = Connection::new(id, address, Registration { pushes, evicted });
            conn.greeted = true;
            if mode % 2 == 1 {
                conn.auth = Auth::Authenticated {
                    user: shared::Username::parse(FUZZ_USER).expect("valid"),
                };
            }
            for _ in 0..MAX_FRAMES {
                let Some((frame, tail)) = next_frame(rest) else {
                    break;
                };
                rest = tail;
                let Ok(frame) = shared::protocol::codec::decode_client(frame) else {
                    continue;
                };
                let handled = tokio::time::timeout(FRAME_DEADLINE, async {
                    match dispatch(&state, &mut conn, frame.msg).await {
                        Ok(Handled::Queued(send)) => send.complete(&state, id).await.map(|_| ()),
                        Ok(Handled::Reply(_)) => Ok(()),
                        Err(e) => Err(e),
                    }
                })
                .await
                .expect("a frame is handled within ten seconds");
                if let Err(e) = handled {
                    // Every refusal has a code and a message fit for the wire.
                    let (_, message, _) = e.to_wire();
                    assert!(!message.is_empty());
                }
            }
        });
    }
}

/// The next length-prefixed frame and what follows it.
fn next_frame(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    Some(rest.split_at(len))
}

/// A server state on a fresh embedded store (in shared memory when the machine has it),
/// with the fuzzing user registered.
async fn fresh_state() -> (Arc<AppState>, tempfile::TempDir) {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary directory");
    let store = EmbeddedStore::open(dir.path()).expect("the store opens");
    let server_id = store.server_id().await.expect("a server id");
    store
        .create_user(UserRecord {
            username: shared::Username::parse(FUZZ_USER).expect("valid"),
            public_key: FUZZ_KEY.to_vec(),
            created_at_ms: 0,
        })
        .await
        .expect("the fuzzing user registers");
    let room_secret = store.room_secret().await.expect("a room secret");
    let config = Config::for_tests(dir.path().to_path_buf());
    let mut state =
        app_state(&config, Arc::new(store), server_id, room_secret).expect("a server state");
    // argon2id at its lowest cost: the handlers behind a password are what is fuzzed, and
    // at the server's cost hashing took over half of every run.
    let cheapest = argon2::Params::new(8, 1, 1, None).expect("valid argon2 parameters");
    state.passwords = Hasher::with_params(2, cheapest).expect("an argon2 pool");
    (Arc::new(state), dir)
}

/// An RSA-2048 public key (SubjectPublicKeyInfo DER) for the fuzzing user.
const FUZZ_KEY: &[u8] = include_bytes!("fuzz-user.der");
