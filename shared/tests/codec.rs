//! The codec: every wire variant round-trips with the variant index docs/PROTOCOL.md
//! gives it, and everything that is not exactly one valid frame is rejected.

mod common;

use common::{room, user};
use serde::Serialize;
use shared::crypto::message::{MessageBody, SignedMessage};
use shared::crypto::rotation::{CounterMark, RotationCertificate};
use shared::protocol::codec::{self, CodecError};
use shared::protocol::{
    direct_room_name, DeleteAccount, MarkRead, Moderate, ModerationAction, OpenDirect, Role,
    RoomChange, RoomEvent, RoomKind, SetBlocked, SetTyping, WatchLobby,
};
use shared::protocol::{
    Challenge, ClientFrame, ClientMsg, CreateRoom, DeliveredMessage, DeliveryHead, Envelope,
    FetchHistory, GetKeyHistory, GetUserKey, Hello, HelloAck, HistoryPage, JoinRoom, KeyHistory,
    KeyRotated, LeaveRoom, Left, ListRooms, LoggedIn, LoginProof, LoginStart, MemberInfo, Push,
    Register, Registered, Reply, RoomList, RoomSnapshot, RoomSummary, RotateKey, SendAck,
    SendMessage, ServerMsg, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use shared::{DeviceId, ErrorCode, ErrorDetail, MessageId, RequestId, ServerId};

// ---------------------------------------------------------------------------------------
// Sample values
// ---------------------------------------------------------------------------------------

fn envelope(to: &str) -> Envelope {
    Envelope {
        recipient: user(to),
        wrapped_key: vec![0xaa; 256],
        nonce: [7; 12],
        ciphertext: (0..=255).collect(),
    }
}

fn member(name: &str) -> MemberInfo {
    MemberInfo {
        username: user(name),
        public_key: vec![0x30, 0x82, 0x01, 0x22],
        fingerprint: "9e50 3983 8229 37f8".into(),
    }
}

/// A certificate-shaped value: the codec does not care whether the keys and signatures
/// are real (crypto.rs and interop.rs check real ones).
fn certificate(n: u8) -> RotationCertificate {
    RotationCertificate {
        username: user("Alice"),
        old_public_key: vec![0x30; 294],
        new_public_key: vec![0x31; 422],
        issued_at_ms: 1_700_000_000_000 + u64::from(n),
        final_counters: vec![
            CounterMark {
                room: room("General"),
                device: DeviceId([n; 16]),
                last_counter: 70_000,
            },
            CounterMark {
                room: room("random"),
                device: DeviceId([0xff; 16]),
                last_counter: u64::MAX,
            },
        ],
        old_key_signature: vec![0x11; 256],
        new_key_signature: vec![0x22; 384],
    }
}

fn delivered(seq: u64) -> DeliveredMessage {
    DeliveredMessage {
        room: room("General"),
        seq,
        message_id: MessageId([seq as u8; 16]),
        sender: user("Alice"),
        server_time_ms: 1_700_000_000_000_u64.wrapping_add(seq),
        recipients: vec![user("Alice"), user("bob")],
        envelope: envelope("bob"),
    }
}

fn history() -> HistoryPage {
    HistoryPage {
        room: room("General"),
        messages: vec![delivered(1), delivered(300), delivered(u64::MAX)],
        has_more: true,
        next_before_seq: None,
    }
}

fn snapshot() -> RoomSnapshot {
    RoomSnapshot {
        room: room("General"),
        kind: RoomKind::Group,
        owner: user("Alice"),
        admins: vec![user("bob")],
        topic: Some("plans ✓".into()),
        has_password: true,
        hidden: false,
        members: vec![member("Alice"), member("bob")],
        history: history(),
        read_up_to: 41,
        online: vec![user("bob")],
    }
}

/// The variant index of a [`ClientMsg`] as docs/PROTOCOL.md lists it. The match has no
/// wildcard: adding a variant breaks the build until it is tested and documented.
fn client_index(msg: &ClientMsg) -> u8 {
    match msg {
        ClientMsg::Hello(_) => 0,
        ClientMsg::Register(_) => 1,
        ClientMsg::LoginStart(_) => 2,
        ClientMsg::LoginProof(_) => 3,
        ClientMsg::ListRooms(_) => 4,
        ClientMsg::CreateRoom(_) => 5,
        ClientMsg::JoinRoom(_) => 6,
        ClientMsg::LeaveRoom(_) => 7,
        ClientMsg::SendMessage(_) => 8,
        ClientMsg::FetchHistory(_) => 9,
        ClientMsg::GetUserKey(_) => 10,
        ClientMsg::RotateKey(_) => 11,
        ClientMsg::GetKeyHistory(_) => 12,
        // Protocol 4: appended.
        ClientMsg::Moderate(_) => 13,
        ClientMsg::OpenDirect(_) => 14,
        ClientMsg::SetBlocked(_) => 15,
        ClientMsg::SetTyping(_) => 16,
        ClientMsg::MarkRead(_) => 17,
        ClientMsg::DeleteAccount(_) => 18,
        // Protocol 5: appended.
        ClientMsg::WatchLobby(_) => 19,
    }
}

fn all_client_msgs() -> Vec<ClientMsg> {
    vec![
        ClientMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client: "test-client/1.0 ✓".into(),
        }),
        ClientMsg::Register(Register {
            username: user("Alice"),
            public_key: vec![0x30; 294],
        }),
        ClientMsg::LoginStart(LoginStart {
            username: user("alice"),
        }),
        ClientMsg::LoginProof(LoginProof {
            signature: vec![0x5a; 384],
        }),
        ClientMsg::ListRooms(ListRooms {
            after: Some(room("General")),
            filter: Some("gen ✓".into()),
            limit: 100,
        }),
        ClientMsg::CreateRoom(CreateRoom {
            name: room("general.2"),
            password: Some("hunter2".into()),
            hidden: true,
        }),
        ClientMsg::JoinRoom(JoinRoom {
            name: room("general.2"),
            password: None,
            history_limit: u16::MAX,
        }),
        ClientMsg::LeaveRoom(LeaveRoom { room: room("r") }),
        ClientMsg::SendMessage(SendMessage {
            room: room("General"),
            message_id: MessageId([0xee; 16]),
            envelopes: vec![envelope("Alice"), envelope("bob"), envelope("carol")],
        }),
        ClientMsg::FetchHistory(FetchHistory {
            room: room("General"),
            before_seq: Some(u64::MAX),
            limit: 200,
        }),
        ClientMsg::GetUserKey(GetUserKey {
            username: user("carol"),
        }),
        ClientMsg::RotateKey(RotateKey {
            certificate: certificate(1),
        }),
        ClientMsg::GetKeyHistory(GetKeyHistory {
            username: user("carol"),
        }),
        ClientMsg::Moderate(Moderate {
            room: room("General"),
            action: ModerationAction::SetRole {
                user: user("bob"),
                role: Role::Admin,
            },
        }),
        ClientMsg::OpenDirect(OpenDirect {
            with: user("bob"),
            history_limit: 50,
        }),
        ClientMsg::SetBlocked(SetBlocked {
            user: user("mallory"),
            blocked: true,
        }),
        ClientMsg::SetTyping(SetTyping {
            room: room("General"),
            typing: true,
        }),
        ClientMsg::MarkRead(MarkRead {
            room: room("General"),
            seq: 300,
        }),
        ClientMsg::DeleteAccount(DeleteAccount {
            confirm: user("Alice"),
        }),
        ClientMsg::WatchLobby(WatchLobby { watch: true }),
    ]
}

fn reply_index(reply: &Reply) -> u8 {
    match reply {
        Reply::Hello(_) => 0,
        Reply::Registered(_) => 1,
        Reply::Challenge(_) => 2,
        Reply::LoggedIn(_) => 3,
        Reply::Rooms(_) => 4,
        Reply::RoomCreated(_) => 5,
        Reply::Joined(_) => 6,
        Reply::Left(_) => 7,
        Reply::Sent(_) => 8,
        Reply::History(_) => 9,
        Reply::UserKey(_) => 10,
        Reply::KeyRotated(_) => 11,
        Reply::KeyHistory(_) => 12,
        // Protocol 4: appended.
        Reply::Moderated(_) => 13,
        Reply::Done => 14,
        Reply::AccountDeleted => 15,
    }
}

fn all_replies() -> Vec<Reply> {
    vec![
        Reply::Hello(HelloAck {
            protocol_version: PROTOCOL_VERSION,
            server: "e2e-chat-server/0.1".into(),
            server_id: ServerId(std::array::from_fn(|i| 0xf0 + i as u8)),
            max_frame_bytes: MAX_FRAME_BYTES as u32,
            max_message_bytes: 65_536,
        }),
        Reply::Registered(Registered {
            username: user("Alice"),
        }),
        Reply::Challenge(Challenge {
            nonce: std::array::from_fn(|i| i as u8),
            expires_in_secs: 30,
        }),
        Reply::LoggedIn(LoggedIn {
            username: user("Alice"),
            rooms: vec![room("General"), room("2024.plans")],
            blocked: vec![user("mallory")],
        }),
        Reply::Rooms(RoomList {
            rooms: vec![
                RoomSummary {
                    name: room("General"),
                    has_password: false,
                    members: 3,
                    members_online: 1,
                    topic: None,
                },
                RoomSummary {
                    name: room("locked"),
                    has_password: true,
                    members: u32::MAX,
                    members_online: 0,
                    topic: None,
                },
            ],
            users_online: 70_000,
            next_after: Some(room("locked")),
        }),
        Reply::RoomCreated(RoomSnapshot {
            members: vec![member("Alice")],
            history: HistoryPage {
                room: room("General"),
                messages: vec![],
                has_more: false,
                next_before_seq: None,
            },
            ..snapshot()
        }),
        Reply::Joined(snapshot()),
        Reply::Left(Left {
            room: room("General"),
        }),
        Reply::Sent(SendAck {
            room: room("General"),
            message_id: MessageId([3; 16]),
            seq: 251,
            server_time_ms: 1_700_000_000_000,
        }),
        Reply::History(history()),
        Reply::UserKey(member("carol")),
        Reply::KeyRotated(KeyRotated {
            fingerprint: "0000 1111 2222 3333".into(),
        }),
        Reply::KeyHistory(KeyHistory {
            username: user("Alice"),
            certificates: vec![certificate(1), certificate(2)],
        }),
        Reply::Moderated(room_event(RoomChange::Banned { user: user("eve") })),
        Reply::Done,
        Reply::AccountDeleted,
    ]
}

fn room_event(change: RoomChange) -> RoomEvent {
    RoomEvent {
        room: room("General"),
        actor: user("Alice"),
        at_ms: 1_700_000_000_000,
        change,
    }
}

fn push_index(push: &Push) -> u8 {
    match push {
        Push::MemberJoined { .. } => 0,
        Push::MemberLeft { .. } => 1,
        Push::KeyChanged { .. } => 2,
        Push::Message(_) => 3,
        // Protocol 4: appended.
        Push::RoomEvent(_) => 4,
        Push::DirectOpened { .. } => 5,
        Push::Typing { .. } => 6,
        Push::ReadUpTo { .. } => 7,
        // Protocol 5: appended.
        Push::Presence { .. } => 8,
        Push::LobbyChanged => 9,
    }
}

fn all_pushes() -> Vec<Push> {
    vec![
        Push::MemberJoined {
            room: room("General"),
            member: member("dave"),
        },
        Push::MemberLeft {
            room: room("General"),
            username: user("dave"),
        },
        Push::KeyChanged {
            member: member("bob"),
            rooms: vec![room("General"), room("random")],
        },
        Push::Message(delivered(42)),
        Push::RoomEvent(room_event(RoomChange::TopicChanged {
            topic: Some("release ✓".into()),
        })),
        Push::DirectOpened {
            room: direct_room_name(&user("Alice"), &user("bob")),
            peer: member("Alice"),
        },
        Push::Typing {
            room: room("General"),
            username: user("bob"),
            typing: true,
        },
        Push::ReadUpTo {
            room: room("General"),
            seq: 77,
        },
        Push::Presence {
            username: user("bob"),
            online: false,
        },
        Push::LobbyChanged,
    ]
}

/// Every error code with its wire variant index and its stable number.
fn all_error_codes() -> Vec<(ErrorCode, u8, u16)> {
    let codes = [
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::ProtocolVersion,
        ErrorCode::Unauthenticated,
        ErrorCode::InvalidState,
        ErrorCode::InvalidInput,
        ErrorCode::UsernameTaken,
        ErrorCode::UnknownUser,
        ErrorCode::AuthFailed,
        ErrorCode::ChallengeExpired,
        ErrorCode::RoomExists,
        ErrorCode::RoomUnavailable,
        ErrorCode::WrongPassword,
        ErrorCode::NotAMember,
        ErrorCode::RecipientMismatch,
        ErrorCode::DuplicateMessage,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::StorageUnavailable,
        ErrorCode::QuotaExceeded,
        ErrorCode::NotPermitted,
        ErrorCode::Banned,
    ];
    codes
        .into_iter()
        .map(|code| {
            // No wildcard: a new code must be added here (and to docs/PROTOCOL.md).
            let (index, number) = match code {
                ErrorCode::MalformedFrame => (0, 1000),
                ErrorCode::FrameTooLarge => (1, 1001),
                ErrorCode::ProtocolVersion => (2, 1002),
                ErrorCode::Unauthenticated => (3, 1100),
                ErrorCode::InvalidState => (4, 1101),
                ErrorCode::InvalidInput => (5, 1102),
                ErrorCode::UsernameTaken => (6, 1200),
                ErrorCode::UnknownUser => (7, 1201),
                ErrorCode::AuthFailed => (8, 1202),
                ErrorCode::ChallengeExpired => (9, 1203),
                ErrorCode::RoomExists => (10, 1300),
                ErrorCode::RoomUnavailable => (11, 1301),
                ErrorCode::WrongPassword => (12, 1302),
                ErrorCode::NotAMember => (13, 1303),
                ErrorCode::RecipientMismatch => (14, 1400),
                ErrorCode::DuplicateMessage => (15, 1401),
                ErrorCode::RateLimited => (16, 1500),
                ErrorCode::Unavailable => (17, 1501),
                ErrorCode::Internal => (18, 1599),
                // Protocol 3: appended, so the codes before keep their indices.
                ErrorCode::StorageUnavailable => (19, 1502),
                ErrorCode::QuotaExceeded => (20, 1503),
                // Protocol 4.
                ErrorCode::NotPermitted => (21, 1304),
                ErrorCode::Banned => (22, 1305),
            };
            (code, index, number)
        })
        .collect()
}

fn all_server_msgs() -> Vec<ServerMsg> {
    let mut out: Vec<ServerMsg> = all_replies()
        .into_iter()
        .enumerate()
        .map(|(i, reply)| ServerMsg::Reply {
            request_id: RequestId(i as u64),
            reply,
        })
        .collect();
    out.push(ServerMsg::Error {
        request_id: Some(RequestId(9)),
        code: ErrorCode::RecipientMismatch,
        message: "recipients differ from the room's members".into(),
        detail: Some(ErrorDetail::CurrentMembers(vec![
            member("Alice"),
            member("bob"),
        ])),
    });
    out.push(ServerMsg::Error {
        request_id: None,
        code: ErrorCode::MalformedFrame,
        message: String::new(),
        detail: None,
    });
    out.extend(all_pushes().into_iter().map(ServerMsg::Push));
    out
}

fn frame(request_id: u64, msg: ClientMsg) -> ClientFrame {
    ClientFrame {
        request_id: RequestId(request_id),
        msg,
    }
}

fn valid_client_bytes() -> Vec<u8> {
    codec::encode_client(&frame(5, all_client_msgs().swap_remove(8))).expect("encodes")
}

fn valid_server_bytes() -> Vec<u8> {
    codec::encode_server(&ServerMsg::Push(Push::Message(delivered(7)))).expect("encodes")
}

fn assert_malformed<T: std::fmt::Debug>(result: Result<T, CodecError>, what: &str) {
    match result {
        Err(CodecError::Malformed(_)) => {}
        other => panic!("{what}: expected Malformed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

#[test]
fn every_client_msg_round_trips_with_its_documented_index() {
    let msgs = all_client_msgs();
    let mut indices: Vec<u8> = msgs.iter().map(client_index).collect();
    indices.sort_unstable();
    assert_eq!(
        indices,
        (0..20).collect::<Vec<u8>>(),
        "one sample per variant"
    );

    for (i, msg) in msgs.into_iter().enumerate() {
        let original = frame(i as u64 + 100, msg);
        let bytes = codec::encode_client(&original).expect("encodes");
        // request_id < 251 is one varint byte; the variant index follows.
        assert_eq!(bytes[0], i as u8 + 100);
        assert_eq!(bytes[1], client_index(&original.msg), "{original:?}");
        let decoded = codec::decode_client(&bytes).expect("decodes");
        assert_eq!(decoded, original);
    }
}

#[test]
fn the_request_id_is_read_from_the_head_of_any_client_frame() {
    for (i, msg) in all_client_msgs().into_iter().enumerate() {
        // Ids of one, three, five and nine varint bytes.
        let id = [7, 300, 70_000, u64::MAX - 1][i % 4] + i as u64 % 2;
        let bytes = codec::encode_client(&frame(id, msg)).expect("encodes");
        assert_eq!(codec::request_id_of(&bytes), Some(RequestId(id)));
        // Whatever follows the id, even nothing decodable, is not read.
        let mut broken = bytes[..bytes.len().min(9)].to_vec();
        broken.extend_from_slice(&[0xff; 4]);
        assert_eq!(codec::request_id_of(&broken), Some(RequestId(id)));
    }
    assert_eq!(codec::request_id_of(&[]), None);
    // 0xff announces a u128, which no request id is.
    assert_eq!(codec::request_id_of(&[0xff, 0xfe, 0xfd]), None);
}

#[test]
fn every_server_msg_round_trips_with_its_documented_index() {
    let replies = all_replies();
    let mut indices: Vec<u8> = replies.iter().map(reply_index).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..16).collect::<Vec<u8>>());
    let pushes = all_pushes();
    let mut indices: Vec<u8> = pushes.iter().map(push_index).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..10).collect::<Vec<u8>>());

    for msg in all_server_msgs() {
        let bytes = codec::encode_server(&msg).expect("encodes");
        match &msg {
            ServerMsg::Reply { request_id, reply } => {
                assert_eq!(bytes[0], 0);
                assert_eq!(u64::from(bytes[1]), request_id.0);
                assert_eq!(bytes[2], reply_index(reply));
            }
            ServerMsg::Error { .. } => assert_eq!(bytes[0], 1),
            ServerMsg::Push(push) => {
                assert_eq!(bytes[0], 2);
                assert_eq!(bytes[1], push_index(push));
            }
        }
        assert_eq!(codec::decode_server(&bytes).expect("decodes"), msg);
    }
}

#[test]
fn error_codes_have_stable_indices_and_numbers() {
    let codes = all_error_codes();
    let mut numbers: Vec<u16> = codes.iter().map(|c| c.2).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), codes.len(), "numbers are unique");

    for (code, index, number) in codes {
        assert_eq!(code.number(), number, "{code:?}");
        assert_eq!(codec::encode(&code).expect("encodes"), [index], "{code:?}");
        let msg = ServerMsg::Error {
            request_id: Some(RequestId(1)),
            code,
            message: format!("{code:?}"),
            detail: None,
        };
        let bytes = codec::encode_server(&msg).expect("encodes");
        // [Error][Some][request 1][code]
        assert_eq!(&bytes[..4], &[1, 1, 1, index]);
        assert_eq!(codec::decode_server(&bytes).expect("decodes"), msg);
    }
}

#[test]
fn payload_types_round_trip() {
    let body = MessageBody {
        room: room("General"),
        message_id: MessageId([9; 16]),
        sender: user("Alice"),
        device: DeviceId([0xde; 16]),
        counter: 1 << 40,
        sent_at_ms: 1_700_000_000_000,
        recipients: vec![user("Alice"), user("bob")],
        text: "hello, 世界".into(),
    };
    let bytes = codec::encode(&body).expect("encodes");
    assert_eq!(codec::decode::<MessageBody>(&bytes).expect("decodes"), body);
    let signed = SignedMessage::new(&body, vec![1; 256]);
    let bytes = codec::encode(&signed).expect("encodes");
    let decoded = codec::decode::<SignedMessage>(&bytes).expect("decodes");
    assert_eq!(decoded, signed);
    // A copy carries the body without its recipient list; putting the list back restores it.
    assert_eq!(decoded.body(&body.recipients), body);
    assert_eq!(decoded.device, body.device);
    assert_eq!(decoded.counter, body.counter);

    let cert = certificate(7);
    let bytes = codec::encode(&cert).expect("encodes");
    assert_eq!(
        codec::decode::<RotationCertificate>(&bytes).expect("decodes"),
        cert
    );
    let marks = codec::encode(&cert.final_counters).expect("encodes");
    assert_eq!(
        codec::decode::<Vec<CounterMark>>(&marks).expect("decodes"),
        cert.final_counters
    );
}

#[test]
fn documented_hello_frame_bytes() {
    // The worked example in docs/PROTOCOL.md.
    let bytes = codec::encode_client(&frame(
        1,
        ClientMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client: "tui/0.1".into(),
        }),
    ))
    .expect("encodes");
    assert_eq!(hex::encode(&bytes), "010005077475692f302e31");
}

#[test]
fn documented_example_bytes() {
    // The other worked examples in docs/PROTOCOL.md.
    let login_start = frame(
        2,
        ClientMsg::LoginStart(LoginStart {
            username: user("Alice"),
        }),
    );
    assert_eq!(
        hex::encode(codec::encode_client(&login_start).expect("encodes")),
        "020205416c696365"
    );
    let proof = frame(
        3,
        ClientMsg::LoginProof(LoginProof {
            signature: vec![0xaa; 256],
        }),
    );
    let bytes = codec::encode_client(&proof).expect("encodes");
    assert_eq!(hex::encode(&bytes[..8]), "0303fb0001aaaaaa");
    assert_eq!(bytes.len(), 5 + 256);

    let hello_ack = ServerMsg::Reply {
        request_id: RequestId(1),
        reply: Reply::Hello(HelloAck {
            protocol_version: PROTOCOL_VERSION,
            server: "e2e-chat/0.1".into(),
            server_id: ServerId(std::array::from_fn(|i| i as u8)),
            max_frame_bytes: 4_194_304,
            max_message_bytes: 65_536,
        }),
    };
    assert_eq!(
        hex::encode(codec::encode_server(&hello_ack).expect("encodes")),
        "00010005\
         0c6532652d636861742f302e31\
         000102030405060708090a0b0c0d0e0f\
         fc00004000\
         fc00000100"
    );
    let error = ServerMsg::Error {
        request_id: Some(RequestId(2)),
        code: ErrorCode::UnknownUser,
        message: "no such user".into(),
        detail: None,
    };
    assert_eq!(
        hex::encode(codec::encode_server(&error).expect("encodes")),
        "010102070c6e6f2073756368207573657200"
    );

    let body = MessageBody {
        room: room("General"),
        message_id: MessageId(std::array::from_fn(|i| i as u8)),
        sender: user("Alice"),
        device: DeviceId(std::array::from_fn(|i| 0xd0 + i as u8)),
        counter: 300,
        sent_at_ms: 1_700_000_000_000,
        recipients: vec![user("Alice"), user("bob")],
        text: "hi".into(),
    };
    assert_eq!(
        hex::encode(codec::encode(&body).expect("encodes")),
        "0747656e6572616c\
         000102030405060708090a0b0c0d0e0f\
         05416c696365\
         d0d1d2d3d4d5d6d7d8d9dadbdcdddedf\
         fb2c01\
         fd0068e5cf8b010000\
         0205416c69636503626f62\
         026869"
    );
}

#[test]
fn protocol_3_values_have_the_documented_layout() {
    // Fields in declaration order, as everywhere else; the bytes written out by hand.
    let first_page = frame(4, ClientMsg::ListRooms(ListRooms::default()));
    assert_eq!(
        hex::encode(codec::encode_client(&first_page).expect("encodes")),
        "0404\
         00\
         00\
         00",
        "ListRooms {{ after: None, filter: None, limit: 0 }}"
    );
    let next_page = frame(
        4,
        ClientMsg::ListRooms(ListRooms {
            after: Some(room("Gen")),
            filter: Some("e".into()),
            limit: 300,
        }),
    );
    assert_eq!(
        hex::encode(codec::encode_client(&next_page).expect("encodes")),
        "0404\
         010347656e\
         010165\
         fb2c01"
    );
    let history = frame(
        5,
        ClientMsg::GetKeyHistory(GetKeyHistory {
            username: user("bob"),
        }),
    );
    assert_eq!(
        hex::encode(codec::encode_client(&history).expect("encodes")),
        "050c03626f62",
        "ClientMsg variant 12"
    );

    let rooms = ServerMsg::Reply {
        request_id: RequestId(4),
        reply: Reply::Rooms(RoomList {
            rooms: vec![],
            users_online: 2,
            next_after: Some(room("m")),
        }),
    };
    assert_eq!(
        hex::encode(codec::encode_server(&rooms).expect("encodes")),
        "000404\
         00\
         02\
         01016d",
        "next_after comes last"
    );

    let mark = CounterMark {
        room: room("r"),
        device: DeviceId([0xdd; 16]),
        last_counter: 251,
    };
    assert_eq!(
        hex::encode(codec::encode(&mark).expect("encodes")),
        "0172\
         dddddddddddddddddddddddddddddddd\
         fbfb00"
    );
    let cert = RotationCertificate {
        username: user("Bob"),
        old_public_key: vec![1, 2],
        new_public_key: vec![3],
        issued_at_ms: 1_700_000_000_000,
        final_counters: vec![mark],
        old_key_signature: vec![4],
        new_key_signature: vec![5, 6],
    };
    assert_eq!(
        hex::encode(codec::encode(&cert).expect("encodes")),
        "03426f62\
         020102\
         0103\
         fd0068e5cf8b010000\
         01\
         0172\
         dddddddddddddddddddddddddddddddd\
         fbfb00\
         0104\
         020506"
    );
    // RotateKey is the certificate alone; KeyHistory the username, then the certificates.
    let rotate = frame(
        6,
        ClientMsg::RotateKey(RotateKey {
            certificate: cert.clone(),
        }),
    );
    assert_eq!(
        codec::encode_client(&rotate).expect("encodes"),
        [&[6, 11][..], &codec::encode(&cert).expect("encodes")].concat()
    );
    let key_history = ServerMsg::Reply {
        request_id: RequestId(7),
        reply: Reply::KeyHistory(KeyHistory {
            username: user("Bob"),
            certificates: vec![cert.clone()],
        }),
    };
    assert_eq!(
        codec::encode_server(&key_history).expect("encodes"),
        [
            &[0, 7, 12, 3, b'B', b'o', b'b', 1][..],
            &codec::encode(&cert).expect("encodes")
        ]
        .concat()
    );
}

#[test]
fn integers_use_the_documented_varint_scheme() {
    let cases: [(u64, &str); 9] = [
        (0, "00"),
        (250, "fa"),
        (251, "fbfb00"),
        (0xffff, "fbffff"),
        (0x1_0000, "fc00000100"),
        (0xffff_ffff, "fcffffffff"),
        (0x1_0000_0000, "fd0000000001000000"),
        (u64::MAX, "fdffffffffffffffff"),
        (1_700_000_000_000, "fd0068e5cf8b010000"),
    ];
    for (value, expected) in cases {
        let bytes = codec::encode(&RequestId(value)).expect("encodes");
        assert_eq!(hex::encode(&bytes), expected, "{value}");
        assert_eq!(
            codec::decode::<RequestId>(&bytes).expect("decodes"),
            RequestId(value)
        );
    }
    // u16 and u32 fields use the same scheme.
    assert_eq!(codec::encode(&300u16).expect("encodes"), [0xfb, 0x2c, 0x01]);
    assert_eq!(
        codec::encode(&(MAX_FRAME_BYTES as u32)).expect("encodes"),
        [0xfc, 0, 0, 0x40, 0]
    );
}

// ---------------------------------------------------------------------------------------
// Rejections
// ---------------------------------------------------------------------------------------

#[test]
fn garbage_is_malformed() {
    let inputs: [&[u8]; 6] = [
        b"",
        &[0xff],
        &[0xff; 64],
        b"hello, this is not a frame",
        &[0x01, 13],   // request 1, ClientMsg variant 13 does not exist
        &[0x01, 0xfe], // variant index with the u128 marker
    ];
    for input in inputs {
        assert_malformed(codec::decode_client(input), &format!("client {input:?}"));
    }
    // ServerMsg variant 3, Push variant 4, Reply variant 13 do not exist.
    let inputs: [&[u8]; 4] = [b"", &[3], &[2, 4], &[0, 1, 13]];
    for input in inputs {
        assert_malformed(codec::decode_server(input), &format!("server {input:?}"));
    }
}

#[test]
fn a_trailing_byte_is_rejected() {
    let mut bytes = valid_client_bytes();
    assert!(codec::decode_client(&bytes).is_ok(), "control");
    bytes.push(0);
    assert_malformed(codec::decode_client(&bytes), "client + 1 byte");

    let mut bytes = valid_server_bytes();
    assert!(codec::decode_server(&bytes).is_ok(), "control");
    bytes.push(0);
    assert_malformed(codec::decode_server(&bytes), "server + 1 byte");
}

#[test]
fn every_truncation_is_malformed() {
    let client = valid_client_bytes();
    for len in 0..client.len() {
        assert_malformed(
            codec::decode_client(&client[..len]),
            &format!("client prefix {len}"),
        );
    }
    let server = valid_server_bytes();
    for len in 0..server.len() {
        assert_malformed(
            codec::decode_server(&server[..len]),
            &format!("server prefix {len}"),
        );
    }
}

#[test]
fn a_length_larger_than_the_frame_is_malformed() {
    // Hello whose client string claims 16 MiB but the frame ends: the frame is small and
    // broken, not too large.
    let bytes = [0x01, 0x00, 0x01, 0xfc, 0x00, 0x00, 0x00, 0x01];
    assert_malformed(codec::decode_client(&bytes), "huge string length");
    // Register whose key claims u64::MAX bytes.
    let bytes = [
        0x01, 0x01, 0x03, b'b', b'o', b'b', 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    assert_malformed(codec::decode_client(&bytes), "huge byte-buffer length");
}

#[test]
fn input_above_the_limit_is_too_large() {
    let bytes = vec![0u8; MAX_FRAME_BYTES + 1];
    match codec::decode_client(&bytes) {
        Err(CodecError::TooLarge { size, limit }) => {
            assert_eq!(size, MAX_FRAME_BYTES + 1);
            assert_eq!(limit, MAX_FRAME_BYTES);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(
        codec::decode_server(&bytes),
        Err(CodecError::TooLarge { .. })
    ));
}

fn big_send(ciphertext_len: usize) -> ClientFrame {
    frame(
        1,
        ClientMsg::SendMessage(SendMessage {
            room: room("r"),
            message_id: MessageId([0; 16]),
            envelopes: vec![Envelope {
                recipient: user("bob"),
                wrapped_key: vec![],
                nonce: [0; 12],
                ciphertext: vec![0x42; ciphertext_len],
            }],
        }),
    )
}

#[test]
fn encoding_above_the_limit_is_too_large() {
    match codec::encode_client(&big_send(MAX_FRAME_BYTES)) {
        Err(CodecError::TooLarge { limit, .. }) => assert_eq!(limit, MAX_FRAME_BYTES),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let history = ServerMsg::Reply {
        request_id: RequestId(1),
        reply: Reply::UserKey(MemberInfo {
            username: user("bob"),
            public_key: vec![0; MAX_FRAME_BYTES],
            fingerprint: String::new(),
        }),
    };
    assert!(matches!(
        codec::encode_server(&history),
        Err(CodecError::TooLarge { .. })
    ));
}

#[test]
fn a_frame_of_exactly_the_limit_is_accepted() {
    // Everything but the ciphertext: the frame with an empty one, plus the 5-byte varint
    // (0xfc + u32) that a ciphertext length above 65535 needs instead of the 1-byte 0.
    let overhead = codec::encode_client(&big_send(0)).expect("encodes").len() - 1 + 5;
    let fits = big_send(MAX_FRAME_BYTES - overhead);
    let bytes = codec::encode_client(&fits).expect("a frame of exactly the limit encodes");
    assert_eq!(bytes.len(), MAX_FRAME_BYTES);
    assert_eq!(codec::decode_client(&bytes).expect("decodes"), fits);

    let one_more = big_send(MAX_FRAME_BYTES - overhead + 1);
    assert!(matches!(
        codec::encode_client(&one_more),
        Err(CodecError::TooLarge { .. })
    ));
}

/// Mirrors the first variants of [`ClientMsg`] with a plain `String` where a
/// [`shared::Username`] belongs, to put names on the wire that the real types refuse.
#[derive(Serialize)]
enum LooseClientMsg {
    #[allow(dead_code)]
    Hello(Hello),
    #[allow(dead_code)]
    Register(Register),
    LoginStart {
        username: String,
    },
}

#[derive(Serialize)]
struct LooseFrame {
    request_id: u64,
    msg: LooseClientMsg,
}

fn login_start_bytes(username: &str) -> Vec<u8> {
    codec::encode(&LooseFrame {
        request_id: 4,
        msg: LooseClientMsg::LoginStart {
            username: username.into(),
        },
    })
    .expect("encodes")
}

#[test]
fn invalid_names_are_rejected_at_decode() {
    // Control: the mirror produces what the real type decodes.
    let decoded = codec::decode_client(&login_start_bytes("Alice")).expect("valid name");
    assert_eq!(
        decoded,
        frame(
            4,
            ClientMsg::LoginStart(LoginStart {
                username: user("Alice")
            })
        )
    );
    let long = "a".repeat(33);
    for bad in ["x y", "al", "9lives", "alicé", "", long.as_str(), "a\u{0}b"] {
        assert_malformed(
            codec::decode_client(&login_start_bytes(bad)),
            &format!("username {bad:?}"),
        );
    }

    // A room name inside a server push: MemberLeft { room, username }.
    let good = [2, 1, 1, b'r', 3, b'b', b'o', b'b'];
    assert!(codec::decode_server(&good).is_ok(), "control");
    let empty_room = [2, 1, 0, 3, b'b', b'o', b'b'];
    assert_malformed(codec::decode_server(&empty_room), "empty room name");
    let dot_room = [2, 1, 2, b'.', b'r', 3, b'b', b'o', b'b'];
    assert_malformed(
        codec::decode_server(&dot_room),
        "room name starting with '.'",
    );
}

#[test]
fn invalid_scalars_are_malformed() {
    // CreateRoom { name: "r", password: None, hidden: <b> }
    let create = |hidden: u8| [1, 5, 1, b'r', 0, hidden];
    assert!(codec::decode_client(&create(1)).is_ok(), "control");
    assert_malformed(codec::decode_client(&create(2)), "bool 2");
    // Option tag 2.
    assert_malformed(codec::decode_client(&[1, 5, 1, b'r', 2, 0]), "option tag 2");
    // Invalid UTF-8 in Hello.client.
    assert_malformed(
        codec::decode_client(&[1, 0, 1, 2, 0xc3, 0x28]),
        "invalid UTF-8",
    );
    // JoinRoom.history_limit (u16) given as a u32 varint above u16::MAX.
    let join = [1, 6, 1, b'r', 0, 0xfc, 0x70, 0x11, 0x01, 0x00];
    assert_malformed(codec::decode_client(&join), "u16 overflow");
}

#[test]
fn deliveries_are_the_frames_of_each_copy() {
    let head = DeliveryHead {
        room: room("General"),
        seq: 70_000,
        message_id: MessageId([3; 16]),
        sender: user("Alice"),
        server_time_ms: 1_700_000_000_321,
    };
    // Copies of different sizes, in an order that is not sorted.
    let mut copies = vec![envelope("carol"), envelope("Alice"), envelope("bob")];
    copies[0].ciphertext = vec![1; 70_000];
    copies[2].wrapped_key = vec![2; 3];
    let deliveries = codec::Deliveries::new(head.clone(), &copies).expect("encodes");
    for copy in &copies {
        let frame = deliveries.whole(copy).expect("encodes");
        // The part a copy does not share with the others is its envelope alone.
        let own = deliveries.own(copy).expect("encodes");
        assert_eq!(own, codec::encode(copy).expect("encodes"));
        assert_eq!([deliveries.shared(), &own].concat(), frame);
        let expected = ServerMsg::Push(Push::Message(DeliveredMessage {
            room: head.room.clone(),
            seq: head.seq,
            message_id: head.message_id,
            sender: head.sender.clone(),
            server_time_ms: head.server_time_ms,
            recipients: vec![user("carol"), user("Alice"), user("bob")],
            envelope: copy.clone(),
        }));
        assert_eq!(
            frame,
            codec::encode_server(&expected).expect("encodes"),
            "{}'s frame",
            copy.recipient
        );
    }
    assert!(matches!(
        codec::Deliveries::new(head.clone(), &[]),
        Err(CodecError::Malformed(_))
    ));

    // A copy that would make its frame too large is refused, not truncated.
    copies[1].ciphertext = vec![0; MAX_FRAME_BYTES];
    let deliveries = codec::Deliveries::new(head, &copies).expect("the shared part fits");
    assert!(matches!(
        deliveries.whole(&copies[1]),
        Err(CodecError::TooLarge { .. })
    ));
    assert!(matches!(
        deliveries.own(&copies[1]),
        Err(CodecError::TooLarge { .. })
    ));
}
