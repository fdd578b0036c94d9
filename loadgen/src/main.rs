//! `loadgen`: drives a running chat server (or the bare relay) and prints results.
//!
//! Run `loadgen --help`, or see docs/PERFORMANCE.md and `loadgen/run-bench.sh`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use loadgen::abuse::{self, AbuseParams, Tactic};
use loadgen::fanout::{self, FanoutParams, Mode, Target, TargetKind};
use loadgen::idle::{self, IdleParams};
use loadgen::keys::KeyPool;
use loadgen::logins::{self, LoginParams};
use loadgen::report::{self, Report};
use loadgen::{crypto_floor, machine, relay};
use tokio::io::AsyncBufReadExt;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for the e2e chat server"
)]
struct Cli {
    /// Directory holding the rsa3072-*.pem fixture keys.
    #[arg(long, global = true)]
    keys_dir: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax), to stderr.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    /// Runtime worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fan-out: rooms of online members, senders at a rate; envelopes/s and latency.
    Fanout(FanoutArgs),
    /// Concurrent challenge-response logins/s against this machine's verify rate.
    Logins(LoginArgs),
    /// Many authenticated idle connections: server RSS per connection, keepalive.
    Idle(IdleArgs),
    /// Serve the bare relay (the ceiling) until interrupted.
    Relay(RelayArgs),
    /// The client's seal-for-N crypto cost against its RSA floor.
    Crypto(CryptoArgs),
    /// 100 ordinary users chatting, without and then with one attacker on N connections;
    /// their p99 and errors both ways, and what the attacker was refused.
    Abuse(AbuseArgs),
    /// Medians of the headline figures over several JSON reports of one scenario.
    Median(MedianArgs),
}

#[derive(Debug, Args)]
struct AbuseArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    /// The attacker's connections (each runs one tactic, round-robin over `--tactics`).
    #[arg(long, default_value_t = 12)]
    attack_connections: usize,
    /// The tactics to run, comma-separated (all six by default).
    #[arg(long, value_enum, value_delimiter = ',')]
    tactics: Vec<Tactic>,
    /// Frames per second each attacking connection writes (bursts and the slow reader
    /// aside); the server's default rate limit is 200.
    #[arg(long, default_value_t = 500.0)]
    attack_rate: f64,
    /// Requests in each once-a-second burst.
    #[arg(long, default_value_t = 1000)]
    burst: usize,
    /// The server's --max-message-bytes (the oversized copies are one byte over it).
    #[arg(long, default_value_t = 65_536)]
    max_message_bytes: usize,
    /// Ordinary rooms.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Members per ordinary room, every one sending.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Plaintext bytes of an ordinary message.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Total ordinary messages/s offered.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Unanswered sends allowed per ordinary sender.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Seconds before counting starts (the attacker starts when counting does).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds counted, and attacked.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Seconds allowed afterwards for outstanding answers and copies.
    #[arg(long, default_value_t = 15.0)]
    drain: f64,
    /// Seconds between the baseline and the attacked measurement.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct MedianArgs {
    /// JSON reports written with --json (all of one scenario).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct Endpoint {
    /// The server's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    server_url: String,
    /// The server's process id, for CPU and RSS figures from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    /// What --server-url points at (ignored with --compare).
    #[arg(long, value_enum, default_value = "server")]
    target: TargetKind,
    /// Measure the bare relay first, then the server, and print the ratio.
    #[arg(long)]
    compare: bool,
    /// With --compare: use this running relay instead of starting one as a child process.
    #[arg(long)]
    relay_url: Option<String>,
    /// With --relay-url: the relay's process id.
    #[arg(long)]
    relay_pid: Option<u32>,
    /// With --compare: worker threads of the spawned relay (default: one per core).
    #[arg(long)]
    relay_threads: Option<usize>,
    /// Another instance of the same server (repeatable; scale-out): members connect
    /// round-robin to --server-url and these, so each room spans every instance.
    #[arg(long)]
    spread_url: Vec<String>,
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Members per room (2–256).
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Senders per room; 0 = every member.
    #[arg(long, default_value_t = 0)]
    senders: usize,
    /// Plaintext (message text) bytes.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Total messages/s to offer; 0 = closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Unanswered sends allowed per sender.
    #[arg(long, default_value_t = 2)]
    window: usize,
    /// Seconds before counting starts.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds counted.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Seconds allowed afterwards for outstanding answers and copies.
    #[arg(long, default_value_t = 15.0)]
    drain: f64,
    /// replay (precomputed envelopes) or live (sign + seal per message, probes decrypt).
    #[arg(long, value_enum, default_value = "replay")]
    mode: Mode,
    /// Connections set up concurrently.
    #[arg(long, default_value_t = 32)]
    setup_concurrency: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct LoginArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    /// Accounts to log in to.
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Run the same logins against a bare relay first (a child process) as the ceiling.
    #[arg(long)]
    compare: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    /// Connections to open and hold (needs `ulimit -n` above this in both processes).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Members per room.
    #[arg(long, default_value_t = 10)]
    room_size: usize,
    /// Seconds to hold them (make it several server heartbeats).
    #[arg(long, default_value_t = 35.0)]
    hold: f64,
    /// Account and room prefix; reuse it to skip registration on reruns.
    #[arg(long, default_value = "idle")]
    prefix: String,
    /// Connections set up concurrently.
    #[arg(long, default_value_t = 64)]
    setup_concurrency: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RelayArgs {
    /// Address to listen on (port 0 picks one; the URL is printed on the first line).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
}

#[derive(Debug, Args)]
struct CryptoArgs {
    /// Recipient counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    recipients: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 1.0)]
    secs: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.unwrap_or_else(machine::cores).max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn keys(cli_dir: Option<&PathBuf>) -> anyhow::Result<KeyPool> {
    KeyPool::rsa3072(cli_dir.map(PathBuf::as_path))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Relay(args) => {
            let handle = relay::spawn(args.bind).await?;
            println!("relay listening on {}", handle.url());
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::Crypto(args) => {
            let pool = keys(cli.keys_dir.as_ref())?;
            let result = tokio::task::spawn_blocking(move || {
                crypto_floor::measure(&pool, &args.recipients, secs(args.secs))
            })
            .await??;
            println!("{}", report::crypto_table(&result));
            if let Some(path) = args.json {
                Report::new("crypto", &result).write_json(&path)?;
            }
            Ok(())
        }
        Command::Logins(args) => {
            let pool = keys(cli.keys_dir.as_ref())?;
            let params = LoginParams {
                users: args.users,
                concurrency: args.concurrency,
                duration: secs(args.duration),
                ..LoginParams::default()
            };
            let (child, relay) = if args.compare {
                let (process, relay) = spawn_relay(None).await?;
                (Some(process), Some(relay))
            } else {
                (None, None)
            };
            let result = logins::run(
                &params,
                &pool,
                &args.endpoint.server_url,
                args.endpoint.server_pid,
                relay.as_ref(),
            )
            .await;
            if let Some(mut process) = child {
                let _ = process.kill().await;
            }
            let result = result?;
            println!("{}", report::login_table(&result));
            if let Some(path) = args.json {
                Report::new("logins", &result).write_json(&path)?;
            }
            Ok(())
        }
        Command::Idle(args) => {
            let pool = keys(cli.keys_dir.as_ref())?;
            if args.endpoint.server_pid.is_none() {
                eprintln!("note: without --server-pid there are no RSS figures");
            }
            let params = IdleParams {
                connections: args.connections,
                room_size: args.room_size,
                hold: secs(args.hold),
                setup_concurrency: args.setup_concurrency,
                user_prefix: args.prefix,
                ..IdleParams::default()
            };
            let result = idle::run(
                &params,
                &pool,
                &args.endpoint.server_url,
                args.endpoint.server_pid,
            )
            .await?;
            println!("{}", report::idle_table(&result));
            if let Some(path) = args.json {
                Report::new("idle", &result).write_json(&path)?;
            }
            Ok(())
        }
        Command::Fanout(args) => fanout_command(cli.keys_dir.as_ref(), args).await,
        Command::Abuse(args) => {
            let pool = keys(cli.keys_dir.as_ref())?;
            let defaults = AbuseParams::default();
            let params = AbuseParams {
                ordinary: FanoutParams {
                    rooms: args.rooms,
                    members: args.members,
                    senders_per_room: 0,
                    payload_bytes: args.payload,
                    rate: args.rate,
                    window: args.window,
                    warmup: secs(args.warmup),
                    duration: secs(args.duration),
                    drain: secs(args.drain),
                    ..defaults.ordinary
                },
                attack_connections: args.attack_connections,
                tactics: if args.tactics.is_empty() {
                    defaults.tactics.clone()
                } else {
                    args.tactics.clone()
                },
                attack_rate: args.attack_rate,
                burst: args.burst,
                max_message_bytes: args.max_message_bytes,
                settle: secs(args.settle),
            };
            let target = Target {
                url: args.endpoint.server_url,
                kind: TargetKind::Server,
                pid: args.endpoint.server_pid,
                also: Vec::new(),
            };
            let result = abuse::run(&params, &pool, &target).await?;
            println!("{}", report::abuse_table(&result));
            if let Some(path) = args.json {
                Report::new("abuse", &result).write_json(&path)?;
            }
            Ok(())
        }
        Command::Median(args) => {
            println!("{}", loadgen::summary::medians(&args.files)?);
            Ok(())
        }
    }
}

async fn fanout_command(keys_dir: Option<&PathBuf>, args: FanoutArgs) -> anyhow::Result<()> {
    let pool = keys(keys_dir)?;
    let params = FanoutParams {
        rooms: args.rooms,
        members: args.members,
        senders_per_room: args.senders,
        payload_bytes: args.payload,
        rate: args.rate,
        window: args.window,
        warmup: secs(args.warmup),
        duration: secs(args.duration),
        drain: secs(args.drain),
        mode: args.mode,
        setup_concurrency: args.setup_concurrency,
    };
    let server = Target {
        url: args.endpoint.server_url.clone(),
        kind: if args.compare {
            TargetKind::Server
        } else {
            args.target
        },
        pid: args.endpoint.server_pid,
        also: args.spread_url.clone(),
    };
    if !args.compare {
        let result = fanout::run(&params, &pool, &server).await?;
        println!("{}", report::fanout_table(&[&result], None));
        if let Some(path) = args.json {
            Report::new("fanout", &result).write_json(&path)?;
        }
        return Ok(());
    }
    // The relay: one given, or a child process of this binary (a separate process, like
    // the server, so both are measured the same way).
    let mut child = None;
    let relay = match args.relay_url {
        Some(url) => Target {
            url,
            kind: TargetKind::Relay,
            pid: args.relay_pid,
            also: Vec::new(),
        },
        None => {
            let (process, relay) = spawn_relay(args.relay_threads).await?;
            child = Some(process);
            relay
        }
    };
    let result = fanout::compare(&params, &pool, &relay, &server).await;
    if let Some(mut process) = child {
        let _ = process.kill().await;
    }
    let result = result?;
    println!("{}", report::comparison_table(&result));
    if let Some(path) = args.json {
        Report::new("compare", &result).write_json(&path)?;
    }
    Ok(())
}

/// Starts `loadgen relay` as a child process (a separate process, like the server, so both
/// are measured the same way) and reads its URL from its first line.
async fn spawn_relay(threads: Option<usize>) -> anyhow::Result<(tokio::process::Child, Target)> {
    let exe = std::env::current_exe().context("cannot find the loadgen executable")?;
    let mut cmd = tokio::process::Command::new(exe);
    if let Some(t) = threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    let mut child = cmd
        .args(["relay", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the relay child process")?;
    let stdout = child.stdout.take().context("relay stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("the relay did not start within 10 s")??
        .unwrap_or_default();
    let Some(url) = line.strip_prefix("relay listening on ") else {
        bail!("unexpected first line from the relay: {line:?}");
    };
    let relay = Target {
        url: url.to_owned(),
        kind: TargetKind::Relay,
        pid: child.id(),
        also: Vec::new(),
    };
    Ok((child, relay))
}
