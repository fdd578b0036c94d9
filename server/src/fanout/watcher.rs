//! The change stream of the other instances' events, applied to this instance's hub.
//!
//! - **What it sees.** Inserts into the events collection whose `origin` is not this
//!   instance: the `$match` runs in the stream's pipeline, so an instance is never sent its
//!   own events (it delivered those locally when it wrote them).
//! - **Order.** Events are applied one at a time in the stream's order, which is the
//!   order they were committed; one instance writes its events in the order its handlers
//!   asked (one writer task), so what one sender sends reaches every instance in `seq`
//!   order.
//! - **A lost stream** (network error, failover, a restarted MongoDB) is reopened after
//!   the last event applied (`resumeAfter` its token), with growing pauses, so nothing is
//!   skipped or applied twice; `/health` says `resuming` meanwhile.
//! - **History lost** (the token is older than the oplog, or unknown to the server): the
//!   deliveries since the last event applied cannot be replayed. The watcher says so in
//!   the log, opens a new stream from now, and only then closes every connection of this
//!   instance with 1012 ([`Eviction::Resync`]): clients reconnect (here or elsewhere)
//!   and re-read history, which has everything they missed.
//! - **The token is saved** in the cursors collection under the instance id (at most once
//!   a second, and at shutdown). A restarted instance resumes after it and applies the
//!   backlog before it accepts a connection. No connection survives a restart, so the
//!   backlog reaches nobody; resuming keeps the stream continuous and turns a history loss
//!   into a log line instead of a silent gap. A token saved longer ago than
//!   [`CATCH_UP_WINDOW`] is not resumed (that much backlog would only delay start-up).

use std::time::{Duration, Instant};

use mongodb::bson::{self, doc, DateTime, Document};
use mongodb::change_stream::event::{ChangeStreamEvent, ResumeToken};
use mongodb::change_stream::ChangeStream;
use mongodb::error::{Error, ErrorKind};
use mongodb::Collection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::event::{self, Event};
use crate::hub::{Eviction, Fanout, HubHandle};

/// A saved token older than this is not resumed after a restart.
pub const CATCH_UP_WINDOW: Duration = Duration::from_secs(300);

/// How long the server may hold an empty `getMore` waiting for events.
const MAX_AWAIT: Duration = Duration::from_millis(500);

/// An empty answer sooner than this means the server did not wait for events (an
/// emulator, or a server that does not support `maxAwaitTimeMS`): pause [`POLL`] before
/// asking again, so the loop does not spin.
const ANSWERED_AT_ONCE: Duration = Duration::from_millis(50);

/// The pause after an empty answer that came at once.
const POLL: Duration = Duration::from_millis(20);

/// How often the token is saved at most.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Pauses between attempts to reopen a lost stream.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// MongoDB's codes for a resume point the server no longer has: CappedPositionLost,
/// InvalidResumeToken, ChangeStreamFatalError, ChangeStreamHistoryLost.
const HISTORY_LOST: [i32; 4] = [136, 260, 280, 286];

/// The state of the change stream, as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Open and applied up to date: the other instances' deliveries arrive.
    Live,
    /// Lost, being reopened from the last event applied; deliveries are held back, not
    /// lost.
    Resuming,
}

impl StreamState {
    /// The name `/health` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Resuming => "resuming",
        }
    }
}

type Stream = ChangeStream<ChangeStreamEvent<Document>>;

/// The watcher's parts.
pub struct Watcher {
    /// The events collection.
    pub events: Collection<Document>,
    /// Where resume tokens are saved, one document per instance.
    pub cursors: Collection<Document>,
    /// This instance's id.
    pub instance: String,
    /// This instance's connections.
    pub hub: HubHandle,
    /// Where the stream's state is published.
    pub state: watch::Sender<StreamState>,
}

/// A watcher with its stream open and caught up.
pub struct Running {
    parts: Watcher,
    stream: Stream,
    token: Option<ResumeToken>,
    saved: Option<ResumeToken>,
    saved_at: Instant,
    /// Events applied at start-up, before the stream was live.
    backlog: u64,
}

impl Watcher {
    /// Opens the stream (after the saved token when there is a recent one), applies the
    /// backlog, and returns the watcher ready to [`run`](Running::run).
    ///
    /// # Errors
    /// When MongoDB cannot be reached or refuses the stream.
    pub async fn start(self) -> anyhow::Result<Running> {
        let saved = self.saved_token().await?;
        let stream = match saved {
            Some(token) => match self.open(Some(token)).await {
                Ok(stream) => stream,
                Err(e) if history_lost(&e) => {
                    tracing::error!(
                        error = %e,
                        "the saved change-stream position is gone from MongoDB's history: \
                         starting from now (this instance had no connections to miss it)"
                    );
                    self.open(None).await?
                }
                Err(e) => return Err(e.into()),
            },
            None => self.open(None).await?,
        };
        let mut running = Running {
            parts: self,
            stream,
            token: None,
            saved: None,
            saved_at: Instant::now(),
            backlog: 0,
        };
        // Caught up once the server has answered empty twice running: the first answer
        // after opening is the `aggregate`'s own first batch, which may be empty even when
        // events wait (the driver hands it over without a `getMore`).
        let mut empty = 0;
        while empty < 2 {
            match running.stream.next_if_any().await? {
                Some(event) => {
                    running.parts.apply(event).await;
                    running.backlog += 1;
                    empty = 0;
                }
                None => empty += 1,
            }
        }
        running.token = running.stream.resume_token();
        running.save().await;
        tracing::info!(backlog = running.backlog, "change stream open");
        running.parts.state.send_replace(StreamState::Live);
        Ok(running)
    }

    /// The saved token, if it is recent enough to resume.
    async fn saved_token(&self) -> anyhow::Result<Option<ResumeToken>> {
        let Some(saved) = self
            .cursors
            .find_one(doc! { "_id": &self.instance })
            .await?
        else {
            return Ok(None);
        };
        let age = saved.get_datetime("saved_at").map_or(Duration::MAX, |at| {
            let ms = DateTime::now().timestamp_millis() - at.timestamp_millis();
            Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        });
        if age > CATCH_UP_WINDOW {
            tracing::info!(
                age_secs = age.as_secs(),
                "the saved change-stream position is older than the catch-up window: \
                 starting from now"
            );
            return Ok(None);
        }
        match saved.get("token").map(|t| bson::from_bson(t.clone())) {
            Some(Ok(token)) => Ok(Some(token)),
            _ => {
                tracing::warn!("the saved change-stream position is unreadable: starting from now");
                Ok(None)
            }
        }
    }

    async fn open(&self, after: Option<ResumeToken>) -> Result<Stream, Error> {
        self.events
            .watch()
            .pipeline([doc! { "$match": {
                "operationType": "insert",
                "fullDocument.origin": { "$ne": &self.instance },
            } }])
            .max_await_time(MAX_AWAIT)
            .resume_after(after)
            .await
    }

    /// Hands one event to the hub.
    async fn apply(&self, change: ChangeStreamEvent<Document>) {
        let Some(doc) = change.full_document else {
            return;
        };
        let outcome = match event::decode(&doc) {
            Ok(Event::Deliver(frames)) => self.hub.deliver(frames, None).await,
            Ok(Event::Evict { user, why }) => self.hub.evict(user, None, why).await,
            Ok(Event::Lobby(frame)) => self.hub.lobby(frame).await,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a fan-out event this version cannot read");
                return;
            }
        };
        if outcome.is_err() {
            tracing::debug!("the hub has stopped; event not applied");
        }
    }
}

impl Running {
    /// How many events were applied at start-up, before the stream was live (the backlog
    /// since the saved position).
    #[cfg(test)]
    pub fn backlog(&self) -> u64 {
        self.backlog
    }

    /// Applies events until `shutdown`, reopening the stream when it is lost; saves the
    /// token before it returns.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let asked = Instant::now();
            let step = tokio::select! {
                () = shutdown.cancelled() => break,
                step = self.stream.next_if_any() => step,
            };
            match step {
                Ok(Some(event)) => {
                    self.parts.apply(event).await;
                    self.token = self.stream.resume_token();
                    self.save_if_due().await;
                }
                Ok(None) => {
                    self.token = self.stream.resume_token();
                    self.save_if_due().await;
                    if asked.elapsed() < ANSWERED_AT_ONCE {
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(POLL) => {}
                        }
                    }
                }
                Err(e) => match self.recover(e, &shutdown).await {
                    Some(stream) => self.stream = stream,
                    None => break,
                },
            }
        }
        self.save().await;
    }

    /// Reopens a lost stream after the last event applied, or from now when the history
    /// is lost (then closes this instance's connections); `None` on shutdown.
    async fn recover(&mut self, mut error: Error, shutdown: &CancellationToken) -> Option<Stream> {
        let mut pause = FIRST_RETRY;
        // Once the history is lost, the connections are closed after whichever attempt
        // opens the new stream, even if other errors come in between.
        let mut resync = false;
        loop {
            self.parts.state.send_replace(StreamState::Resuming);
            if history_lost(&error) {
                resync = true;
                tracing::error!(
                    error = %error,
                    "change-stream history lost: other instances' deliveries since the \
                     last event applied cannot be replayed; this instance's clients will \
                     be told to reconnect and re-read history"
                );
                self.token = None;
            } else {
                tracing::warn!(error = %error, ?pause, "change stream lost; resuming after the last event applied");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(LAST_RETRY);
            }
            match self.parts.open(self.token.clone()).await {
                Ok(stream) => {
                    if resync {
                        // Only now that the new stream is open: a client that reconnects
                        // here reads history after this point and misses nothing.
                        if self.parts.hub.evict_all(Eviction::Resync).await.is_err() {
                            tracing::debug!("the hub has stopped");
                        }
                    }
                    self.parts.state.send_replace(StreamState::Live);
                    tracing::info!("change stream open again");
                    return Some(stream);
                }
                Err(e) => error = e,
            }
        }
    }

    async fn save_if_due(&mut self) {
        if self.token != self.saved && self.saved_at.elapsed() >= SAVE_EVERY {
            self.save().await;
        }
    }

    /// Saves the token of the last event applied (the stream's position).
    async fn save(&mut self) {
        let Some(token) = &self.token else {
            return;
        };
        let saved = async {
            let token = bson::to_bson(token)?;
            self.parts
                .cursors
                .replace_one(
                    doc! { "_id": &self.parts.instance },
                    doc! { "_id": &self.parts.instance, "token": token, "saved_at": DateTime::now() },
                )
                .upsert(true)
                .await?;
            anyhow::Ok(())
        }
        .await;
        match saved {
            Ok(()) => {
                self.saved = self.token.clone();
                self.saved_at = Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "could not save the change-stream position"),
        }
    }
}

/// Whether the server no longer has the stream's resume point.
fn history_lost(e: &Error) -> bool {
    matches!(e.kind.as_ref(), ErrorKind::Command(c) if HISTORY_LOST.contains(&c.code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_error(code: i32) -> Error {
        let e: mongodb::error::CommandError =
            bson::from_document(doc! { "code": code, "codeName": "X", "errmsg": "x" })
                .expect("command error");
        Error::from(ErrorKind::Command(e))
    }

    #[test]
    fn only_a_lost_resume_point_counts_as_history_lost() {
        for code in HISTORY_LOST {
            assert!(history_lost(&command_error(code)), "{code}");
        }
        // NotWritablePrimary, HostUnreachable: resumable, the position is still there.
        for code in [10107, 6] {
            assert!(!history_lost(&command_error(code)), "{code}");
        }
    }

    #[test]
    fn a_token_survives_being_saved_as_bson() {
        let token: ResumeToken =
            bson::from_bson(bson::Bson::Document(doc! { "_data": "8265AB" })).expect("reads");
        let back: ResumeToken =
            bson::from_bson(bson::to_bson(&token).expect("writes")).expect("reads");
        assert_eq!(back, token);
    }
}
