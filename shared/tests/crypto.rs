//! Keys, signatures, envelopes and whole messages, with the pre-generated fixture keys.
//!
//! Cast: alice = `rsa2048-00`, bob = `rsa2048-01`, carol = `rsa3072-0` (a 3072-bit key, so
//! both sizes are exercised), mallory = `rsa2048-02`. Alice's later keys, for rotations:
//! `rsa2048-12`, `rsa2048-13`, `rsa2048-14`, and `rsa3072-1`.

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
use shared::crypto::rotation::{follow_chain, ChainError, CounterMark, RotationCertificate};
use shared::crypto::signing::{self, Purpose};
use shared::crypto::{CryptoError, RsaPrivateKey};
use shared::protocol::{codec, Envelope};
use shared::{DeviceId, MessageId, RoomName, ServerId, Username};

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
/// The server alice means to log in to, and another one.
const SERVER: ServerId = ServerId([0x53; 16]);
const OTHER_SERVER: ServerId = ServerId([0x4f; 16]);

/// The signing input written out by hand from docs/PROTOCOL.md, with any tag: the tags of
/// earlier protocol versions included, which `signing` no longer builds.
fn tagged_input(tag: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in std::iter::once(tag).chain(fields.iter().copied()) {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// RSA-PSS-SHA256 (MGF1-SHA256, 32-byte salt) over raw bytes, with the `rsa` crate
/// directly rather than through `signing`.
fn sign_raw(key: &RsaPrivateKey, input: &[u8]) -> Vec<u8> {
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(key.clone())
        .sign_with_rng(&mut rand::rngs::OsRng, input)
        .to_vec()
}

#[test]
fn signing_input_is_length_prefixed_and_tagged() {
    let input = signing::signing_input(Purpose::Login, &[b"alice", &[1, 2]]);
    let mut expected = Vec::new();
    expected.extend_from_slice(&17u32.to_be_bytes());
    expected.extend_from_slice(b"e2e-chat/v3/login");
    expected.extend_from_slice(&5u32.to_be_bytes());
    expected.extend_from_slice(b"alice");
    expected.extend_from_slice(&2u32.to_be_bytes());
    expected.extend_from_slice(&[1, 2]);
    assert_eq!(input, expected);
    assert_eq!(
        input,
        tagged_input(b"e2e-chat/v3/login", &[b"alice", &[1, 2]])
    );

    // Moving a byte across a field boundary changes the input.
    assert_ne!(
        signing::signing_input(Purpose::Message, &[b"ab", b"c"]),
        signing::signing_input(Purpose::Message, &[b"a", b"bc"])
    );
    assert_ne!(
        signing::signing_input(Purpose::Message, &[b"ab"]),
        signing::signing_input(Purpose::Message, &[b"ab", b""])
    );
    let tags = [
        Purpose::Login,
        Purpose::Message,
        Purpose::KeyRotation,
        Purpose::KeyEndorsement,
    ]
    .map(Purpose::tag);
    assert_eq!(tags[0], b"e2e-chat/v3/login");
    assert_eq!(tags[1], b"e2e-chat/v3/message");
    assert_eq!(tags[2], b"e2e-chat/v3/key-rotation");
    assert_eq!(tags[3], b"e2e-chat/v3/key-endorsement");
    for (i, a) in tags.iter().enumerate() {
        for b in &tags[i + 1..] {
            assert_ne!(a, b, "every purpose has a tag of its own");
        }
    }
}

#[test]
fn login_proof_verifies() {
    let alice_name = user("Alice");
    let proof = signing::sign_login(alice(), &alice_name, &NONCE, &SERVER);
    assert_eq!(proof.len(), 256, "a 2048-bit signature");
    signing::verify_login(&public(alice()), &alice_name, &NONCE, &SERVER, &proof)
        .expect("verifies");
    // The canonical (lowercase) name is signed, so case does not matter.
    signing::verify_login(&public(alice()), &user("aLiCe"), &NONCE, &SERVER, &proof)
        .expect("verifies case-insensitively");
    // It is exactly a Login signature over [canonical name, nonce, server id].
    signing::verify(
        &public(alice()),
        Purpose::Login,
        &[b"alice", &NONCE, &SERVER.0],
        &proof,
    )
    .expect("generic verify");

    // PSS is randomised: a second proof differs and also verifies.
    let again = signing::sign_login(alice(), &alice_name, &NONCE, &SERVER);
    assert_ne!(again, proof);
    signing::verify_login(&public(alice()), &alice_name, &NONCE, &SERVER, &again)
        .expect("verifies");

    // 3072-bit keys work the same way.
    let carol_proof = signing::sign_login(carol(), &user("carol"), &NONCE, &SERVER);
    assert_eq!(carol_proof.len(), 384);
    signing::verify_login(
        &public(carol()),
        &user("carol"),
        &NONCE,
        &SERVER,
        &carol_proof,
    )
    .expect("verifies");
}

#[test]
fn login_proof_is_bound_to_key_user_nonce_and_purpose() {
    let name = user("alice");
    let proof = signing::sign_login(alice(), &name, &NONCE, &SERVER);
    let pk = public(alice());
    let bad = CryptoError::BadSignature;

    assert_err(
        signing::verify_login(&public(mallory()), &name, &NONCE, &SERVER, &proof),
        &bad,
        "wrong key",
    );
    assert_err(
        signing::verify_login(&pk, &user("alicf"), &NONCE, &SERVER, &proof),
        &bad,
        "wrong username",
    );
    let mut new_nonce = NONCE;
    new_nonce[31] ^= 1;
    assert_err(
        signing::verify_login(&pk, &name, &new_nonce, &SERVER, &proof),
        &bad,
        "replayed for a new nonce",
    );

    // The same fields signed for another purpose are no login proof, and vice versa.
    let fields: [&[u8]; 3] = [b"alice", &NONCE, &SERVER.0];
    for purpose in [
        Purpose::KeyRotation,
        Purpose::KeyEndorsement,
        Purpose::Message,
    ] {
        let other = signing::sign(alice(), purpose, &fields);
        assert_err(
            signing::verify_login(&pk, &name, &NONCE, &SERVER, &other),
            &bad,
            &format!("{purpose:?} signature as login proof"),
        );
        assert_err(
            signing::verify(&pk, purpose, &fields, &proof),
            &bad,
            &format!("login proof as {purpose:?} signature"),
        );
    }
}

#[test]
fn login_proof_is_bound_to_the_server_id() {
    let name = user("alice");
    let pk = public(alice());
    let bad = CryptoError::BadSignature;
    let proof = signing::sign_login(alice(), &name, &NONCE, &SERVER);
    signing::verify_login(&pk, &name, &NONCE, &SERVER, &proof).expect("control");

    // A server that relays another server's challenge (same user, same nonce) gets a proof
    // that fails at the other server.
    assert_err(
        signing::verify_login(&pk, &name, &NONCE, &OTHER_SERVER, &proof),
        &bad,
        "proof for one server presented to another",
    );
    for i in [0, 7, 15] {
        let mut near = SERVER;
        near.0[i] ^= 0x01;
        assert_err(
            signing::verify_login(&pk, &name, &NONCE, &near, &proof),
            &bad,
            &format!("server id with byte {i} changed"),
        );
    }
    assert_err(
        signing::verify_login(&pk, &name, &NONCE, &ServerId([0; 16]), &proof),
        &bad,
        "all-zero server id",
    );
    // The other way round too.
    let for_other = signing::sign_login(alice(), &name, &NONCE, &OTHER_SERVER);
    signing::verify_login(&pk, &name, &NONCE, &OTHER_SERVER, &for_other).expect("control");
    assert_err(
        signing::verify_login(&pk, &name, &NONCE, &SERVER, &for_other),
        &bad,
        "proof for the other server presented to this one",
    );

    // The server id is a field of its own: neither leaving it out nor running it into
    // the nonce gives a proof.
    let without = signing::sign(alice(), Purpose::Login, &[b"alice", &NONCE]);
    assert_err(
        signing::verify_login(&pk, &name, &NONCE, &SERVER, &without),
        &bad,
        "no server id signed",
    );
    let joined = [&NONCE[..], &SERVER.0[..]].concat();
    let run_together = signing::sign(alice(), Purpose::Login, &[b"alice", &joined]);
    assert_err(
        signing::verify_login(&pk, &name, &NONCE, &SERVER, &run_together),
        &bad,
        "nonce and server id as one field",
    );
}

#[test]
fn a_v1_login_proof_never_verifies() {
    let name = user("alice");
    let pk = public(alice());
    let bad = CryptoError::BadSignature;

    // Control: the hand-made signer gives a valid proof over the v3 input, so the
    // failures below come from the input, not from the signer.
    let v3 = sign_raw(
        alice(),
        &tagged_input(b"e2e-chat/v3/login", &[b"alice", &NONCE, &SERVER.0]),
    );
    signing::verify_login(&pk, &name, &NONCE, &SERVER, &v3).expect("control");

    // What a protocol-2 client sent: the v1 tag over [name, nonce].
    let v1 = sign_raw(
        alice(),
        &tagged_input(b"e2e-chat/v1/login", &[b"alice", &NONCE]),
    );
    // The v1 tag with the new fields, and an intermediate tag that never existed.
    let v1_with_server = sign_raw(
        alice(),
        &tagged_input(b"e2e-chat/v1/login", &[b"alice", &NONCE, &SERVER.0]),
    );
    let v2_with_server = sign_raw(
        alice(),
        &tagged_input(b"e2e-chat/v2/login", &[b"alice", &NONCE, &SERVER.0]),
    );
    for (what, proof) in [
        ("v1 proof", &v1),
        ("v1 tag over the v3 fields", &v1_with_server),
        ("v2 tag over the v3 fields", &v2_with_server),
    ] {
        for server in [SERVER, OTHER_SERVER, ServerId([0; 16])] {
            assert_err(
                signing::verify_login(&pk, &name, &NONCE, &server, proof),
                &bad,
                &format!("{what} for server {server}"),
            );
        }
        // No purpose's verifier takes it either, over either field list.
        for purpose in [
            Purpose::Login,
            Purpose::Message,
            Purpose::KeyRotation,
            Purpose::KeyEndorsement,
        ] {
            assert_err(
                signing::verify(&pk, purpose, &[b"alice", &NONCE], proof),
                &bad,
                &format!("{what} as {purpose:?} over [name, nonce]"),
            );
        }
    }
}

#[test]
fn malformed_signatures_are_bad_not_panics() {
    let name = user("alice");
    let pk = public(alice());
    let proof = signing::sign_login(alice(), &name, &NONCE, &SERVER);
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
        assert_err(
            signing::verify_login(&pk, &name, &NONCE, &SERVER, &sig),
            &bad,
            what,
        );
    }
}

// =======================================================================================
// Key rotation certificates
// =======================================================================================

/// Alice's keys in the order she rotates through them: `ak(0)` is her first (and
/// `alice()`), `ak(4)` a 3072-bit one.
fn ak(n: usize) -> &'static RsaPrivateKey {
    match n {
        0 => alice(),
        1 => rsa2048(12),
        2 => rsa2048(13),
        3 => rsa2048(14),
        4 => rsa3072(1),
        _ => unreachable!("alice has five keys"),
    }
}

fn der(key: &RsaPrivateKey) -> Vec<u8> {
    keys::public_to_der(&key.to_public_key()).expect("encodes")
}

fn fp(key: &RsaPrivateKey) -> Fingerprint {
    Fingerprint::of_key(&key.to_public_key()).expect("encodes")
}

const PHONE: DeviceId = DeviceId([0xa1; 16]);
const LAPTOP: DeviceId = DeviceId([0xb2; 16]);
const ISSUED_AT: u64 = 1_700_000_123_456;

fn mark(room_name: &str, device: DeviceId, last_counter: u64) -> CounterMark {
    CounterMark {
        room: room(room_name),
        device,
        last_counter,
    }
}

fn marks() -> Vec<CounterMark> {
    vec![
        mark("General", PHONE, 41),
        mark("General", LAPTOP, 3),
        mark("random", PHONE, 1),
    ]
}

/// Alice rotates from `ak(from)` to `ak(to)`.
fn rotate(from: usize, to: usize) -> RotationCertificate {
    RotationCertificate::issue(
        &user("Alice"),
        ak(from),
        ak(to),
        ISSUED_AT + to as u64,
        marks(),
    )
    .expect("issues")
}

/// A signature by `key` for `purpose` over `cert`'s signed fields as they are now.
fn sign_cert(key: &RsaPrivateKey, purpose: Purpose, cert: &RotationCertificate) -> Vec<u8> {
    let fields = cert.signed_fields().expect("encodes");
    let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
    signing::sign(key, purpose, &refs)
}

fn verify_half(
    key: &RsaPrivateKey,
    purpose: Purpose,
    cert: &RotationCertificate,
    signature: &[u8],
) -> Result<(), CryptoError> {
    let fields = cert.signed_fields().expect("encodes");
    let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
    signing::verify(&key.to_public_key(), purpose, &refs, signature)
}

#[test]
fn a_rotation_certificate_issues_and_verifies() {
    let cert = rotate(0, 1);
    cert.verify().expect("verifies");
    assert_eq!(cert.username, user("Alice"));
    assert_eq!(cert.old_public_key, der(ak(0)));
    assert_eq!(cert.new_public_key, der(ak(1)));
    assert_eq!(cert.issued_at_ms, ISSUED_AT + 1);
    assert_eq!(cert.final_counters, marks());
    assert_eq!(cert.old_fingerprint(), fp(ak(0)));
    assert_eq!(hex::encode(cert.old_fingerprint().0), ALICE_FINGERPRINT_HEX);
    assert_eq!(cert.new_fingerprint(), fp(ak(1)));
    assert_eq!(cert.old_key_signature.len(), 256);
    assert_eq!(cert.new_key_signature.len(), 256);

    // Both halves sign the documented fields: canonical username, old DER, new DER,
    // issued_at as 8 big-endian bytes, and the codec encoding of the marks.
    let fields = cert.signed_fields().expect("encodes");
    assert_eq!(
        fields,
        vec![
            b"alice".to_vec(),
            der(ak(0)),
            der(ak(1)),
            (ISSUED_AT + 1).to_be_bytes().to_vec(),
            codec::encode(&marks()).expect("encodes"),
        ]
    );
    // The old key under KeyEndorsement, the new key under KeyRotation; not the reverse.
    verify_half(
        ak(0),
        Purpose::KeyEndorsement,
        &cert,
        &cert.old_key_signature,
    )
    .expect("the old key endorses");
    verify_half(ak(1), Purpose::KeyRotation, &cert, &cert.new_key_signature)
        .expect("the new key proves possession");
    let bad = CryptoError::BadSignature;
    assert_err(
        verify_half(ak(0), Purpose::KeyRotation, &cert, &cert.old_key_signature),
        &bad,
        "old half under KeyRotation",
    );
    assert_err(
        verify_half(
            ak(1),
            Purpose::KeyEndorsement,
            &cert,
            &cert.new_key_signature,
        ),
        &bad,
        "new half under KeyEndorsement",
    );

    // It travels: the decoded certificate is equal and still verifies.
    let bytes = codec::encode(&cert).expect("encodes");
    let back: RotationCertificate = codec::decode(&bytes).expect("decodes");
    assert_eq!(back, cert);
    back.verify().expect("verifies after the round trip");

    // PSS is randomised: issuing again gives other signatures that verify as well.
    let again = rotate(0, 1);
    assert_ne!(again.old_key_signature, cert.old_key_signature);
    again.verify().expect("verifies");

    // Into a 3072-bit key, and with no marks at all.
    let bigger =
        RotationCertificate::issue(&user("alice"), ak(0), ak(4), 1, Vec::new()).expect("issues");
    assert_eq!(bigger.new_key_signature.len(), 384);
    assert!(bigger.final_counters.is_empty());
    bigger.verify().expect("verifies");

    // The username is signed in canonical form: a change of case changes nothing.
    let mut shouting = cert.clone();
    shouting.username = user("ALICE");
    shouting.verify().expect("case-insensitive username");
}

#[test]
fn a_forged_or_swapped_rotation_signature_is_refused() {
    let cert = rotate(0, 1);
    let bad = CryptoError::BadSignature;
    let check = |forged: RotationCertificate, what: &str| assert_err(forged.verify(), &bad, what);

    // The old half by another key: what a server that substitutes keys would need.
    let mut forged = cert.clone();
    forged.old_key_signature = sign_cert(mallory(), Purpose::KeyEndorsement, &cert);
    check(forged, "old half by mallory");
    // The new key endorsing itself in the old key's place.
    let mut forged = cert.clone();
    forged.old_key_signature = sign_cert(ak(1), Purpose::KeyEndorsement, &cert);
    check(forged, "old half by the new key");
    // The new half by another key: no proof of possession of the new key.
    let mut forged = cert.clone();
    forged.new_key_signature = sign_cert(mallory(), Purpose::KeyRotation, &cert);
    check(forged, "new half by mallory");
    let mut forged = cert.clone();
    forged.new_key_signature = sign_cert(ak(0), Purpose::KeyRotation, &cert);
    check(forged, "new half by the old key");

    // The two signatures exchanged.
    let mut forged = cert.clone();
    std::mem::swap(&mut forged.old_key_signature, &mut forged.new_key_signature);
    check(forged, "signatures exchanged");
    // The right keys, each under the other half's purpose.
    let mut forged = cert.clone();
    forged.old_key_signature = sign_cert(ak(0), Purpose::KeyRotation, &cert);
    check(forged, "old key under KeyRotation");
    let mut forged = cert.clone();
    forged.new_key_signature = sign_cert(ak(1), Purpose::KeyEndorsement, &cert);
    check(forged, "new key under KeyEndorsement");

    // Turned around (a rollback to the old key) by reusing the two signatures: the new
    // key's KeyRotation signature presented as its endorsement, and so on.
    let mut reversed = cert.clone();
    std::mem::swap(&mut reversed.old_public_key, &mut reversed.new_public_key);
    reversed
        .old_key_signature
        .clone_from(&cert.new_key_signature);
    reversed
        .new_key_signature
        .clone_from(&cert.old_key_signature);
    check(reversed.clone(), "reversed, signatures reused");
    // The same with signatures made over the reversed fields, so that only the purposes
    // are wrong: ak(1)'s KeyRotation signature stands in for its KeyEndorsement, ak(0)'s
    // KeyEndorsement for its KeyRotation.
    let mut swapped_purposes = reversed.clone();
    swapped_purposes.old_key_signature = sign_cert(ak(1), Purpose::KeyRotation, &reversed);
    swapped_purposes.new_key_signature = sign_cert(ak(0), Purpose::KeyEndorsement, &reversed);
    check(swapped_purposes, "reversed, purposes exchanged");
    // Control: with the purposes right, the reversed certificate is a valid one.
    let mut control = reversed.clone();
    control.old_key_signature = sign_cert(ak(1), Purpose::KeyEndorsement, &reversed);
    control.new_key_signature = sign_cert(ak(0), Purpose::KeyRotation, &reversed);
    control.verify().expect("control: a genuine rotation back");

    // Signatures of another certificate, or of another kind.
    let other = rotate(0, 2);
    let mut forged = cert.clone();
    forged
        .old_key_signature
        .clone_from(&other.old_key_signature);
    check(forged, "old half from a rotation to another key");
    let mut forged = cert.clone();
    forged.old_key_signature = signing::sign_login(ak(0), &user("alice"), &NONCE, &SERVER);
    check(forged, "a login proof as the old half");

    // Missing or mangled halves.
    for (what, mangle) in [
        ("empty", (|s: &mut Vec<u8>| s.clear()) as fn(&mut Vec<u8>)),
        ("truncated", |s| s.truncate(255)),
        ("flipped bit", |s| s[17] ^= 0x04),
    ] {
        let mut forged = cert.clone();
        mangle(&mut forged.old_key_signature);
        check(forged, &format!("old half {what}"));
        let mut forged = cert.clone();
        mangle(&mut forged.new_key_signature);
        check(forged, &format!("new half {what}"));
    }
}

#[test]
fn every_rotation_certificate_field_is_signed() {
    let cert = rotate(0, 1);
    cert.verify().expect("control");
    let bad = CryptoError::BadSignature;
    type Tamper = fn(&mut RotationCertificate);
    let cases: Vec<(&str, Tamper)> = vec![
        ("username", |c| c.username = user("bob")),
        ("username by one letter", |c| c.username = user("alicf")),
        ("new key", |c| c.new_public_key = der(ak(2))),
        ("new key is mallory's", |c| {
            c.new_public_key = der(mallory())
        }),
        ("old key", |c| c.old_public_key = der(mallory())),
        ("issued_at + 1", |c| c.issued_at_ms += 1),
        ("issued_at 0", |c| c.issued_at_ms = 0),
        ("a counter raised", |c| {
            c.final_counters[0].last_counter += 1
        }),
        ("a counter lowered", |c| {
            c.final_counters[1].last_counter -= 1
        }),
        ("a counter's device", |c| {
            c.final_counters[0].device = LAPTOP
        }),
        ("a counter's room", |c| {
            c.final_counters[2].room = room("secret")
        }),
        ("a mark removed", |c| {
            c.final_counters.pop();
        }),
        ("a mark added", |c| {
            c.final_counters.push(mark("secret", PHONE, 9));
        }),
        ("marks reordered", |c| c.final_counters.swap(0, 1)),
        ("marks cleared", |c| c.final_counters.clear()),
    ];
    for (what, tamper) in cases {
        let mut forged = cert.clone();
        tamper(&mut forged);
        assert_ne!(forged, cert, "{what} changes something");
        assert_err(forged.verify(), &bad, what);
    }

    // Keys that are not acceptable keys fail as keys, before any signature is checked.
    let mut forged = cert.clone();
    forged.new_public_key = b"not DER".to_vec();
    assert_err(forged.verify(), &INVALID_KEY, "new key garbage");
    let mut forged = cert.clone();
    forged.old_public_key.clear();
    assert_err(forged.verify(), &INVALID_KEY, "old key empty");
    let mut forged = cert.clone();
    forged.new_public_key = weak_public_der("weak-1024.pem");
    assert_err(forged.verify(), &WEAK_KEY, "new key 1024 bits");
    let mut forged = cert;
    forged.old_public_key = weak_public_der("weak-e3.pem");
    assert_err(forged.verify(), &WEAK_KEY, "old key e = 3");
}

#[test]
fn a_rotation_to_the_same_key_is_refused() {
    assert_err(
        RotationCertificate::issue(&user("alice"), ak(0), ak(0), ISSUED_AT, marks()),
        &PAYLOAD,
        "issue to the same key",
    );
    // Made by hand, both halves genuinely signed by the one key: still refused.
    let mut same = rotate(0, 1);
    same.new_public_key = der(ak(0));
    same.old_key_signature = sign_cert(ak(0), Purpose::KeyEndorsement, &same);
    same.new_key_signature = sign_cert(ak(0), Purpose::KeyRotation, &same);
    verify_half(
        ak(0),
        Purpose::KeyEndorsement,
        &same,
        &same.old_key_signature,
    )
    .expect("the old half is genuine");
    verify_half(ak(0), Purpose::KeyRotation, &same, &same.new_key_signature)
        .expect("the new half is genuine");
    assert_err(same.verify(), &PAYLOAD, "verify with old = new");
    // And it leads nowhere.
    let chain = [same];
    let result = follow_chain(&user("alice"), &fp(ak(0)), &fp(ak(1)), &chain);
    assert!(result.is_err(), "a rotation to the same key: {result:?}");
}

#[test]
fn last_counter_reads_the_mark_for_room_and_device() {
    let cert = rotate(0, 1);
    assert_eq!(cert.last_counter(&room("General"), &PHONE), Some(41));
    assert_eq!(cert.last_counter(&room("General"), &LAPTOP), Some(3));
    assert_eq!(cert.last_counter(&room("random"), &PHONE), Some(1));
    // Room names compare in canonical form.
    assert_eq!(cert.last_counter(&room("GENERAL"), &PHONE), Some(41));
    assert_eq!(cert.last_counter(&room("general"), &LAPTOP), Some(3));
    // No mark: a device that never wrote in the room, a room without marks, another
    // device.
    assert_eq!(cert.last_counter(&room("random"), &LAPTOP), None);
    assert_eq!(cert.last_counter(&room("secret"), &PHONE), None);
    assert_eq!(
        cert.last_counter(&room("General"), &DeviceId([0; 16])),
        None
    );
    // A mark of 0 (the device wrote nothing there with the old key) is a mark.
    let zero = RotationCertificate::issue(
        &user("alice"),
        ak(0),
        ak(1),
        ISSUED_AT,
        vec![mark("quiet", PHONE, 0)],
    )
    .expect("issues");
    assert_eq!(zero.last_counter(&room("quiet"), &PHONE), Some(0));
    assert_eq!(zero.last_counter(&room("General"), &PHONE), None);
}

/// The fingerprints of `ak(n)` for each n.
fn afp(n: usize) -> Fingerprint {
    fp(ak(n))
}

/// `follow_chain` for alice on a worker thread, failing (instead of hanging) if it does
/// not return within a generous deadline.
fn follow_in_time(
    pinned: Fingerprint,
    current: Fingerprint,
    chain: Vec<RotationCertificate>,
) -> Result<Vec<RotationCertificate>, ChainError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = follow_chain(&user("alice"), &pinned, &current, &chain)
            .map(|path| path.into_iter().cloned().collect::<Vec<_>>());
        let _ = tx.send(result);
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("follow_chain returns")
}

#[test]
fn follow_chain_one_hop() {
    let cert = rotate(0, 1);
    let chain = [cert.clone()];
    let path = follow_chain(&user("alice"), &afp(0), &afp(1), &chain).expect("follows");
    assert_eq!(path, vec![&cert]);
    // The username is compared in canonical form.
    let path = follow_chain(&user("ALICE"), &afp(0), &afp(1), &chain).expect("follows");
    assert_eq!(path.len(), 1);
    // Nothing to follow when the pinned key is the current one.
    assert!(follow_chain(&user("alice"), &afp(1), &afp(1), &chain)
        .expect("no rotation")
        .is_empty());
    assert!(follow_chain(&user("alice"), &afp(0), &afp(0), &[])
        .expect("no rotation")
        .is_empty());
}

#[test]
fn follow_chain_several_hops_given_out_of_order() {
    let c01 = rotate(0, 1);
    let c12 = rotate(1, 2);
    let c23 = rotate(2, 3);
    let c34 = rotate(3, 4);
    let chain = [c23.clone(), c34.clone(), c01.clone(), c12.clone()];
    let path = follow_chain(&user("alice"), &afp(0), &afp(4), &chain).expect("follows");
    assert_eq!(path, vec![&c01, &c12, &c23, &c34], "in order, oldest first");
    // From a key pinned later, only the rest of the way.
    let path = follow_chain(&user("alice"), &afp(2), &afp(4), &chain).expect("follows");
    assert_eq!(path, vec![&c23, &c34]);
    // To a key that was current earlier: the walk stops there.
    let path = follow_chain(&user("alice"), &afp(0), &afp(2), &chain).expect("follows");
    assert_eq!(path, vec![&c01, &c12]);
}

#[test]
fn follow_chain_through_a_cycle_terminates_with_an_error() {
    // A malicious server answers with certificates that go round in circles (each one
    // genuine: alice once rotated back to an earlier key) and never reach the current key.
    let c01 = rotate(0, 1);
    let c10 = rotate(1, 0);
    let c12 = rotate(1, 2);
    let c20 = rotate(2, 0);
    for (what, chain) in [
        ("two-key cycle", vec![c01.clone(), c10.clone()]),
        ("two-key cycle, reversed", vec![c10.clone(), c01.clone()]),
        (
            "three-key cycle",
            vec![c01.clone(), c12.clone(), c20.clone()],
        ),
        (
            "both cycles",
            vec![c20.clone(), c10.clone(), c12.clone(), c01.clone()],
        ),
    ] {
        let result = follow_in_time(afp(0), afp(3), chain);
        assert!(
            matches!(result, Err(ChainError::Broken(_))),
            "{what}: expected Broken, got {result:?}"
        );
    }
    // A cycle beside the real way on is stepped over.
    let path = follow_in_time(afp(0), afp(2), vec![c10.clone(), c01.clone(), c12.clone()])
        .expect("follows");
    assert_eq!(path, vec![c01, c12]);
}

/// Alice rotates away from her first key, back to it (say, restored from a backup), and
/// on to a third: every certificate is genuine and a path from the first key to the
/// current one exists (0 -> 2). A walk that takes the first certificate leading on from
/// each key goes 0 -> 1, finds only the way back to the visited key 0, and gives up; the
/// search backs out of that dead end.
#[test]
fn follow_chain_finds_the_way_on_after_a_rotation_back() {
    let chain = [rotate(0, 1), rotate(1, 0), rotate(0, 2)];
    let path = follow_in_time(afp(0), afp(2), chain.to_vec()).expect("a path exists");
    assert_eq!(path.last(), Some(&chain[2]));
}

#[test]
fn follow_chain_with_a_gap_is_broken() {
    let c01 = rotate(0, 1);
    let c23 = rotate(2, 3);
    let alice_name = user("alice");
    assert_eq!(
        follow_chain(&alice_name, &afp(0), &afp(3), &[c01.clone(), c23.clone()]),
        Err(ChainError::Broken(afp(1))),
        "nothing leads on from key 1"
    );
    assert_eq!(
        follow_chain(&alice_name, &afp(0), &afp(3), std::slice::from_ref(&c23)),
        Err(ChainError::Broken(afp(0))),
        "nothing leads on from the pinned key"
    );
    assert_eq!(
        follow_chain(&alice_name, &afp(0), &afp(1), &[]),
        Err(ChainError::Broken(afp(0))),
        "no certificates at all"
    );
    // Certificates only lead forward: a server cannot roll a peer back to an old key.
    assert_eq!(
        follow_chain(&alice_name, &afp(1), &afp(0), &[c01]),
        Err(ChainError::Broken(afp(1))),
        "rolled back"
    );
}

#[test]
fn follow_chain_refuses_a_certificate_for_another_user() {
    // Genuinely signed by both keys, but naming bob: not a rotation of alice's key.
    let for_bob =
        RotationCertificate::issue(&user("bob"), ak(0), ak(1), ISSUED_AT, marks()).expect("issues");
    for_bob.verify().expect("a valid certificate in itself");
    assert_eq!(
        follow_chain(
            &user("alice"),
            &afp(0),
            &afp(1),
            std::slice::from_ref(&for_bob)
        ),
        Err(ChainError::WrongUser)
    );
    // On the second hop too.
    assert_eq!(
        follow_chain(
            &user("alice"),
            &afp(0),
            &afp(2),
            &[
                rotate(0, 1),
                RotationCertificate::issue(&user("bob"), ak(1), ak(2), ISSUED_AT, marks())
                    .expect("issues")
            ]
        ),
        Err(ChainError::WrongUser)
    );
    // For bob it is fine.
    follow_chain(&user("Bob"), &afp(0), &afp(1), &[for_bob]).expect("bob's own");
}

#[test]
fn follow_chain_refuses_an_invalid_certificate_on_the_path() {
    let c01 = rotate(0, 1);
    let mut c12 = rotate(1, 2);
    c12.final_counters[0].last_counter = 1_000_000;
    assert_eq!(
        follow_chain(&user("alice"), &afp(0), &afp(2), &[c01.clone(), c12]),
        Err(ChainError::Invalid(CryptoError::BadSignature)),
        "tampered marks"
    );
    let mut c12 = rotate(1, 2);
    c12.old_key_signature = sign_cert(mallory(), Purpose::KeyEndorsement, &c12);
    assert_eq!(
        follow_chain(&user("alice"), &afp(0), &afp(2), &[c12, c01]),
        Err(ChainError::Invalid(CryptoError::BadSignature)),
        "old half forged"
    );
}

#[test]
fn follow_chain_ignores_unrelated_certificates() {
    let c01 = rotate(0, 1);
    let c12 = rotate(1, 2);
    // Bob's rotation between keys of his own.
    let bobs = RotationCertificate::issue(&user("bob"), bob(), mallory(), ISSUED_AT, Vec::new())
        .expect("issues");
    // An invalid certificate between keys off the path: never looked at, so never an error.
    let mut junk =
        RotationCertificate::issue(&user("alice"), carol(), mallory(), ISSUED_AT, Vec::new())
            .expect("issues");
    junk.old_key_signature.clear();
    // A certificate from the current key onwards (a rotation the peer is not asking about).
    let c23 = rotate(2, 3);
    let chain = [bobs, c23, junk, c12.clone(), c01.clone()];
    let path = follow_chain(&user("alice"), &afp(0), &afp(2), &chain).expect("follows");
    assert_eq!(path, vec![&c01, &c12]);
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

/// The device alice sends from in the message scenes.
const ALICE_DEVICE: DeviceId = DeviceId([0xd1; 16]);

/// Alice sends "hello" to alice, bob and carol in room "General", her 7th message there
/// from [`ALICE_DEVICE`].
fn three_way() -> Scene {
    let names = vec![user("Alice"), user("bob"), user("carol")];
    let keys = vec![alice(), bob(), carol()];
    let body = MessageBody {
        room: room("General"),
        message_id: MessageId([0xab; 16]),
        sender: user("Alice"),
        device: ALICE_DEVICE,
        counter: 7,
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
fn a_changed_device_or_counter_in_the_signed_body_fails_verification() {
    let s = three_way();
    let open =
        |env: &Envelope| open_message(s.received(), &user("bob"), bob(), env, &public(alice()));
    // Control: the opened body carries the signed device and counter.
    let body = open(&s.envelopes[1]).expect("control");
    assert_eq!(body.device, ALICE_DEVICE);
    assert_eq!(body.counter, 7);

    // Alice's genuine signature, put beside another device or counter (as a sender's
    // buggy or hostile software could), does not verify.
    let encoded = codec::encode(&s.body).expect("encodes");
    let signature = signing::sign(alice(), Purpose::Message, &[&encoded]);
    let genuine = SignedMessage::new(&s.body, signature.clone());
    let env = seal_raw_for_bob(
        &s.room,
        &s.id,
        &s.sender,
        &codec::encode(&genuine).expect("encodes"),
    );
    assert_eq!(open(&env).expect("control: hand-sealed"), s.body);
    type Change = fn(&mut SignedMessage);
    let changes: [(&str, Change); 6] = [
        ("another device", |m| m.device = DeviceId([0xd2; 16])),
        ("device byte 15", |m| m.device.0[15] ^= 1),
        ("counter + 1", |m| m.counter += 1),
        ("counter - 1 (a replay slot)", |m| m.counter -= 1),
        ("counter 0", |m| m.counter = 0),
        ("counter u64::MAX", |m| m.counter = u64::MAX),
    ];
    for (what, change) in changes {
        let mut signed = genuine.clone();
        change(&mut signed);
        let env = seal_raw_for_bob(
            &s.room,
            &s.id,
            &s.sender,
            &codec::encode(&signed).expect("encodes"),
        );
        assert_eq!(open(&env), Err(CryptoError::BadSignature), "{what}");
    }

    // The same at the signature level: both fields are part of the signed encoding.
    for (what, body) in [
        (
            "device",
            MessageBody {
                device: DeviceId([0; 16]),
                ..s.body.clone()
            },
        ),
        (
            "counter",
            MessageBody {
                counter: 8,
                ..s.body.clone()
            },
        ),
    ] {
        let encoded = codec::encode(&body).expect("encodes");
        assert_err(
            signing::verify(&public(alice()), Purpose::Message, &[&encoded], &signature),
            &CryptoError::BadSignature,
            what,
        );
    }
}

#[test]
fn seal_message_requires_matching_recipients() {
    let names = vec![user("Alice"), user("bob")];
    let keys = vec![alice(), bob()];
    let body = MessageBody {
        room: room("General"),
        message_id: MessageId([1; 16]),
        sender: user("Alice"),
        device: ALICE_DEVICE,
        counter: 1,
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
        device: DeviceId([9; 16]),
        counter: u64::MAX,
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
        .decrypt_blinded(
            &mut rand::rngs::OsRng,
            rsa::Oaep::new::<sha2::Sha256>(),
            &env.wrapped_key,
        )
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
