//! Resource usage of a running container read from its cgroups (v1 controllers, as this
//! host has them; v2 files where the v1 ones are missing), for `stats`. Docker's daemon
//! computes the same figures from the same files.

use std::path::PathBuf;

/// One reading. CPU % needs two: the share of the host's CPU time between them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sample {
    /// The container's CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// The host's total CPU time (all CPUs, every state), nanoseconds.
    pub system_ns: u64,
    pub online_cpus: u32,
    /// Memory in use, page cache that can be dropped excluded (Docker's usage - inactive_file).
    pub mem_usage: u64,
    /// The limit, or the host's memory when there is none.
    pub mem_limit: u64,
    pub pids: u64,
    pub blk_read: u64,
    pub blk_write: u64,
}

fn v1(controller: &str, id: &str, file: &str) -> PathBuf {
    let rel = super::spec::cgroup_path(id);
    PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join(rel.trim_start_matches('/'))
        .join(file)
}

fn v2(id: &str, file: &str) -> PathBuf {
    let rel = super::spec::cgroup_path(id);
    PathBuf::from("/sys/fs/cgroup")
        .join(rel.trim_start_matches('/'))
        .join(file)
}

fn read_u64(p: PathBuf) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat).
fn keyed(p: PathBuf, key: &str) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The host's CPU time from /proc/stat's first line, in nanoseconds (USER_HZ is 100 on Linux).
fn system_ns() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?;
            Some(
                line.split_whitespace()
                    .skip(1)
                    .take(8)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum::<u64>(),
            )
        })
        .map_or(0, |ticks| ticks * 10_000_000)
}

/// Read the container's cgroups now.
pub fn sample(id: &str) -> Sample {
    let cpu_ns = read_u64(v1("cpuacct", id, "cpuacct.usage"))
        .or_else(|| keyed(v2(id, "cpu.stat"), "usage_usec").map(|u| u * 1000))
        .unwrap_or(0);
    let (mem_usage, mem_limit) = match read_u64(v1("memory", id, "memory.usage_in_bytes")) {
        Some(u) => {
            let inactive =
                keyed(v1("memory", id, "memory.stat"), "total_inactive_file").unwrap_or(0);
            (
                u.saturating_sub(inactive),
                read_u64(v1("memory", id, "memory.limit_in_bytes")).unwrap_or(u64::MAX),
            )
        }
        None => {
            let u = read_u64(v2(id, "memory.current")).unwrap_or(0);
            let inactive = keyed(v2(id, "memory.stat"), "inactive_file").unwrap_or(0);
            (
                u.saturating_sub(inactive),
                read_u64(v2(id, "memory.max")).unwrap_or(u64::MAX),
            )
        }
    };
    let host = host_memory();
    let mem_limit = if host > 0 && mem_limit > host {
        host
    } else {
        mem_limit
    };
    let pids = read_u64(v1("pids", id, "pids.current"))
        .or_else(|| read_u64(v2(id, "pids.current")))
        .unwrap_or(0);
    let (mut blk_read, mut blk_write) = (0, 0);
    if let Ok(s) = std::fs::read_to_string(v1("blkio", id, "blkio.throttle.io_service_bytes")) {
        for l in s.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let [_, op, n] = f.as_slice() {
                let n: u64 = n.parse().unwrap_or(0);
                match *op {
                    "Read" => blk_read += n,
                    "Write" => blk_write += n,
                    _ => {}
                }
            }
        }
    }
    Sample {
        cpu_ns,
        system_ns: system_ns(),
        online_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        mem_usage,
        mem_limit,
        pids,
        blk_read,
        blk_write,
    }
}

/// Docker's CPU %: the container's share of the host's CPU time between two samples, times
/// the number of CPUs (so one busy CPU of two shows 100%).
pub fn cpu_percent(before: &Sample, after: &Sample) -> f64 {
    let cpu = after.cpu_ns.saturating_sub(before.cpu_ns) as f64;
    let sys = after.system_ns.saturating_sub(before.system_ns) as f64;
    if sys <= 0.0 || cpu <= 0.0 {
        return 0.0;
    }
    cpu / sys * f64::from(after.online_cpus) * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_share() {
        let a = Sample {
            cpu_ns: 0,
            system_ns: 0,
            online_cpus: 2,
            ..Sample::default()
        };
        let b = Sample {
            cpu_ns: 500_000_000,
            system_ns: 2_000_000_000,
            online_cpus: 2,
            ..Sample::default()
        };
        assert_eq!(cpu_percent(&a, &b), 50.0);
        assert_eq!(cpu_percent(&b, &b), 0.0);
    }
}
