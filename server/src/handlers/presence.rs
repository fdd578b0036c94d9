//! Typing indicators (`SetTyping`) and read markers (`MarkRead`).
//!
//! # What the server learns
//! From typing notices, when a member types in a room (it relays them and keeps, for
//! about a second, the last state each user sent per room, to drop repeats; nothing is
//! stored). From read markers, how far each member has read each room: the highest
//! sequence number they marked, stored per member and room, never moved back, and
//! deleted with the membership (leaving, a kick or ban, the room's or the account's
//! deletion).
//!
//! # Bounds
//! Both requests pay the per-connection and per-user request rates. A typing notice that
//! repeats the same user's last state for the same room within [`TYPING_REPEAT`] is
//! answered `Done` and not pushed, so a client cannot multiply pushes to a room beyond one
//! per state change.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::protocol::{MarkRead, Push, Reply, SetTyping};
use shared::Username;

use super::rooms::my_room;
use super::{encode_push, hub_gone, AppState};
use crate::error::HandlerError;
use crate::hub::ConnId;

/// How long a repeat of the same typing state is dropped.
pub const TYPING_REPEAT: Duration = Duration::from_secs(1);

/// Entries the filter holds before it forgets those older than [`TYPING_REPEAT`].
const TYPING_ENTRIES: usize = 16_384;

/// The last typing state each (user, room) sent and when: what drops repeats. Holds only
/// recent entries (older ones are forgotten once it grows), so its memory is bounded by
/// the users typing within about a second.
#[derive(Debug, Default)]
pub struct TypingFilter {
    last: Mutex<HashMap<(String, String), (bool, Instant)>>,
}

impl TypingFilter {
    /// Records `typing` for (`user`, `room`) and says whether it should be pushed: not
    /// when the same state was pushed less than [`TYPING_REPEAT`] ago.
    pub fn admit(&self, user: &Username, room: &str, typing: bool) -> bool {
        let now = Instant::now();
        let Ok(mut last) = self.last.lock() else {
            // A poisoned lock only loses the filter's memory: push.
            return true;
        };
        let entry = (user.canonical(), room.to_owned());
        if let Some(&(state, at)) = last.get(&entry) {
            if state == typing && now.duration_since(at) < TYPING_REPEAT {
                return false;
            }
        }
        if last.len() >= TYPING_ENTRIES {
            last.retain(|_, (_, at)| now.duration_since(*at) < TYPING_REPEAT);
        }
        last.insert(entry, (typing, now));
        true
    }
}

/// # SetTyping
/// Pushes `Typing` to the connections of the room's other members (none of the caller's
/// own), unless it repeats the caller's last state for the room within [`TYPING_REPEAT`].
/// Nothing is stored.
///
/// # Errors
/// [`HandlerError::NotAMember`], store failures.
pub async fn typing(
    state: &AppState,
    user: &Username,
    req: SetTyping,
) -> Result<Reply, HandlerError> {
    let mine = my_room(state, user, &req.room).await?;
    if !state.typing.admit(user, mine.key.as_str(), req.typing) {
        return Ok(Reply::Done);
    }
    let others: Vec<String> = state
        .store
        .member_names(&mine.key)
        .await?
        .iter()
        .filter(|m| !m.same_as(user))
        .map(Username::canonical)
        .collect();
    let frame = encode_push(Push::Typing {
        room: mine.name,
        username: user.clone(),
        typing: req.typing,
    })?;
    state
        .hub
        .broadcast(others, frame, None)
        .await
        .map_err(hub_gone)?;
    Ok(Reply::Done)
}

/// # MarkRead
/// Moves the caller's read marker for the room forward to `seq` (clamped to the room's
/// newest sequence number; never back). When it moved, the caller's other connections
/// are pushed `ReadUpTo`.
///
/// # Errors
/// [`HandlerError::NotAMember`], store failures.
pub async fn mark_read(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: MarkRead,
) -> Result<Reply, HandlerError> {
    let mine = my_room(state, user, &req.room).await?;
    if let Some(seq) = state.store.mark_read(&mine.key, user, req.seq).await? {
        let frame = encode_push(Push::ReadUpTo {
            room: mine.name,
            seq,
        })?;
        state
            .hub
            .broadcast(vec![user.canonical()], frame, Some(conn))
            .await
            .map_err(hub_gone)?;
    }
    Ok(Reply::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_a_second_are_dropped_and_changes_pass() {
        let filter = TypingFilter::default();
        let alice = Username::parse("Alice").expect("valid");
        assert!(filter.admit(&alice, "general", true));
        assert!(
            !filter.admit(&alice, "general", true),
            "a repeat is dropped"
        );
        assert!(!filter.admit(&Username::parse("ALICE").expect("valid"), "general", true));
        assert!(
            filter.admit(&alice, "other", true),
            "another room is its own"
        );
        assert!(filter.admit(&alice, "general", false), "a change passes");
        assert!(filter.admit(&alice, "general", true), "and back");
    }
}
