//! The host probe: the agent's own machine's CPU, memory and disks, from `/proc` and
//! `statvfs(3)`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

/// CPU time counters from the first line of `/proc/stat`: (busy, total) in clock ticks.
fn cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
    if values.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Used memory in percent: what is not available (`MemAvailable`) of `MemTotal`.
fn memory_percent(meminfo: &str) -> Option<f64> {
    let field = |name: &str| {
        meminfo.lines().find_map(|l| {
            l.strip_prefix(name)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    (total > 0.0).then(|| (100.0 * (total - available) / total).clamp(0.0, 100.0))
}

/// File systems that hold no data of their own.
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "cgroup",
    "cgroup2",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "autofs",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "binfmt_misc",
    "nsfs",
    "squashfs",
    "ramfs",
    "rpc_pipefs",
    "efivarfs",
    "selinuxfs",
    "iso9660",
];

/// Mount points of real file systems from `/proc/self/mounts`, in order.
fn mount_points(mounts: &str) -> Vec<String> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_source, target, fstype) = (f.next()?, f.next()?, f.next()?);
            (!PSEUDO.contains(&fstype) && !fstype.starts_with("fuse."))
                .then(|| target.replace("\\040", " "))
        })
        .collect()
}

/// (filesystem id, used percent as `df` shows it) of one mount point.
fn disk_usage(mount: &str) -> Option<(u64, f64)> {
    let path = std::ffi::CString::new(mount).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid, writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let (blocks, free, avail) = (st.f_blocks as f64, st.f_bfree as f64, st.f_bavail as f64);
    let used = blocks - free;
    if blocks <= 0.0 || used + avail <= 0.0 {
        return None;
    }
    Some((st.f_fsid as u64, 100.0 * used / (used + avail)))
}

/// Measures the host. CPU is the average since the previous host probe (the first one
/// measures over 250 ms).
pub struct Host {
    last_cpu: Mutex<Option<(u64, u64)>>,
}

impl Host {
    pub fn new() -> Host {
        Host {
            last_cpu: Mutex::new(None),
        }
    }

    pub async fn measure(&self) -> Result<Value, String> {
        let read =
            |path: &str| std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"));
        let now = cpu_ticks(&read("/proc/stat")?).ok_or("/proc/stat: no cpu line")?;
        let before = *self.last_cpu.lock().expect("cpu lock");
        let (before, now) = match before {
            Some(b) if now.1 > b.1 => (b, now),
            _ => {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let later = cpu_ticks(&read("/proc/stat")?).ok_or("/proc/stat: no cpu line")?;
                (now, later)
            }
        };
        *self.last_cpu.lock().expect("cpu lock") = Some(now);
        let total = now.1.saturating_sub(before.1);
        let cpu = if total == 0 {
            0.0
        } else {
            100.0 * now.0.saturating_sub(before.0) as f64 / total as f64
        };
        let memory =
            memory_percent(&read("/proc/meminfo")?).ok_or("/proc/meminfo: no MemAvailable")?;
        let mut seen = HashSet::new();
        let disks: Vec<Value> = mount_points(&read("/proc/self/mounts")?)
            .into_iter()
            .filter_map(|mount| {
                let (fsid, used) = disk_usage(&mount)?;
                seen.insert(fsid)
                    .then(|| json!({ "mount": mount, "used_percent": round1(used) }))
            })
            .collect();
        Ok(json!({
            "cpu_percent": round1(cpu.clamp(0.0, 100.0)),
            "memory_percent": round1(memory),
            "disks": disks,
        }))
    }
}

impl Default for Host {
    fn default() -> Self {
        Host::new()
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_line() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(cpu_ticks(stat), Some((150, 1000)));
        assert_eq!(cpu_ticks("intr 1 2 3"), None);
    }

    #[test]
    fn memory() {
        let info = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n";
        assert_eq!(memory_percent(info), Some(75.0));
        assert_eq!(memory_percent("MemTotal: 1000 kB\n"), None);
    }

    #[test]
    fn mounts_skip_pseudo_file_systems() {
        let mounts = "/dev/sda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\ntmpfs /run tmpfs rw 0 0\n\
                      /dev/sdb1 /srv/school\\040data xfs rw 0 0\ngvfsd-fuse /run/user/1000/gvfs fuse.gvfsd-fuse rw 0 0\n";
        assert_eq!(mount_points(mounts), vec!["/", "/srv/school data"]);
    }

    #[tokio::test]
    async fn this_machine() {
        let host = Host::new();
        let first = host.measure().await.unwrap();
        let cpu = first["cpu_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&cpu), "{first}");
        let memory = first["memory_percent"].as_f64().unwrap();
        assert!(memory > 0.0 && memory < 100.0, "{first}");
        let disks = first["disks"].as_array().unwrap();
        assert!(
            disks.iter().any(|d| d["mount"] == "/"),
            "the root file system: {first}"
        );
        // The second reading averages since the first.
        let second = host.measure().await.unwrap();
        assert!(second["cpu_percent"].as_f64().is_some());
    }
}
