//! cgroup v2 (unified hierarchy) files.

use std::fs;
use std::path::Path;

use super::{write, CgroupError, Resources};

/// Enables the controllers a container needs in each parent of `path`
/// (a v2 cgroup only gets the controllers its parent delegates).
pub fn enable_controllers(root: &Path, path: &Path) -> Result<(), CgroupError> {
    let available = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<String> = ["cpu", "cpuset", "io", "memory", "pids"]
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    let mut dir = root.to_path_buf();
    let components: Vec<_> = path.iter().collect();
    for component in &components[..components.len().saturating_sub(1)] {
        if !wanted.is_empty() {
            write(&dir, "cgroup.subtree_control", &wanted.join(" "))?;
        }
        dir.push(component);
        super::mkdir(&dir)?;
    }
    if !wanted.is_empty() {
        write(&dir, "cgroup.subtree_control", &wanted.join(" "))?;
    }
    Ok(())
}

/// cgroup v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000), the
/// conversion runc and crun use.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// Writes `r` into the cgroup's v2 files.
pub fn apply(dir: &Path, r: &Resources) -> Result<(), CgroupError> {
    let max = |v: i64| {
        if v < 0 {
            "max".to_string()
        } else {
            v.to_string()
        }
    };
    if let Some(limit) = r.memory_limit {
        write(dir, "memory.max", &max(limit))?;
    }
    if let Some(reservation) = r.memory_reservation {
        write(dir, "memory.low", &max(reservation))?;
    }
    if let Some(swap) = r.memory_swap {
        // OCI gives memory+swap; v2 wants the swap alone.
        let value = match (swap, r.memory_limit) {
            (s, _) if s < 0 => "max".to_string(),
            (s, Some(limit)) if limit >= 0 => (s - limit).max(0).to_string(),
            (s, _) => s.to_string(),
        };
        write(dir, "memory.swap.max", &value)?;
    }
    if let Some(shares) = r.cpu_shares {
        write(dir, "cpu.weight", &shares_to_weight(shares).to_string())?;
    }
    if r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let quota = r
            .cpu_quota
            .filter(|q| *q > 0)
            .map_or("max".to_string(), |q| q.to_string());
        write(
            dir,
            "cpu.max",
            &format!("{quota} {}", r.cpu_period.unwrap_or(100_000)),
        )?;
    }
    if let Some(cpus) = &r.cpuset_cpus {
        write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = &r.cpuset_mems {
        write(dir, "cpuset.mems", mems)?;
    }
    if let Some(limit) = r.pids_limit {
        write(
            dir,
            "pids.max",
            &if limit <= 0 {
                "max".to_string()
            } else {
                limit.to_string()
            },
        )?;
    }
    if let Some(weight) = r.blkio_weight {
        // v1 blkio.weight is 10..1000, v2 io.weight 1..10000.
        let w = 1 + (u64::from(weight).clamp(10, 1000) - 10) * 9999 / 990;
        write(dir, "io.weight", &format!("default {w}"))?;
    }
    for (key, list) in [
        ("rbps", &r.throttle_read_bps),
        ("wbps", &r.throttle_write_bps),
        ("riops", &r.throttle_read_iops),
        ("wiops", &r.throttle_write_iops),
    ] {
        for t in list {
            write(
                dir,
                "io.max",
                &format!("{}:{} {key}={}", t.major, t.minor, t.rate),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::Throttle;

    fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).unwrap()
    }

    #[test]
    fn writes_every_limit_to_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let r = Resources {
            memory_limit: Some(256 << 20),
            memory_reservation: Some(128 << 20),
            memory_swap: Some(512 << 20),
            cpu_shares: Some(1024),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpuset_mems: Some("0".into()),
            pids_limit: Some(0),
            blkio_weight: Some(500),
            throttle_write_iops: vec![Throttle {
                major: 8,
                minor: 16,
                rate: 100,
            }],
            ..Default::default()
        };
        apply(d, &r).unwrap();
        assert_eq!(read(d, "memory.max"), "268435456");
        assert_eq!(read(d, "memory.low"), "134217728");
        assert_eq!(read(d, "memory.swap.max"), "268435456");
        assert_eq!(read(d, "cpu.weight"), "39");
        assert_eq!(read(d, "cpu.max"), "50000 100000");
        assert_eq!(read(d, "cpuset.mems"), "0");
        assert_eq!(read(d, "pids.max"), "max");
        assert_eq!(read(d, "io.weight"), "default 4950");
        assert_eq!(read(d, "io.max"), "8:16 wiops=100");
    }

    #[test]
    fn unlimited_values() {
        let tmp = tempfile::tempdir().unwrap();
        apply(
            tmp.path(),
            &Resources {
                memory_limit: Some(-1),
                memory_swap: Some(-1),
                cpu_period: Some(50_000),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(read(tmp.path(), "memory.max"), "max");
        assert_eq!(read(tmp.path(), "memory.swap.max"), "max");
        assert_eq!(read(tmp.path(), "cpu.max"), "max 50000");
    }

    #[test]
    fn shares_convert_as_runc_does() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn controllers_are_delegated_down_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma",
        )
        .unwrap();
        enable_controllers(tmp.path(), Path::new("berth/c1")).unwrap();
        assert_eq!(
            read(tmp.path(), "cgroup.subtree_control"),
            "+cpu +cpuset +io +memory +pids"
        );
        assert_eq!(
            read(&tmp.path().join("berth"), "cgroup.subtree_control"),
            "+cpu +cpuset +io +memory +pids"
        );
    }
}
