//! Printing results as tables and writing them as JSON.

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::abuse::{AbuseResult, TacticTally};
use crate::crypto_floor::CryptoReport;
use crate::fanout::{Comparison, FanoutResult};
use crate::idle::IdleResult;
use crate::logins::LoginResult;
use crate::machine::MachineInfo;

/// A plain-text table: a title, column headers, rows and notes underneath.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Printed above the table.
    pub title: String,
    /// Column headers.
    pub headers: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
    /// Lines printed below the table.
    pub notes: Vec<String>,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        let cols = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(String::len).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.len());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:>w$}", w = widths.get(i).copied().unwrap_or(0)))
                .collect();
            writeln!(f, "  {}", parts.join("  "))
        };
        line(f, &self.headers)?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(f, &rule)?;
        for row in &self.rows {
            line(f, row)?;
        }
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        Ok(())
    }
}

fn f0(x: f64) -> String {
    format!("{x:.0}")
}

fn f2(x: f64) -> String {
    format!("{x:.2}")
}

fn opt(x: Option<f64>, fmt: fn(f64) -> String) -> String {
    x.map_or_else(|| "-".to_owned(), fmt)
}

/// A fan-out table: one row per run (relay and/or server), plus the ratio if given.
pub fn fanout_table(runs: &[&FanoutResult], ratio: Option<f64>) -> Table {
    let Some(first) = runs.first() else {
        return Table::default();
    };
    let p = &first.params;
    let load = if p.rate > 0.0 {
        format!("open loop at {} msg/s, window {}", p.rate, p.window)
    } else {
        format!("closed loop, window {} per sender", p.window)
    };
    let senders = if p.senders_per_room == 0 {
        p.members
    } else {
        p.senders_per_room
    };
    let mut table = Table {
        title: format!(
            "fan-out: {} room(s) x {} members, {} sender(s)/room, {}-byte plaintexts ({}-byte send frames), {}, {:.0} s window",
            p.rooms,
            p.members,
            senders,
            p.payload_bytes,
            first.send_frame_bytes,
            load,
            p.duration.as_secs_f64()
        ),
        headers: [
            "target", "msgs/s", "envelopes/s", "p50 ms", "p99 ms", "max ms", "sent", "acked",
            "errors", "lost", "dropped", "cpu cores", "rss MiB",
        ]
        .map(String::from)
        .to_vec(),
        ..Table::default()
    };
    for r in runs {
        table.rows.push(vec![
            format!("{:?}", r.target).to_lowercase(),
            f0(r.acked_msgs_per_sec),
            f0(r.delivered_envelopes_per_sec),
            f2(r.latency.p50_ms),
            f2(r.latency.p99_ms),
            f2(r.latency.max_ms),
            r.sent.to_string(),
            r.acked.to_string(),
            r.errors.to_string(),
            r.lost.to_string(),
            r.disconnects.to_string(),
            opt(r.target_cpu_cores, f2),
            opt(r.target_rss_kib.map(|k| k as f64 / 1024.0), f0),
        ]);
    }
    table.notes.push(format!("mode: {}", first.mode_note));
    table
        .notes
        .push(format!("latency source: {}", first.latency_source));
    if let Some(ratio) = ratio {
        table.notes.push(format!(
            "server ÷ bare relay, delivered envelopes/s, same run: {ratio:.3}"
        ));
    }
    table
}

/// The comparison as a table.
pub fn comparison_table(c: &Comparison) -> Table {
    fanout_table(&[&c.relay, &c.server], Some(c.ratio))
}

/// The login results as a table.
pub fn login_table(r: &LoginResult) -> Table {
    Table {
        title: format!(
            "logins: RSA-3072 challenge-response, {} concurrent, {} accounts, {:.0} s",
            r.params.concurrency,
            r.params.users,
            r.params.duration.as_secs_f64()
        ),
        headers: [
            "logins/s",
            "p50 ms",
            "p99 ms",
            "failures",
            "verify/s/core",
            "sign/s/core",
            "cores",
            "ratio",
            "srv cpu ms/login",
            "srv capacity/s",
            "capacity ratio",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![vec![
            f0(r.logins_per_sec),
            f2(r.latency.p50_ms),
            f2(r.latency.p99_ms),
            r.failures.to_string(),
            f0(r.verify_per_sec_one_core),
            f0(r.sign_per_sec_one_core),
            r.cores.to_string(),
            format!("{:.3}", r.ratio),
            opt(r.server_cpu_ms_per_login, |x| format!("{x:.3}")),
            opt(r.server_capacity_logins_per_sec, f0),
            opt(r.server_capacity_ratio, |x| format!("{x:.3}")),
        ]],
        notes: [
            "ratio = logins/s ÷ (verify/s of one core × cores), wall clock, same run".into(),
            "capacity = cores ÷ server CPU per login (the driver's signing, ring, shares this machine)"
                .into(),
        ]
        .into_iter()
        .chain(r.relay.as_ref().map(|c| {
            format!(
                "ceiling: bare relay {} logins/s ({} failed), {} ms CPU per login; floor = relay + one verify = {} ms; ceiling ratio = floor ÷ server CPU per login = {}",
                f0(c.logins_per_sec),
                c.failures,
                opt(c.cpu_ms_per_login, |x| format!("{x:.3}")),
                opt(c.floor_ms_per_login, |x| format!("{x:.3}")),
                opt(c.ceiling_ratio, |x| format!("{x:.3}")),
            )
        }))
        .collect(),
    }
}

/// The idle results as a table.
pub fn idle_table(r: &IdleResult) -> Table {
    Table {
        title: format!(
            "idle: {} authenticated connections in rooms of {}, held {:.0} s",
            r.params.connections,
            r.params.room_size,
            r.params.hold.as_secs_f64()
        ),
        headers: [
            "established",
            "alive after hold",
            "answered ping",
            "rss before MiB",
            "rss after MiB",
            "KiB/connection",
            "setup s",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![vec![
            r.established.to_string(),
            r.alive_after_hold.to_string(),
            r.answered_ping.to_string(),
            opt(r.rss_before_kib.map(|k| k as f64 / 1024.0), f0),
            opt(r.rss_after_kib.map(|k| k as f64 / 1024.0), f0),
            opt(r.rss_per_connection_kib, |x| format!("{x:.1}")),
            format!("{:.1}", r.setup_secs),
        ]],
        notes: vec!["KiB/connection = (server RSS after − before) ÷ established".into()],
    }
}

/// The crypto floor as a table.
pub fn crypto_table(r: &CryptoReport) -> Table {
    Table {
        title: format!(
            "client crypto floor (RSA-3072): OAEP encrypt {:.0} µs, PSS sign {:.2} ms, PSS verify {:.0} µs, {} cores",
            r.oaep_encrypt_us, r.sign_ms, r.verify_us, r.cores
        ),
        headers: [
            "recipients", "seal wall ms", "seal cpu ms", "floor ms", "cpu ratio", "wall ratio",
            "speed-up",
        ]
        .map(String::from)
        .to_vec(),
        rows: r
            .seal
            .iter()
            .map(|s| {
                vec![
                    s.recipients.to_string(),
                    f2(s.seal_wall_ms),
                    f2(s.seal_cpu_ms),
                    f2(s.floor_ms),
                    f2(s.cpu_ratio),
                    f2(s.wall_ratio),
                    f2(s.speedup),
                ]
            })
            .collect(),
        notes: vec![
            "floor = recipients × OAEP encrypt + 1 sign, one thread; cpu ratio target ≤ 1.2".into(),
        ],
    }
}

/// The abuse scenario as one table: the ordinary users without and with the attacker,
/// the p99 ratio against its goal, and underneath what the attacker got, per tactic.
pub fn abuse_table(r: &AbuseResult) -> Table {
    let p = &r.params.ordinary;
    let mut table = Table {
        title: format!(
            "abuse: {} room(s) x {} members at {} msg/s ({}-byte plaintexts), {:.0} s window; attacker on {} connection(s) at {} frames/s each",
            p.rooms,
            p.members,
            p.rate,
            p.payload_bytes,
            p.duration.as_secs_f64(),
            r.params.attack_connections,
            r.params.attack_rate,
        ),
        headers: [
            "ordinary users", "msgs/s", "p50 ms", "p99 ms", "max ms", "sent", "acked", "errors",
            "lost", "dropped", "server cores", "driver cores",
        ]
        .map(String::from)
        .to_vec(),
        ..Table::default()
    };
    for (label, f) in [
        ("without attacker", &r.baseline),
        ("with attacker", &r.attacked),
    ] {
        table.rows.push(vec![
            label.to_owned(),
            f0(f.acked_msgs_per_sec),
            f2(f.latency.p50_ms),
            f2(f.latency.p99_ms),
            f2(f.latency.max_ms),
            f.sent.to_string(),
            f.acked.to_string(),
            f.errors.to_string(),
            f.lost.to_string(),
            f.disconnects.to_string(),
            opt(f.target_cpu_cores, f2),
            opt(f.driver_cpu_cores, f2),
        ]);
    }
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    table.notes.push(format!(
        "p99 with ÷ without: {:.2} (goal < {}: {})",
        r.p99_ratio,
        r.p99_ratio_goal,
        verdict(r.p99_goal_met)
    ));
    table.notes.push(format!(
        "ordinary failures with the attacker (errors + lost + dropped): {} (goal 0: {})",
        r.attacked.errors + r.attacked.lost + r.attacked.disconnects,
        verdict(r.no_failures)
    ));
    let a = &r.attacker;
    table.notes.push(format!(
        "attacker: {} frames, {} served, refused {}, closed {}",
        a.frames_sent,
        a.served,
        counts(&a.refused),
        counts(&a.closes)
    ));
    for (name, t) in &a.tactics {
        table.notes.push(tactic_line(name, t));
    }
    table
}

/// One tactic's tally on one line.
fn tactic_line(name: &str, t: &TacticTally) -> String {
    let mut line = format!(
        "  {name}: {} conn(s), {} session(s), {} frames, {} served, refused {}, {} unanswered, {} pushes, closed {}",
        t.connections,
        t.sessions,
        t.frames_sent,
        t.served,
        counts(&t.refused),
        t.unanswered,
        t.pushes,
        counts(&t.closes)
    );
    if !t.setup_failures.is_empty() {
        line.push_str(&format!(", set-up failures {}", counts(&t.setup_failures)));
    }
    line
}

/// `key=count` pairs, or `-` for none.
fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON report: which scenario, on what machine, when, and the results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report<T> {
    /// `fanout`, `compare`, `logins`, `idle`, `crypto` or `abuse`.
    pub scenario: String,
    /// The machine.
    pub machine: MachineInfo,
    /// Seconds since the Unix epoch at the end of the run.
    pub unix_time: u64,
    /// The scenario's results.
    pub results: T,
}

impl<T: Serialize> Report<T> {
    /// Wraps results with the machine description and the time.
    pub fn new(scenario: &str, results: T) -> Self {
        Self {
            scenario: scenario.to_owned(),
            machine: MachineInfo::current(),
            unix_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            results,
        }
    }

    /// Writes the report as pretty JSON.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
    }
}
