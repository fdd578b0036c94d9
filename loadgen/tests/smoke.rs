//! Smoke runs of every scenario with tiny parameters, so the tool cannot rot. The server
//! runs in-process (embedded store in a temporary directory); the heavy, honest runs use a
//! separate release-build server (`run-bench.sh`) and are not part of the test suite.

use std::time::Duration;

use loadgen::fanout::{self, FanoutParams, Mode, Target, TargetKind};
use loadgen::idle::{self, IdleParams};
use loadgen::keys::KeyPool;
use loadgen::logins::{self, LoginParams};
use loadgen::report::{self, Report};
use loadgen::{abuse, crypto_floor, relay};
use server::config::Config;
use server::startup::{Application, Stopper};

struct Running {
    url: String,
    stopper: Stopper,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::for_tests(dir.path().to_path_buf());
        config.requests_per_sec = 10_000;
        configure(&mut config);
        let app = Application::build(config).await.expect("server builds");
        let url = format!("ws://127.0.0.1:{}/ws", app.port());
        let stopper = app.stopper();
        let task = tokio::spawn(app.run_until_stopped());
        Self {
            url,
            stopper,
            task,
            _dir: dir,
        }
    }

    fn target(&self) -> Target {
        Target {
            url: self.url.clone(),
            kind: TargetKind::Server,
            pid: Some(std::process::id()),
            also: Vec::new(),
        }
    }

    async fn stop(self) {
        self.stopper.stop().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// A bare relay in this process (dropping the handle stops it) and its target, charged
/// to process `pid`.
async fn in_process_relay(pid: Option<u32>) -> (relay::RelayHandle, Target) {
    let relay = relay::spawn(([127, 0, 0, 1], 0).into())
        .await
        .expect("relay binds");
    let target = Target {
        url: relay.url(),
        kind: TargetKind::Relay,
        pid,
        also: Vec::new(),
    };
    (relay, target)
}

fn keys() -> KeyPool {
    KeyPool::rsa3072(None).expect("fixture keys")
}

fn tiny_fanout(members: usize, rate: f64, mode: Mode) -> FanoutParams {
    FanoutParams {
        rooms: 1,
        members,
        senders_per_room: 0,
        payload_bytes: 64,
        rate,
        window: 2,
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(1200),
        drain: Duration::from_secs(10),
        mode,
        setup_concurrency: 8,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_replay_delivers_every_copy() {
    let server = Running::start(|_| {}).await;
    let params = tiny_fanout(3, 20.0, Mode::Replay);
    let r = fanout::run(&params, &keys(), &server.target())
        .await
        .expect("fan-out runs");
    assert!(r.sent >= 10, "about 20 messages offered: {r:?}");
    assert_eq!(r.acked, r.sent, "every send acknowledged");
    assert_eq!(r.errors, 0);
    assert_eq!(r.expected_deliveries, r.acked * 2);
    assert_eq!(r.delivered, r.expected_deliveries, "nothing lost");
    assert_eq!(r.lost, 0);
    assert_eq!(r.disconnects, 0);
    assert!(r.delivered_envelopes_per_sec > 0.0);
    assert!(r.latency.samples > 0);
    assert!(r.latency.p50_ms > 0.0 && r.latency.p50_ms <= r.latency.p99_ms);
    assert!(r.latency.p99_ms <= r.latency.max_ms);
    assert!(r.send_frame_bytes > 3 * 384, "three real envelopes");
    assert!(r.target_rss_kib.is_some() && r.target_cpu_cores.is_some());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_live_probe_decrypts_timestamps() {
    let server = Running::start(|_| {}).await;
    let mut params = tiny_fanout(3, 6.0, Mode::Live);
    params.senders_per_room = 1;
    let r = fanout::run(&params, &keys(), &server.target())
        .await
        .expect("fan-out runs");
    assert!(r.sent >= 3, "{r:?}");
    assert_eq!(r.acked, r.sent);
    assert_eq!(r.lost, 0);
    assert!(
        r.latency.samples > 0,
        "the probe opened copies and read their send time"
    );
    assert!(r.latency.p50_ms > 0.0);
    assert!(r.latency_source.contains("decrypted"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_comparison_gives_a_ratio_and_json() {
    let server = Running::start(|_| {}).await;
    let (_relay, relay_target) = in_process_relay(None).await;
    let mut params = tiny_fanout(4, 0.0, Mode::Replay);
    params.window = 1;
    let c = fanout::compare(&params, &keys(), &relay_target, &server.target())
        .await
        .expect("comparison runs");
    for r in [&c.relay, &c.server] {
        assert!(r.acked > 0, "{r:?}");
        assert_eq!(r.errors, 0);
        assert_eq!(r.lost, 0);
        assert_eq!(r.delivered, r.acked * 3);
        assert_eq!(r.send_frame_bytes, c.relay.send_frame_bytes, "same frames");
    }
    assert!(c.ratio > 0.0 && c.ratio.is_finite(), "{}", c.ratio);
    let table = report::comparison_table(&c).to_string();
    assert!(
        table.contains("relay") && table.contains("server"),
        "{table}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("compare.json");
    Report::new("compare", &c)
        .write_json(&path)
        .expect("writes");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("reads")).expect("parses");
    assert_eq!(json["scenario"], "compare");
    assert!(json["results"]["ratio"].as_f64().is_some_and(|r| r > 0.0));
    assert!(json["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
    let medians = loadgen::summary::medians(&[path.clone(), path])
        .expect("medians")
        .to_string();
    assert!(medians.contains("ratio server/relay"), "{medians}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_counted_and_related_to_verify_rate_and_the_relay() {
    let server = Running::start(|_| {}).await;
    // Everything runs in this process, so both targets are charged this process's CPU:
    // the figures exist and relate, though they do not separate relay from server here.
    let (_relay, relay_target) = in_process_relay(Some(std::process::id())).await;
    let params = LoginParams {
        users: 4,
        concurrency: 2,
        duration: Duration::from_millis(1500),
        floor_time: Duration::from_millis(200),
    };
    let r = logins::run(
        &params,
        &keys(),
        &server.url,
        Some(std::process::id()),
        Some(&relay_target),
    )
    .await
    .expect("logins run");
    assert!(r.logins >= 2, "{r:?}");
    assert_eq!(r.failures, 0);
    assert!(r.verify_per_sec_one_core > r.sign_per_sec_one_core);
    assert!(r.ratio > 0.0 && r.ratio.is_finite());
    assert!(r.server_cpu_ms_per_login.is_some_and(|c| c > 0.0));
    assert!(r.latency.samples == r.logins);
    let c = r.relay.as_ref().expect("a ceiling");
    assert!(c.logins_per_sec > 0.0, "{c:?}");
    assert_eq!(c.failures, 0, "the relay answers the same login frames");
    let relay_cpu = c.cpu_ms_per_login.expect("relay CPU");
    let floor = c.floor_ms_per_login.expect("floor");
    // floor = relay CPU + one verification on one core.
    let verify_ms = 1e3 / r.verify_per_sec_one_core;
    assert!((floor - relay_cpu - verify_ms).abs() < 1e-9, "{c:?}");
    let server_cpu = r.server_cpu_ms_per_login.expect("server CPU");
    let ratio = c.ceiling_ratio.expect("ratio");
    assert!((ratio - floor / server_cpu).abs() < 1e-9, "{c:?}");
    let table = report::login_table(&r).to_string();
    assert!(table.contains("ceiling ratio"), "{table}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_survive_heartbeats() {
    // A 1 s heartbeat: a connection that did not answer pings would be dropped after 3 s.
    let server = Running::start(|c| c.heartbeat_secs = 1).await;
    let params = IdleParams {
        connections: 20,
        room_size: 5,
        hold: Duration::from_millis(4500),
        setup_concurrency: 8,
        user_prefix: "smoke".into(),
        ping_timeout: Duration::from_secs(10),
    };
    let r = idle::run(&params, &keys(), &server.url, Some(std::process::id()))
        .await
        .expect("idle runs");
    assert_eq!(r.established, 20);
    assert_eq!(r.alive_after_hold, 20, "keepalive held every connection");
    assert_eq!(r.answered_ping, 20);
    assert!(r.rss_per_connection_kib.is_some());
    server.stop().await;
}

#[test]
fn crypto_floor_is_measured() {
    let r = crypto_floor::measure(&keys(), &[1, 10], Duration::from_millis(50)).expect("measures");
    assert_eq!(r.seal.len(), 2);
    for s in &r.seal {
        assert!(s.floor_ms > 0.0 && s.seal_wall_ms > 0.0);
        assert!(s.cpu_ratio.is_finite() && s.speedup > 0.0);
    }
    assert!(r.verify_us > 0.0 && r.sign_ms > 0.0 && r.oaep_encrypt_us > 0.0);
}

/// The binary end to end: `fanout --compare` spawns the relay as a child process, measures
/// both, and writes JSON; `idle` with an impossible count explains the fd limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_compare_and_fd_limit_message() {
    let server = Running::start(|_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("cli.json");
    let exe = env!("CARGO_BIN_EXE_loadgen");
    let args: Vec<String> = [
        "fanout",
        "--compare",
        "--server-url",
        &server.url,
        "--rooms",
        "1",
        "--members",
        "3",
        "--rate",
        "10",
        "--warmup",
        "0.2",
        "--duration",
        "1",
        "--drain",
        "10",
        "--json",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([json.display().to_string()])
    .collect();
    let out = tokio::process::Command::new(exe)
        .args(&args)
        .output()
        .await
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("server ÷ bare relay"), "{stdout}");
    let parsed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("json parses");
    assert_eq!(parsed["results"]["relay"]["lost"], 0);
    assert_eq!(parsed["results"]["server"]["lost"], 0);

    let out = tokio::process::Command::new(exe)
        .args([
            "idle",
            "--server-url",
            &server.url,
            "--connections",
            "100000000",
        ])
        .output()
        .await
        .expect("loadgen runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("ulimit -n"), "{stderr}");
    server.stop().await;
}

/// A tiny abuse run against a server with its default rate limit, a small global
/// registration quota and room quota: the report has both measurements and the attacker
/// is refused (rate limit, quotas, bad input, bad frames). No timing is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_reports_both_runs_and_refusals() {
    let server = Running::start(|c| {
        c.requests_per_sec = 200;
        // 2 × 3 ordinary users, the victim and the attacker leave 12 for the flood.
        c.registrations_total = 20;
        c.rooms_per_user = 3;
    })
    .await;
    let params = abuse::AbuseParams {
        ordinary: FanoutParams {
            rooms: 2,
            window: 4,
            ..tiny_fanout(3, 20.0, Mode::Replay)
        },
        attack_connections: 6,
        tactics: abuse::Tactic::ALL.to_vec(),
        attack_rate: 300.0,
        burst: 600,
        max_message_bytes: 65_536,
        settle: Duration::from_millis(100),
    };
    let r = abuse::run(&params, &keys(), &server.target())
        .await
        .expect("abuse runs");
    for f in [&r.baseline, &r.attacked] {
        assert!(f.sent > 0 && f.latency.samples > 0, "{f:?}");
        assert!(f.driver_cpu_cores.is_some());
    }
    assert_eq!(r.baseline.errors, 0, "{:?}", r.baseline);
    assert_eq!(r.baseline.lost, 0);
    assert!(r.p99_ratio > 0.0 && r.p99_ratio.is_finite());
    assert_eq!(r.p99_ratio_goal, 2.0);

    let a = &r.attacker;
    assert_eq!(a.tactics.len(), 6, "one connection per tactic: {a:?}");
    let tactic = |name: &str| a.tactics.get(name).expect("tactic present");
    let refused = |name: &str, code: &str| tactic(name).refused.get(code).copied().unwrap_or(0);
    for t in a.tactics.values() {
        assert_eq!(t.connections, 1);
        assert!(t.sessions >= 1 && t.frames_sent > 0, "{t:?}");
    }
    assert!(refused("register", "RateLimited") > 0, "{a:?}");
    assert!(
        tactic("register").served <= 12,
        "no more accounts than the quota: {a:?}"
    );
    assert!(refused("create-rooms", "QuotaExceeded") > 0, "{a:?}");
    assert!(tactic("create-rooms").served <= 3, "{a:?}");
    assert!(tactic("guess-passwords").refused_total() > 0, "{a:?}");
    assert_eq!(tactic("guess-passwords").served, 0, "no guess got in");
    assert!(refused("bad-sends", "InvalidInput") > 0, "{a:?}");
    assert!(refused("bad-sends", "MalformedFrame") > 0, "{a:?}");
    assert_eq!(tactic("bad-sends").served, 0, "no bad send was stored");
    assert!(refused("burst", "RateLimited") > 0, "{a:?}");
    assert!(a.frames_sent > a.served);

    let table = report::abuse_table(&r).to_string();
    assert!(
        table.contains("with attacker") && table.contains("p99 with"),
        "{table}"
    );
    assert!(table.contains("slow-reader"), "{table}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("abuse.json");
    Report::new("abuse", &r).write_json(&path).expect("writes");
    let medians = loadgen::summary::medians(&[path.clone(), path])
        .expect("medians")
        .to_string();
    assert!(medians.contains("p99 ratio with/without"), "{medians}");
    assert!(
        medians.contains("attacker refused RateLimited"),
        "{medians}"
    );
    server.stop().await;
}

/// `--tactics` narrows the attacker to the tactics named, round-robin over its connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_runs_only_the_tactics_asked_for() {
    let server = Running::start(|c| c.requests_per_sec = 200).await;
    let params = abuse::AbuseParams {
        ordinary: FanoutParams {
            rooms: 1,
            window: 4,
            ..tiny_fanout(3, 20.0, Mode::Replay)
        },
        attack_connections: 3,
        tactics: vec![abuse::Tactic::Burst, abuse::Tactic::Register],
        attack_rate: 100.0,
        burst: 300,
        max_message_bytes: 65_536,
        settle: Duration::from_millis(100),
    };
    let r = abuse::run(&params, &keys(), &server.target())
        .await
        .expect("abuse runs");
    let a = &r.attacker;
    let names: Vec<_> = a.tactics.keys().map(String::as_str).collect();
    assert_eq!(names, ["burst", "register"], "{a:?}");
    assert_eq!(a.tactics["burst"].connections, 2);
    assert_eq!(a.tactics["register"].connections, 1);
    assert!(a.tactics["burst"].frames_sent > 0);
    server.stop().await;
}
