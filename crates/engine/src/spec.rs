//! The OCI config of a container: the image's defaults, the flags, and
//! docker's defaults for everything else (capabilities, mounts, masked
//! and read-only paths).

use std::path::Path;

use serde_json::{json, Value};

use berth_image::config::ImageConfig;

use crate::run::RunOptions;
use crate::EngineError;

pub struct SpecInput<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub image: &'a ImageConfig,
    pub rootfs: &'a Path,
    /// Where the container's hostname, hosts and resolv.conf files are.
    pub etc_dir: &'a Path,
    pub opts: &'a RunOptions,
}

/// The files docker generates for /etc: (name, content).
pub fn etc_files(hostname: &str, host_resolv_conf: &str) -> Vec<(&'static str, String)> {
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    );
    // The host's resolver, less nameservers on its loopback (unreachable
    // from the container's network namespace); docker's defaults if none is left.
    let mut resolv: Vec<&str> = host_resolv_conf
        .lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            !(w.next() == Some("nameserver")
                && w.next()
                    .is_some_and(|a| a.starts_with("127.") || a == "::1"))
        })
        .collect();
    if !resolv.iter().any(|l| l.starts_with("nameserver")) {
        resolv.extend(["nameserver 8.8.8.8", "nameserver 8.8.4.4"]);
    }
    vec![
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv.join("\n") + "\n"),
    ]
}

/// docker's default capability set.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process arguments as docker computes them: the entrypoint (the
/// flag's, else the image's) followed by the command (the arguments given,
/// else the image's CMD, which an --entrypoint flag clears).
pub fn process_args(image: &ImageConfig, opts: &RunOptions) -> Vec<String> {
    let entrypoint: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => image.config.entrypoint.clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !opts.command.is_empty() {
        opts.command.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        image.config.cmd.clone().unwrap_or_default()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// `user[:group]`, by number or by name in the container's /etc/passwd and
/// /etc/group.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32), EngineError> {
    if spec.is_empty() {
        return Ok((0, 0));
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.first() != Some(&name) {
                return None;
            }
            let id = f.get(2)?.parse().ok()?;
            Some((id, f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0)))
        })
    };
    let bad = |what: &str| EngineError::User {
        spec: spec.to_string(),
        reason: what.to_string(),
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, lookup("etc/passwd", user).map_or(0, |(_, g)| g)),
        Err(_) => lookup("etc/passwd", user)
            .ok_or_else(|| bad(&format!("no user {user:?} in the image's /etc/passwd")))?,
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup("etc/group", g)
                .map(|(gid, _)| gid)
                .ok_or_else(|| bad(&format!("no group {g:?} in the image's /etc/group")))?,
        },
    };
    Ok((uid, gid))
}

pub fn container_spec(input: &SpecInput<'_>) -> Result<Value, EngineError> {
    let opts = input.opts;
    let args = process_args(input.image, opts);
    if args.is_empty() {
        return Err(EngineError::NoCommand(opts.image.clone()));
    }
    let hostname = input.hostname;
    let mut env: Vec<String> = input.image.config.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    env.push(format!("HOSTNAME={hostname}"));
    for e in &opts.env {
        let (key, value) = match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            // `-e NAME` takes the value from berth's own environment, or drops it.
            None => match std::env::var(e) {
                Ok(v) => (e.clone(), v),
                Err(_) => continue,
            },
        };
        env.retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != key);
        env.push(format!("{key}={value}"));
    }
    let user = opts
        .user
        .clone()
        .unwrap_or_else(|| input.image.config.user.clone());
    let (uid, gid) = resolve_user(input.rootfs, &user)?;
    let cwd = opts
        .workdir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| {
            let w = &input.image.config.working_dir;
            if w.is_empty() {
                "/".into()
            } else {
                w.clone()
            }
        });
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(m) = opts.memory {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(cpus) = opts.cpus {
        resources["cpu"] = json!({"quota": (cpus * 100_000.0).round() as i64, "period": 100_000});
    }
    Ok(json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS},
            "noNewPrivileges": false
        },
        "root": {"path": input.rootfs, "readonly": false},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
            {"destination": "/etc/hostname", "type": "bind", "source": input.etc_dir.join("hostname"), "options": ["rbind", "rprivate"]},
            {"destination": "/etc/hosts", "type": "bind", "source": input.etc_dir.join("hosts"), "options": ["rbind", "rprivate"]},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": input.etc_dir.join("resolv.conf"), "options": ["rbind", "rprivate"]}
        ],
        "linux": {
            "cgroupsPath": format!("berth/{}", input.id),
            "resources": resources,
            "namespaces": [{"type": "mount"}, {"type": "network"}, {"type": "uts"}, {"type": "pid"}, {"type": "ipc"}, {"type": "cgroup"}],
            "maskedPaths": [
                "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        let mut c = ImageConfig::default();
        c.config.entrypoint = entrypoint.map(|v| v.iter().map(|s| s.to_string()).collect());
        c.config.cmd = cmd.map(|v| v.iter().map(|s| s.to_string()).collect());
        c
    }

    #[test]
    fn args_follow_dockers_rules() {
        let img = image(Some(&["/init"]), Some(&["serve"]));
        let run = |command: &[&str], entrypoint: Option<&str>| {
            process_args(
                &img,
                &RunOptions {
                    command: command.iter().map(|s| s.to_string()).collect(),
                    entrypoint: entrypoint.map(String::from),
                    ..Default::default()
                },
            )
        };
        assert_eq!(run(&[], None), ["/init", "serve"]);
        assert_eq!(run(&["debug"], None), ["/init", "debug"]);
        assert_eq!(run(&[], Some("sh")), ["sh"]);
        assert_eq!(run(&["-c", "true"], Some("sh")), ["sh", "-c", "true"]);
        assert_eq!(run(&["true"], Some("")), ["true"]);
    }

    #[test]
    fn etc_files_as_docker_writes_them() {
        let files = etc_files(
            "box",
            "search lan\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n",
        );
        assert_eq!(files[0], ("hostname", "box\n".to_string()));
        assert!(
            files[1].1.starts_with("127.0.0.1\tlocalhost\n")
                && files[1].1.ends_with("127.0.1.1\tbox\n")
        );
        assert_eq!(files[2].1, "search lan\nnameserver 10.0.0.1\n");
        let fallback = etc_files("box", "nameserver 127.0.0.1\n");
        assert_eq!(fallback[2].1, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn users_by_number_and_name() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\nweb:x:33:44::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user(root.path(), "").unwrap(), (0, 0));
        assert_eq!(resolve_user(root.path(), "web").unwrap(), (33, 44));
        assert_eq!(resolve_user(root.path(), "web:staff").unwrap(), (33, 50));
        assert_eq!(resolve_user(root.path(), "1000:7").unwrap(), (1000, 7));
        assert!(resolve_user(root.path(), "nobody").is_err());
    }
}
