//! Presence: telling the users who share a room with a user when that user comes online
//! (their first session, on any instance) or goes offline (their last one ended).
//!
//! The hub notes in a [`PresenceChanges`] each user whose first connection on this
//! instance started or whose last one here ended ([`Mark::Here`]); with scale-out, the
//! heartbeat notes each user who left another instance's heartbeat ([`Mark::Gone`]: they
//! logged out there, or that instance died). [`run`] takes the notes in batches, asks the
//! [`Fanout`](crate::hub::Fanout) whether each user is online now (on any instance), and
//! pushes `Presence` to everyone who shares a room with them, and to nobody else.
//!
//! # Bounds
//! Notes are kept per user (the latest wins), so their memory is bounded by the users
//! whose state changed since the last batch, however often they reconnect. A batch is
//! taken as soon as the previous one is told, so a user flapping while one is told is
//! told once, in their latest state (and every flap costs them a login). A user is told online only when this instance has not told it yet,
//! and offline only when it has (or when they left another instance's heartbeat, which no
//! instance may have told: an instance that died). Each transition costs one read of the
//! user's memberships and one member list per room.
//!
//! # What it reveals
//! To each co-member, when the user connects and disconnects, to within about a second.
//! Nothing to anyone who shares no room with them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use shared::protocol::Push;
use shared::Username;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::HandlerError;
use crate::handlers::{encode_push, hub_gone, AppState};

/// Why a user's presence may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Their first connection on this instance started, or their last one here ended.
    Here,
    /// They are no longer in another instance's heartbeat.
    Gone,
}

/// Users whose presence may have changed, waiting to be told.
#[derive(Debug, Default)]
pub struct PresenceChanges {
    marks: Mutex<HashMap<String, Mark>>,
    ready: Notify,
}

impl PresenceChanges {
    /// Notes that `user` (canonical name) may have come online or gone offline. A
    /// [`Mark::Gone`] is kept over a [`Mark::Here`] for the same user.
    pub fn note(&self, user: &str, mark: Mark) {
        let mut marks = match self.marks.lock() {
            Ok(marks) => marks,
            Err(poisoned) => poisoned.into_inner(),
        };
        let kept = marks.entry(user.to_owned()).or_insert(mark);
        if mark == Mark::Gone {
            *kept = Mark::Gone;
        }
        drop(marks);
        self.ready.notify_one();
    }

    /// Takes every note so far.
    fn take(&self) -> Vec<(String, Mark)> {
        let mut marks = match self.marks.lock() {
            Ok(marks) => marks,
            Err(poisoned) => poisoned.into_inner(),
        };
        marks.drain().collect()
    }
}

/// Tells presence changes until `shutdown`.
pub async fn run(state: Arc<AppState>, changes: Arc<PresenceChanges>, shutdown: CancellationToken) {
    // The users this instance last told online.
    let mut told_online = HashSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = changes.ready.notified() => {}
        }
        if let Err(e) = tell_batch(&state, &mut told_online, changes.take()).await {
            tracing::warn!(error = %e, "presence changes could not be told");
        }
    }
}

/// Resolves each noted user's state now and tells those whose state is news.
async fn tell_batch(
    state: &AppState,
    told_online: &mut HashSet<String>,
    marks: Vec<(String, Mark)>,
) -> Result<(), HandlerError> {
    if marks.is_empty() {
        return Ok(());
    }
    let groups = marks.iter().map(|(user, _)| vec![user.clone()]).collect();
    let counts = state.hub.online(groups).await.map_err(hub_gone)?;
    for ((user, mark), online) in marks.into_iter().zip(counts.per_group) {
        let online = online > 0;
        let news = if online {
            told_online.insert(user.clone())
        } else {
            told_online.remove(&user) || mark == Mark::Gone
        };
        if news {
            if let Err(e) = tell(state, &user, online).await {
                tracing::warn!(error = %e, user, "a presence change could not be told");
            }
        }
    }
    Ok(())
}

/// Pushes `Presence` for `user` (canonical name) to everyone who shares a room with them.
async fn tell(state: &AppState, user: &str, online: bool) -> Result<(), HandlerError> {
    let username =
        Username::parse(user).map_err(|e| HandlerError::Internal(format!("stored name: {e}")))?;
    let mut recipients = BTreeSet::new();
    for room in state.store.rooms_of(&username).await? {
        for member in state.store.member_names(&room.key).await? {
            recipients.insert(member.canonical());
        }
    }
    recipients.remove(user);
    if recipients.is_empty() {
        return Ok(());
    }
    let frame = encode_push(Push::Presence { username, online })?;
    state
        .hub
        .broadcast(recipients.into_iter().collect(), frame, None)
        .await
        .map_err(hub_gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_kept_once_per_user_and_gone_wins() {
        let changes = PresenceChanges::default();
        for _ in 0..100 {
            changes.note("alice", Mark::Here);
        }
        changes.note("bob", Mark::Gone);
        changes.note("bob", Mark::Here);
        let mut taken = changes.take();
        taken.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            taken,
            [
                ("alice".to_owned(), Mark::Here),
                ("bob".to_owned(), Mark::Gone)
            ]
        );
        assert!(changes.take().is_empty());
    }
}
