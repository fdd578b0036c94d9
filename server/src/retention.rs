//! The retention task: deletes the messages the retention settings do not keep, on a
//! schedule, on either store (through [`Store::prune_messages`]).
//!
//! Off unless a limit is set (`RETENTION_DAYS`, `RETENTION_MESSAGES_PER_ROOM`). Every
//! instance sharing a MongoDB runs it; the deletes are idempotent, so overlapping runs
//! only repeat work. It stops with the server's shutdown token and holds the store only
//! while it runs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{Retention, Store};

/// How often the task runs when the server does not say: often enough that messages
/// outlive their limit by little, rarely enough to cost nothing.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// What to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionSettings {
    /// Messages older than this are deleted; `None` keeps any age.
    pub max_age: Option<Duration>,
    /// Each room keeps at most this many of its newest messages; `None` keeps any number.
    pub max_messages_per_room: Option<u64>,
}

impl RetentionSettings {
    /// The store's policy for a run at `now_ms` (milliseconds since the Unix epoch).
    pub fn policy_at(&self, now_ms: u64) -> Retention {
        Retention {
            older_than_ms: self.max_age.map(|age| {
                now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
            }),
            keep_newest: self.max_messages_per_room,
        }
    }
}

/// Starts the task, unless the settings keep everything (then `None`).
pub fn spawn(
    store: Arc<dyn Store>,
    settings: RetentionSettings,
    interval: Duration,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    if settings.policy_at(0).keeps_everything() {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let policy = settings.policy_at(now_ms());
            tokio::select! {
                () = shutdown.cancelled() => return,
                pruned = store.prune_messages(&policy) => match pruned {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "retention deleted messages"),
                    Err(e) => tracing::warn!(error.cause_chain = ?e, "retention run failed"),
                },
            }
        }
    }))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use shared::protocol::Envelope;
    use shared::{MessageId, RoomName, Username};

    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{NewMessage, RoomKey, RoomRecord};

    #[test]
    fn the_policy_follows_the_settings() {
        let day = Duration::from_secs(86_400);
        let settings = RetentionSettings {
            max_age: Some(day),
            max_messages_per_room: Some(10),
        };
        assert_eq!(
            settings.policy_at(2 * 86_400_000),
            Retention {
                older_than_ms: Some(86_400_000),
                keep_newest: Some(10),
            }
        );
        assert!(RetentionSettings::default().policy_at(5).keeps_everything());
    }

    /// With a limit set, the task prunes on its own and stops with the shutdown token;
    /// without one it never starts.
    #[tokio::test]
    async fn the_task_prunes_until_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
        let alice = Username::parse("alice").expect("name");
        let room = RoomName::parse("room").expect("room");
        let key = RoomKey::public(&room);
        store
            .create_room(
                &key,
                RoomRecord::group(room, alice.clone(), None, false, 0),
                1,
            )
            .await
            .expect("room");
        for i in 1..=5u8 {
            store
                .append_message(NewMessage {
                    room: key.clone(),
                    message_id: MessageId([i; 16]),
                    sender: alice.clone(),
                    server_time_ms: 1,
                    envelopes: vec![Envelope {
                        recipient: alice.clone(),
                        wrapped_key: vec![i],
                        nonce: [i; 12],
                        ciphertext: vec![i],
                    }],
                })
                .await
                .expect("append");
        }
        let token = CancellationToken::new();
        assert!(spawn(
            Arc::clone(&store),
            RetentionSettings::default(),
            Duration::from_millis(10),
            token.clone()
        )
        .is_none());
        let settings = RetentionSettings {
            max_age: None,
            max_messages_per_room: Some(2),
        };
        let task = spawn(
            Arc::clone(&store),
            settings,
            Duration::from_millis(10),
            token.clone(),
        )
        .expect("a limit starts the task");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let kept = store
                .history_for(&key, &alice, None, 10)
                .await
                .expect("history")
                .messages
                .len();
            if kept == 2 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "kept {kept}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task stops with the token")
            .expect("the task did not panic");
    }
}
