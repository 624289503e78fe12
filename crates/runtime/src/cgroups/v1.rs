//! cgroup v1 files.

use std::fs;
use std::path::{Path, PathBuf};

use super::{mkdir, write, CgroupError, Resources};

/// The v1 controllers a container joins.
pub const CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer", "systemd",
];

/// The directories of one cgroup, per controller.
pub struct Dirs {
    pub memory: PathBuf,
    pub cpu: PathBuf,
    pub cpuset: PathBuf,
    pub pids: PathBuf,
    pub blkio: PathBuf,
    pub devices: PathBuf,
}

impl Dirs {
    pub fn under(root: &Path, path: &Path) -> Dirs {
        let d = |c: &str| root.join(c).join(path);
        Dirs {
            memory: d("memory"),
            cpu: d("cpu"),
            cpuset: d("cpuset"),
            pids: d("pids"),
            blkio: d("blkio"),
            devices: d("devices"),
        }
    }
}

/// A new v1 cpuset has empty `cpus` and `mems`, and refuses tasks until
/// they are set: copy them down from the nearest parent that has them,
/// creating the intermediate directories of `path` as needed.
pub fn prepare_cpuset(mount: &Path, path: &Path) -> Result<(), CgroupError> {
    let mut dir = mount.to_path_buf();
    for component in path.iter() {
        let parent = dir.clone();
        dir.push(component);
        mkdir(&dir)?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = fs::read_to_string(dir.join(file)).unwrap_or_default();
            if own.trim().is_empty() {
                let inherited = fs::read_to_string(parent.join(file)).unwrap_or_default();
                write(&dir, file, inherited.trim())?;
            }
        }
    }
    Ok(())
}

/// Writes `r` into the cgroup's v1 files.
pub fn apply(d: &Dirs, r: &Resources) -> Result<(), CgroupError> {
    if let Some(limit) = r.memory_limit {
        write(&d.memory, "memory.limit_in_bytes", &limit.to_string())?;
    }
    if let Some(reservation) = r.memory_reservation {
        write(
            &d.memory,
            "memory.soft_limit_in_bytes",
            &reservation.to_string(),
        )?;
    }
    if let Some(swap) = r.memory_swap {
        // Set after the memory limit: the kernel keeps memsw >= limit.
        if !d.memory.join("memory.memsw.limit_in_bytes").exists() {
            return Err(CgroupError::Unsupported {
                path: d.memory.clone(),
                file: "memory.memsw.limit_in_bytes",
                what: "a swap limit (the kernel runs without swap accounting)",
            });
        }
        write(&d.memory, "memory.memsw.limit_in_bytes", &swap.to_string())?;
    }
    if let Some(swappiness) = r.memory_swappiness {
        write(&d.memory, "memory.swappiness", &swappiness.to_string())?;
    }
    if let Some(shares) = r.cpu_shares {
        write(&d.cpu, "cpu.shares", &shares.to_string())?;
    }
    // The period first: a quota is checked against the current period.
    if let Some(period) = r.cpu_period {
        write(&d.cpu, "cpu.cfs_period_us", &period.to_string())?;
    }
    if let Some(quota) = r.cpu_quota {
        write(&d.cpu, "cpu.cfs_quota_us", &quota.to_string())?;
    }
    if let Some(cpus) = &r.cpuset_cpus {
        write(&d.cpuset, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = &r.cpuset_mems {
        write(&d.cpuset, "cpuset.mems", mems)?;
    }
    if let Some(limit) = r.pids_limit {
        let value = if limit <= 0 {
            "max".to_string()
        } else {
            limit.to_string()
        };
        write(&d.pids, "pids.max", &value)?;
    }
    if let Some(weight) = r.blkio_weight {
        write(&d.blkio, "blkio.weight", &weight.to_string())?;
    }
    for (file, list) in [
        ("blkio.throttle.read_bps_device", &r.throttle_read_bps),
        ("blkio.throttle.write_bps_device", &r.throttle_write_bps),
        ("blkio.throttle.read_iops_device", &r.throttle_read_iops),
        ("blkio.throttle.write_iops_device", &r.throttle_write_iops),
    ] {
        for t in list {
            write(
                &d.blkio,
                file,
                &format!("{}:{} {}", t.major, t.minor, t.rate),
            )?;
        }
    }
    for rule in &r.devices {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write(&d.devices, file, &rule.line())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::{DeviceRule, Throttle};

    fn dirs(root: &Path) -> Dirs {
        let d = Dirs::under(root, Path::new("berth/c1"));
        for p in [&d.memory, &d.cpu, &d.cpuset, &d.pids, &d.blkio, &d.devices] {
            fs::create_dir_all(p).unwrap();
        }
        fs::write(d.memory.join("memory.memsw.limit_in_bytes"), "").unwrap();
        d
    }

    fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).unwrap()
    }

    #[test]
    fn writes_every_limit_to_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dirs(tmp.path());
        let r = Resources {
            memory_limit: Some(256 << 20),
            memory_reservation: Some(128 << 20),
            memory_swap: Some(512 << 20),
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(64),
            blkio_weight: Some(300),
            throttle_read_bps: vec![Throttle {
                major: 8,
                minor: 0,
                rate: 1_048_576,
            }],
            devices: vec![
                DeviceRule {
                    allow: false,
                    kind: 'a',
                    major: None,
                    minor: None,
                    access: "rwm".into(),
                },
                DeviceRule {
                    allow: true,
                    kind: 'c',
                    major: Some(1),
                    minor: Some(3),
                    access: "rwm".into(),
                },
            ],
            ..Default::default()
        };
        apply(&d, &r).unwrap();
        assert_eq!(read(&d.memory, "memory.limit_in_bytes"), "268435456");
        assert_eq!(read(&d.memory, "memory.soft_limit_in_bytes"), "134217728");
        assert_eq!(read(&d.memory, "memory.memsw.limit_in_bytes"), "536870912");
        assert_eq!(read(&d.cpu, "cpu.shares"), "512");
        assert_eq!(read(&d.cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&d.cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&d.cpuset, "cpuset.cpus"), "0");
        assert_eq!(read(&d.pids, "pids.max"), "64");
        assert_eq!(read(&d.blkio, "blkio.weight"), "300");
        assert_eq!(
            read(&d.blkio, "blkio.throttle.read_bps_device"),
            "8:0 1048576"
        );
        assert_eq!(read(&d.devices, "devices.deny"), "a");
        assert_eq!(read(&d.devices, "devices.allow"), "c 1:3 rwm");
    }

    #[test]
    fn unlimited_pids_and_missing_swap_accounting() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dirs(tmp.path());
        apply(
            &d,
            &Resources {
                pids_limit: Some(-1),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(read(&d.pids, "pids.max"), "max");
        fs::remove_file(d.memory.join("memory.memsw.limit_in_bytes")).unwrap();
        let err = apply(
            &d,
            &Resources {
                memory_swap: Some(1),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("swap"), "{err}");
    }

    #[test]
    fn cpuset_values_are_copied_down() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("cpuset.cpus"), "0-1\n").unwrap();
        fs::write(tmp.path().join("cpuset.mems"), "0\n").unwrap();
        prepare_cpuset(tmp.path(), Path::new("berth/c1")).unwrap();
        assert_eq!(read(&tmp.path().join("berth"), "cpuset.cpus"), "0-1");
        assert_eq!(read(&tmp.path().join("berth/c1"), "cpuset.mems"), "0");
    }
}
