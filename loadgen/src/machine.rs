//! What this machine is, and what a process on it is using, read from `/proc`.
//!
//! CPU times in `/proc/<pid>/stat` are in `USER_HZ` ticks, which Linux fixes at 100 for
//! every user-visible interface regardless of the kernel's internal tick rate.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// `USER_HZ`: clock ticks per second in `/proc/<pid>/stat`.
const USER_HZ: f64 = 100.0;

/// A description of the machine the figures were measured on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineInfo {
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Cores this process may use.
    pub cores: usize,
    /// Total memory, MiB.
    pub mem_total_mib: u64,
    /// Kernel release.
    pub kernel: String,
}

impl MachineInfo {
    /// Reads the description (fields that cannot be read are left as `"unknown"`/0).
    pub fn current() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total_mib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        Self {
            cpu_model,
            cores: cores(),
            mem_total_mib,
            kernel,
        }
    }
}

/// Cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn proc_path(pid: Option<u32>, file: &str) -> PathBuf {
    match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/{file}")),
        None => PathBuf::from(format!("/proc/self/{file}")),
    }
}

/// Resident set size of process `pid`, KiB (`VmRSS` in `/proc/<pid>/status`).
///
/// # Errors
/// When the process does not exist or the file cannot be parsed.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = proc_path(Some(pid), "status");
    let status = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (is the server pid right?)", path.display()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .with_context(|| format!("no VmRSS in {}", path.display()))
}

/// User + system CPU seconds process `pid` has used so far, all threads included.
///
/// # Errors
/// When the process does not exist or the file cannot be parsed.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = proc_path(Some(pid), "stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse_stat_cpu(&stat).with_context(|| format!("cannot parse {}", path.display()))
}

/// utime + stime from a `/proc/<pid>/stat` line, in seconds.
fn parse_stat_cpu(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// The soft and hard "Max open files" limits of `pid` (this process when `None`);
/// `None` means unlimited.
///
/// # Errors
/// When `/proc/<pid>/limits` cannot be read or parsed.
pub fn open_files_limit(pid: Option<u32>) -> anyhow::Result<(Option<u64>, Option<u64>)> {
    let path = proc_path(pid, "limits");
    let limits = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .with_context(|| format!("no 'Max open files' in {}", path.display()))?;
    let mut values = line["Max open files".len()..].split_whitespace();
    let parse = |v: Option<&str>| -> anyhow::Result<Option<u64>> {
        match v {
            Some("unlimited") => Ok(None),
            Some(n) => Ok(Some(n.parse()?)),
            None => bail!("truncated 'Max open files' line"),
        }
    };
    Ok((parse(values.next())?, parse(values.next())?))
}

/// Fails with an actionable message when this process (and the server process, if its
/// pid is known) cannot hold `connections` sockets plus some slack.
///
/// # Errors
/// When a limit is too low, saying which process, the limits, and the `ulimit -n` to run.
pub fn check_fd_limit(connections: usize, server_pid: Option<u32>) -> anyhow::Result<()> {
    let needed = connections as u64 + 256;
    let mut problems = Vec::new();
    let mut check = |who: &str, pid: Option<u32>| -> anyhow::Result<()> {
        let (soft, hard) = open_files_limit(pid)?;
        if let Some(soft) = soft.filter(|&s| s < needed) {
            let hard = hard.map_or_else(|| "unlimited".to_owned(), |h| h.to_string());
            problems.push(format!(
                "{who} may open {soft} files (hard limit {hard}), needs {needed}"
            ));
        }
        Ok(())
    };
    check("loadgen", None)?;
    if let Some(pid) = server_pid {
        check(&format!("server (pid {pid})"), Some(pid))?;
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "the file-descriptor limit is too low for {connections} connections: {}. \
         Raise it in the shell that starts both processes, e.g. `ulimit -n {}` \
         (up to the hard limit; raising the hard limit needs root or /etc/security/limits.conf), \
         then restart the server and loadgen.",
        problems.join("; "),
        needed.max(65_536)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_fields() {
        let line = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0";
        assert_eq!(parse_stat_cpu(line), Some(4.0));
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(rss_kib(pid).expect("rss") > 0);
        assert!(cpu_seconds(pid).expect("cpu") >= 0.0);
        let (soft, _hard) = open_files_limit(None).expect("limits");
        assert!(soft.is_none_or(|s| s > 0));
        assert!(check_fd_limit(1, None).is_ok());
        let err = check_fd_limit(usize::MAX / 2, None);
        if soft.is_some() {
            let msg = format!("{:#}", err.expect_err("too many"));
            assert!(msg.contains("ulimit -n"), "{msg}");
        }
        assert!(MachineInfo::current().cores >= 1);
    }
}
