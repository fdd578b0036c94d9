//! Scale-out: several instances on one MongoDB reach each other's connections through
//! change streams (docs/SCALING.md has the design and its costs).
//!
//! [`ChangeStreamFanout`] is the multi-instance [`Fanout`]. It wraps the local hub:
//!
//! - `deliver` (and `broadcast`, the trait's own, on top of it) hands the frames to the
//!   local hub at once, then writes them,
//!   as the encoded bytes the handler made, to the events collection ([`publisher`]);
//!   they return once that write is durable, so a sender is acknowledged only after every
//!   instance can deliver. Any push kind, present or future, crosses instances this way.
//! - `evict` ends the user's local connections (but the one excepted) at once, and
//!   writes an eviction event that ends all of the user's connections elsewhere.
//! - every instance's [`watcher`] applies the other instances' events to its own hub, in
//!   commit order, resuming after its saved token when the stream or the process is lost.
//! - `online` counts this instance's users and those the other live instances' heartbeat
//!   documents name ([`presence`]); a user who leaves another instance's heartbeat is
//!   noted for `crate::presence` to tell (they may be offline now).
//! - `lobby` hands the hint to the local watchers at once, then writes it for the other
//!   instances' watchers.
//!
//! It runs only when `--scale-out` is set; a single instance uses [`HubHandle`] alone and
//! pays nothing for this module.

mod event;
mod presence;
mod publisher;
mod watcher;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use mongodb::bson::{doc, Document};
use mongodb::options::{
    Acknowledgment, ClientOptions, DatabaseOptions, IndexOptions, WriteConcern,
};
use mongodb::{Client, Database, IndexModel};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::hub::{
    ConnId, Eviction, Fanout, HubHandle, HubStopped, OnlineCounts, PushFrame, Registration,
};
use crate::presence::PresenceChanges;
use presence::{Heartbeat, Presence};
use publisher::Publisher;
pub use watcher::StreamState;
use watcher::Watcher;

/// The events instances write for each other.
pub const EVENTS: &str = "fanout_events";
/// Each instance's saved change-stream position.
pub const CURSORS: &str = "fanout_cursors";
/// Each instance's heartbeat and online users.
pub const PRESENCE: &str = "fanout_presence";

/// How long events are kept (MongoDB's TTL monitor deletes older ones). Only a stream
/// resumed after a longer outage needs older ones, and it finds the oplog's own window
/// is the tighter bound.
const EVENTS_TTL: Duration = Duration::from_secs(3600);

/// How long an instance's saved position is kept after its last save (instances whose
/// id changes at each start leave theirs behind).
const CURSORS_TTL: Duration = Duration::from_secs(7 * 86_400);

/// What scale-out needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The MongoDB the instances share.
    pub uri: String,
    /// Its database (the store's).
    pub database: String,
    /// This instance's id, unique among the running instances.
    pub instance: String,
    /// Time between presence heartbeats.
    pub presence_interval: Duration,
}

/// The change stream's state, for `/health`.
#[derive(Debug, Clone)]
pub struct StreamStatus {
    instance: String,
    state: watch::Receiver<StreamState>,
}

impl StreamStatus {
    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The stream's state now.
    pub fn state(&self) -> StreamState {
        *self.state.borrow()
    }
}

/// The multi-instance [`Fanout`]: the local hub plus change streams (module docs).
pub struct ChangeStreamFanout {
    local: HubHandle,
    publisher: Publisher,
    presence: Arc<Presence>,
    instance: String,
}

impl ChangeStreamFanout {
    /// Connects to MongoDB (a client of its own, so the stream's long polls never wait
    /// behind the store's requests), prepares the collections, opens the change stream
    /// and applies its backlog, and starts the heartbeat; background tasks stop at
    /// `shutdown`. Users who come online or go offline here, or leave another instance's
    /// heartbeat, are noted in `changes`. Returns once the stream is open, so a connection accepted after it
    /// misses no delivery.
    ///
    /// # Errors
    /// When MongoDB cannot be reached, refuses a change stream, or an index cannot be
    /// made.
    pub async fn start(
        settings: Settings,
        changes: Arc<PresenceChanges>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Self, StreamStatus)> {
        let db = connect(&settings).await?;
        prepare(&db).await?;
        let (local, _hub_task) = HubHandle::spawn_reporting(Arc::clone(&changes));
        let (state_tx, state_rx) = watch::channel(StreamState::Resuming);
        let running = Watcher {
            events: db.collection(EVENTS),
            cursors: db.collection(CURSORS),
            instance: settings.instance.clone(),
            hub: local.clone(),
            state: state_tx,
        }
        .start()
        .await
        .context("cannot open the change stream of the fan-out events")?;
        tokio::spawn(running.run(shutdown.clone()));
        let presence = Arc::new(Presence::default());
        tokio::spawn(
            Heartbeat {
                collection: db.collection(PRESENCE),
                instance: settings.instance.clone(),
                hub: local.clone(),
                presence: Arc::clone(&presence),
                interval: settings.presence_interval,
                changes,
            }
            .run(shutdown),
        );
        tracing::info!(instance = %settings.instance, "scale-out on: change-stream fan-out running");
        let status = StreamStatus {
            instance: settings.instance.clone(),
            state: state_rx,
        };
        Ok((
            Self {
                local,
                publisher: Publisher::spawn(db.collection(EVENTS)),
                presence,
                instance: settings.instance,
            },
            status,
        ))
    }

    async fn publish(&self, docs: Vec<Document>) -> Result<(), HubStopped> {
        self.publisher.publish(docs).await.map_err(|e| {
            tracing::error!(error = %e, "a push could not be handed to the other instances");
            HubStopped
        })
    }
}

#[async_trait]
impl Fanout for ChangeStreamFanout {
    async fn connect(
        &self,
        conn: ConnId,
        user: String,
        registration: Registration,
    ) -> Result<(), HubStopped> {
        self.local.connect(conn, user, registration).await?;
        self.presence.changed();
        Ok(())
    }

    async fn disconnect(&self, conn: ConnId, user: String) -> Result<(), HubStopped> {
        self.local.disconnect(conn, user).await?;
        self.presence.changed();
        Ok(())
    }

    async fn evict(
        &self,
        user: String,
        except: Option<ConnId>,
        why: Eviction,
    ) -> Result<(), HubStopped> {
        let doc = event::evict_doc(&self.instance, &user, why).map_err(|e| {
            tracing::error!(error = %e, "cannot encode an eviction");
            HubStopped
        })?;
        self.local.evict(user, except, why).await?;
        self.presence.changed();
        self.publish(vec![doc]).await
    }

    async fn deliver(
        &self,
        frames: Vec<(String, PushFrame)>,
        except: Option<ConnId>,
    ) -> Result<(), HubStopped> {
        let docs = event::deliver_docs(&self.instance, &frames);
        self.local.deliver(frames, except).await?;
        self.publish(docs).await
    }

    async fn online(&self, groups: Vec<Vec<String>>) -> Result<OnlineCounts, HubStopped> {
        let remote = self.presence.remote();
        combine(&self.local, &remote, groups).await
    }

    async fn watch_lobby(&self, conn: ConnId, user: String, watch: bool) -> Result<(), HubStopped> {
        self.local.watch_lobby(conn, user, watch).await
    }

    async fn lobby(&self, frame: bytes::Bytes) -> Result<(), HubStopped> {
        let doc = event::lobby_doc(&self.instance, &frame);
        self.local.lobby(frame).await?;
        self.publish(vec![doc]).await
    }
}

/// Online counts over this instance's users and `remote` ones: the local hub counts the
/// group members that are not remote, and the remote ones count as online.
async fn combine(
    local: &HubHandle,
    remote: &HashSet<String>,
    groups: Vec<Vec<String>>,
) -> Result<OnlineCounts, HubStopped> {
    let mut remote_per_group = Vec::with_capacity(groups.len());
    let mut asked: Vec<Vec<String>> = groups
        .into_iter()
        .map(|group| {
            let (away, here): (Vec<String>, Vec<String>) =
                group.into_iter().partition(|u| remote.contains(u));
            remote_per_group.push(away.len());
            here
        })
        .collect();
    // Which remote users are also online here, so that nobody is counted twice.
    asked.push(remote.iter().cloned().collect());
    let mut counts = local.online(asked).await?;
    let both = counts.per_group.pop().unwrap_or(0);
    let add = |n: u32, m: usize| n.saturating_add(u32::try_from(m).unwrap_or(u32::MAX));
    Ok(OnlineCounts {
        per_group: counts
            .per_group
            .into_iter()
            .zip(remote_per_group)
            .map(|(n, m)| add(n, m))
            .collect(),
        users_online: add(
            counts.users_online - both.min(counts.users_online),
            remote.len(),
        ),
    })
}

/// A client of its own on the shared MongoDB, writing with `{ w: "majority", j: true }`.
async fn connect(settings: &Settings) -> anyhow::Result<Database> {
    let mut options = ClientOptions::parse(&settings.uri)
        .await
        .context("cannot parse MONGODB_URI for the fan-out")?;
    options
        .server_selection_timeout
        .get_or_insert(crate::store::mongo::DEFAULT_SERVER_SELECTION_TIMEOUT);
    options
        .connect_timeout
        .get_or_insert(crate::store::mongo::DEFAULT_CONNECT_TIMEOUT);
    options
        .app_name
        .get_or_insert_with(|| "e2e-chat-fanout".to_owned());
    let client = Client::with_options(options).context("invalid MongoDB options")?;
    let durable = WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .w_timeout(Duration::from_secs(10))
        .build();
    Ok(client.database_with_options(
        &settings.database,
        DatabaseOptions::builder().write_concern(durable).build(),
    ))
}

/// The TTL indexes that keep the fan-out collections small.
async fn prepare(db: &Database) -> anyhow::Result<()> {
    let ttl = |field: &str, after: Duration, name: &str| {
        IndexModel::builder()
            .keys(doc! { field: 1 })
            .options(
                IndexOptions::builder()
                    .expire_after(after)
                    .name(name.to_owned())
                    .build(),
            )
            .build()
    };
    db.collection::<Document>(EVENTS)
        .create_index(ttl("at", EVENTS_TTL, "at_ttl"))
        .await
        .context("cannot create the fan-out events' TTL index")?;
    db.collection::<Document>(CURSORS)
        .create_index(ttl("saved_at", CURSORS_TTL, "saved_at_ttl"))
        .await
        .context("cannot create the fan-out cursors' TTL index")?;
    db.collection::<Document>(PRESENCE)
        .create_index(ttl("expires_at", Duration::ZERO, "expires_at_ttl"))
        .await
        .context("cannot create the presence TTL index")?;
    Ok(())
}

#[cfg(test)]
mod tests;
