//! Who is online on the other instances.
//!
//! Each instance keeps one heartbeat document, `{ _id: <instance>, users: [...],
//! expires_at }`, rewritten every interval and soon after its connections change, with an
//! expiry three intervals ahead. Each instance reads all the heartbeat documents on the
//! same beat and keeps the users of the live ones other than its own. An instance that
//! dies stops rewriting its document: three intervals later nobody counts its users, and
//! MongoDB's TTL monitor deletes the document (the expiry is checked when reading, so a
//! slow TTL monitor changes nothing). An instance that stops gracefully deletes its
//! document at once.
//!
//! Reading every document rather than asking MongoDB for the unexpired ones costs the same
//! (one small document per instance) and keeps the clock comparison in one place.
//!
//! A user who was in the other instances' documents at one beat and is in none at the
//! next (they logged out there, or that instance died) is noted for `crate::presence`,
//! which tells their co-members if they are offline now.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use mongodb::Collection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::hub::HubHandle;
use crate::presence::{Mark, PresenceChanges};

/// How long after a change of this instance's connections its heartbeat is rewritten
/// (changes within it are written together).
const SETTLE: Duration = Duration::from_millis(200);

/// Heartbeats an instance may miss before its users are no longer counted.
pub const MISSED_BEATS: u32 = 3;

/// The other instances' online users, as last read.
#[derive(Debug, Default)]
pub struct Presence {
    remote: RwLock<Arc<HashSet<String>>>,
    changed: Notify,
}

impl Presence {
    /// Users online on other live instances (canonical names).
    pub fn remote(&self) -> Arc<HashSet<String>> {
        match self.remote.read() {
            Ok(set) => Arc::clone(&set),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Says this instance's connections changed: its heartbeat is rewritten soon.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Replaces the other instances' users; returns those who were there and are not
    /// any more.
    fn set_remote(&self, users: HashSet<String>) -> Vec<String> {
        let users = Arc::new(users);
        let before = match self.remote.write() {
            Ok(mut set) => std::mem::replace(&mut *set, Arc::clone(&users)),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), Arc::clone(&users)),
        };
        before.difference(&users).cloned().collect()
    }
}

/// The heartbeat task's parts.
pub struct Heartbeat {
    /// The heartbeat documents.
    pub collection: Collection<Document>,
    /// This instance's id.
    pub instance: String,
    /// This instance's connections.
    pub hub: HubHandle,
    /// Where the other instances' users are kept.
    pub presence: Arc<Presence>,
    /// Time between beats.
    pub interval: Duration,
    /// Where users who left the other instances' documents are noted.
    pub changes: Arc<PresenceChanges>,
}

impl Heartbeat {
    /// Beats until `shutdown`, then deletes this instance's document.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.beat().await {
                tracing::warn!(error = %e, "presence heartbeat failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.interval) => {}
                () = self.presence.changed.notified() => {
                    tokio::time::sleep(SETTLE).await;
                }
            }
        }
        if let Err(e) = self
            .collection
            .delete_one(doc! { "_id": &self.instance })
            .await
        {
            tracing::warn!(error = %e, "could not delete this instance's presence");
        }
    }

    /// Writes this instance's users and reads the others'.
    async fn beat(&self) -> anyhow::Result<()> {
        let mut users = self.hub.users().await?;
        users.sort();
        let ttl = self.interval * MISSED_BEATS;
        let expires = DateTime::from_millis(
            DateTime::now()
                .timestamp_millis()
                .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
        );
        self.collection
            .replace_one(
                doc! { "_id": &self.instance },
                doc! { "_id": &self.instance, "users": users, "expires_at": expires },
            )
            .upsert(true)
            .await?;
        let mut remote = HashSet::new();
        let mut cursor = self.collection.find(doc! {}).await?;
        let now = DateTime::now();
        while cursor.advance().await? {
            let beat = cursor.deserialize_current()?;
            remote.extend(live_users(&beat, &self.instance, now));
        }
        for user in self.presence.set_remote(remote) {
            self.changes.note(&user, Mark::Gone);
        }
        Ok(())
    }
}

/// The users a heartbeat document names, unless it is `own` or expired at `now`.
fn live_users(beat: &Document, own: &str, now: DateTime) -> Vec<String> {
    let live = beat.get_str("_id").is_ok_and(|id| id != own)
        && beat.get_datetime("expires_at").is_ok_and(|at| *at > now);
    if !live {
        return Vec::new();
    }
    beat.get_array("users")
        .map(|users| {
            users
                .iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_other_unexpired_instances_count() {
        let now = DateTime::from_millis(10_000);
        let later = DateTime::from_millis(11_000);
        let earlier = DateTime::from_millis(9_000);
        let beat = |id: &str, at| doc! { "_id": id, "users": ["alice", "bob"], "expires_at": at };
        assert_eq!(live_users(&beat("b", later), "a", now), ["alice", "bob"]);
        assert!(
            live_users(&beat("b", earlier), "a", now).is_empty(),
            "a dead instance"
        );
        assert!(
            live_users(&beat("a", later), "a", now).is_empty(),
            "our own"
        );
    }
}
