//! Server configuration: command-line flags with environment fallbacks (clap).
//!
//! The PaaS conventions are honoured: `PORT` sets the port and `MONGODB_URI` selects
//! MongoDB. Without a MongoDB URI the server uses the embedded store in `--data-dir`, so
//! running the binary with no configuration at all works.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::retention::RetentionSettings;
use shared::protocol::MAX_FRAME_BYTES;

/// Every setting the server reads.
#[derive(Debug, Clone, Parser)]
#[command(name = "server", version, about = "End-to-end encrypted chat server")]
pub struct Config {
    /// Address to bind.
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Directory of the embedded store (used when no MongoDB URI is given).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The Unix domain socket on which the server takes operators' requests (`server
    /// admin`), created with mode 0600: only the server's own OS user may use it. Default:
    /// `admin.sock` in the data directory (docs/OPERATIONS.md).
    #[arg(long, env = "ADMIN_SOCKET")]
    pub admin_socket: Option<PathBuf>,

    /// Memory for the embedded store's page cache, in MiB. Memory use under write load
    /// grows to about this much and no further (redb's own default is 1 GiB).
    #[arg(long, env = "STORE_CACHE_MB", default_value_t = 64)]
    pub store_cache_mb: usize,

    /// MongoDB connection string; when set, MongoDB is the store.
    #[arg(long, env = "MONGODB_URI")]
    pub mongodb_uri: Option<String>,

    /// MongoDB database name.
    #[arg(long, env = "MONGODB_DATABASE", default_value = "e2e_chat")]
    pub mongodb_database: String,

    /// Start on a standalone MongoDB server (not a replica set), with a warning: writes
    /// acknowledged by one node only. For development and emulators; refused otherwise.
    #[arg(long, env = "MONGODB_ALLOW_STANDALONE", default_value_t = false)]
    pub mongodb_allow_standalone: bool,

    /// Run as one of several instances sharing one MongoDB (needs `MONGODB_URI`): pushes,
    /// evictions and presence reach the other instances' connections through change
    /// streams (docs/SCALING.md). Off, the server pays nothing for it.
    #[arg(long, env = "SCALE_OUT", default_value_t = false)]
    pub scale_out: bool,

    /// This instance's id among several (1 to 64 letters, digits, `.`, `_`, `-`), unique
    /// among the running instances. Keep it across restarts (e.g. the replica's name): the
    /// change stream's position is saved under it. Unset, Heroku's `DYNO` (`web.1`) is
    /// used, or else a random id chosen at each start.
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Seconds between scale-out presence heartbeats; an instance silent for three is no
    /// longer counted online, nor are its users.
    #[arg(long, env = "PRESENCE_INTERVAL_SECS", default_value_t = 5)]
    pub presence_interval_secs: u64,

    /// Log filter in `tracing` EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    /// Seconds between WebSocket pings; a peer silent for three intervals is dropped, and
    /// so (by the kernel, `TCP_USER_TIMEOUT`) is a socket whose data has waited three
    /// intervals to be acknowledged or sent.
    #[arg(long, env = "HEARTBEAT_SECS", default_value_t = 10)]
    pub heartbeat_secs: u64,

    /// Seconds a login challenge stays valid.
    #[arg(long, env = "CHALLENGE_TTL_SECS", default_value_t = 60)]
    pub challenge_ttl_secs: u64,

    /// Frames queued for a connection before it is dropped as too slow.
    #[arg(long, env = "OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,

    /// MiB of replies and pushes that may wait for one client; a client with more queued
    /// (it reads too slowly) is dropped from delivery and closed with 1008.
    #[arg(long, env = "OUTBOUND_BUDGET_MB", default_value_t = 8)]
    pub outbound_budget_mb: usize,

    /// Seconds to drain connections on shutdown (Heroku allows 30 in total).
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,

    /// Requests one connection, and one user over all of their connections, may make per
    /// second (sustained); bursts of twice this pass, the rest get `RateLimited`.
    #[arg(long, env = "REQUESTS_PER_SEC", default_value_t = 200)]
    pub requests_per_sec: u32,

    /// KiB one connection, and one user over all of their connections, may send per second
    /// (sustained, in bursts of one largest frame); past that the server reads them more
    /// slowly.
    #[arg(long, env = "INBOUND_KIB_PER_SEC", default_value_t = 1024)]
    pub inbound_kib_per_sec: u32,

    /// actix worker threads (0 = one per core).
    #[arg(long, env = "WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// argon2 runs (room password checks) at once, on threads of their own (0 = one per
    /// core). A request that finds them all busy is refused with `RateLimited` at once.
    #[arg(long, env = "ARGON2_THREADS", default_value_t = 0)]
    pub argon2_threads: usize,

    /// The server runs behind one trusted proxy (Heroku's router, nginx) that appends the
    /// client's address to `X-Forwarded-For`: per-address limits then key on that address
    /// (the first header's last entry) instead of the proxy's.
    #[arg(long, env = "TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Accounts one client address may register per registration window.
    #[arg(long, env = "REGISTRATIONS_PER_ADDRESS", default_value_t = 5)]
    pub registrations_per_address: u32,

    /// Accounts the whole server registers per registration window.
    #[arg(long, env = "REGISTRATIONS_TOTAL", default_value_t = 200)]
    pub registrations_total: u32,

    /// The registration window, in seconds (the quotas refill evenly over it).
    #[arg(long, env = "REGISTRATION_WINDOW_SECS", default_value_t = 3600)]
    pub registration_window_secs: u64,

    /// Rooms one user may create; a room that is deleted, moved or handed on still
    /// counts, so this caps a user's rooms for good. Direct conversations do not count.
    #[arg(long, env = "ROOMS_PER_USER", default_value_t = 20)]
    pub rooms_per_user: usize,

    /// Failed joins of one room name (wrong password, no such room) a user may make before
    /// each further one waits, 1 s, 2 s, 4 s … up to 5 minutes.
    #[arg(long, env = "JOIN_FAILURES_PER_ROOM", default_value_t = 3)]
    pub join_failures_per_room: u32,

    /// Failed joins across all room names a user may make before each further one waits.
    #[arg(long, env = "JOIN_FAILURES_PER_USER", default_value_t = 10)]
    pub join_failures_per_user: u32,

    /// WebSocket connections one client address may hold open at once.
    #[arg(long, env = "CONNECTIONS_PER_ADDRESS", default_value_t = 16)]
    pub connections_per_address: usize,

    /// Seconds a new connection has to log in; one that has not is closed with 1008.
    #[arg(long, env = "LOGIN_DEADLINE_SECS", default_value_t = 30)]
    pub login_deadline_secs: u64,

    /// Days a message is kept; a background task deletes older ones (0 keeps them forever).
    #[arg(long, env = "RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u64,

    /// Messages kept per room, the newest; a background task deletes older ones (0 keeps
    /// them all).
    #[arg(long, env = "RETENTION_MESSAGES_PER_ROOM", default_value_t = 0)]
    pub retention_messages_per_room: u64,

    /// The largest ciphertext of one copy of a message, in bytes.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 65536)]
    pub max_message_bytes: usize,
}

/// Whether `id` can name an instance: 1 to 64 letters, digits, `.`, `_` or `-` (it is
/// written into `/health`'s JSON and used as a document id).
fn valid_instance_id(id: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    !id.is_empty() && id.len() <= 64 && id.chars().all(allowed)
}

/// Which store the configuration selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded store.
    Embedded {
        /// Its data directory.
        dir: PathBuf,
        /// Its page cache, in bytes.
        cache_bytes: usize,
    },
    /// MongoDB at this URI, in this database.
    Mongo {
        /// Connection string.
        uri: String,
        /// Database name.
        database: String,
    },
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is out of range.
    #[error("invalid setting {name}: {reason}")]
    Invalid {
        /// The flag.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Config {
    /// A configuration for tests: loopback, a free port, the embedded store in `data_dir`,
    /// and no environment read.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Self {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            data_dir,
            admin_socket: None,
            store_cache_mb: 16,
            mongodb_uri: None,
            mongodb_database: "e2e_chat".into(),
            mongodb_allow_standalone: false,
            scale_out: false,
            instance_id: None,
            presence_interval_secs: 5,
            retention_days: 0,
            retention_messages_per_room: 0,
            log_filter: "warn".into(),
            heartbeat_secs: 10,
            challenge_ttl_secs: 60,
            outbound_queue: 1024,
            outbound_budget_mb: 8,
            shutdown_grace_secs: 5,
            requests_per_sec: 200,
            inbound_kib_per_sec: 1024,
            workers: 2,
            argon2_threads: 2,
            trust_forwarded_for: false,
            // Every test client comes from 127.0.0.1: the address quotas are off unless a
            // test sets them.
            registrations_per_address: 100_000,
            registrations_total: 100_000,
            registration_window_secs: 3600,
            rooms_per_user: 10_000,
            join_failures_per_room: 3,
            join_failures_per_user: 10,
            connections_per_address: 10_000,
            login_deadline_secs: 60,
            max_message_bytes: 65536,
        }
    }

    /// Checks cross-field rules clap cannot express.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name, reason| Err(ConfigError::Invalid { name, reason });
        if self.heartbeat_secs == 0 {
            return invalid("heartbeat-secs", "must be at least 1");
        }
        if self.challenge_ttl_secs == 0 {
            return invalid("challenge-ttl-secs", "must be at least 1");
        }
        if self.requests_per_sec == 0 {
            return invalid("requests-per-sec", "must be at least 1");
        }
        if self.inbound_kib_per_sec == 0 {
            return invalid("inbound-kib-per-sec", "must be at least 1");
        }
        if self.registrations_per_address == 0 || self.registrations_total == 0 {
            return invalid("registrations-per-address", "quotas must be at least 1");
        }
        if self.registration_window_secs == 0 {
            return invalid("registration-window-secs", "must be at least 1");
        }
        if self.connections_per_address == 0 {
            return invalid("connections-per-address", "must be at least 1");
        }
        if self.login_deadline_secs == 0 {
            return invalid("login-deadline-secs", "must be at least 1");
        }
        if self.max_message_bytes == 0 || self.max_message_bytes > MAX_FRAME_BYTES {
            return invalid("max-message-bytes", "must be 1 to MAX_FRAME_BYTES");
        }
        if self.outbound_queue < 16 {
            return invalid("outbound-queue", "must be at least 16");
        }
        if self.outbound_budget_mb < 5 {
            return invalid(
                "outbound-budget-mb",
                "must be at least 5 (one frame of MAX_FRAME_BYTES must fit)",
            );
        }
        if matches!(&self.mongodb_uri, Some(uri) if uri.trim().is_empty()) {
            return invalid("mongodb-uri", "is set but empty");
        }
        if self.scale_out && self.mongodb_uri.is_none() {
            return invalid(
                "scale-out",
                "needs MONGODB_URI (instances share MongoDB; the embedded store is one process's)",
            );
        }
        if let Some(id) = &self.instance_id {
            if !valid_instance_id(id) {
                return invalid(
                    "instance-id",
                    "must be 1 to 64 letters, digits, '.', '_' or '-'",
                );
            }
        }
        if self.presence_interval_secs == 0 {
            return invalid("presence-interval-secs", "must be at least 1");
        }
        Ok(())
    }

    /// What the retention task keeps.
    pub fn retention(&self) -> RetentionSettings {
        RetentionSettings {
            max_age: (self.retention_days > 0)
                .then(|| Duration::from_secs(self.retention_days.saturating_mul(86_400))),
            max_messages_per_room: (self.retention_messages_per_room > 0)
                .then_some(self.retention_messages_per_room),
        }
    }

    /// Where the admin socket is: `--admin-socket`, or `admin.sock` in the data directory.
    pub fn admin_socket_path(&self) -> PathBuf {
        self.admin_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.sock"))
    }

    /// The store this configuration selects.
    pub fn store_choice(&self) -> StoreChoice {
        match &self.mongodb_uri {
            Some(uri) => StoreChoice::Mongo {
                uri: uri.clone(),
                database: self.mongodb_database.clone(),
            },
            None => StoreChoice::Embedded {
                dir: self.data_dir.clone(),
                cache_bytes: self.store_cache_mb.saturating_mul(1024 * 1024),
            },
        }
    }

    /// What scale-out needs, when it is on (validated: MongoDB is configured).
    pub fn scale_out(&self) -> Option<crate::fanout::Settings> {
        if !self.scale_out {
            return None;
        }
        let uri = self.mongodb_uri.clone()?;
        let dyno = std::env::var("DYNO").ok().filter(|d| valid_instance_id(d));
        let instance = self.instance_id.clone().or(dyno).unwrap_or_else(|| {
            let id = format!("i-{}", hex::encode(rand::random::<[u8; 6]>()));
            tracing::warn!(
                instance = %id,
                "no INSTANCE_ID: using a random one, so this instance's change-stream \
                 position is not resumed after a restart"
            );
            id
        });
        Some(crate::fanout::Settings {
            uri,
            database: self.mongodb_database.clone(),
            instance,
            presence_interval: Duration::from_secs(self.presence_interval_secs),
        })
    }

    /// The per-connection byte budget, in bytes.
    pub fn outbound_budget_bytes(&self) -> usize {
        self.outbound_budget_mb.saturating_mul(1024 * 1024)
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    /// How long a login challenge is valid.
    pub fn challenge_ttl(&self) -> Duration {
        Duration::from_secs(self.challenge_ttl_secs)
    }

    /// How long a new connection has to log in.
    pub fn login_deadline(&self) -> Duration {
        Duration::from_secs(self.login_deadline_secs)
    }

    /// The registration window.
    pub fn registration_window(&self) -> Duration {
        Duration::from_secs(self.registration_window_secs)
    }

    /// argon2 runs at once: the setting, or the number of cores when it is 0.
    pub fn argon2_concurrency(&self) -> usize {
        match self.argon2_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_out_needs_mongodb_and_a_usable_instance_id() {
        let base = Config::for_tests("unused".into());
        assert!(base.scale_out().is_none(), "off by default: nothing runs");
        let mut config = Config {
            scale_out: true,
            ..base.clone()
        };
        assert!(
            config.validate().is_err(),
            "the embedded store cannot be shared"
        );
        config.mongodb_uri = Some("mongodb://db:27017/".into());
        for bad in ["", "a b", "a\"b", &"x".repeat(65)] {
            config.instance_id = Some(bad.to_owned());
            assert!(config.validate().is_err(), "{bad:?}");
        }
        config.instance_id = Some("web.1".into());
        config.validate().expect("valid");
        let settings = config.scale_out().expect("on");
        assert_eq!(settings.instance, "web.1");
        assert_eq!(settings.database, "e2e_chat");
        assert_eq!(settings.presence_interval, Duration::from_secs(5));
    }
}
