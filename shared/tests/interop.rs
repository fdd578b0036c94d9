//! Cross-implementation checks: bytes made by other software must be accepted, and bytes
//! made here must equal theirs.
//!
//! The fixtures in `tests/fixtures/` were written by `tests/fixtures/generate.py`, an
//! independent implementation of docs/PROTOCOL.md in Python (its own bincode writer,
//! Python `cryptography` for RSA and AES-GCM), and by the openssl CLI. One test also runs
//! `openssl` at test time when it is installed. For protocol 3 the script follows the
//! types in shared/src, which docs/PROTOCOL.md does not describe yet (see its docstring).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use common::{fixture, public, room, rsa2048, rsa3072, user};
use shared::crypto::keys::{self, Fingerprint};
use shared::crypto::message::{open_message, Received};
use shared::crypto::rotation::{follow_chain, CounterMark, RotationCertificate};
use shared::crypto::signing::{self, Purpose};
use shared::crypto::{CryptoError, RsaPrivateKey};
use shared::protocol::{
    codec, Challenge, ClientFrame, ClientMsg, CreateRoom, Envelope, FetchHistory, GetKeyHistory,
    GetUserKey, Hello, HelloAck, JoinRoom, KeyHistory, LeaveRoom, ListRooms, LoginProof,
    LoginStart, MemberInfo, Push, Register, Reply, RoomList, RoomSummary, RotateKey, SendMessage,
    ServerMsg, PROTOCOL_VERSION,
};
use shared::protocol::{
    DeleteAccount, MarkRead, Moderate, ModerationAction, OpenDirect, Role, RoomChange, RoomEvent,
    SetBlocked, SetTyping,
};
use shared::protocol::{HistoryPage, RoomKind, RoomSnapshot, WatchLobby};
use shared::{DeviceId, ErrorCode, ErrorDetail, MessageId, RequestId, ServerId};

/// `frames.python.txt` as name → bytes.
fn python_frames() -> BTreeMap<String, Vec<u8>> {
    let text = String::from_utf8(fixture("frames.python.txt")).expect("UTF-8");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, hex) = l.split_once(' ').expect("name hex");
            (name.to_owned(), hex::decode(hex).expect("hex"))
        })
        .collect()
}

fn client(request_id: u64, msg: ClientMsg) -> ClientFrame {
    ClientFrame {
        request_id: RequestId(request_id),
        msg,
    }
}

fn member(name: &str, key: &[u8], fingerprint: &str) -> MemberInfo {
    MemberInfo {
        username: user(name),
        public_key: key.to_vec(),
        fingerprint: fingerprint.into(),
    }
}

/// Values paired with their fixture names.
type Named<T> = Vec<(&'static str, T)>;

/// The server id of the fixtures: c0 c1 … cf.
const SERVER_ID: ServerId = ServerId({
    let mut id = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        id[i] = 0xc0 + i as u8;
        i += 1;
    }
    id
});

/// `placeholder_certificate(n)` of generate.py: certificate-shaped, not real keys.
fn placeholder_certificate(n: u64) -> RotationCertificate {
    RotationCertificate {
        username: user("Alice"),
        old_public_key: vec![0x30; 3],
        new_public_key: vec![0x31; 4],
        issued_at_ms: 1_700_000_000_000 + n,
        final_counters: vec![
            CounterMark {
                room: room("General"),
                device: DeviceId(std::array::from_fn(|i| 0xd0 + i as u8)),
                last_counter: 70_000,
            },
            CounterMark {
                room: room("random"),
                device: DeviceId([0xff; 16]),
                last_counter: u64::MAX,
            },
        ],
        old_key_signature: vec![0x0a; 3],
        new_key_signature: vec![0x0b; 2],
    }
}

/// The same values `generate.py` encodes, built with the Rust types.
fn rust_frames() -> (Named<ClientFrame>, Named<ServerMsg>) {
    let clients = vec![
        (
            "hello",
            client(
                1,
                ClientMsg::Hello(Hello {
                    protocol_version: PROTOCOL_VERSION,
                    client: "pyclient/0.1".into(),
                }),
            ),
        ),
        (
            "register",
            client(
                2,
                ClientMsg::Register(Register {
                    username: user("Alice"),
                    public_key: (0..300).map(|i| (i % 256) as u8).collect(),
                }),
            ),
        ),
        (
            "login_start",
            client(
                3,
                ClientMsg::LoginStart(LoginStart {
                    username: user("Alice"),
                }),
            ),
        ),
        (
            "login_proof",
            client(
                251,
                ClientMsg::LoginProof(LoginProof {
                    signature: (0..10).collect(),
                }),
            ),
        ),
        (
            "list_rooms",
            client(70_000, ClientMsg::ListRooms(ListRooms::default())),
        ),
        (
            "list_rooms_page",
            client(
                70_001,
                ClientMsg::ListRooms(ListRooms {
                    after: Some(room("general")),
                    filter: Some("Gen ✓".into()),
                    limit: 300,
                }),
            ),
        ),
        (
            "create_room",
            client(
                1 << 40,
                ClientMsg::CreateRoom(CreateRoom {
                    name: room("general.2"),
                    password: Some("pw".into()),
                    hidden: true,
                }),
            ),
        ),
        (
            "join_room",
            client(
                7,
                ClientMsg::JoinRoom(JoinRoom {
                    name: room("general.2"),
                    password: None,
                    history_limit: 300,
                }),
            ),
        ),
        (
            "leave_room",
            client(8, ClientMsg::LeaveRoom(LeaveRoom { room: room("r") })),
        ),
        (
            "send_message",
            client(
                9,
                ClientMsg::SendMessage(SendMessage {
                    room: room("general"),
                    message_id: MessageId(std::array::from_fn(|i| i as u8)),
                    envelopes: vec![Envelope {
                        recipient: user("bob"),
                        wrapped_key: vec![1, 2, 3],
                        nonce: [0x11; 12],
                        ciphertext: vec![4, 5],
                    }],
                }),
            ),
        ),
        (
            "fetch_history",
            client(
                10,
                ClientMsg::FetchHistory(FetchHistory {
                    room: room("general"),
                    before_seq: Some(1000),
                    limit: 50,
                }),
            ),
        ),
        (
            "get_user_key",
            client(
                11,
                ClientMsg::GetUserKey(GetUserKey {
                    username: user("carol"),
                }),
            ),
        ),
        (
            "rotate_key",
            client(
                12,
                ClientMsg::RotateKey(RotateKey {
                    certificate: placeholder_certificate(1),
                }),
            ),
        ),
        (
            "get_key_history",
            client(
                13,
                ClientMsg::GetKeyHistory(GetKeyHistory {
                    username: user("carol"),
                }),
            ),
        ),
        (
            "moderate_set_role",
            client(
                14,
                ClientMsg::Moderate(Moderate {
                    room: room("General"),
                    action: ModerationAction::SetRole {
                        user: user("bob"),
                        role: Role::Admin,
                    },
                }),
            ),
        ),
        (
            "moderate_set_topic",
            client(
                15,
                ClientMsg::Moderate(Moderate {
                    room: room("General"),
                    action: ModerationAction::SetTopic {
                        topic: Some("Plans ✓".into()),
                    },
                }),
            ),
        ),
        (
            "moderate_delete",
            client(
                16,
                ClientMsg::Moderate(Moderate {
                    room: room("General"),
                    action: ModerationAction::DeleteRoom,
                }),
            ),
        ),
        (
            "open_direct",
            client(
                17,
                ClientMsg::OpenDirect(OpenDirect {
                    with: user("bob"),
                    history_limit: 50,
                }),
            ),
        ),
        (
            "set_blocked",
            client(
                18,
                ClientMsg::SetBlocked(SetBlocked {
                    user: user("mallory"),
                    blocked: true,
                }),
            ),
        ),
        (
            "set_typing",
            client(
                19,
                ClientMsg::SetTyping(SetTyping {
                    room: room("General"),
                    typing: false,
                }),
            ),
        ),
        (
            "mark_read",
            client(
                20,
                ClientMsg::MarkRead(MarkRead {
                    room: room("General"),
                    seq: 70_000,
                }),
            ),
        ),
        (
            "delete_account",
            client(
                21,
                ClientMsg::DeleteAccount(DeleteAccount {
                    confirm: user("Alice"),
                }),
            ),
        ),
        (
            "watch_lobby",
            client(22, ClientMsg::WatchLobby(WatchLobby { watch: true })),
        ),
    ];
    let servers = vec![
        (
            "reply_hello",
            ServerMsg::Reply {
                request_id: RequestId(1),
                reply: Reply::Hello(HelloAck {
                    protocol_version: PROTOCOL_VERSION,
                    server: "srv".into(),
                    server_id: SERVER_ID,
                    max_frame_bytes: 4 * 1024 * 1024,
                    max_message_bytes: 65_536,
                }),
            },
        ),
        (
            "reply_challenge",
            ServerMsg::Reply {
                request_id: RequestId(3),
                reply: Reply::Challenge(Challenge {
                    nonce: std::array::from_fn(|i| i as u8),
                    expires_in_secs: 30,
                }),
            },
        ),
        (
            "error_mismatch",
            ServerMsg::Error {
                request_id: Some(RequestId(9)),
                code: ErrorCode::RecipientMismatch,
                message: "recipients differ".into(),
                detail: Some(ErrorDetail::CurrentMembers(vec![member("bob", &[1], "ab")])),
            },
        ),
        (
            "reply_rooms",
            ServerMsg::Reply {
                request_id: RequestId(70_000),
                reply: Reply::Rooms(RoomList {
                    rooms: vec![
                        RoomSummary {
                            name: room("General"),
                            has_password: false,
                            members: 3,
                            members_online: 1,
                            topic: Some("Plans".into()),
                        },
                        RoomSummary {
                            name: room("locked"),
                            has_password: true,
                            members: 70_000,
                            members_online: 0,
                            topic: None,
                        },
                    ],
                    users_online: 5,
                    next_after: Some(room("locked")),
                }),
            },
        ),
        (
            "reply_rooms_last",
            ServerMsg::Reply {
                request_id: RequestId(70_001),
                reply: Reply::Rooms(RoomList {
                    rooms: vec![],
                    users_online: 0,
                    next_after: None,
                }),
            },
        ),
        (
            "reply_key_history",
            ServerMsg::Reply {
                request_id: RequestId(13),
                reply: Reply::KeyHistory(KeyHistory {
                    username: user("Alice"),
                    certificates: vec![placeholder_certificate(1), placeholder_certificate(2)],
                }),
            },
        ),
        (
            "error_storage",
            ServerMsg::Error {
                request_id: Some(RequestId(5)),
                code: ErrorCode::StorageUnavailable,
                message: "disk full".into(),
                detail: None,
            },
        ),
        (
            "error_frame",
            ServerMsg::Error {
                request_id: None,
                code: ErrorCode::MalformedFrame,
                message: "bad".into(),
                detail: None,
            },
        ),
        (
            "push_member_left",
            ServerMsg::Push(Push::MemberLeft {
                room: room("general"),
                username: user("bob"),
            }),
        ),
        (
            "push_key_changed",
            ServerMsg::Push(Push::KeyChanged {
                member: member("bob", &[7], "cd"),
                rooms: vec![room("a"), room("b")],
            }),
        ),
        (
            "reply_moderated",
            ServerMsg::Reply {
                request_id: RequestId(14),
                reply: Reply::Moderated(RoomEvent {
                    room: room("General"),
                    actor: user("Alice"),
                    at_ms: 1_700_000_000_000,
                    change: RoomChange::RoleChanged {
                        user: user("bob"),
                        role: Role::Admin,
                    },
                }),
            },
        ),
        (
            "reply_done",
            ServerMsg::Reply {
                request_id: RequestId(18),
                reply: Reply::Done,
            },
        ),
        (
            "error_not_permitted",
            ServerMsg::Error {
                request_id: Some(RequestId(15)),
                code: ErrorCode::NotPermitted,
                message: "admins only".into(),
                detail: None,
            },
        ),
        (
            "push_room_event",
            ServerMsg::Push(Push::RoomEvent(RoomEvent {
                room: room("General"),
                actor: user("Alice"),
                at_ms: 1_700_000_000_001,
                change: RoomChange::Kicked { user: user("eve") },
            })),
        ),
        (
            "push_room_deleted",
            ServerMsg::Push(Push::RoomEvent(RoomEvent {
                room: room("General"),
                actor: user("Alice"),
                at_ms: 1,
                change: RoomChange::RoomDeleted,
            })),
        ),
        (
            "push_direct_opened",
            ServerMsg::Push(Push::DirectOpened {
                room: room("dm.00"),
                peer: member("Alice", &[0x30], "ef"),
            }),
        ),
        (
            "push_typing",
            ServerMsg::Push(Push::Typing {
                room: room("General"),
                username: user("bob"),
                typing: true,
            }),
        ),
        (
            "push_read_up_to",
            ServerMsg::Push(Push::ReadUpTo {
                room: room("General"),
                seq: 1 << 32,
            }),
        ),
        (
            "reply_joined",
            ServerMsg::Reply {
                request_id: RequestId(7),
                reply: Reply::Joined(RoomSnapshot {
                    room: room("General"),
                    kind: RoomKind::Group,
                    owner: user("Alice"),
                    admins: vec![],
                    topic: None,
                    has_password: false,
                    hidden: false,
                    members: vec![member("Alice", &[0x30], "ef"), member("bob", &[7], "cd")],
                    history: HistoryPage {
                        room: room("General"),
                        messages: vec![],
                        has_more: false,
                        next_before_seq: None,
                    },
                    read_up_to: 3,
                    online: vec![user("bob")],
                }),
            },
        ),
        (
            "push_presence",
            ServerMsg::Push(Push::Presence {
                username: user("bob"),
                online: true,
            }),
        ),
        ("push_lobby_changed", ServerMsg::Push(Push::LobbyChanged)),
    ];
    (clients, servers)
}

#[test]
fn frames_match_the_independent_encoder() {
    let expected = python_frames();
    let (clients, servers) = rust_frames();
    let mut covered = Vec::new();
    for (name, value) in clients {
        let theirs = &expected[name];
        assert_eq!(
            hex::encode(codec::encode_client(&value).expect("encodes")),
            hex::encode(theirs),
            "{name}"
        );
        assert_eq!(codec::decode_client(theirs).expect(name), value, "{name}");
        covered.push(name.to_owned());
    }
    for (name, value) in servers {
        let theirs = &expected[name];
        assert_eq!(
            hex::encode(codec::encode_server(&value).expect("encodes")),
            hex::encode(theirs),
            "{name}"
        );
        assert_eq!(codec::decode_server(theirs).expect(name), value, "{name}");
        covered.push(name.to_owned());
    }
    covered.sort();
    assert_eq!(
        covered,
        expected.keys().cloned().collect::<Vec<_>>(),
        "every fixture frame is checked"
    );
}

const LOGIN_NONCE: [u8; 32] = {
    let mut n = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        n[i] = i as u8;
        i += 1;
    }
    n
};

#[test]
fn login_signing_input_matches_the_documented_bytes() {
    let ours = signing::signing_input(Purpose::Login, &[b"alice", &LOGIN_NONCE, &SERVER_ID.0]);
    assert_eq!(ours, fixture("login-signing-input.bin"));
    // The worked example of docs/PROTOCOL.md §9.2 (username "Alice", nonce 00 … 1f) as
    // protocol 3 has it: the v3 tag, and the server id (here c0 … cf) as a third field.
    assert_eq!(
        hex::encode(&ours),
        "00000011\
         6532652d636861742f76332f6c6f67696e\
         00000005\
         616c696365\
         00000020\
         000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
         00000010\
         c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
    );
}

#[test]
fn an_openssl_login_signature_verifies() {
    // openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32
    //   -sigopt rsa_mgf1_md:sha256 -sign rsa2048-00.pem login-signing-input.bin
    let signature = fixture("login-signature.openssl.bin");
    assert_eq!(signature.len(), 256);
    let alice = public(rsa2048(0));
    signing::verify_login(&alice, &user("Alice"), &LOGIN_NONCE, &SERVER_ID, &signature)
        .expect("openssl's RSA-PSS signature verifies");

    let mut other_nonce = LOGIN_NONCE;
    other_nonce[0] = 0xff;
    assert_eq!(
        signing::verify_login(&alice, &user("alice"), &other_nonce, &SERVER_ID, &signature),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(
        signing::verify_login(
            &public(rsa2048(1)),
            &user("alice"),
            &LOGIN_NONCE,
            &SERVER_ID,
            &signature
        ),
        Err(CryptoError::BadSignature)
    );
    let mut other_server = SERVER_ID;
    other_server.0[15] ^= 1;
    assert_eq!(
        signing::verify_login(
            &alice,
            &user("alice"),
            &LOGIN_NONCE,
            &other_server,
            &signature
        ),
        Err(CryptoError::BadSignature),
        "made for another server"
    );

    // The same, but with `-sigopt rsa_pss_saltlen:20`: the salt length is part of the
    // protocol and a verifier insists on 32.
    let salt20 = fixture("login-signature.openssl-salt20.bin");
    assert_eq!(salt20.len(), 256);
    assert_eq!(
        signing::verify_login(&alice, &user("alice"), &LOGIN_NONCE, &SERVER_ID, &salt20),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn a_protocol_2_login_proof_made_by_openssl_no_longer_verifies() {
    // What a protocol-2 client signed: the v1 tag over [canonical name, nonce].
    let v1_input = fixture("login-signing-input.v1.bin");
    assert_eq!(
        hex::encode(&v1_input),
        "00000011\
         6532652d636861742f76312f6c6f67696e\
         00000005\
         616c696365\
         00000020\
         000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    );
    let signature = fixture("login-signature.v1.openssl.bin");
    // Control: it is a genuine RSA-PSS signature by alice over those bytes.
    {
        use rsa::signature::Verifier;
        let verifier = rsa::pss::VerifyingKey::<sha2::Sha256>::new(public(rsa2048(0)));
        let sig = rsa::pss::Signature::try_from(signature.as_slice()).expect("256 bytes");
        verifier
            .verify(&v1_input, &sig)
            .expect("control: openssl signed the v1 input");
    }
    for server in [SERVER_ID, ServerId([0; 16])] {
        assert_eq!(
            signing::verify_login(
                &public(rsa2048(0)),
                &user("alice"),
                &LOGIN_NONCE,
                &server,
                &signature
            ),
            Err(CryptoError::BadSignature),
            "a v1 proof for server {server}"
        );
    }
    assert_eq!(
        signing::verify(
            &public(rsa2048(0)),
            Purpose::Login,
            &[b"alice", &LOGIN_NONCE],
            &signature
        ),
        Err(CryptoError::BadSignature),
        "not even over the old fields"
    );
}

/// A scratch directory for one test's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("shared-interop-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creates scratch dir");
        Self(dir)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("writes scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl_verifies(public_pem: &PathBuf, signature: &PathBuf, input: &PathBuf) -> bool {
    Command::new("openssl")
        .args(["dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss"])
        .args([
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-sigopt",
            "rsa_mgf1_md:sha256",
        ])
        .arg("-verify")
        .arg(public_pem)
        .arg("-signature")
        .arg(signature)
        .arg(input)
        .output()
        .expect("openssl runs")
        .status
        .success()
}

#[test]
fn openssl_verifies_our_signatures_when_installed() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl is not on PATH: skipping the openssl verification check");
        return;
    }
    let key = rsa2048(3);
    let nonce = [0x42; 32];
    let server = ServerId([0x5e; 16]);
    let proof = signing::sign_login(key, &user("Dave"), &nonce, &server);
    let input = signing::signing_input(Purpose::Login, &[b"dave", &nonce, &server.0]);

    let dir = Scratch::new("pss");
    let pem = keys::public_to_pem(&key.to_public_key()).expect("encodes");
    let pem = dir.write("key.pub.pem", pem.as_bytes());
    let input_path = dir.write("input.bin", &input);
    let sig_path = dir.write("sig.bin", &proof);
    assert!(
        openssl_verifies(&pem, &sig_path, &input_path),
        "openssl accepts our RSA-PSS signature"
    );
    let mut forged = proof.clone();
    forged[10] ^= 1;
    let forged_path = dir.write("forged.bin", &forged);
    assert!(
        !openssl_verifies(&pem, &forged_path, &input_path),
        "control: openssl rejects a corrupted signature"
    );
}

#[test]
fn a_message_sealed_by_the_independent_implementation_opens() {
    // generate.py: "Alice" (rsa2048-00) to "bob" (rsa2048-01) in "General", sealed with
    // Python's RSA-OAEP and AES-GCM and signed with its RSA-PSS.
    let bytes = fixture("push-message.python.bin");
    let msg = codec::decode_server(&bytes).expect("decodes");
    let ServerMsg::Push(Push::Message(delivered)) = &msg else {
        panic!("expected Push::Message, got {msg:?}");
    };
    assert_eq!(delivered.room, room("General"));
    assert_eq!(delivered.seq, 42);
    assert_eq!(
        delivered.message_id,
        MessageId(std::array::from_fn(|i| 0xa0 + i as u8))
    );
    assert_eq!(delivered.sender, user("Alice"));
    assert_eq!(delivered.server_time_ms, 1_700_000_000_123);
    assert_eq!(delivered.envelope.recipient, user("bob"));
    assert_eq!(*delivered.recipients, [user("Alice"), user("bob")]);
    // Re-encoding gives the same bytes: both sides agree on one encoding.
    assert_eq!(codec::encode_server(&msg).expect("encodes"), bytes);

    let received = Received {
        room: &delivered.room,
        message_id: &delivered.message_id,
        sender: &delivered.sender,
        recipients: &delivered.recipients,
    };
    let body = open_message(
        received,
        &user("bob"),
        rsa2048(1),
        &delivered.envelope,
        &public(rsa2048(0)),
    )
    .expect("opens and verifies");
    assert_eq!(body.text, "héllo from python ✓");
    assert_eq!(body.recipients, vec![user("Alice"), user("bob")]);
    assert_eq!(body.sent_at_ms, 1_700_000_000_000);
    assert_eq!(
        body.device,
        DeviceId(std::array::from_fn(|i| 0x10 + i as u8))
    );
    assert_eq!(body.counter, 300);
    assert_eq!(body.room, delivered.room);
    assert_eq!(body.sender, delivered.sender);

    // And the usual checks still bite on it.
    assert_eq!(
        open_message(
            received,
            &user("bob"),
            rsa2048(1),
            &delivered.envelope,
            &public(rsa2048(2)),
        ),
        Err(CryptoError::BadSignature)
    );
    let elsewhere = room("random");
    assert_eq!(
        open_message(
            Received {
                room: &elsewhere,
                ..received
            },
            &user("bob"),
            rsa2048(1),
            &delivered.envelope,
            &public(rsa2048(0)),
        ),
        Err(CryptoError::Decrypt)
    );
}

fn der(key: &RsaPrivateKey) -> Vec<u8> {
    keys::public_to_der(&key.to_public_key()).expect("encodes")
}

fn fp(key: &RsaPrivateKey) -> Fingerprint {
    Fingerprint::of_key(&key.to_public_key()).expect("encodes")
}

/// generate.py's `ROTATION_MARKS`: device 10 11 … 1f wrote 300 messages in General and
/// none in random; device 77 … 77 wrote 2^32 in General.
fn python_marks() -> Vec<CounterMark> {
    let device = DeviceId(std::array::from_fn(|i| 0x10 + i as u8));
    vec![
        CounterMark {
            room: room("General"),
            device,
            last_counter: 300,
        },
        CounterMark {
            room: room("random"),
            device,
            last_counter: 0,
        },
        CounterMark {
            room: room("General"),
            device: DeviceId([0x77; 16]),
            last_counter: 1 << 32,
        },
    ]
}

/// The certificate generate.py signed for alice's first rotation, rebuilt here from its
/// fields around Python's two signatures.
fn rebuilt(python: &RotationCertificate) -> RotationCertificate {
    RotationCertificate {
        username: user("Alice"),
        old_public_key: der(rsa2048(0)),
        new_public_key: der(rsa2048(12)),
        issued_at_ms: 1_700_000_100_000,
        final_counters: python_marks(),
        old_key_signature: python.old_key_signature.clone(),
        new_key_signature: python.new_key_signature.clone(),
    }
}

#[test]
fn a_rotation_certificate_signed_by_the_independent_implementation_verifies() {
    // generate.py: alice moves from rsa2048-00 to rsa2048-12; Python's `cryptography`
    // signs with both keys, and the frame is its own bincode.
    let bytes = fixture("rotate-key.python.bin");
    let frame = codec::decode_client(&bytes).expect("decodes");
    assert_eq!(frame.request_id, RequestId(12));
    let ClientMsg::RotateKey(RotateKey { certificate: cert }) = &frame.msg else {
        panic!("expected RotateKey, got {frame:?}");
    };
    // Byte equality both ways: the same certificate built here encodes to Python's bytes.
    let ours = rebuilt(cert);
    assert_eq!(*cert, ours, "Python's fields are the ones documented");
    assert_eq!(codec::encode_client(&frame).expect("encodes"), bytes);
    let ours_frame = ClientFrame {
        request_id: RequestId(12),
        msg: ClientMsg::RotateKey(RotateKey {
            certificate: ours.clone(),
        }),
    };
    assert_eq!(
        hex::encode(codec::encode_client(&ours_frame).expect("encodes")),
        hex::encode(&bytes)
    );

    // Both sides sign the same bytes.
    let fields = cert.signed_fields().expect("encodes");
    let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
    assert_eq!(
        signing::signing_input(Purpose::KeyEndorsement, &refs),
        fixture("rotation-signing-input.bin")
    );

    // Python's signatures verify here, each half under its own purpose.
    cert.verify().expect("Python's certificate verifies");
    signing::verify(
        &public(rsa2048(0)),
        Purpose::KeyEndorsement,
        &refs,
        &cert.old_key_signature,
    )
    .expect("the old key endorses");
    signing::verify(
        &public(rsa2048(12)),
        Purpose::KeyRotation,
        &refs,
        &cert.new_key_signature,
    )
    .expect("the new key proves possession");
    assert_eq!(cert.old_fingerprint(), fp(rsa2048(0)));
    assert_eq!(cert.new_fingerprint(), fp(rsa2048(12)));
    assert_eq!(
        cert.last_counter(&room("general"), &python_marks()[0].device),
        Some(300)
    );
    assert_eq!(
        cert.last_counter(&room("random"), &python_marks()[0].device),
        Some(0)
    );
    assert_eq!(
        cert.last_counter(&room("General"), &DeviceId([0x77; 16])),
        Some(1 << 32)
    );
    assert_eq!(
        cert.last_counter(&room("random"), &DeviceId([0x77; 16])),
        None
    );

    // And the checks bite on it.
    let mut swapped = cert.clone();
    std::mem::swap(
        &mut swapped.old_key_signature,
        &mut swapped.new_key_signature,
    );
    assert_eq!(swapped.verify(), Err(CryptoError::BadSignature));
    let mut raised = cert.clone();
    raised.final_counters[0].last_counter += 1;
    assert_eq!(raised.verify(), Err(CryptoError::BadSignature));
    let mut other_key = cert.clone();
    other_key.new_public_key = der(rsa2048(13));
    assert_eq!(other_key.verify(), Err(CryptoError::BadSignature));
    let mut flipped = cert.clone();
    flipped.old_key_signature[0] ^= 1;
    assert_eq!(flipped.verify(), Err(CryptoError::BadSignature));
}

#[test]
fn a_key_history_from_the_independent_implementation_leads_to_the_current_key() {
    // generate.py: rsa2048-00 -> rsa2048-12 -> rsa3072-1, as a KeyHistory reply.
    let bytes = fixture("key-history.python.bin");
    let msg = codec::decode_server(&bytes).expect("decodes");
    assert_eq!(codec::encode_server(&msg).expect("encodes"), bytes);
    let ServerMsg::Reply {
        request_id,
        reply: Reply::KeyHistory(history),
    } = &msg
    else {
        panic!("expected Reply::KeyHistory, got {msg:?}");
    };
    assert_eq!(*request_id, RequestId(13));
    assert_eq!(history.username, user("Alice"));
    assert_eq!(history.certificates.len(), 2);
    let [first, second] = &history.certificates[..] else {
        unreachable!()
    };
    assert_eq!(
        *first,
        rebuilt(first),
        "the first is the RotateKey fixture's rotation"
    );
    assert_eq!(second.old_public_key, der(rsa2048(12)));
    assert_eq!(second.new_public_key, der(rsa3072(1)));
    assert_eq!(second.issued_at_ms, 1_700_000_200_000);
    assert_eq!(second.final_counters, python_marks()[..1]);
    assert_eq!(second.new_key_signature.len(), 384, "a 3072-bit key");
    second.verify().expect("verifies");

    let alice = user("alice");
    let path = follow_chain(
        &alice,
        &fp(rsa2048(0)),
        &fp(rsa3072(1)),
        &history.certificates,
    )
    .expect("a chain from the first key to the current one");
    assert_eq!(path, vec![first, second]);
    let reversed: Vec<RotationCertificate> = history.certificates.iter().rev().cloned().collect();
    let path =
        follow_chain(&alice, &fp(rsa2048(0)), &fp(rsa3072(1)), &reversed).expect("in any order");
    assert_eq!(path, vec![first, second]);
    assert!(
        follow_chain(
            &user("bob"),
            &fp(rsa2048(0)),
            &fp(rsa3072(1)),
            &history.certificates
        )
        .is_err(),
        "not bob's keys"
    );
}
