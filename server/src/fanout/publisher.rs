//! Writes this instance's events for the others, in the order they were asked for.
//!
//! One task owns the writes: whatever deliveries are waiting when it is free go out in one
//! ordered `insertMany` (under load, one round trip carries many messages), and each
//! caller is answered once its documents are durable (`w: "majority"`, like the message
//! itself), so a handler's `deliver` returns — and its sender is acknowledged — only
//! after the other instances can see the delivery. A write that fails is retried document
//! by document (each has its own `_id`, so one already written is recognised by its
//! duplicate-key error, never written twice) until [`PUBLISH_DEADLINE`].

use std::time::{Duration, Instant};

use mongodb::bson::Document;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::Collection;
use tokio::sync::{mpsc, oneshot};

/// How long a write is retried before its callers are told it failed.
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// Requests (each one delivery or eviction) taken into one `insertMany` at most.
const BATCH_REQUESTS: usize = 256;

/// Requests waiting for the writer before callers wait to queue.
const QUEUE: usize = 4096;

const DUPLICATE_KEY: i32 = 11000;

/// Why events could not be written.
#[derive(Debug, thiserror::Error)]
#[error("fan-out events could not be written for {PUBLISH_DEADLINE:?}")]
pub struct PublishFailed;

struct Request {
    docs: Vec<Document>,
    done: oneshot::Sender<Result<(), PublishFailed>>,
}

/// A cloneable handle to the writer task.
#[derive(Clone, Debug)]
pub struct Publisher {
    tx: mpsc::Sender<Request>,
}

impl Publisher {
    /// Starts the writer on `events`; it ends when every handle is dropped.
    pub fn spawn(events: Collection<Document>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(events, rx));
        Self { tx }
    }

    /// Writes `docs`, in order after everything published before, and waits until they
    /// are durable.
    ///
    /// # Errors
    /// [`PublishFailed`] when they could not be written within [`PUBLISH_DEADLINE`], or the
    /// writer has stopped.
    pub async fn publish(&self, docs: Vec<Document>) -> Result<(), PublishFailed> {
        if docs.is_empty() {
            return Ok(());
        }
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Request { docs, done })
            .await
            .map_err(|_| PublishFailed)?;
        rx.await.map_err(|_| PublishFailed)?
    }
}

async fn run(events: Collection<Document>, mut rx: mpsc::Receiver<Request>) {
    let mut waiting = Vec::new();
    while rx.recv_many(&mut waiting, BATCH_REQUESTS).await > 0 {
        let docs: Vec<Document> = waiting
            .iter()
            .flat_map(|r: &Request| r.docs.iter().cloned())
            .collect();
        let outcome = write(&events, docs).await;
        for request in waiting.drain(..) {
            let _ = request
                .done
                .send(outcome.as_ref().map_err(|_| PublishFailed).copied());
        }
    }
}

/// One ordered `insertMany`; on failure, the documents one by one, in order, until the
/// deadline.
async fn write(events: &Collection<Document>, docs: Vec<Document>) -> Result<(), PublishFailed> {
    let first = match events.insert_many(&docs).ordered(true).await {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    tracing::warn!(error = %first, documents = docs.len(), "fan-out write failed; retrying");
    let deadline = Instant::now() + PUBLISH_DEADLINE;
    let mut backoff = Duration::from_millis(50);
    let mut next = 0;
    while next < docs.len() {
        match events.insert_one(&docs[next]).await {
            Ok(_) => next += 1,
            Err(e) if is_duplicate_key(&e) => next += 1,
            Err(e) => {
                if Instant::now() + backoff > deadline {
                    tracing::error!(
                        error = %e,
                        unwritten = docs.len() - next,
                        "fan-out events could not be written: recipients on other \
                         instances will find these deliveries in history only"
                    );
                    return Err(PublishFailed);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    Ok(())
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}
