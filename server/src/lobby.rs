//! The live lobby: the hints (`Push::LobbyChanged`) that the public listing changed, sent
//! to the connections that watch it (`WatchLobby`).
//!
//! Handlers call [`LobbyHints::changed`] when a listed room is created, deleted, made
//! hidden or public, gets another topic or password, or gains or loses a member; never
//! for a hidden room or a direct conversation. One task coalesces the calls: it pushes the
//! hint at once, then waits [`LOBBY_PUSH_INTERVAL_SECS`] before it pushes again, and
//! every call in between is told by that one next push. So however fast rooms change, a
//! watcher gets at most one hint per interval from this instance. The hint carries
//! nothing: a watcher learns only what `ListRooms` shows anyway.

use std::sync::Arc;
use std::time::Duration;

use shared::protocol::{Push, LOBBY_PUSH_INTERVAL_SECS};
use tokio::sync::mpsc;

use crate::handlers::encode_push;
use crate::hub::Fanout;

/// The least time between two hints from this instance.
pub const LOBBY_PUSH_INTERVAL: Duration = Duration::from_secs(LOBBY_PUSH_INTERVAL_SECS);

/// Where handlers say the listing changed. Its task ends when this is dropped.
#[derive(Debug)]
pub struct LobbyHints {
    pending: mpsc::Sender<()>,
}

impl LobbyHints {
    /// Starts the task that pushes hints through `hub`, at most one per `interval`.
    pub fn spawn(hub: Arc<dyn Fanout>, interval: Duration) -> Self {
        // One slot: a change while one is pending adds nothing.
        let (pending, rx) = mpsc::channel(1);
        tokio::spawn(run(hub, rx, interval));
        Self { pending }
    }

    /// Says the public listing changed.
    pub fn changed(&self) {
        let _ = self.pending.try_send(());
    }
}

async fn run(hub: Arc<dyn Fanout>, mut pending: mpsc::Receiver<()>, interval: Duration) {
    let frame = match encode_push(Push::LobbyChanged) {
        Ok(frame) => frame,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the lobby hint");
            return;
        }
    };
    while pending.recv().await.is_some() {
        if hub.lobby(frame.clone()).await.is_err() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::hub::{HubHandle, Registration};

    #[tokio::test]
    async fn a_flood_of_changes_is_one_hint_per_interval_to_watchers_only() {
        let interval = Duration::from_millis(400);
        let (hub, _task) = HubHandle::spawn();
        let mut watcher = connect(&hub, 1, "alice").await;
        let mut other = connect(&hub, 2, "alice").await;
        hub.watch_lobby(1, "alice".into(), true).await.expect("hub");
        let hints = LobbyHints::spawn(Arc::new(hub.clone()), interval);
        for _ in 0..20 {
            hints.changed();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // About 0.1 s of changes: one hint at once, the rest wait for the interval.
        assert_eq!(drain(&mut watcher), 1);
        tokio::time::sleep(interval).await;
        assert_eq!(
            drain(&mut watcher),
            1,
            "the changes during the interval, told once"
        );
        tokio::time::sleep(interval * 2).await;
        assert_eq!(drain(&mut watcher), 0, "nothing changed since");
        assert_eq!(
            drain(&mut other),
            0,
            "the user's other connection does not watch"
        );
        hub.watch_lobby(1, "alice".into(), false)
            .await
            .expect("hub");
        hints.changed();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(drain(&mut watcher), 0, "stopped watching");
    }

    async fn connect(
        hub: &HubHandle,
        conn: u64,
        user: &str,
    ) -> mpsc::Receiver<crate::hub::PushFrame> {
        let (pushes, rx) = crate::ws::outbound::push_queue(8, 1 << 20);
        let (evicted, _) = tokio::sync::oneshot::channel();
        hub.connect(conn, user.into(), Registration { pushes, evicted })
            .await
            .expect("hub");
        rx
    }

    fn drain(rx: &mut mpsc::Receiver<crate::hub::PushFrame>) -> usize {
        let mut n = 0;
        while let Ok(frame) = rx.try_recv() {
            let (_, own) = frame.into_parts();
            assert_ne!(own, Bytes::new());
            n += 1;
        }
        n
    }
}
