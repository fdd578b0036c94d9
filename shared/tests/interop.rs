//! Cross-implementation checks: bytes made by other software must be accepted, and bytes
//! made here must equal theirs.
//!
//! The fixtures in `tests/fixtures/` were written by `tests/fixtures/generate.py`, an
//! independent implementation of docs/PROTOCOL.md in Python (its own bincode writer,
//! Python `cryptography` for RSA and AES-GCM), and by the openssl CLI. One test also runs
//! `openssl` at test time when it is installed.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use common::{fixture, public, room, rsa2048, user};
use shared::crypto::keys;
use shared::crypto::message::{open_message, Received};
use shared::crypto::signing::{self, Purpose};
use shared::crypto::CryptoError;
use shared::protocol::{
    codec, Challenge, ClientFrame, ClientMsg, CreateRoom, Envelope, FetchHistory, GetUserKey,
    Hello, HelloAck, JoinRoom, LeaveRoom, ListRooms, LoginProof, LoginStart, MemberInfo, Push,
    Register, Reply, RotateKey, SendMessage, ServerMsg,
};
use shared::{ErrorCode, ErrorDetail, MessageId, RequestId};

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

/// The same values `generate.py` encodes, built with the Rust types.
fn rust_frames() -> (Named<ClientFrame>, Named<ServerMsg>) {
    let clients = vec![
        (
            "hello",
            client(
                1,
                ClientMsg::Hello(Hello {
                    protocol_version: 1,
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
                    new_public_key: vec![9, 9],
                    proof: vec![8],
                }),
            ),
        ),
    ];
    let servers = vec![
        (
            "reply_hello",
            ServerMsg::Reply {
                request_id: RequestId(1),
                reply: Reply::Hello(HelloAck {
                    protocol_version: 1,
                    server: "srv".into(),
                    max_frame_bytes: 4 * 1024 * 1024,
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
    let ours = signing::signing_input(Purpose::Login, &[b"alice", &LOGIN_NONCE]);
    assert_eq!(ours, fixture("login-signing-input.bin"));
    // The worked example in docs/PROTOCOL.md.
    assert_eq!(
        hex::encode(&ours),
        "00000011\
         6532652d636861742f76312f6c6f67696e\
         00000005\
         616c696365\
         00000020\
         000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    );
}

#[test]
fn an_openssl_login_signature_verifies() {
    // openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32
    //   -sigopt rsa_mgf1_md:sha256 -sign rsa2048-00.pem login-signing-input.bin
    let signature = fixture("login-signature.openssl.bin");
    assert_eq!(signature.len(), 256);
    let alice = public(rsa2048(0));
    signing::verify_login(&alice, &user("Alice"), &LOGIN_NONCE, &signature)
        .expect("openssl's RSA-PSS signature verifies");

    let mut other_nonce = LOGIN_NONCE;
    other_nonce[0] = 0xff;
    assert_eq!(
        signing::verify_login(&alice, &user("alice"), &other_nonce, &signature),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(
        signing::verify_login(
            &public(rsa2048(1)),
            &user("alice"),
            &LOGIN_NONCE,
            &signature
        ),
        Err(CryptoError::BadSignature)
    );

    // The same, but with `-sigopt rsa_pss_saltlen:20`: the salt length is part of the
    // protocol and a verifier insists on 32.
    let salt20 = fixture("login-signature.openssl-salt20.bin");
    assert_eq!(salt20.len(), 256);
    assert_eq!(
        signing::verify_login(&alice, &user("alice"), &LOGIN_NONCE, &salt20),
        Err(CryptoError::BadSignature)
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
    let proof = signing::sign_login(key, &user("Dave"), &nonce);
    let input = signing::signing_input(Purpose::Login, &[b"dave", &nonce]);

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
