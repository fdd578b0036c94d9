//! Scale-out harness: server instances as processes of their own on one MongoDB (or the
//! wire-protocol emulator), and nginx in front of them as a WebSocket load balancer.
//!
//! The tests that use it need `TEST_MONGODB_URI` (`.ci/mongo` sets it, pointing at the
//! emulator when no MongoDB is named) and an `nginx` binary (`.ci/run` installs the Debian
//! package); [`unavailable`] says which is missing, and those tests then print why and
//! pass without running.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::RawClient;

/// Why the scale-out tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if std::env::var_os("TEST_MONGODB_URI").is_none() {
        return Some(
            "TEST_MONGODB_URI is not set (no MongoDB, no emulator; `bash .ci/mongo` runs them \
             through the emulator)"
                .into(),
        );
    }
    if nginx_binary().is_none() {
        return Some("no nginx binary (`apt-get install -y nginx`; .ci/run installs it)".into());
    }
    None
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A free loopback port (bound, read and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A fresh database name for one test's instances.
pub fn fresh_database(test: &str) -> String {
    let digest = shared::crypto::keys::Fingerprint::of_der(
        format!(
            "{test}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        )
        .as_bytes(),
    );
    let hex: String = digest.0[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("e2e_scale_{hex}")
}

/// Drops a test's database (at the end of a test that passed; a failed one leaves it to
/// look at).
pub async fn drop_database(database: &str) {
    let uri = std::env::var("TEST_MONGODB_URI").expect("TEST_MONGODB_URI");
    let store = server::store::mongo::MongoStore::connect(
        &uri,
        database,
        server::store::mongo::Standalone::Allow,
    )
    .await
    .expect("reconnect to drop the test database");
    store.drop_database().await.expect("drop the test database");
}

/// One server instance running as its own process, with scale-out on.
pub struct Instance {
    /// Its id (`INSTANCE_ID`).
    pub id: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    exe: PathBuf,
    database: String,
    data_dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Instance {
    /// Starts instance `id` of the server binary `exe` on a free port, on the shared
    /// database, and waits until `/health` says its change stream is live.
    pub async fn start(exe: &Path, id: &str, database: &str) -> Self {
        let mut instance = Self {
            id: id.to_owned(),
            port: free_port(),
            exe: exe.to_owned(),
            database: database.to_owned(),
            data_dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        instance.restart().await;
        instance
    }

    /// Starts the process again (same id, port and database) after [`kill`](Self::kill),
    /// and waits until it is live.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "instance {} is running", self.id);
        let uri = std::env::var("TEST_MONGODB_URI").expect("TEST_MONGODB_URI");
        let log = std::env::var("TEST_LOG").map_or_else(|_| "warn".to_owned(), |_| "info".into());
        let child = Command::new(&self.exe)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BIND_ADDRESS", "127.0.0.1")
            .env("PORT", self.port.to_string())
            .env("DATA_DIR", self.data_dir.path())
            .env("MONGODB_URI", uri)
            .env("MONGODB_DATABASE", &self.database)
            .env("MONGODB_ALLOW_STANDALONE", "true")
            .env("SCALE_OUT", "true")
            .env("INSTANCE_ID", &self.id)
            .env("PRESENCE_INTERVAL_SECS", "1")
            .env("WORKERS", "1")
            .env("ARGON2_THREADS", "1")
            .env("SHUTDOWN_GRACE_SECS", "5")
            // Every client reaches the instances through nginx on 127.0.0.1.
            .env("REGISTRATIONS_PER_ADDRESS", "100000")
            .env("REGISTRATIONS_TOTAL", "100000")
            .env("CONNECTIONS_PER_ADDRESS", "10000")
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.exe.display()));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("instance {} exited at start-up: {status}", self.id);
            }
            if let Some((200, body)) = http_get(self.addr(), "/health").await {
                assert!(
                    body.contains(&format!(r#""instance":"{}""#, self.id))
                        && body.contains(r#""stream":"live""#),
                    "health of instance {}: {body}",
                    self.id
                );
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "instance {} not healthy within 60 s",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process at once (SIGKILL: no drain, no goodbye to MongoDB).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `/health`'s status and body, if it answers.
    pub async fn health(&self) -> Option<(u16, String)> {
        http_get(self.addr(), "/health").await
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx as a WebSocket load balancer (round robin, no stickiness) in front of instances;
/// it tells each client which one it reached in an `X-Upstream` response header.
pub struct Balancer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Balancer {
    /// Starts nginx in front of `ports`, configured as `deploy/nginx/default.conf` (the same
    /// map and location files; the upstream pointed at `ports`), and waits until it
    /// listens.
    pub async fn start(ports: &[u16]) -> Self {
        let nginx = nginx_binary().expect("nginx is installed");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let servers: String = ports
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let root = dir.path().display();
        let conf = format!(
            "daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{common}
    upstream chat {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        # For the tests only: which instance answered.
        add_header X-Upstream $upstream_addr always;
        include {root}/chat-location.conf;
    }}
}}
",
            common = COMMON_HTTP,
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        std::fs::write(dir.path().join("chat-location.conf"), LOCATION).expect("write location");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let balancer = Self {
            port,
            _dir: dir,
            child,
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return balancer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log =
            std::fs::read_to_string(balancer._dir.path().join("error.log")).unwrap_or_default();
        panic!("nginx did not listen within 5 s: {log}");
    }

    /// The WebSocket URL through the balancer.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// Connects and greets through the balancer; returns the client and the port of the
    /// instance it reached. A refusal (502 while the balancer holds every instance for
    /// failed) is retried for a while, as a client's reconnection does.
    pub async fn greeted(&self) -> (RawClient, u16) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let (mut client, upstream) = loop {
            match RawClient::connect_reporting(&self.ws_url(), "x-upstream").await {
                Ok(connected) => break connected,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "balancer refused; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no instance reachable through the balancer: {e}"),
            }
        };
        client.greet().await;
        let upstream = upstream.expect("nginx names the upstream");
        // A retried connection lists every upstream tried: the last one answered.
        let last = upstream.rsplit(", ").next().unwrap_or(&upstream);
        let port = last
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("upstream {upstream:?}"));
        (client, port)
    }
}

impl Drop for Balancer {
    /// Stops nginx with SIGTERM to its master, which ends its worker too (SIGKILL would
    /// leave the worker running).
    fn drop(&mut self) {
        let stopped = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The `http` settings a WebSocket balancer needs, as deployed.
const COMMON_HTTP: &str = include_str!("../../deploy/nginx/websocket-map.conf");

/// The `location` that sends everything to the instances, as deployed.
const LOCATION: &str = include_str!("../../deploy/nginx/chat-location.conf");

/// A bare HTTP/1.0 GET: the status and body, or `None` if nothing answers.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.ok()?;
        let status = answer.split_whitespace().nth(1)?.parse().ok()?;
        let body = answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}
