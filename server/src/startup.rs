//! Building and running the application: store selection, the hub, the HTTP server with
//! its two routes, the admin socket ([`crate::admin`]), and graceful shutdown.
//!
//! - `GET /ws` upgrades to the chat WebSocket.
//! - `GET /health` answers 200 when the store is reachable and can write (and, with
//!   scale-out, the change stream is live), 503 otherwise.
//!
//! Start-up ([`Starting`]): the port is bound first and answers 503 "starting" while the
//! store opens ([`crate::warmup`]), so a long MongoDB migration or index build does not
//! outlast a PaaS's deadline for binding the port.
//!
//! Shutdown ([`Stopper::stop`]): stop accepting new connections; each session reads no
//! further request, waits (a few seconds at most) until its sends in flight are answered,
//! and closes with 1001 "going away"; a connection whose client does not take its close is
//! aborted ([`crate::ws::socket`]), so none holds the shutdown beyond a few seconds, well
//! inside the grace period (actix's own bound). Every acknowledged message is already
//! durable, so nothing needs flushing beyond dropping the store.
//!
//! The HTTP server is actix-web's `HttpServer` done by hand (an `actix_server` over
//! `HttpService`), so that each connection runs over an
//! [`AbortableStream`](crate::ws::socket::AbortableStream).

use std::future::Future;
use std::net::TcpListener;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_http::error::DispatchError;
use actix_http::{Extensions, HttpService, Protocol};
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::body::{BodyStream, BoxBody};
use actix_web::dev::{fn_service, AppConfig};
use actix_web::dev::{Server, ServerHandle};
use actix_web::rt::net::TcpStream;
use actix_web::{web, App, HttpRequest, HttpResponse};
use anyhow::Context;
use governor::clock::QuantaClock;
use shared::protocol::MAX_FRAME_BYTES;
use shared::ServerId;
use tokio_util::sync::CancellationToken;

use crate::admin::socket::{AdminSocket, SocketFile};
use crate::config::{Config, StoreChoice};
use crate::fanout::{ChangeStreamFanout, StreamState, StreamStatus};
use crate::handlers::presence::TypingFilter;
use crate::handlers::AppState;
use crate::hub::{Fanout, HubHandle};
use crate::limits::address::ClientAddress;
use crate::limits::connections::ConnectionCounter;
use crate::limits::joins::{JoinBackoff, JoinThrottle};
use crate::limits::rates::{RateSettings, UserRates};
use crate::limits::registrations::RegistrationQuota;
use crate::limits::Limits;
use crate::lobby::{LobbyHints, LOBBY_PUSH_INTERVAL};
use crate::passwords::Hasher;
use crate::presence::{self, PresenceChanges};
use crate::retention;
use crate::store::embedded::EmbeddedStore;
use crate::store::mongo::{MongoStore, Standalone};
use crate::store::{RoomSecret, Store};
use crate::warmup::Warmup;
use crate::ws::outbound::outbound;
use crate::ws::session::{self, SessionSettings};
use crate::ws::socket::{Abort, AbortableStream};

/// Per-worker request context.
struct Endpoint {
    state: Arc<AppState>,
    settings: SessionSettings,
    next_conn: Arc<AtomicU64>,
    shutdown: CancellationToken,
    /// Open connections per client address.
    connections: Arc<ConnectionCounter>,
    /// Whether the client address comes from `X-Forwarded-For`.
    trust_forwarded_for: bool,
    /// The change stream's state, when scale-out is on.
    stream: Option<StreamStatus>,
}

/// A built server, bound to its port and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    shutdown: CancellationToken,
    backend: &'static str,
    /// Kept to close the store on shutdown, once the workers have let go of it.
    store: Arc<dyn Store>,
    /// The admin socket's file, removed once the server has stopped.
    admin_socket: SocketFile,
}

/// How long [`Application::run_until_stopped`] waits for workers to release the store.
const STORE_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Stops a running [`Application`] gracefully; cheap to clone.
#[derive(Clone)]
pub struct Stopper {
    shutdown: CancellationToken,
    handle: ServerHandle,
}

impl Stopper {
    /// Closes every session with 1001 "going away", stops accepting, and waits for the
    /// HTTP server to finish (bounded by the configured grace period).
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.handle.stop(true).await;
    }
}

/// Opens the store the configuration selects.
///
/// # Errors
/// When the embedded store cannot be opened, or MongoDB is configured but unreachable.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config.store_choice() {
        StoreChoice::Embedded { dir, cache_bytes } => Arc::new(
            EmbeddedStore::open_with_cache(&dir, cache_bytes)
                .with_context(|| format!("cannot open the embedded store in {}", dir.display()))?,
        ),
        StoreChoice::Mongo { uri, database } => {
            let standalone = if config.mongodb_allow_standalone {
                Standalone::Allow
            } else {
                Standalone::Refuse
            };
            Arc::new(
                MongoStore::connect(&uri, &database, standalone)
                    .await
                    .context("cannot start on the MongoDB named by MONGODB_URI")?,
            )
        }
    })
}

/// How often start-up logs that the store is still opening.
const OPENING_PROGRESS_INTERVAL: Duration = Duration::from_secs(15);

/// A server whose port is bound and answers 503 "starting" ([`crate::warmup`]) until
/// [`Starting::open_with`] has its store.
pub struct Starting {
    config: Config,
    listener: TcpListener,
    warmup: Warmup,
}

impl Starting {
    /// Validates the configuration, binds the port and serves 503 "starting" on it.
    ///
    /// # Errors
    /// Invalid configuration, or a port that cannot be bound.
    pub fn bind(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let listener = bind(&config)?;
        let store = match config.store_choice() {
            StoreChoice::Embedded { .. } => crate::store::embedded::STORE,
            StoreChoice::Mongo { .. } => crate::store::mongo::STORE,
        };
        let warmup = Warmup::serve(&listener, store).context("cannot serve the port")?;
        Ok(Self {
            config,
            listener,
            warmup,
        })
    }

    /// The port bound (useful with port 0).
    ///
    /// # Errors
    /// If the socket cannot say (it always can once bound).
    pub fn port(&self) -> std::io::Result<u16> {
        Ok(self.listener.local_addr()?.port())
    }

    /// The configuration it was bound with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Waits for `store` (logging every [`OPENING_PROGRESS_INTERVAL`] while it takes),
    /// stops answering "starting" and builds the server on the same port.
    ///
    /// # Errors
    /// The store's error, or [`Application::build_with_store`]'s.
    pub async fn open_with(
        self,
        store: impl Future<Output = anyhow::Result<Arc<dyn Store>>>,
    ) -> anyhow::Result<Application> {
        let started = Instant::now();
        let mut store = std::pin::pin!(store);
        let mut progress = tokio::time::interval(OPENING_PROGRESS_INTERVAL);
        progress.tick().await; // the first tick is immediate
        let store = loop {
            tokio::select! {
                opened = &mut store => break opened?,
                _ = progress.tick() => tracing::info!(
                    waited_secs = started.elapsed().as_secs(),
                    "still opening the store (migrations and index builds can take minutes on \
                     a large database); the port answers 503 \"starting\" meanwhile"
                ),
            }
        };
        self.warmup.finish().await;
        Application::build_on(self.config, store, self.listener).await
    }
}

/// Binds the configured address and port.
fn bind(config: &Config) -> anyhow::Result<TcpListener> {
    TcpListener::bind((config.bind, config.port))
        .with_context(|| format!("cannot bind {}:{}", config.bind, config.port))
}

impl Application {
    /// Validates the configuration, binds the listener (answering "starting" at once: see
    /// [`crate::warmup`]), opens the selected store and builds the server.
    ///
    /// # Errors
    /// Invalid configuration, an unusable store, or a port that cannot be bound.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let starting = Starting::bind(config)?;
        let config = starting.config().clone();
        starting
            .open_with(async move { open_store(&config).await })
            .await
    }

    /// Like [`Application::build`] with a store the caller opened (tests use this to run the
    /// same server over either adapter).
    ///
    /// # Errors
    /// Invalid configuration, a store whose server id or room secret cannot be read, or a
    /// port that cannot be bound.
    pub async fn build_with_store(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        config.validate()?;
        let listener = bind(&config)?;
        Self::build_on(config, store, listener).await
    }

    /// [`Application::build_with_store`] on a bound listener.
    async fn build_on(
        config: Config,
        store: Arc<dyn Store>,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let server_id = store
            .server_id()
            .await
            .context("cannot read the server id from the store")?;
        let room_secret = store
            .room_secret()
            .await
            .context("cannot read the room secret from the store")?;
        let shutdown = CancellationToken::new();
        let presence_changes = Arc::new(PresenceChanges::default());
        // With scale-out, the change stream is open before the port serves chat (until
        // then it answers "starting" or not at all): a client accepted from then on misses
        // no other instance's delivery.
        let (hub, stream): (Arc<dyn Fanout>, _) = match config.scale_out() {
            Some(settings) => {
                let (fanout, status) = ChangeStreamFanout::start(
                    settings,
                    Arc::clone(&presence_changes),
                    shutdown.clone(),
                )
                .await
                .context("scale-out could not start")?;
                (Arc::new(fanout), Some(status))
            }
            None => (
                Arc::new(HubHandle::spawn_reporting(Arc::clone(&presence_changes)).0),
                None,
            ),
        };
        let port = listener.local_addr()?.port();
        let backend = store.backend();
        let state = Arc::new(app_state_with_hub(
            &config,
            Arc::clone(&store),
            server_id,
            room_secret,
            hub,
        )?);
        // A server that cannot be operated does not start.
        let admin_socket = AdminSocket::bind(&config.admin_socket_path())?
            .serve(Arc::clone(&state), shutdown.clone());
        tokio::spawn(presence::run(
            Arc::clone(&state),
            presence_changes,
            shutdown.clone(),
        ));
        let settings = SessionSettings {
            heartbeat: config.heartbeat(),
            outbound_queue: config.outbound_queue,
            outbound_budget: config.outbound_budget_bytes(),
            rates: rate_settings(&config)?,
            clock: QuantaClock::default(),
            login_deadline: config.login_deadline(),
        };
        let connections = ConnectionCounter::new(config.connections_per_address);
        let trust_forwarded_for = config.trust_forwarded_for;
        let _retention = retention::spawn(
            Arc::clone(&store),
            config.retention(),
            retention::DEFAULT_INTERVAL,
            shutdown.clone(),
        );
        let next_conn = Arc::new(AtomicU64::new(1));
        let endpoint_shutdown = shutdown.clone();
        let stall_limit = config.heartbeat() * 3;
        let app = move || {
            App::new()
                .app_data(web::Data::new(Endpoint {
                    state: state.clone(),
                    settings: settings.clone(),
                    next_conn: next_conn.clone(),
                    shutdown: endpoint_shutdown.clone(),
                    connections: connections.clone(),
                    trust_forwarded_for,
                    stream: stream.clone(),
                }))
                .route("/ws", web::get().to(upgrade))
                .route("/health", web::get().to(health))
        };
        // What `HttpServer` does, over an `AbortableStream`: a session must be able to end a
        // connection whose client stopped reading (see `ws::socket`).
        let mut builder = actix_web::dev::Server::build()
            .disable_signals()
            .shutdown_timeout(config.shutdown_grace_secs);
        if config.workers > 0 {
            builder = builder.workers(config.workers);
        }
        let server = builder
            .listen("chat", listener, move || {
                let app = app()
                    .into_factory()
                    .map_err(|err: actix_web::Error| err.error_response());
                fn_service(move |io: TcpStream| async move {
                    // Chat frames are small and latency-bound: without this, Nagle's
                    // algorithm holds a frame back until the previous one is acknowledged,
                    // which the peer's delayed ACK postpones by up to 40 ms.
                    if let Err(e) = io.set_nodelay(true) {
                        tracing::debug!(error = %e, "could not set TCP_NODELAY");
                    }
                    // A peer that stops reading leaves our data untransmitted behind its
                    // zero window; the session aborts such a connection, and this has the
                    // kernel drop it too after three heartbeats, should anything be left.
                    drop_stalled_peers_after(&io, stall_limit);
                    let peer = io.peer_addr().ok();
                    Ok::<_, DispatchError>((AbortableStream::new(io), Protocol::Http1, peer))
                })
                .and_then(
                    // As `HttpServer` configures it: after a response that ends the
                    // connection, linger a second for the peer to close first (closing with
                    // unread input would reset the connection and lose the close frame).
                    HttpService::build()
                        .client_disconnect_timeout(Duration::from_secs(1))
                        .h1_allow_half_closed(true)
                        .on_connect_ext(|io: &AbortableStream, data: &mut Extensions| {
                            data.insert(io.abort_handle());
                        })
                        .finish(map_config(app, |()| AppConfig::default())),
                )
            })?
            .run();
        tracing::info!(port, store = backend, %server_id, "server bound");
        Ok(Self {
            port,
            server,
            shutdown,
            backend,
            store,
            admin_socket,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store adapter in use.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// A handle that stops the server gracefully.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            shutdown: self.shutdown.clone(),
            handle: self.server.handle(),
        }
    }

    /// Serves until stopped, then closes the store: it waits (up to a few seconds) until the
    /// worker threads have let go of it and drops the last reference, so that on return the
    /// store is closed and its files unlocked.
    ///
    /// # Errors
    /// I/O errors from the HTTP server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await?;
        drop(self.admin_socket);
        let deadline = Instant::now() + STORE_RELEASE_WAIT;
        while Arc::strong_count(&self.store) > 1 {
            if Instant::now() > deadline {
                tracing::warn!("workers still hold the store after shutdown");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Closing may block (joining the embedded store's writer, final file sync).
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || drop(store)).await;
        Ok(())
    }
}

/// Sets `TCP_USER_TIMEOUT` on an accepted connection: the kernel closes it once data has
/// waited `limit` to be acknowledged or, behind a zero window, to be sent.
#[cfg(target_os = "linux")]
fn drop_stalled_peers_after(tcp: &TcpStream, limit: Duration) {
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(limit)) {
        tracing::warn!(error = %e, "could not set TCP_USER_TIMEOUT");
    }
}

/// Elsewhere the option does not exist; the session's abort still ends stalled peers.
#[cfg(not(target_os = "linux"))]
fn drop_stalled_peers_after(_tcp: &TcpStream, _limit: Duration) {}

/// `GET /ws`: upgrades and spawns the connection's session task on this worker. A client
/// address with `--connections-per-address` connections open already gets 429.
async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    endpoint: web::Data<Endpoint>,
) -> Result<HttpResponse, actix_web::Error> {
    if endpoint.shutdown.is_cancelled() {
        return Ok(HttpResponse::ServiceUnavailable().body("shutting down"));
    }
    let address =
        ClientAddress::of_request(req.peer_addr(), req.headers(), endpoint.trust_forwarded_for);
    let Some(slot) = endpoint.connections.admit(address) else {
        tracing::debug!(%address, "connection refused: too many from this address");
        return Ok(HttpResponse::TooManyRequests().body("too many connections from your address"));
    };
    // actix-ws does the handshake and parses what the client sends; the response body is
    // the server's own (see `ws::outbound`), so actix-ws's `Session` is not used.
    let (response, _session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    let (head, actix_body) = response.into_parts();
    let parts = outbound(
        actix_body,
        endpoint.settings.outbound_queue,
        endpoint.settings.outbound_budget,
    );
    let ends = session::Ends {
        conn_id: endpoint.next_conn.fetch_add(1, Ordering::Relaxed),
        address,
        slot,
        outbound: parts.outbound,
        pushes: parts.pushes,
        evicted: parts.evicted,
        finished: parts.finished,
        abort: req.conn_data::<Abort>().cloned().unwrap_or_default(),
    };
    actix_web::rt::spawn(session::run(
        endpoint.state.clone(),
        endpoint.settings.clone(),
        ends,
        stream,
        endpoint.shutdown.clone(),
    ));
    Ok(head.set_body(BoxBody::new(BodyStream::new(parts.body))))
}

/// `GET /health`: 200 if the store answers and can write, 503 if not, with the reason's
/// class (`storage_full`, `storage_unavailable`, `timeout`) and never its detail. An
/// embedded store that cannot write answers 503 until its own periodic probe write
/// succeeds again, then 200.
///
/// With scale-out the answer also names the instance and its change stream's state
/// (`"instance":"a","stream":"live"`), and is 503 (`stream_resuming`) while the stream is
/// being reopened: this instance's clients then get no other instance's pushes until it is.
async fn health(endpoint: web::Data<Endpoint>) -> HttpResponse {
    let backend = endpoint.state.store.backend();
    let scale_out = endpoint.stream.as_ref().map(|s| (s.instance(), s.state()));
    let fields = scale_out.map_or_else(String::new, |(instance, state)| {
        format!(r#","instance":"{instance}","stream":"{}""#, state.as_str())
    });
    let reason = match tokio::time::timeout(Duration::from_secs(5), endpoint.state.store.ping())
        .await
    {
        Ok(Ok(())) if scale_out.is_some_and(|(_, s)| s != StreamState::Live) => "stream_resuming",
        Ok(Ok(())) => {
            return HttpResponse::Ok()
                .content_type("application/json")
                .body(format!(r#"{{"status":"ok","store":"{backend}"{fields}}}"#))
        }
        Ok(Err(e)) if e.is_storage_full() => "storage_full",
        Ok(Err(_)) => "storage_unavailable",
        Err(_) => "timeout",
    };
    HttpResponse::ServiceUnavailable()
        .content_type("application/json")
        .body(format!(
            r#"{{"status":"unavailable","store":"{backend}","reason":"{reason}"{fields}}}"#
        ))
}

/// What the server binary does once its configuration is read and logging started: build,
/// serve until Ctrl-C or SIGTERM, then drain. Test harnesses that need the server as a
/// process of its own (to kill it) run this from their own binary.
///
/// # Errors
/// Start-up failures ([`Application::build`]) and I/O errors of the HTTP server.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // A signal while the store opens (which can take minutes: see `crate::warmup`) ends
    // the start-up at once.
    let app = tokio::select! {
        built = Application::build(config) => built.context("server start-up failed")?,
        () = shutdown_signal() => {
            tracing::info!("shutdown signal received during start-up; stopping");
            return Ok(());
        }
    };
    tracing::info!(port = app.port(), store = app.backend(), "serving");
    let stopper = app.stopper();
    actix_web::rt::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received; draining");
        stopper.stop().await;
    });
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

/// [`serve`] on an actix system of its own, blocking until it ends.
///
/// # Errors
/// As [`serve`].
pub fn serve_blocking(config: Config) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(serve(config))
}

/// Resolves on Ctrl-C or SIGTERM (what Heroku and Docker send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// What every connection of a single-instance server built from `config` on `store`
/// shares: the hub (spawned on the current runtime), the password pool and the quotas.
/// Harnesses that drive the handlers without a socket (the fuzzer) build their state here.
///
/// # Errors
/// A limit configured as zero where at least one is needed, or a password pool that
/// cannot start.
pub fn app_state(
    config: &Config,
    store: Arc<dyn Store>,
    server_id: ServerId,
    room_secret: RoomSecret,
) -> anyhow::Result<AppState> {
    let (hub, _hub_task) = HubHandle::spawn();
    app_state_with_hub(config, store, server_id, room_secret, Arc::new(hub))
}

/// [`app_state`] with the delivery the caller chose (the local hub, or scale-out's).
///
/// # Errors
/// As [`app_state`].
pub fn app_state_with_hub(
    config: &Config,
    store: Arc<dyn Store>,
    server_id: ServerId,
    room_secret: RoomSecret,
    hub: Arc<dyn Fanout>,
) -> anyhow::Result<AppState> {
    let limits = Limits {
        registrations: RegistrationQuota::new(
            at_least_one(
                config.registrations_per_address,
                "registrations-per-address",
            )?,
            at_least_one(config.registrations_total, "registrations-total")?,
            config.registration_window(),
        ),
        users: UserRates::new(rate_settings(config)?),
        joins: JoinThrottle::new(JoinBackoff {
            free_per_room: config.join_failures_per_room,
            free_per_user: config.join_failures_per_user,
            ..JoinBackoff::default()
        }),
        rooms_per_user: config.rooms_per_user,
        max_message_bytes: config.max_message_bytes,
    };
    Ok(AppState {
        store,
        lobby: LobbyHints::spawn(Arc::clone(&hub), LOBBY_PUSH_INTERVAL),
        hub,
        challenge_ttl: config.challenge_ttl(),
        server_id,
        passwords: Hasher::new(config.argon2_concurrency())?,
        limits,
        room_secret,
        typing: TypingFilter::default(),
    })
}

/// The request and byte rates, per connection and per user.
fn rate_settings(config: &Config) -> anyhow::Result<RateSettings> {
    Ok(RateSettings {
        requests_per_sec: at_least_one(config.requests_per_sec, "requests-per-sec")?,
        inbound_kib_per_sec: at_least_one(config.inbound_kib_per_sec, "inbound-kib-per-sec")?,
    })
}

/// `n` as a non-zero count, or an error naming the setting.
fn at_least_one(n: u32, name: &str) -> anyhow::Result<NonZeroU32> {
    NonZeroU32::new(n).ok_or_else(|| anyhow::anyhow!("{name} must be at least 1"))
}
