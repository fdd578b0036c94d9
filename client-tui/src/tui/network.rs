//! The network task: the only code of the terminal client that talks to the server.
//!
//! It runs on a tokio runtime beside the cursive loop and owns the [`Client`]. The UI sends
//! it [`Command`]s through a [`CommandSender`] (never blocking: `try_send` on a bounded
//! channel) and it reports back with [`UiEvent`]s through a [`UiSink`], which in the real
//! client wraps cursive's callback sink (ncspot's `EventManager` pattern).
//!
//! Its life has two phases:
//!
//! 1. **Onboarding**: create an account (generate or import a key, save it encrypted,
//!    register, log in) or unlock the saved key and log in. Slow steps report
//!    [`UiEvent::Progress`] several times a second so the screen never looks frozen; key
//!    generation, key encryption and message encryption all run on the blocking pool.
//! 2. **Sessions**: one per connection. Client events are forwarded as they come; user
//!    commands run one after another on an executor task, so a long encryption or history
//!    fetch never holds up incoming messages, and messages keep the order they were typed
//!    in. When the connection drops, the task reconnects with exponential back-off
//!    ([`Backoff`]), logs in again and re-opens every room the user is a member of.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shared::crypto::{keys, RsaPrivateKey};
use shared::protocol::{LoggedIn, ModerationAction};
use shared::{ErrorCode, RoomName};
use tokio::sync::mpsc;

use super::command::{Command, KeySource, NewAccount, Secret, Unlock};
use super::event::{
    describe, describe_disconnect, describe_keystore, ConnectionState, Me, UiEvent,
};
use super::keyfile;
use super::moderation::{action_title, redacted_password_change, refusal};
use super::profile::{load_settings, save_profile, Profile};
use crate::client::{Client, ClientConfig};
use crate::error::ClientError;
use crate::events::ClientEvent;
use crate::events::EventReceiver;
use crate::identity::Identity;
use crate::keystore;
use crate::pins::{pins_path_for, PinStore};

/// How many commands may wait for the network task before the UI is told it is busy.
pub const COMMAND_QUEUE: usize = 256;

/// How long one connection attempt (connect, handshake, login) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How often a slow step reports progress.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// Messages per "older history" page.
pub const HISTORY_PAGE: u16 = 50;

/// Exponential back-off between reconnection attempts: `initial`, twice that, … up to
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before the attempt that follows `failures` failed ones.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.min(16);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// [`delay`](Self::delay) with "equal jitter": a random point in its upper half, so
    /// clients cut off together (a server restart) do not all come back at one instant.
    pub fn jittered(&self, failures: u32, rng: &mut impl rand::Rng) -> Duration {
        let full = self.delay(failures);
        let half = full / 2;
        half + rng.gen_range(Duration::ZERO..=full - half)
    }
}

/// What the network task needs to know.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The server URL (`ws://…` or `wss://…`).
    pub server_url: String,
    /// Connection settings for the client core.
    pub client: ClientConfig,
    /// Reconnection delays.
    pub backoff: Backoff,
    /// Where to remember the account after onboarding (`None`: nowhere).
    pub config_dir: Option<PathBuf>,
    /// Size of a generated key (a new account's, or a rotation's).
    pub key_bits: usize,
}

impl NetworkConfig {
    /// Default settings for `server_url`.
    pub fn new(server_url: impl Into<String>, config_dir: Option<PathBuf>) -> Self {
        Self {
            server_url: server_url.into(),
            client: ClientConfig::default(),
            backoff: Backoff::default(),
            config_dir,
            key_bits: keys::DEFAULT_KEY_BITS,
        }
    }
}

/// Where the network task sends its reports: a function, so the real client can wrap
/// cursive's callback sink and tests a plain channel.
#[derive(Clone)]
pub struct UiSink(Arc<dyn Fn(UiEvent) + Send + Sync>);

impl UiSink {
    /// A sink calling `f` for every event.
    pub fn new(f: impl Fn(UiEvent) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// A sink feeding an unbounded channel, for tests and headless use.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<UiEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self::new(move |event| {
                let _ = tx.send(event);
            }),
            rx,
        )
    }

    /// Reports one event.
    pub fn send(&self, event: UiEvent) {
        (self.0)(event);
    }
}

impl std::fmt::Debug for UiSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UiSink")
    }
}

/// The UI's handle for sending commands; never blocks.
#[derive(Debug, Clone)]
pub struct CommandSender(mpsc::Sender<Command>);

impl CommandSender {
    /// A sender and the receiver to give to [`run`].
    pub fn channel() -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        (Self(tx), rx)
    }

    /// Queues a command.
    ///
    /// # Errors
    /// A plain-words message when the queue is full or the network task has stopped.
    pub fn send(&self, command: Command) -> Result<(), String> {
        self.0.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                "The client is busy; try again in a moment.".to_owned()
            }
            mpsc::error::TrySendError::Closed(_) => "The network task has stopped.".to_owned(),
        })
    }
}

/// The unlocked account.
#[derive(Clone)]
struct Account {
    identity: Identity,
    key_path: PathBuf,
    /// What the key file is encrypted with, to encrypt a rotated key the same way. Kept
    /// for the session (zeroed on drop); the unlocked private key is in memory anyway.
    passphrase: Option<Secret>,
    /// Keys replaced by rotations (loaded from the retired backups), newest first, so
    /// messages sealed to them still open.
    previous_keys: Vec<Arc<RsaPrivateKey>>,
}

/// The account, shared with the executor, which changes it when the key is rotated.
type SharedAccount = Arc<Mutex<Account>>;

/// A copy of the account as it is now.
fn current(account: &SharedAccount) -> Account {
    account
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// What the executor needs besides the client: the account (a rotation changes it) and
/// the size of a generated key.
struct Context {
    account: SharedAccount,
    key_bits: usize,
}

/// Onboarding's result: the account, its first connection (if the server was reachable)
/// and warnings to show once the main screen is up.
type Onboarded = (Account, Option<Connected>, Vec<String>);

/// A logged-in connection.
struct Connected {
    client: Client,
    events: EventReceiver,
    logged_in: LoggedIn,
}

/// Runs the network side of the terminal client until [`Command::Quit`] arrives or the
/// command channel closes.
pub async fn run(config: NetworkConfig, mut commands: mpsc::Receiver<Command>, ui: UiSink) {
    let Some((account, mut connected, warnings)) = onboarding(&config, &mut commands, &ui).await
    else {
        return;
    };
    if let Some(dir) = &config.config_dir {
        let profile = Profile {
            username: account.identity.username().to_string(),
            key_path: account.key_path.clone(),
            settings: load_settings(Some(dir)),
        };
        if let Err(e) = save_profile(dir, &profile) {
            tracing::warn!(error = %e, "could not save the profile");
        }
    }
    ui.send(UiEvent::Ready(Me {
        username: account.identity.username().clone(),
        fingerprint: account.identity.fingerprint(),
        key_path: account.key_path.clone(),
    }));
    for warning in warnings {
        ui.send(UiEvent::Warning(warning));
    }
    let account: SharedAccount = Arc::new(Mutex::new(account));

    let mut failures = 0u32;
    loop {
        let conn = match connected.take() {
            Some(conn) => conn,
            None => {
                ui.send(UiEvent::Connection(ConnectionState::Connecting));
                match connect_and_login(&config, &current(&account)).await {
                    Ok(conn) => conn,
                    Err(e) if is_fatal(&e) => {
                        let reason = describe(&e);
                        tracing::error!(error = %e, "giving up reconnecting");
                        ui.send(UiEvent::Connection(ConnectionState::Stopped {
                            reason: reason.clone(),
                        }));
                        ui.send(UiEvent::Failed {
                            action: "Logging in".into(),
                            message: reason,
                        });
                        wait_for_quit(&mut commands, &ui).await;
                        return;
                    }
                    Err(e) => {
                        tracing::info!(error = %e, failures, "reconnect attempt failed");
                        let retry_in = config.backoff.jittered(failures, &mut rand::thread_rng());
                        failures = failures.saturating_add(1);
                        ui.send(UiEvent::Connection(ConnectionState::Offline {
                            reason: describe(&e),
                            retry_in,
                            attempt: failures,
                        }));
                        if !wait_offline(retry_in, &mut commands, &ui).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        ui.send(UiEvent::Connection(ConnectionState::Online));
        let ctx = Context {
            account: Arc::clone(&account),
            key_bits: config.key_bits,
        };
        match session(conn, &mut commands, &ui, ctx).await {
            SessionEnd::Quit(client) => {
                client.close().await;
                return;
            }
            SessionEnd::AccountDeleted => {
                ui.send(UiEvent::Connection(ConnectionState::Stopped {
                    reason: "your account was deleted.".into(),
                }));
                wait_for_quit(&mut commands, &ui).await;
                return;
            }
            SessionEnd::Lost(reason) => {
                tracing::warn!(%reason, "connection lost");
                let retry_in = config.backoff.jittered(0, &mut rand::thread_rng());
                failures = 1;
                ui.send(UiEvent::Connection(ConnectionState::Offline {
                    reason: format!("{}.", describe_disconnect(&reason)),
                    retry_in,
                    attempt: 0,
                }));
                if !wait_offline(retry_in, &mut commands, &ui).await {
                    return;
                }
            }
        }
    }
}

/// A send that failed because the connection did (not because the server refused it):
/// it is sent again, under the same id, once the client is online.
fn is_connection_failure(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Disconnected { .. }
            | ClientError::Transport(_)
            | ClientError::Timeout(_)
            | ClientError::NotLoggedIn
            | ClientError::RoomNotOpen(_)
    )
}

/// Errors that retrying will not fix.
fn is_fatal(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(ErrorCode::UnknownUser | ErrorCode::AuthFailed | ErrorCode::ProtocolVersion)
    ) || matches!(
        e,
        ClientError::InvalidUrl(_)
            | ClientError::ServerIdentityChanged { .. }
            | ClientError::ServerIdentityClaimed { .. }
            | ClientError::Pins(_)
            | ClientError::Ledger(_)
            | ClientError::Keystore(_)
            | ClientError::Crypto(_)
    )
}

/// Waits for onboarding commands until the account is ready (or the user quits).
async fn onboarding(
    config: &NetworkConfig,
    commands: &mut mpsc::Receiver<Command>,
    ui: &UiSink,
) -> Option<Onboarded> {
    while let Some(command) = commands.recv().await {
        let result = match command {
            Command::Quit => return None,
            Command::CreateAccount(new) => create_account(config, new, ui).await,
            Command::Unlock(unlock) => unlock_account(config, unlock, ui).await,
            other => {
                // Never `?other`: a Send carries the plaintext.
                tracing::debug!(command = %action_name(&other), "ignored before login");
                continue;
            }
        };
        match result {
            Ok(ready) => return Some(ready),
            Err(message) => ui.send(UiEvent::OnboardingFailed { message }),
        }
    }
    None
}

/// Runs `fut`, reporting progress under `title` while it runs.
async fn with_progress<T>(ui: &UiSink, title: &str, fut: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let mut tick = tokio::time::interval(PROGRESS_TICK);
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => ui.send(UiEvent::Progress {
                title: title.to_owned(),
                elapsed: started.elapsed(),
            }),
        }
    }
}

/// Runs CPU-heavy `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("An internal task failed: {e}."))
}

async fn create_account(
    config: &NetworkConfig,
    new: NewAccount,
    ui: &UiSink,
) -> Result<Onboarded, String> {
    let NewAccount {
        username,
        passphrase,
        key_path,
        source,
    } = new;
    if key_path.exists() {
        return Err(format!(
            "A key file already exists at {}. Restart the client to unlock it, or choose \
             another username.",
            key_path.display()
        ));
    }
    let importing = matches!(source, KeySource::Import { .. });
    let key = match source {
        KeySource::Generate { bits } => with_progress(
            ui,
            &format!("Generating your RSA-{bits} key"),
            blocking(move || keys::generate(bits)),
        )
        .await?
        .map_err(|e| format!("Key generation failed: {e}."))?,
        KeySource::Import { path, passphrase } => with_progress(
            ui,
            "Reading the key to import",
            blocking(move || {
                keystore::load_private_key(&path, passphrase.as_ref().map(Secret::expose))
            }),
        )
        .await?
        .map_err(|e| describe_keystore(&e))?,
    };
    let identity = Identity::new(username.clone(), key)
        .map_err(|e| format!("This key cannot be used: {e}."))?;

    // Save before registering: an account whose key was never saved would be lost.
    let saved = identity.clone();
    let path = key_path.clone();
    let secret = passphrase.clone();
    with_progress(
        ui,
        "Encrypting and saving your key",
        blocking(move || {
            keystore::save_private_key(&path, saved.private_key(), Some(secret.expose()))
        }),
    )
    .await?
    .map_err(|e| describe_keystore(&e))?;
    let forget_key = |message: String| {
        let _ = std::fs::remove_file(&key_path);
        let _ = std::fs::remove_file(pins_path_for(&key_path));
        message
    };

    ui.send(UiEvent::Connection(ConnectionState::Connecting));
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, connect(config, &key_path));
    let (client, events) = match with_progress(ui, "Connecting to the server", connecting).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(forget_key(describe(&e))),
        Err(_) => return Err(forget_key("The server did not answer in time.".into())),
    };
    let restoring = match with_progress(ui, "Registering", client.register(&identity)).await {
        Ok(_) => false,
        // An imported key may belong to an existing account: logging in will tell.
        Err(e) if importing && e.code() == Some(ErrorCode::UsernameTaken) => true,
        Err(e) => return Err(forget_key(describe(&e))),
    };
    let logged_in = match with_progress(ui, "Logging in", client.login(&identity)).await {
        Ok(logged_in) => logged_in,
        Err(e) if restoring => {
            return Err(forget_key(match e.code() {
                Some(ErrorCode::AuthFailed) => {
                    "That username is already taken by someone else's key.".into()
                }
                _ => describe(&e),
            }))
        }
        Err(e) => {
            return Err(format!(
                "Your account was created but logging in failed: {} Restart the client to \
                 try again.",
                describe(&e)
            ))
        }
    };
    tracing::info!(user = %logged_in.username, restoring, "account ready");
    let account = Account {
        identity,
        key_path,
        passphrase: Some(passphrase),
        previous_keys: Vec::new(),
    };
    let connected = Connected {
        client,
        events,
        logged_in,
    };
    Ok((account, Some(connected), Vec::new()))
}

async fn unlock_account(
    config: &NetworkConfig,
    unlock: Unlock,
    ui: &UiSink,
) -> Result<Onboarded, String> {
    let Unlock {
        username,
        key_path,
        passphrase,
    } = unlock;
    let path = key_path.clone();
    let secret = passphrase.clone();
    let (identity, retired, unreadable) = with_progress(
        ui,
        "Unlocking your key",
        blocking(move || {
            let secret = secret.as_ref().map(Secret::expose);
            let identity = Identity::load(username, &path, secret)?;
            // Keys replaced by rotations, so that messages sealed to them still open.
            let (retired, unreadable) = keyfile::load_retired(&path, secret);
            Ok::<_, keystore::KeystoreError>((identity, retired, unreadable))
        }),
    )
    .await?
    .map_err(|e| describe_keystore(&e))?;
    let warnings: Vec<String> = unreadable
        .into_iter()
        .map(|why| {
            format!("An old key kept from a rotation could not be opened ({why}); messages sealed to it stay unreadable.")
        })
        .collect();
    let account = Account {
        identity,
        key_path,
        passphrase,
        previous_keys: retired.into_iter().map(Arc::new).collect(),
    };
    ui.send(UiEvent::Connection(ConnectionState::Connecting));
    match with_progress(
        ui,
        "Connecting to the server",
        connect_and_login(config, &account),
    )
    .await
    {
        Ok(conn) => Ok((account, Some(conn), warnings)),
        Err(e) if is_fatal(&e) => Err(describe(&e)),
        // The server is unreachable: open the main screen and keep retrying there.
        Err(e) => {
            tracing::info!(error = %e, "server unreachable at start-up");
            Ok((account, None, warnings))
        }
    }
}

async fn connect(
    config: &NetworkConfig,
    key_path: &std::path::Path,
) -> Result<(Client, EventReceiver), ClientError> {
    let pins = PinStore::open(pins_path_for(key_path))?;
    Client::connect_with(&config.server_url, pins, config.client.clone()).await
}

async fn connect_and_login(
    config: &NetworkConfig,
    account: &Account,
) -> Result<Connected, ClientError> {
    let attempt = async {
        let (client, events) = connect(config, &account.key_path).await?;
        for key in &account.previous_keys {
            client.add_previous_key(Arc::clone(key));
        }
        let logged_in = client.login(&account.identity).await?;
        Ok(Connected {
            client,
            events,
            logged_in,
        })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or(Err(ClientError::Timeout(CONNECT_TIMEOUT)))
}

/// Sleeps `delay` while answering commands that need a connection with "offline".
/// Returns `false` if the user quit.
async fn wait_offline(
    delay: Duration,
    commands: &mut mpsc::Receiver<Command>,
    ui: &UiSink,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            command = commands.recv() => match command {
                None | Some(Command::Quit) => return false,
                Some(Command::Reconnect) => return true,
                Some(command) => refuse_offline(command, ui),
            },
        }
    }
}

/// After a fatal login failure: nothing to do but wait for the user to quit.
async fn wait_for_quit(commands: &mut mpsc::Receiver<Command>, ui: &UiSink) {
    while let Some(command) = commands.recv().await {
        if command == Command::Quit {
            return;
        }
        refuse_offline(command, ui);
    }
}

fn refuse_offline(command: Command, ui: &UiSink) {
    const OFFLINE: &str = "not connected to the server (reconnecting).";
    match command {
        Command::Send { room, local_id, .. } => ui.send(UiEvent::SendFailed {
            room,
            local_id,
            reason: "You are not connected to the server.".into(),
            waiting: true,
        }),
        Command::RotateKey => ui.send(UiEvent::RotationFailed {
            message: format!("Your key was not changed: {OFFLINE}"),
        }),
        Command::RefreshRooms
        | Command::SetTyping { .. }
        | Command::MarkRead { .. }
        | Command::CreateAccount(_)
        | Command::Unlock(_)
        | Command::Reconnect
        | Command::Quit => {}
        Command::OpenDirect { user } => ui.send(UiEvent::DirectFailed {
            user,
            message: format!("Not possible while {OFFLINE}"),
        }),
        other => ui.send(UiEvent::Failed {
            action: action_name(&other),
            message: format!("Not possible while {OFFLINE}"),
        }),
    }
}

/// What a command does, for error dialogs.
fn action_name(command: &Command) -> String {
    match command {
        Command::CreateAccount(_) => "Creating the account".into(),
        Command::Unlock(_) => "Unlocking".into(),
        Command::RefreshRooms => "Listing rooms".into(),
        Command::CreateRoom { room, .. } => format!("Creating #{room}"),
        Command::JoinRoom { room, .. } => format!("Joining #{room}"),
        Command::Send { room, .. } => format!("Sending to #{room}"),
        Command::LoadOlder { room, .. } => format!("Loading older messages of #{room}"),
        Command::Leave { room } => format!("Leaving #{room}"),
        Command::AcceptKey { username } => format!("Accepting {username}'s key"),
        Command::MarkVerified { username } => format!("Marking {username}'s key verified"),
        Command::RotateKey => "Replacing your key".into(),
        Command::Moderate { room, action } => action_title(&format!("#{room}"), action),
        Command::SetPassword { room, password } => action_title(
            &format!("#{room}"),
            &redacted_password_change(password.is_some()),
        ),
        Command::Reopen { room } => format!("Opening #{room}"),
        Command::OpenDirect { user } => format!("Opening the conversation with {user}"),
        Command::SetBlocked {
            user,
            blocked: true,
        } => format!("Blocking {user}"),
        Command::SetBlocked { user, .. } => format!("Unblocking {user}"),
        Command::SetTyping { room, .. } => format!("Telling #{room} you are typing"),
        Command::MarkRead { room, .. } => format!("Marking #{room} read"),
        Command::DeleteAccount => "Deleting your account".into(),
        Command::Reconnect => "Reconnecting".into(),
        Command::Quit => "Quitting".into(),
    }
}

/// How a session ended.
enum SessionEnd {
    /// The user quit; close this client.
    Quit(Client),
    /// The connection dropped.
    Lost(String),
    /// The account was deleted: there is nothing to reconnect to.
    AccountDeleted,
}

/// Work for the executor.
enum Job {
    /// Re-open a room the user is a member of, after login.
    Reopen(RoomName),
    /// A user command.
    User(Command),
}

/// One connection: forwards client events and feeds commands to the executor.
async fn session(
    conn: Connected,
    commands: &mut mpsc::Receiver<Command>,
    ui: &UiSink,
    ctx: Context,
) -> SessionEnd {
    let Connected {
        client,
        mut events,
        logged_in,
    } = conn;
    // Unbounded on purpose: fed only by the bounded command channel (and the user's
    // rooms), so its length is bounded by what the user typed.
    let (jobs, job_rx) = mpsc::unbounded_channel();
    ui.send(UiEvent::Memberships(logged_in.rooms.clone()));
    let mut initial: VecDeque<Job> = logged_in.rooms.iter().cloned().map(Job::Reopen).collect();
    initial.push_back(Job::User(Command::RefreshRooms));
    for job in initial {
        let _ = jobs.send(job);
    }
    let executor = tokio::spawn(execute_all(client.clone(), job_rx, ui.clone(), ctx));
    // The lobby's hints, for this connection; the state re-lists only while it is shown.
    let watcher = client.clone();
    tokio::spawn(async move {
        if let Err(e) = watcher.watch_lobby(true).await {
            tracing::debug!(error = %e, "could not watch the lobby");
        }
    });
    let mut deleted = false;
    let end = loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(ClientEvent::AccountDeleted) => {
                    deleted = true;
                    ui.send(UiEvent::Client(ClientEvent::AccountDeleted));
                }
                Some(ClientEvent::Disconnected { .. }) | None if deleted => {
                    break SessionEnd::AccountDeleted
                }
                Some(ClientEvent::Disconnected { reason }) => break SessionEnd::Lost(reason),
                None => break SessionEnd::Lost("the connection closed".into()),
                Some(event) => ui.send(UiEvent::Client(event)),
            },
            command = commands.recv() => match command {
                None | Some(Command::Quit) => break SessionEnd::Quit(client.clone()),
                // Already connected: nothing to cut short.
                Some(Command::CreateAccount(_) | Command::Unlock(_) | Command::Reconnect) => {}
                Some(command) => {
                    let _ = jobs.send(Job::User(command));
                }
            },
        }
    };
    // Jobs still queued fail fast on the closed connection and report it; on quit they
    // are dropped with the executor.
    drop(jobs);
    if matches!(end, SessionEnd::Quit(_)) {
        executor.abort();
    }
    end
}

async fn execute_all(
    client: Client,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    ui: UiSink,
    ctx: Context,
) {
    while let Some(job) = jobs.recv().await {
        execute(&client, job, &ui, &ctx).await;
    }
}

/// Reports a failure as a dialog, unless it is only the connection dropping (the status
/// line says so already).
fn report(ui: &UiSink, action: String, error: &ClientError) {
    tracing::info!(%action, %error, "request failed");
    if matches!(error, ClientError::Disconnected { .. }) {
        return;
    }
    ui.send(UiEvent::Failed {
        action,
        message: describe(error),
    });
}

async fn execute(client: &Client, job: Job, ui: &UiSink, ctx: &Context) {
    let command = match job {
        Job::Reopen(room) => return reopen(client, &room, ui).await,
        Job::User(command) => command,
    };
    let action = action_name(&command);
    match command {
        Command::RefreshRooms => match client.list_rooms().await {
            Ok(list) => ui.send(UiEvent::RoomList(list)),
            Err(e) => report(ui, action, &e),
        },
        Command::CreateRoom {
            room,
            password,
            hidden,
        } => {
            let password = password.as_ref().map(Secret::expose);
            match client.create_room(&room, password, hidden).await {
                Ok(view) => {
                    ui.send(UiEvent::RoomOpened { view, focus: true });
                    if let Ok(list) = client.list_rooms().await {
                        ui.send(UiEvent::RoomList(list));
                    }
                }
                Err(e) => report(ui, action, &e),
            }
        }
        Command::JoinRoom { room, password } => {
            let given = password.as_ref().map(Secret::expose);
            match client.join_room(&room, given).await {
                Ok(view) => {
                    ui.send(UiEvent::RoomOpened { view, focus: true });
                    if let Ok(list) = client.list_rooms().await {
                        ui.send(UiEvent::RoomList(list));
                    }
                }
                Err(e)
                    if matches!(
                        e.code(),
                        Some(ErrorCode::RoomUnavailable | ErrorCode::WrongPassword)
                    ) =>
                {
                    ui.send(UiEvent::PasswordNeeded {
                        room,
                        wrong: password.is_some(),
                    });
                }
                Err(e) => report(ui, action, &e),
            }
        }
        Command::Send {
            room,
            text,
            local_id,
            message_id,
        } => match client.send_text_as(&room, &text, message_id).await {
            Ok(ack) => ui.send(UiEvent::Sent {
                room,
                local_id,
                ack,
            }),
            // Nothing was sent: the UI shows who was added, then sends once more.
            Err(ClientError::MembersAdded { added, .. }) => ui.send(UiEvent::MembersAdded {
                room,
                local_id,
                added,
            }),
            // An earlier attempt under this id was stored; its ack was lost.
            Err(ClientError::Server {
                code: ErrorCode::DuplicateMessage,
                ..
            }) => ui.send(UiEvent::AlreadyStored { room, local_id }),
            Err(e) => {
                tracing::info!(%room, error = %e, "send failed");
                ui.send(UiEvent::SendFailed {
                    room,
                    local_id,
                    reason: describe(&e),
                    waiting: is_connection_failure(&e),
                });
            }
        },
        Command::LoadOlder { room, before_seq } => {
            match client
                .fetch_history(&room, Some(before_seq), HISTORY_PAGE)
                .await
            {
                Ok(page) => ui.send(UiEvent::HistoryLoaded(page)),
                Err(e) => report(ui, action, &e),
            }
        }
        Command::Leave { room } => match client.leave_room(&room).await {
            Ok(()) => ui.send(UiEvent::Left(room)),
            Err(e) => report(ui, action, &e),
        },
        Command::AcceptKey { username } => match client.accept_key(&username) {
            Ok(fingerprint) => {
                ui.send(UiEvent::KeyAccepted {
                    username: username.clone(),
                    fingerprint,
                });
                // Messages refused while the key was untrusted can be read now.
                for room in client.open_rooms() {
                    let Some(members) = client.members(&room) else {
                        continue;
                    };
                    if !members.iter().any(|m| m.username.same_as(&username)) {
                        continue;
                    }
                    ui.send(UiEvent::Members {
                        room: room.clone(),
                        members,
                    });
                    match client.fetch_history(&room, None, HISTORY_PAGE).await {
                        Ok(page) => ui.send(UiEvent::HistoryLoaded(page)),
                        Err(e) => report(ui, format!("Reloading #{room}"), &e),
                    }
                }
            }
            Err(e) => report(ui, action, &e),
        },
        Command::MarkVerified { username } => match client.mark_verified(&username) {
            Ok(fingerprint) => ui.send(UiEvent::Verified {
                username,
                fingerprint,
            }),
            Err(e) => report(ui, action, &e),
        },
        Command::RotateKey => rotate_own_key(client, &ctx.account, ctx.key_bits, ui).await,
        Command::Moderate { room, action } => {
            if let Err(e) = client.moderate(&room, action.clone()).await {
                report_refusal(ui, &room, &action, &e);
            }
        }
        Command::SetPassword { room, password } => {
            let action = ModerationAction::SetPassword {
                password: password.as_ref().map(|p| p.expose().to_owned()),
            };
            if let Err(e) = client.moderate(&room, action).await {
                let shown = redacted_password_change(password.is_some());
                report_refusal(ui, &room, &shown, &e);
            }
        }
        Command::Reopen { room } => reopen(client, &room, ui).await,
        Command::OpenDirect { user } => match client.open_direct(&user).await {
            Ok(view) => ui.send(UiEvent::RoomOpened { view, focus: true }),
            Err(e) => {
                tracing::info!(%user, error = %e, "opening a direct conversation failed");
                let message = match e.code() {
                    Some(ErrorCode::NotPermitted) => {
                        format!("{user} does not accept direct messages from you.")
                    }
                    Some(ErrorCode::UnknownUser) => format!("There is no user named {user}."),
                    Some(ErrorCode::InvalidInput) => "That is you.".to_owned(),
                    _ => describe(&e),
                };
                ui.send(UiEvent::DirectFailed { user, message });
            }
        },
        Command::SetBlocked { user, blocked } => match client.set_blocked(&user, blocked).await {
            Ok(()) => ui.send(UiEvent::Blocked { user, blocked }),
            Err(e) => report(ui, action, &e),
        },
        // Typing and read markers are best effort: a failure is not worth a dialog.
        Command::SetTyping { room, typing } => {
            if let Err(e) = client.set_typing(&room, typing).await {
                tracing::debug!(%room, error = %e, "typing notification failed");
            }
        }
        Command::MarkRead { room, seq } => {
            if let Err(e) = client.mark_read(&room, seq).await {
                tracing::debug!(%room, error = %e, "read marker failed");
            }
        }
        // On success the server closes the connection (`ClientEvent::AccountDeleted`).
        Command::DeleteAccount => {
            if let Err(e) = client.delete_account().await {
                report(ui, action, &e);
            }
        }
        Command::CreateAccount(_) | Command::Unlock(_) | Command::Reconnect | Command::Quit => {}
    }
}

/// Opens a room the user is a member of without switching to it.
async fn reopen(client: &Client, room: &RoomName, ui: &UiSink) {
    match client.join_room(room, None).await {
        Ok(view) => ui.send(UiEvent::RoomOpened { view, focus: false }),
        Err(e) => report(ui, format!("Opening #{room}"), &e),
    }
}

/// Reports a refused moderation request in plain words ("Only the owner can …").
fn report_refusal(ui: &UiSink, room: &RoomName, action: &ModerationAction, error: &ClientError) {
    tracing::info!(%room, %error, "moderation failed");
    if matches!(error, ClientError::Disconnected { .. }) {
        return;
    }
    let label = format!("#{room}");
    ui.send(UiEvent::Failed {
        action: action_title(&label, action),
        message: refusal(&label, action, error),
    });
}

/// What a failed `Client::rotate_key` means for the new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RotationOutcome {
    /// The server did not switch (it refused, or nothing was sent): delete the new key.
    Refused,
    /// The server switched, but the client could not record it locally: keep the new key.
    Switched,
    /// No answer (the connection dropped, a timeout): the server may have switched, so the
    /// new key must be kept.
    Unknown,
}

fn rotation_outcome(error: &ClientError) -> RotationOutcome {
    match error {
        ClientError::Server { .. }
        | ClientError::NotLoggedIn
        | ClientError::WrongIdentity { .. }
        | ClientError::Crypto(_)
        | ClientError::Codec(_)
        | ClientError::Task(_) => RotationOutcome::Refused,
        // Only saving the new own-key pin, after the server's confirmation, fails this way.
        ClientError::Pins(_) => RotationOutcome::Switched,
        _ => RotationOutcome::Unknown,
    }
}

/// Seconds since the Unix epoch (0 before it), for naming a retired key file.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Rotates the user's key (see [`keyfile`] for the order the files change in), reporting
/// progress and the outcome.
async fn rotate_own_key(client: &Client, account: &SharedAccount, bits: usize, ui: &UiSink) {
    let Account {
        identity: old,
        key_path,
        passphrase,
        ..
    } = current(account);
    let fail = |message: String| ui.send(UiEvent::RotationFailed { message });

    let generated = with_progress(
        ui,
        &format!("Generating your new RSA-{bits} key"),
        blocking(move || keys::generate(bits)),
    )
    .await;
    let key = match generated {
        Ok(Ok(key)) => key,
        Ok(Err(e)) => return fail(format!("Key generation failed: {e}.")),
        Err(message) => return fail(message),
    };
    let new = match Identity::new(old.username().clone(), key) {
        Ok(identity) => identity,
        Err(e) => return fail(format!("The new key cannot be used: {e}.")),
    };
    let (to_save, path) = (new.clone(), key_path.clone());
    let secret = passphrase.clone();
    let written = with_progress(
        ui,
        "Encrypting and saving the new key",
        blocking(move || {
            keyfile::write_pending(
                &path,
                to_save.private_key(),
                secret.as_ref().map(Secret::expose),
            )
        }),
    )
    .await;
    let pending = match written {
        Ok(Ok(pending)) => pending,
        Ok(Err(e)) => {
            return fail(format!(
                "Your key was not changed: {}",
                describe_keystore(&e)
            ))
        }
        Err(message) => return fail(message),
    };

    let switched = with_progress(
        ui,
        "Asking the server to switch to the new key",
        client.rotate_key(&new),
    )
    .await;
    let problem = match switched {
        Ok(_) => None,
        Err(e) => match rotation_outcome(&e) {
            RotationOutcome::Refused => {
                tracing::info!(error = %e, "key rotation refused");
                let kept = match keyfile::discard(&pending) {
                    Ok(()) => String::new(),
                    Err(io) => format!(
                        " The unused new key could not be deleted ({io}); delete {} yourself.",
                        pending.display()
                    ),
                };
                return fail(format!("Your key was not changed: {}{kept}", describe(&e)));
            }
            RotationOutcome::Unknown => {
                tracing::warn!(error = %e, "key rotation outcome unknown");
                return fail(format!(
                    "It is not known whether the server switched to your new key: {} The new \
                     key is kept in {}. If logging in with your current key fails from now \
                     on, rename that file to {} (keep the old file under another name).",
                    describe(&e),
                    pending.display(),
                    key_path.display()
                ));
            }
            RotationOutcome::Switched => Some(describe(&e)),
        },
    };

    // The server uses the new key now: from here on, the new key must never be lost.
    {
        let mut account = account
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        account.identity = new.clone();
        account.previous_keys.insert(0, old.private_key_arc());
    }
    let (path, from) = (key_path.clone(), pending.clone());
    let installed = blocking(move || keyfile::install(&path, &from, unix_now())).await;
    let backup = match installed {
        Ok(Ok(backup)) => Some(backup),
        Ok(Err(e)) => {
            report_unsaved(ui, &pending, &key_path, &e.to_string());
            None
        }
        Err(message) => {
            report_unsaved(ui, &pending, &key_path, &message);
            None
        }
    };
    ui.send(UiEvent::OwnKeyRotated {
        old: old.fingerprint(),
        new: new.fingerprint(),
        backup,
    });
    if let Some(why) = problem {
        ui.send(UiEvent::Failed {
            action: "Recording your new key".into(),
            message: format!(
                "The server uses your new key, but this client could not record it: {why} \
                 Restart the client."
            ),
        });
    }
}

/// The server switched to the new key but it could not replace the key file.
fn report_unsaved(ui: &UiSink, pending: &std::path::Path, key_path: &std::path::Path, why: &str) {
    tracing::error!(%why, "the new key could not be put in place");
    ui.send(UiEvent::Failed {
        action: "Saving your new key".into(),
        message: format!(
            "The server uses your new key, but it could not replace your key file ({why}). \
             The new key is in {}: before quitting, rename your key file {} to keep it, then \
             rename the new key to that name. Without it you cannot log in again.",
            pending.display(),
            key_path.display()
        ),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_the_delay_and_varies() {
        use rand::SeedableRng;
        let b = Backoff::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        for failures in 0..8 {
            let full = b.delay(failures);
            let delays: Vec<Duration> = (0..20).map(|_| b.jittered(failures, &mut rng)).collect();
            assert!(
                delays.iter().all(|d| *d >= full / 2 && *d <= full),
                "{failures}: {delays:?} outside {full:?}/2..={full:?}"
            );
            assert!(
                delays.iter().any(|d| *d != delays[0]),
                "{failures}: no jitter in {delays:?}"
            );
        }
    }

    #[test]
    fn a_rotation_keeps_the_new_key_unless_the_server_surely_refused() {
        let refused = ClientError::Server {
            code: ErrorCode::InvalidInput,
            message: "bad certificate".into(),
            detail: None,
        };
        assert_eq!(rotation_outcome(&refused), RotationOutcome::Refused);
        assert_eq!(
            rotation_outcome(&ClientError::NotLoggedIn),
            RotationOutcome::Refused
        );
        assert_eq!(
            rotation_outcome(&ClientError::Timeout(Duration::from_secs(30))),
            RotationOutcome::Unknown,
            "the server may have switched: the new key must be kept"
        );
        let pins = ClientError::Pins(crate::pins::PinError::Corrupt {
            path: PathBuf::from("/p"),
            reason: "x".into(),
        });
        assert_eq!(rotation_outcome(&pins), RotationOutcome::Switched);
    }

    #[test]
    fn identity_failures_of_the_server_stop_reconnecting() {
        let changed = ClientError::ServerIdentityChanged {
            address: "ws://x/ws".into(),
            pinned: shared::ServerId([1; 16]),
            presented: shared::ServerId([2; 16]),
        };
        assert!(is_fatal(&changed));
        assert!(!is_fatal(&ClientError::Timeout(Duration::from_secs(1))));
    }
}
