//! Plain words shared by the state's parts: fingerprints in short, plurals, join lines,
//! refusal reasons, and the clock.

use std::time::{SystemTime, UNIX_EPOCH};

use shared::crypto::keys::Fingerprint;
use shared::Username;

use crate::inbox::RejectReason;

/// Whether `text` mentions `me`: the name (or `@name`) as a whole word, in any case.
pub fn mentions(text: &str, me: &Username) -> bool {
    let name = me.as_str().to_lowercase();
    let text = text.to_lowercase();
    let part_of_name = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text.match_indices(&name).any(|(at, found)| {
        let before = text[..at].chars().next_back();
        let after = text[at + found.len()..].chars().next();
        !before.is_some_and(part_of_name) && !after.is_some_and(part_of_name)
    })
}

/// `→ carol joined · key 7777 7777…` (the key once it is known).
pub(super) fn join_line(user: &Username, how: &str, fingerprint: Option<&Fingerprint>) -> String {
    match fingerprint {
        Some(fp) => format!("→ {user} {how} · key {}", short_fingerprint(fp)),
        None => format!("→ {user} {how}"),
    }
}

/// Why a message was refused, in plain words for the timeline.
pub fn rejection_words(reason: &RejectReason) -> String {
    match reason {
        RejectReason::Undecryptable => {
            "it does not decrypt: tampered with, or not meant for you".into()
        }
        RejectReason::BadSignature => {
            "its signature does not match the sender's key: it may be forged".into()
        }
        RejectReason::Mismatch(_) => {
            "what the sender signed does not match what the server says (room, sender or \
             recipients)"
                .into()
        }
        RejectReason::Duplicate { .. } => "already shown".into(),
        RejectReason::Replayed { counter } => {
            format!("replayed: this message (number {counter} from its sender) was received before")
        }
        RejectReason::RetiredKey => "signed with a retired key, after its owner replaced it".into(),
        RejectReason::NotAMember => "sent for a room you are not in".into(),
        RejectReason::UntrustedSenderKey => {
            "the sender's key changed and you have not accepted it (F3)".into()
        }
        RejectReason::UnknownSender(_) => "the sender's key could not be obtained".into(),
        RejectReason::NotLoggedIn => "it arrived before you were logged in".into(),
    }
}

/// The first two groups of a fingerprint, for compact lists (`3f2a 91bc…`).
pub fn short_fingerprint(fp: &Fingerprint) -> String {
    let full = fp.to_string();
    let short: String = full.split(' ').take(2).collect::<Vec<_>>().join(" ");
    format!("{short}…")
}

/// `1 user`, `2 users`.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mention_is_the_whole_name_in_any_case() {
        let me = Username::parse("alice").expect("valid");
        for yes in ["alice: hi", "hi @Alice!", "ALICE", "thanks, alice."] {
            assert!(mentions(yes, &me), "{yes}");
        }
        for no in ["malice", "alice_b", "alice-bot", "alicé", "ali ce", ""] {
            assert!(!mentions(no, &me), "{no}");
        }
    }
}
