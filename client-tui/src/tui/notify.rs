//! Desktop notifications: what a [`Notice`] says, the [`Notifier`] that shows it, and
//! [`Notifications`], which shows notices off the UI thread.
//!
//! The state decides *when* to notify (with the bell and the hotlist, see
//! `state/attention.rs`); this module only carries notices out. A notice never holds a
//! message's text, only who wrote and where ("mention from alice in #town"), so nothing
//! read in the client reaches the desktop's notification history or its logs.
//!
//! Showing goes through D-Bus ([`DesktopNotifier`], with `notify-rust`'s pure-Rust zbus
//! backend). A terminal often has no session bus or no notification daemon (ssh, a
//! console, a container), and a bus call can take seconds to fail, so notices are shown
//! by a thread of their own: the UI only queues them, never waits, and the first failure
//! logs one warning and switches the thread off for the rest of the session.

use std::sync::mpsc;

use shared::{RoomName, Username};

/// How many notices may wait for the notification thread; more are dropped (a burst of
/// mentions needs no more than a few popups).
const QUEUE: usize = 8;

/// The application name the desktop shows beside a notice.
const APP_NAME: &str = "e2e-chat";

/// Something worth a desktop notification: who wrote where, never what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The user was mentioned in a group room not shown.
    Mention {
        /// Who mentioned them.
        from: Username,
        /// In which room.
        room: RoomName,
    },
    /// A message arrived in a direct conversation not shown.
    Direct {
        /// Who sent it.
        from: Username,
    },
}

impl Notice {
    /// The notice in words: "mention from alice in #town", "direct message from alice".
    pub fn body(&self) -> String {
        match self {
            Notice::Mention { from, room } => format!("mention from {from} in #{room}"),
            Notice::Direct { from } => format!("direct message from {from}"),
        }
    }
}

/// Shows a notice to the user. Blocking: [`Notifications`] calls it on its own thread.
pub trait Notifier: Send + 'static {
    /// Shows `notice`.
    ///
    /// # Errors
    /// Why it could not be shown (no session bus, no notification daemon), in words for
    /// the log.
    fn show(&self, notice: &Notice) -> Result<(), String>;
}

/// The desktop's notification daemon, over the D-Bus session bus.
#[derive(Debug, Clone, Copy, Default)]
pub struct DesktopNotifier;

impl Notifier for DesktopNotifier {
    fn show(&self, notice: &Notice) -> Result<(), String> {
        notify_rust::Notification::new()
            .appname(APP_NAME)
            .summary(APP_NAME)
            .body(&notice.body())
            .show()
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Shows notices on a thread of its own, so the UI never waits for the desktop. After
/// the first failure the thread logs one warning, reports it through `on_failure` and
/// stops: later notices are dropped.
#[derive(Debug)]
pub struct Notifications {
    /// The queue to the notification thread (closed once it stopped).
    queue: mpsc::SyncSender<Notice>,
}

impl Notifications {
    /// Starts the notification thread over `notifier`. `on_failure` is called once, on
    /// that thread, with the reason of the first failure.
    ///
    /// # Errors
    /// If the thread cannot be started.
    pub fn start(
        notifier: impl Notifier,
        on_failure: impl FnOnce(String) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (queue, notices) = mpsc::sync_channel::<Notice>(QUEUE);
        std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                for notice in notices {
                    if let Err(reason) = notifier.show(&notice) {
                        tracing::warn!(
                            %reason,
                            "desktop notifications failed; they are off until restart"
                        );
                        on_failure(reason);
                        return;
                    }
                }
            })?;
        Ok(Self { queue })
    }

    /// Queues `notice` without waiting; it is dropped if the queue is full or the
    /// thread stopped after a failure.
    pub fn show(&self, notice: Notice) {
        // Full or stopped: the notice is not worth waiting for.
        let _ = self.queue.try_send(notice);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// Records what it was asked to show; fails every call if `fail` is set.
    #[derive(Clone, Default)]
    struct Recording {
        shown: Arc<Mutex<Vec<Notice>>>,
        fail: bool,
    }

    impl Notifier for Recording {
        fn show(&self, notice: &Notice) -> Result<(), String> {
            self.shown.lock().expect("lock").push(notice.clone());
            if self.fail {
                return Err("no session bus".into());
            }
            Ok(())
        }
    }

    fn direct(from: &str) -> Notice {
        Notice::Direct {
            from: Username::parse(from).expect("valid"),
        }
    }

    #[test]
    fn notices_name_the_sender_and_room_but_never_the_text() {
        let mention = Notice::Mention {
            from: Username::parse("alice").expect("valid"),
            room: RoomName::parse("town").expect("valid"),
        };
        assert_eq!(mention.body(), "mention from alice in #town");
        assert_eq!(direct("alice").body(), "direct message from alice");
    }

    #[test]
    fn notices_are_shown_off_the_calling_thread_in_order() {
        let notifier = Recording::default();
        let shown = notifier.shown.clone();
        let notifications = Notifications::start(notifier, |_| {}).expect("starts");
        notifications.show(direct("alice"));
        notifications.show(direct("bob"));
        // Closing the queue lets the thread finish what it holds.
        drop(notifications);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while shown.lock().expect("lock").len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            *shown.lock().expect("lock"),
            vec![direct("alice"), direct("bob")]
        );
    }

    #[test]
    fn the_first_failure_is_reported_once_and_switches_notifications_off() {
        let notifier = Recording {
            fail: true,
            ..Recording::default()
        };
        let shown = notifier.shown.clone();
        let (failed, failures) = mpsc::channel();
        let notifications = Notifications::start(notifier, move |reason| {
            let _ = failed.send(reason);
        })
        .expect("starts");
        notifications.show(direct("alice"));
        let reason = failures
            .recv_timeout(Duration::from_secs(5))
            .expect("the failure is reported");
        assert_eq!(reason, "no session bus");
        // Stopped: later notices are dropped without a panic or a wait.
        for _ in 0..(QUEUE * 2) {
            notifications.show(direct("bob"));
        }
        assert!(failures.recv_timeout(Duration::from_millis(50)).is_err());
        assert_eq!(*shown.lock().expect("lock"), vec![direct("alice")]);
    }

    #[test]
    fn without_a_session_bus_the_desktop_notifier_fails_quickly_and_is_switched_off() {
        // Only this test reads the variable (and nextest gives it a process of its own).
        std::env::set_var(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/e2e-chat-test-bus",
        );
        let (failed, failures) = mpsc::channel();
        let notifications = Notifications::start(DesktopNotifier, move |reason| {
            let _ = failed.send(reason);
        })
        .expect("starts");
        notifications.show(direct("alice"));
        let reason = failures.recv_timeout(Duration::from_secs(10));
        assert!(reason.is_ok(), "the failure is reported: {reason:?}");
        notifications.show(direct("bob"));
    }
}
