//! Keys, signatures, envelopes and whole messages, with the pre-generated fixture keys.
//!
//! Cast: alice = `rsa2048-00`, bob = `rsa2048-01`, carol = `rsa3072-0` (a 3072-bit key, so
//! both sizes are exercised), mallory = `rsa2048-02`.

mod common;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use common::{key_pem, public, room, rsa2048, rsa3072, user};
use rsa::traits::PublicKeyParts;
use shared::crypto::envelope::{self, EnvelopeContext};
use shared::crypto::keys::{self, Fingerprint};
use shared::crypto::message::{
    open_message, seal_message, MessageBody, Received, Recipient, SignedMessage,
};
use shared::crypto::signing::{self, Purpose};
use shared::crypto::{CryptoError, RsaPrivateKey};
use shared::protocol::{codec, Envelope};
use shared::{MessageId, RoomName, Username};

fn alice() -> &'static RsaPrivateKey {
    rsa2048(0)
}
fn bob() -> &'static RsaPrivateKey {
    rsa2048(1)
}
fn carol() -> &'static RsaPrivateKey {
    rsa3072(0)
}
fn mallory() -> &'static RsaPrivateKey {
    rsa2048(2)
}

/// What `openssl pkey -in rsa2048-00.pem -pubout -outform DER | sha256sum` prints.
const ALICE_FINGERPRINT_HEX: &str =
    "9e503983822937f896363fd66efb650e03d40f1cd4b830bd46a93fd96c2c1ad7";
/// The same for `rsa3072-0.pem`.
const CAROL_FINGERPRINT_HEX: &str =
    "e48d3bb6de14f81aed371abfbf6798506e32bba3879092701f3daef7cf99be83";
/// The passphrase of `rsa2048-01.enc.pem`, made with
/// `openssl pkcs8 -topk8 -v2 aes-256-cbc -in rsa2048-01.pem -passout pass:correct-horse-battery`
/// (PBES2: PBKDF2-HMAC-SHA256, 2048 iterations, AES-256-CBC).
const ENC_FIXTURE_PASSPHRASE: &str = "correct-horse-battery";

fn assert_err<T>(result: Result<T, CryptoError>, expected: &CryptoError, what: &str) {
    match result {
        Err(e) if std::mem::discriminant(&e) == std::mem::discriminant(expected) => {}
        Err(e) => panic!("{what}: expected {expected:?}, got {e:?}"),
        Ok(_) => panic!("{what}: expected {expected:?}, got Ok"),
    }
}

const INVALID_KEY: CryptoError = CryptoError::InvalidKey(String::new());
const WEAK_KEY: CryptoError = CryptoError::WeakKey(String::new());
const PAYLOAD: CryptoError = CryptoError::Payload(String::new());

// =======================================================================================
// Keys
// =======================================================================================

#[test]
fn public_keys_round_trip_through_pem_and_der() {
    let pk = public(alice());
    let pem = keys::public_to_pem(&pk).expect("encodes");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert_eq!(keys::public_from_pem(&pem).expect("parses"), pk);

    let der = keys::public_to_der(&pk).expect("encodes");
    assert_eq!(der[0], 0x30, "a DER SEQUENCE");
    assert_eq!(keys::public_from_der(&der).expect("parses"), pk);
    assert_ne!(
        keys::public_to_der(&public(bob())).expect("encodes"),
        der,
        "different keys encode differently"
    );
}

#[test]
fn private_keys_round_trip_through_plain_pkcs8() {
    let pem = keys::private_to_pem(alice(), None).expect("encodes");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let back = keys::private_from_pem(&pem, None).expect("parses");
    assert!(back == *alice());
    // A passphrase given for an unencrypted key is ignored.
    let back = keys::private_from_pem(&pem, Some("unused")).expect("parses");
    assert!(back == *alice());
}

#[test]
fn private_keys_round_trip_through_encrypted_pkcs8() {
    let pem = keys::private_to_pem(bob(), Some("s3cret passphrase")).expect("encrypts");
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
    assert!(!pem.contains("BEGIN PRIVATE KEY"));
    let back = keys::private_from_pem(&pem, Some("s3cret passphrase")).expect("decrypts");
    assert!(back == *bob());
    assert_err(
        keys::private_from_pem(&pem, Some("s3cret passphrasf")),
        &INVALID_KEY,
        "wrong passphrase",
    );
    assert_err(
        keys::private_from_pem(&pem, None),
        &INVALID_KEY,
        "no passphrase",
    );
}

#[test]
fn openssl_pkcs1_key_imports() {
    // `openssl rsa -in rsa2048-00.pem -traditional -out rsa2048-00.pkcs1.pem`
    let pem = key_pem("rsa2048-00.pkcs1.pem");
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let key = keys::private_from_pem(&pem, None).expect("PKCS#1 imports");
    assert!(key == *alice(), "same key as the PKCS#8 original");
}

#[test]
fn openssl_encrypted_pkcs8_imports_with_its_passphrase() {
    let pem = key_pem("rsa2048-01.enc.pem");
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let key = keys::private_from_pem(&pem, Some(ENC_FIXTURE_PASSPHRASE)).expect("decrypts");
    assert!(key == *bob(), "same key as the unencrypted original");

    for wrong in ["correct-horse-batterx", "", "CORRECT-HORSE-BATTERY"] {
        assert_err(
            keys::private_from_pem(&pem, Some(wrong)),
            &INVALID_KEY,
            &format!("passphrase {wrong:?}"),
        );
    }
    assert_err(
        keys::private_from_pem(&pem, None),
        &INVALID_KEY,
        "missing passphrase",
    );
}

/// The public half of a key that `keys` refuses to import, via the `rsa` crate directly.
fn weak_public_der(name: &str) -> Vec<u8> {
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let key = RsaPrivateKey::from_pkcs8_pem(&key_pem(name)).expect("parses without checks");
    key.to_public_key()
        .to_public_key_der()
        .expect("encodes")
        .as_bytes()
        .to_vec()
}

#[test]
fn weak_keys_are_rejected() {
    use rsa::pkcs8::DecodePublicKey;
    // `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024` and
    // `... rsa_keygen_bits:2048 -pkeyopt rsa_keygen_pubexp:3`.
    for name in ["weak-1024.pem", "weak-e3.pem"] {
        assert_err(
            keys::private_from_pem(&key_pem(name), None),
            &WEAK_KEY,
            name,
        );
        let der = weak_public_der(name);
        assert_err(keys::public_from_der(&der), &WEAK_KEY, name);
        let pk = rsa::RsaPublicKey::from_public_key_der(&der).expect("parses without checks");
        assert_err(keys::validate_public(&pk), &WEAK_KEY, name);
    }
    // Control: the accepted sizes pass.
    keys::validate_public(&public(alice())).expect("2048 bits, e = 65537");
    keys::validate_public(&public(carol())).expect("3072 bits, e = 65537");
}

#[test]
fn unparsable_keys_are_invalid() {
    assert_err(keys::public_from_der(b"not DER"), &INVALID_KEY, "der");
    assert_err(keys::public_from_der(&[]), &INVALID_KEY, "empty der");
    let bad_pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    assert_err(keys::public_from_pem(bad_pem), &INVALID_KEY, "pem");
    assert_err(
        keys::private_from_pem("garbage", None),
        &INVALID_KEY,
        "garbage private",
    );
    let public_pem = keys::public_to_pem(&public(alice())).expect("encodes");
    assert_err(
        keys::private_from_pem(&public_pem, None),
        &INVALID_KEY,
        "a public key is not a private key",
    );
    // A private key is not a public key either.
    let private_pem = key_pem("rsa2048-00.pem");
    assert_err(
        keys::public_from_pem(&private_pem),
        &INVALID_KEY,
        "private as public",
    );
}

#[test]
fn generation_respects_the_size_bounds() {
    assert_err(keys::generate(1024), &WEAK_KEY, "1024");
    assert_err(keys::generate(2047), &WEAK_KEY, "2047");
    assert_err(keys::generate(8192), &WEAK_KEY, "8192");
    // The one key this suite generates.
    let key = keys::generate(2048).expect("generates");
    assert_eq!(key.n().bits(), 2048);
    assert_eq!(*key.e(), rsa::BigUint::from(keys::PUBLIC_EXPONENT));
    keys::validate_public(&key.to_public_key()).expect("acceptable");
    let sig = signing::sign(&key, Purpose::Login, &[b"x"]);
    signing::verify(&key.to_public_key(), Purpose::Login, &[b"x"], &sig).expect("usable");
}

#[test]
fn fingerprints_match_openssl() {
    let fp = Fingerprint::of_key(&public(alice())).expect("encodes");
    assert_eq!(hex::encode(fp.0), ALICE_FINGERPRINT_HEX);
    let der = keys::public_to_der(&public(alice())).expect("encodes");
    assert_eq!(Fingerprint::of_der(&der), fp);

    let fp3072 = Fingerprint::of_key(&public(carol())).expect("encodes");
    assert_eq!(hex::encode(fp3072.0), CAROL_FINGERPRINT_HEX);

    // The PKCS#1 import is the same key, so the same fingerprint.
    let pkcs1 = keys::private_from_pem(&key_pem("rsa2048-00.pkcs1.pem"), None).expect("imports");
    assert_eq!(
        Fingerprint::of_key(&pkcs1.to_public_key()).expect("encodes"),
        fp
    );
}

#[test]
fn fingerprints_display_as_sixteen_groups_of_four() {
    let shown = Fingerprint::of_key(&public(alice()))
        .expect("encodes")
        .to_string();
    assert_eq!(
        shown,
        "9e50 3983 8229 37f8 9636 3fd6 6efb 650e 03d4 0f1c d4b8 30bd 46a9 3fd9 6c2c 1ad7"
    );
    let groups: Vec<&str> = shown.split(' ').collect();
    assert_eq!(groups.len(), 16);
    assert!(groups
        .iter()
        .all(|g| g.len() == 4 && g.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))));
    assert_eq!(groups.concat(), ALICE_FINGERPRINT_HEX);
}

// =======================================================================================
// Signing
// =======================================================================================

const NONCE: [u8; 32] = [0x5c; 32];

#[test]
fn signing_input_is_length_prefixed_and_tagged() {
    let input = signing::signing_input(Purpose::Login, &[b"alice", &[1, 2]]);
    let mut expected = Vec::new();
    expected.extend_from_slice(&17u32.to_be_bytes());
    expected.extend_from_slice(b"e2e-chat/v1/login");
    expected.extend_from_slice(&5u32.to_be_bytes());
    expected.extend_from_slice(b"alice");
    expected.extend_from_slice(&2u32.to_be_bytes());
    expected.extend_from_slice(&[1, 2]);
    assert_eq!(input, expected);

    // Moving a byte across a field boundary changes the input.
    assert_ne!(
        signing::signing_input(Purpose::Message, &[b"ab", b"c"]),
        signing::signing_input(Purpose::Message, &[b"a", b"bc"])
    );
    assert_ne!(
        signing::signing_input(Purpose::Message, &[b"ab"]),
        signing::signing_input(Purpose::Message, &[b"ab", b""])
    );
    let tags = [Purpose::Login, Purpose::Message, Purpose::KeyRotation].map(Purpose::tag);
    assert_eq!(tags[0], b"e2e-chat/v1/login");
    assert_eq!(tags[1], b"e2e-chat/v1/message");
    assert_eq!(tags[2], b"e2e-chat/v1/key-rotation");
}

#[test]
fn login_proof_verifies() {
    let alice_name = user("Alice");
    let proof = signing::sign_login(alice(), &alice_name, &NONCE);
    assert_eq!(proof.len(), 256, "a 2048-bit signature");
    signing::verify_login(&public(alice()), &alice_name, &NONCE, &proof).expect("verifies");
    // The canonical (lowercase) name is signed, so case does not matter.
    signing::verify_login(&public(alice()), &user("aLiCe"), &NONCE, &proof)
        .expect("verifies case-insensitively");
    // It is exactly a Login signature over [canonical name, nonce].
    signing::verify(
        &public(alice()),
        Purpose::Login,
        &[b"alice", &NONCE],
        &proof,
    )
    .expect("generic verify");

    // PSS is randomised: a second proof differs and also verifies.
    let again = signing::sign_login(alice(), &alice_name, &NONCE);
    assert_ne!(again, proof);
    signing::verify_login(&public(alice()), &alice_name, &NONCE, &again).expect("verifies");

    // 3072-bit keys work the same way.
    let carol_proof = signing::sign_login(carol(), &user("carol"), &NONCE);
    assert_eq!(carol_proof.len(), 384);
    signing::verify_login(&public(carol()), &user("carol"), &NONCE, &carol_proof)
        .expect("verifies");
}

#[test]
fn login_proof_is_bound_to_key_user_nonce_and_purpose() {
    let name = user("alice");
    let proof = signing::sign_login(alice(), &name, &NONCE);
    let pk = public(alice());
    let bad = CryptoError::BadSignature;

    assert_err(
        signing::verify_login(&public(mallory()), &name, &NONCE, &proof),
        &bad,
        "wrong key",
    );
    assert_err(
        signing::verify_login(&pk, &user("alicf"), &NONCE, &proof),
        &bad,
        "wrong username",
    );
    let mut new_nonce = NONCE;
    new_nonce[31] ^= 1;
    assert_err(
        signing::verify_login(&pk, &name, &new_nonce, &proof),
        &bad,
        "replayed for a new nonce",
    );

    // The same fields signed for another purpose are no login proof, and vice versa.
    let other = signing::sign(alice(), Purpose::KeyRotation, &[b"alice", &NONCE]);
    assert_err(
        signing::verify_login(&pk, &name, &NONCE, &other),
        &bad,
        "key-rotation signature as login proof",
    );
    let other = signing::sign(alice(), Purpose::Message, &[b"alice", &NONCE]);
    assert_err(
        signing::verify_login(&pk, &name, &NONCE, &other),
        &bad,
        "message signature as login proof",
    );
    assert_err(
        signing::verify(&pk, Purpose::Message, &[b"alice", &NONCE], &proof),
        &bad,
        "login proof as message signature",
    );
}

#[test]
fn malformed_signatures_are_bad_not_panics() {
    let name = user("alice");
    let pk = public(alice());
    let proof = signing::sign_login(alice(), &name, &NONCE);
    let bad = CryptoError::BadSignature;

    let mut flipped = proof.clone();
    flipped[100] ^= 0x01;
    let mut longer = proof.clone();
    longer.push(0);
    let candidates: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one byte", vec![1]),
        ("truncated", proof[..255].to_vec()),
        ("half", proof[..128].to_vec()),
        ("one byte longer", longer),
        ("flipped bit", flipped),
        ("zeros", vec![0; 256]),
        ("above the modulus", vec![0xff; 256]),
        ("3072-bit size", vec![0x42; 384]),
        ("huge", vec![0x42; 10_000]),
    ];
    for (what, sig) in candidates {
        assert_err(signing::verify_login(&pk, &name, &NONCE, &sig), &bad, what);
    }
}

#[test]
fn key_rotation_proof_is_made_with_the_new_key() {
    let name = user("Alice");
    let new_key = mallory();
    let new_der = keys::public_to_der(&public(new_key)).expect("encodes");
    let proof = signing::sign_key_rotation(new_key, &name, &new_der);
    signing::verify_key_rotation(&public(new_key), &name, &new_der, &proof).expect("verifies");
    signing::verify(
        &public(new_key),
        Purpose::KeyRotation,
        &[b"alice", &new_der],
        &proof,
    )
    .expect("over [canonical name, new DER]");

    let bad = CryptoError::BadSignature;
    assert_err(
        signing::verify_key_rotation(&public(alice()), &name, &new_der, &proof),
        &bad,
        "checked against the old key",
    );
    let other_der = keys::public_to_der(&public(bob())).expect("encodes");
    assert_err(
        signing::verify_key_rotation(&public(new_key), &name, &other_der, &proof),
        &bad,
        "for another key",
    );
    assert_err(
        signing::verify_key_rotation(&public(new_key), &user("bob"), &new_der, &proof),
        &bad,
        "for another user",
    );
    let login = signing::sign(new_key, Purpose::Login, &[b"alice", &new_der]);
    assert_err(
        signing::verify_key_rotation(&public(new_key), &name, &new_der, &login),
        &bad,
        "login-purpose signature",
    );
}

// =======================================================================================
// Envelopes and messages
// =======================================================================================

struct Scene {
    room: RoomName,
    id: MessageId,
    sender: Username,
    names: Vec<Username>,
    keys: Vec<&'static RsaPrivateKey>,
    body: MessageBody,
    envelopes: Vec<Envelope>,
}

impl Scene {
    fn received(&self) -> Received<'_> {
        Received {
            room: &self.room,
            message_id: &self.id,
            sender: &self.sender,
            recipients: &self.names,
        }
    }
}

fn recipients(names: &[Username], keys: &[&RsaPrivateKey]) -> Vec<Recipient> {
    names
        .iter()
        .zip(keys)
        .map(|(username, key)| Recipient {
            username: username.clone(),
            key: key.to_public_key(),
        })
        .collect()
}

/// Alice sends "hello" to alice, bob and carol in room "General".
fn three_way() -> Scene {
    let names = vec![user("Alice"), user("bob"), user("carol")];
    let keys = vec![alice(), bob(), carol()];
    let body = MessageBody {
        room: room("General"),
        message_id: MessageId([0xab; 16]),
        sender: user("Alice"),
        sent_at_ms: 1_700_000_000_000,
        recipients: names.clone(),
        text: "hello, Bob & Carol ✓".into(),
    };
    let envelopes = seal_message(alice(), body.clone(), &recipients(&names, &keys)).expect("seals");
    Scene {
        room: body.room.clone(),
        id: body.message_id,
        sender: body.sender.clone(),
        names,
        keys,
        body,
        envelopes,
    }
}

#[test]
fn each_recipient_opens_only_its_own_copy() {
    let s = three_way();
    assert_eq!(s.envelopes.len(), 3);
    for (i, env) in s.envelopes.iter().enumerate() {
        assert_eq!(
            env.recipient, s.names[i],
            "one copy per recipient, in order"
        );
        let body = open_message(s.received(), &s.names[i], s.keys[i], env, &public(alice()))
            .expect("the recipient opens its copy");
        assert_eq!(body, s.body);
    }
    // Copies are independent: fresh key and nonce each.
    assert_ne!(s.envelopes[0].nonce, s.envelopes[1].nonce);
    assert_ne!(s.envelopes[1].ciphertext, s.envelopes[2].ciphertext);
    assert_eq!(s.envelopes[1].wrapped_key.len(), 256);
    assert_eq!(
        s.envelopes[2].wrapped_key.len(),
        384,
        "carol's 3072-bit key"
    );

    // Bob cannot open Alice's or Carol's copy, as labelled or relabelled to him.
    for other in [0, 2] {
        let env = &s.envelopes[other];
        assert_eq!(
            open_message(s.received(), &s.names[1], bob(), env, &public(alice())),
            Err(CryptoError::Decrypt),
            "copy {other} as labelled"
        );
        let mut relabelled = env.clone();
        relabelled.recipient = s.names[1].clone();
        assert_eq!(
            open_message(
                s.received(),
                &s.names[1],
                bob(),
                &relabelled,
                &public(alice())
            ),
            Err(CryptoError::Decrypt),
            "copy {other} relabelled to bob"
        );
    }
}

#[test]
fn tampering_with_a_copy_fails_to_decrypt() {
    let s = three_way();
    let bob_copy = &s.envelopes[1];
    let open =
        |env: &Envelope| open_message(s.received(), &s.names[1], bob(), env, &public(alice()));
    open(bob_copy).expect("control");

    let mut tampered: Vec<(&str, Envelope)> = Vec::new();
    for pos in [
        0,
        bob_copy.ciphertext.len() / 2,
        bob_copy.ciphertext.len() - 1,
    ] {
        let mut env = bob_copy.clone();
        env.ciphertext[pos] ^= 0x80;
        tampered.push(("ciphertext byte", env));
    }
    let mut env = bob_copy.clone();
    env.ciphertext.truncate(env.ciphertext.len() - 1);
    tampered.push(("ciphertext truncated", env));
    let mut env = bob_copy.clone();
    env.ciphertext.clear();
    tampered.push(("ciphertext empty", env));
    let mut env = bob_copy.clone();
    env.nonce[0] ^= 1;
    tampered.push(("nonce", env));
    let mut env = bob_copy.clone();
    env.wrapped_key[200] ^= 1;
    tampered.push(("wrapped key", env));
    let mut env = bob_copy.clone();
    env.wrapped_key.truncate(255);
    tampered.push(("wrapped key truncated", env));
    let mut env = bob_copy.clone();
    env.wrapped_key.clone_from(&s.envelopes[0].wrapped_key);
    tampered.push(("wrapped key swapped", env));

    for (what, env) in tampered {
        assert_eq!(open(&env), Err(CryptoError::Decrypt), "{what}");
    }
}

#[test]
fn a_copy_is_bound_to_room_id_sender_and_recipient() {
    let s = three_way();
    let bob_copy = &s.envelopes[1];
    let other_room = room("random");
    let other_id = MessageId([0xac; 16]);
    let other_sender = user("mallory");
    let cases = [
        (&other_room, &s.id, &s.sender, "room"),
        (&s.room, &other_id, &s.sender, "message id"),
        (&s.room, &s.id, &other_sender, "sender"),
    ];
    for (room, message_id, sender, what) in cases {
        let received = Received {
            room,
            message_id,
            sender,
            recipients: &s.names,
        };
        assert_eq!(
            open_message(received, &s.names[1], bob(), bob_copy, &public(alice())),
            Err(CryptoError::Decrypt),
            "presented with another {what}"
        );
    }

    // Names are bound in canonical form: a server that changes case changes nothing.
    let shouting_room = room("GENERAL");
    let shouting_sender = user("ALICE");
    let received = Received {
        room: &shouting_room,
        message_id: &s.id,
        sender: &shouting_sender,
        recipients: &s.names,
    };
    open_message(received, &user("BOB"), bob(), bob_copy, &public(alice()))
        .expect("case-insensitive names");

    // Recipient binding: a copy sealed under bob's key but for "carol" (a server could
    // only do this if it also relabelled the copy) does not open as bob's.
    let ctx = EnvelopeContext {
        room: &s.room,
        message_id: &s.id,
        sender: &s.sender,
    };
    let mut env = envelope::seal(&ctx, &user("carol"), &public(bob()), b"payload").expect("seals");
    let opened = envelope::open(&ctx, &user("carol"), bob(), &env).expect("control");
    assert_eq!(opened.as_slice(), b"payload");
    env.recipient = user("bob");
    assert_eq!(
        envelope::open(&ctx, &user("bob"), bob(), &env),
        Err(CryptoError::Decrypt),
        "AAD names carol"
    );
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_recipient_list_altered_in_transit_fails_verification() {
    // The list travels in the clear beside the copies; the signature covers it, so a server
    // that hides a recipient, adds one, or reorders them is caught.
    let s = three_way();
    let open = |recipients: &[Username]| {
        open_message(
            Received {
                recipients,
                ..s.received()
            },
            &s.names[1],
            bob(),
            &s.envelopes[1],
            &public(alice()),
        )
    };
    assert_eq!(open(&s.names).expect("control"), s.body);
    let hidden = [s.names[0].clone(), s.names[1].clone()];
    let added = [&s.names[..], &[user("mallory")]].concat();
    let reordered = [s.names[2].clone(), s.names[1].clone(), s.names[0].clone()];
    for (list, what) in [
        (&hidden[..], "carol hidden"),
        (&added[..], "mallory added"),
        (&reordered[..], "reordered"),
        (&[][..], "empty"),
    ] {
        assert_eq!(open(list), Err(CryptoError::BadSignature), "{what}");
    }
}

#[test]
fn the_claimed_sender_key_must_have_signed() {
    let s = three_way();
    // Bob's pinned key for the claimed sender is Mallory's, not Alice's.
    assert_eq!(
        open_message(
            s.received(),
            &s.names[1],
            bob(),
            &s.envelopes[1],
            &public(mallory())
        ),
        Err(CryptoError::BadSignature)
    );
    // Mallory signs a body claiming to be Alice and seals it properly: the AAD and the
    // signed metadata agree, only the signature key gives it away.
    let forged =
        seal_message(mallory(), s.body.clone(), &recipients(&s.names, &s.keys)).expect("seals");
    assert_eq!(
        open_message(
            s.received(),
            &s.names[1],
            bob(),
            &forged[1],
            &public(alice())
        ),
        Err(CryptoError::BadSignature)
    );
}

/// Seals a hand-made payload for bob, as a misbehaving sender could.
fn seal_raw_for_bob(
    ctx_room: &RoomName,
    id: &MessageId,
    sender: &Username,
    plaintext: &[u8],
) -> Envelope {
    let ctx = EnvelopeContext {
        room: ctx_room,
        message_id: id,
        sender,
    };
    envelope::seal(&ctx, &user("bob"), &public(bob()), plaintext).expect("seals")
}

fn signed_by_alice(body: MessageBody) -> Vec<u8> {
    let encoded = codec::encode(&body).expect("encodes");
    let signature = signing::sign(alice(), Purpose::Message, &[&encoded]);
    codec::encode(&SignedMessage::new(&body, signature)).expect("encodes")
}

#[test]
fn signed_metadata_must_match_and_include_me() {
    let s = three_way();
    let open = |env: &Envelope, received: Received<'_>| {
        open_message(received, &user("bob"), bob(), env, &public(alice()))
    };

    // Control: a hand-made payload in the right shape opens.
    let good = seal_raw_for_bob(&s.room, &s.id, &s.sender, &signed_by_alice(s.body.clone()));
    assert_eq!(open(&good, s.received()).expect("control"), s.body);

    // Signed recipients do not include bob (and the list delivered is the one signed).
    let mut body = s.body.clone();
    body.recipients = vec![user("Alice"), user("carol")];
    let env = seal_raw_for_bob(&s.room, &s.id, &s.sender, &signed_by_alice(body.clone()));
    let without_bob = Received {
        recipients: &body.recipients,
        ..s.received()
    };
    assert_err(open(&env, without_bob), &PAYLOAD, "not among recipients");

    // Signed room differs from the room the copy is bound to and delivered in.
    let mut body = s.body.clone();
    body.room = room("secret");
    let env = seal_raw_for_bob(&s.room, &s.id, &s.sender, &signed_by_alice(body));
    assert_err(open(&env, s.received()), &PAYLOAD, "signed room");

    // Signed id differs.
    let mut body = s.body.clone();
    body.message_id = MessageId([0; 16]);
    let env = seal_raw_for_bob(&s.room, &s.id, &s.sender, &signed_by_alice(body));
    assert_err(open(&env, s.received()), &PAYLOAD, "signed id");

    // Signed sender differs (alice signed a body naming carol as sender).
    let mut body = s.body.clone();
    body.sender = user("carol");
    let env = seal_raw_for_bob(&s.room, &s.id, &s.sender, &signed_by_alice(body));
    assert_err(open(&env, s.received()), &PAYLOAD, "signed sender");

    // Not a SignedMessage at all, or one with trailing bytes.
    let env = seal_raw_for_bob(&s.room, &s.id, &s.sender, b"just some bytes");
    assert_err(open(&env, s.received()), &PAYLOAD, "garbage payload");
    let mut trailing = signed_by_alice(s.body.clone());
    trailing.push(0);
    let env = seal_raw_for_bob(&s.room, &s.id, &s.sender, &trailing);
    assert_err(open(&env, s.received()), &PAYLOAD, "trailing byte");
}

#[test]
fn seal_message_requires_matching_recipients() {
    let names = vec![user("Alice"), user("bob")];
    let keys = vec![alice(), bob()];
    let body = MessageBody {
        room: room("General"),
        message_id: MessageId([1; 16]),
        sender: user("Alice"),
        sent_at_ms: 0,
        recipients: names.clone(),
        text: "hi".into(),
    };
    let given = recipients(&names, &keys);

    let mut fewer = body.clone();
    fewer.recipients.pop();
    assert_err(seal_message(alice(), fewer, &given), &PAYLOAD, "fewer");

    let mut other = body.clone();
    other.recipients[1] = user("carol");
    assert_err(seal_message(alice(), other, &given), &PAYLOAD, "other name");

    let mut swapped = body.clone();
    swapped.recipients.reverse();
    assert_err(
        seal_message(alice(), swapped, &given),
        &PAYLOAD,
        "other order",
    );

    assert_err(
        seal_message(alice(), body.clone(), &given[..1]),
        &PAYLOAD,
        "fewer keys",
    );

    // Control: names differing only in case match.
    let mut cased = body;
    cased.recipients = vec![user("ALICE"), user("Bob")];
    assert_eq!(
        seal_message(alice(), cased, &given).expect("seals").len(),
        2
    );
}

#[test]
fn many_recipients_keep_their_order() {
    // Nine recipients: above the parallel threshold, and uneven across two threads.
    let names: Vec<Username> = (0..9).map(|i| user(&format!("user{i}"))).collect();
    let keys: Vec<&RsaPrivateKey> = (3..12).map(rsa2048).collect();
    let sender = names[0].clone();
    let body = MessageBody {
        room: room("crowd"),
        message_id: MessageId([9; 16]),
        sender: sender.clone(),
        sent_at_ms: 1,
        recipients: names.clone(),
        text: "to everyone".into(),
    };
    let envelopes = seal_message(keys[0], body.clone(), &recipients(&names, &keys)).expect("seals");
    assert_eq!(envelopes.len(), names.len());
    let received = Received {
        room: &body.room,
        message_id: &body.message_id,
        sender: &sender,
        recipients: &names,
    };
    for (i, env) in envelopes.iter().enumerate() {
        assert_eq!(env.recipient, names[i], "envelope {i}");
        let opened = open_message(received, &names[i], keys[i], env, &keys[0].to_public_key())
            .unwrap_or_else(|e| panic!("recipient {i} opens its copy: {e}"));
        assert_eq!(opened, body);
    }
}

/// The AAD written out by hand from docs/PROTOCOL.md.
fn documented_aad(room: &str, id: &[u8; 16], sender: &str, recipient: &str) -> Vec<u8> {
    let mut aad = Vec::new();
    for part in [
        b"e2e-chat/v1/envelope".as_slice(),
        room.as_bytes(),
        id,
        sender.as_bytes(),
        recipient.as_bytes(),
    ] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

#[test]
fn documented_aad_example() {
    // The worked example in docs/PROTOCOL.md (room "General", sender "Alice").
    let id: [u8; 16] = std::array::from_fn(|i| 0xa0 + i as u8);
    assert_eq!(
        hex::encode(documented_aad("general", &id, "alice", "bob")),
        "00000014\
         6532652d636861742f76312f656e76656c6f7065\
         00000007\
         67656e6572616c\
         00000010\
         a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\
         00000005\
         616c696365\
         00000003\
         626f62"
    );
}

#[test]
fn an_envelope_opens_with_the_documented_primitives() {
    // Unwrap and decrypt bob's copy with the `rsa` and `aes-gcm` crates directly, following
    // the document rather than `envelope::open`.
    let s = three_way();
    let env = &s.envelopes[1];
    let aes_key = bob()
        .decrypt(rsa::Oaep::new::<sha2::Sha256>(), &env.wrapped_key)
        .expect("RSA-OAEP-SHA256, empty label");
    assert_eq!(aes_key.len(), 32);
    let aad = documented_aad("general", &[0xab; 16], "alice", "bob");
    let plaintext = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&aes_key))
        .decrypt(
            Nonce::from_slice(&env.nonce),
            Payload {
                msg: &env.ciphertext,
                aad: &aad,
            },
        )
        .expect("AES-256-GCM with the documented AAD");
    let signed: SignedMessage = codec::decode(&plaintext).expect("a SignedMessage");
    assert_eq!(signed.body(&s.names), s.body);
    signing::verify(
        &public(alice()),
        Purpose::Message,
        &[&codec::encode(&s.body).expect("encodes")],
        &signed.signature,
    )
    .expect("signed over the encoded body, recipient list included");
    // The copy does not repeat the list: it travels once, beside the copies.
    assert!(
        !contains(&plaintext, b"carol"),
        "no recipient list inside the copy"
    );
    // 16 bytes of GCM tag follow the encrypted payload.
    assert_eq!(env.ciphertext.len(), plaintext.len() + 16);
}

#[test]
fn a_wrapped_key_of_the_wrong_length_fails() {
    // A copy whose RSA layer is valid but carries a 16-byte key.
    let s = three_way();
    let mut env = s.envelopes[1].clone();
    env.wrapped_key = public(bob())
        .encrypt(
            &mut rand::rngs::OsRng,
            rsa::Oaep::new::<sha2::Sha256>(),
            &[7u8; 16],
        )
        .expect("encrypts");
    assert_eq!(
        open_message(s.received(), &s.names[1], bob(), &env, &public(alice())),
        Err(CryptoError::Decrypt)
    );
}
