//! Medians over several runs' JSON reports (`loadgen median FILE...`).
//!
//! Every report of one invocation must be of the same scenario; the headline figures of
//! that scenario are read from each file and their medians printed, next to the values of
//! each run. Ratios are taken per run (each from its own relay and server measurements)
//! and then their median, never a ratio of medians.

use anyhow::{bail, Context};
use serde_json::Value;

use crate::report::Table;
use crate::stats::median;

/// The figures worth a median, per scenario: label and JSON pointer.
fn metrics(scenario: &str, first: &Value) -> Vec<(String, String)> {
    let fixed: &[(&str, &str)] = match scenario {
        "compare" => &[
            (
                "relay envelopes/s",
                "/results/relay/delivered_envelopes_per_sec",
            ),
            (
                "server envelopes/s",
                "/results/server/delivered_envelopes_per_sec",
            ),
            ("ratio server/relay", "/results/ratio"),
            ("relay msgs/s", "/results/relay/acked_msgs_per_sec"),
            ("server msgs/s", "/results/server/acked_msgs_per_sec"),
            ("relay p50 ms", "/results/relay/latency/p50_ms"),
            ("relay p99 ms", "/results/relay/latency/p99_ms"),
            ("server p50 ms", "/results/server/latency/p50_ms"),
            ("server p99 ms", "/results/server/latency/p99_ms"),
            ("server max ms", "/results/server/latency/max_ms"),
            ("relay cpu cores", "/results/relay/target_cpu_cores"),
            ("server cpu cores", "/results/server/target_cpu_cores"),
            ("server lost", "/results/server/lost"),
            ("server dropped connections", "/results/server/disconnects"),
            ("server errors", "/results/server/errors"),
        ],
        "fanout" => &[
            ("envelopes/s", "/results/delivered_envelopes_per_sec"),
            ("msgs/s", "/results/acked_msgs_per_sec"),
            ("offered msgs/s", "/results/offered_msgs_per_sec"),
            ("p50 ms", "/results/latency/p50_ms"),
            ("p99 ms", "/results/latency/p99_ms"),
            ("max ms", "/results/latency/max_ms"),
            ("cpu cores", "/results/target_cpu_cores"),
            ("lost", "/results/lost"),
            ("dropped connections", "/results/disconnects"),
            ("errors", "/results/errors"),
        ],
        "logins" => &[
            ("logins/s", "/results/logins_per_sec"),
            ("verify/s one core", "/results/verify_per_sec_one_core"),
            ("sign/s one core", "/results/sign_per_sec_one_core"),
            ("ratio (wall)", "/results/ratio"),
            ("server cpu ms/login", "/results/server_cpu_ms_per_login"),
            (
                "server capacity logins/s",
                "/results/server_capacity_logins_per_sec",
            ),
            ("capacity ratio", "/results/server_capacity_ratio"),
            ("relay cpu ms/login", "/results/relay/cpu_ms_per_login"),
            ("floor ms/login", "/results/relay/floor_ms_per_login"),
            ("ceiling ratio", "/results/relay/ceiling_ratio"),
            ("p99 ms", "/results/latency/p99_ms"),
            ("failures", "/results/failures"),
        ],
        "idle" => &[
            ("established", "/results/established"),
            ("alive after hold", "/results/alive_after_hold"),
            ("answered ping", "/results/answered_ping"),
            ("rss before KiB", "/results/rss_before_kib"),
            ("rss after KiB", "/results/rss_after_kib"),
            ("KiB per connection", "/results/rss_per_connection_kib"),
        ],
        "abuse" => &[
            ("p99 ratio with/without", "/results/p99_ratio"),
            ("without: p50 ms", "/results/baseline/latency/p50_ms"),
            ("without: p99 ms", "/results/baseline/latency/p99_ms"),
            ("without: max ms", "/results/baseline/latency/max_ms"),
            ("with: p50 ms", "/results/attacked/latency/p50_ms"),
            ("with: p99 ms", "/results/attacked/latency/p99_ms"),
            ("with: max ms", "/results/attacked/latency/max_ms"),
            ("without: msgs/s", "/results/baseline/acked_msgs_per_sec"),
            ("with: msgs/s", "/results/attacked/acked_msgs_per_sec"),
            ("without: errors", "/results/baseline/errors"),
            ("with: errors", "/results/attacked/errors"),
            ("with: lost", "/results/attacked/lost"),
            ("with: dropped connections", "/results/attacked/disconnects"),
            (
                "without: server cores",
                "/results/baseline/target_cpu_cores",
            ),
            ("with: server cores", "/results/attacked/target_cpu_cores"),
            ("with: driver cores", "/results/attacked/driver_cpu_cores"),
            ("attacker frames", "/results/attacker/frames_sent"),
            ("attacker served", "/results/attacker/served"),
        ],
        "crypto" => &[
            ("OAEP encrypt µs", "/results/oaep_encrypt_us"),
            ("PSS sign ms", "/results/sign_ms"),
            ("PSS verify µs", "/results/verify_us"),
        ],
        _ => &[],
    };
    let mut out: Vec<(String, String)> = fixed
        .iter()
        .map(|(l, p)| ((*l).to_owned(), (*p).to_owned()))
        .collect();
    if scenario == "abuse" {
        // The attacker's refusals and closes, by the codes the first report saw.
        for (what, key) in [("refused", "refused"), ("closed", "closes")] {
            let codes = first
                .pointer(&format!("/results/attacker/{key}"))
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default();
            for code in codes {
                out.push((
                    format!("attacker {what} {code}"),
                    format!("/results/attacker/{key}/{}", pointer_escape(&code)),
                ));
            }
        }
    }
    if scenario == "crypto" {
        let n = first
            .pointer("/results/seal")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for i in 0..n {
            let r = first
                .pointer(&format!("/results/seal/{i}/recipients"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            for (label, field) in [
                ("seal wall ms", "seal_wall_ms"),
                ("seal cpu ms", "seal_cpu_ms"),
                ("floor ms", "floor_ms"),
                ("cpu ratio", "cpu_ratio"),
                ("speed-up", "speedup"),
            ] {
                out.push((
                    format!("{r} recipients: {label}"),
                    format!("/results/seal/{i}/{field}"),
                ));
            }
        }
    }
    out
}

/// Escapes a JSON object key for use in a JSON pointer (RFC 6901).
fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Reads the reports at `paths` and tabulates the medians of their headline figures.
///
/// # Errors
/// Unreadable or unparsable files, no files, or reports of different scenarios.
pub fn medians(paths: &[std::path::PathBuf]) -> anyhow::Result<Table> {
    let reports: Vec<Value> = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let Some(first) = reports.first() else {
        bail!("no reports given");
    };
    let scenario = first["scenario"].as_str().unwrap_or_default().to_owned();
    if reports.iter().any(|r| r["scenario"] != first["scenario"]) {
        bail!("the reports are of different scenarios");
    }
    let mut headers = vec!["figure".to_owned(), "median".to_owned()];
    headers.extend((1..=reports.len()).map(|i| format!("run {i}")));
    let mut table = Table {
        title: format!(
            "{scenario} ({}…): medians of {} runs",
            paths[0].file_stem().and_then(|s| s.to_str()).unwrap_or(""),
            reports.len()
        ),
        headers,
        ..Table::default()
    };
    for (label, pointer) in metrics(&scenario, first) {
        let values: Vec<Option<f64>> = reports
            .iter()
            .map(|r| r.pointer(&pointer).and_then(Value::as_f64))
            .collect();
        let present: Vec<f64> = values.iter().flatten().copied().collect();
        let fmt = |x: f64| {
            if x.abs() >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.3}")
            }
        };
        let mut row = vec![label, median(&present).map_or_else(|| "-".into(), fmt)];
        row.extend(values.iter().map(|v| v.map_or_else(|| "-".into(), fmt)));
        table.rows.push(row);
    }
    Ok(table)
}
