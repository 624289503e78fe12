//! The OCI config of a container: the image's defaults, the flags, and
//! docker's defaults for everything else (capabilities, mounts, masked
//! and read-only paths).

use std::path::{Path, PathBuf};

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

fn flag_err(flag: &str, value: &str, reason: impl Into<String>) -> EngineError {
    EngineError::RunFlag {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Every capability docker knows by name, in the kernel's order (entry N
/// is capability number N).
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// docker's defaults, less `--cap-drop`, plus `--cap-add` (ALL allowed in
/// both; drops apply first).
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>, EngineError> {
    let norm = |flag: &str, c: &str| -> Result<String, EngineError> {
        let upper = c.to_ascii_uppercase();
        let name = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if name == "CAP_ALL" || ALL_CAPS.contains(&name.as_str()) {
            Ok(name)
        } else {
            Err(flag_err(flag, c, "unknown capability"))
        }
    };
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    for d in drop {
        let d = norm("--cap-drop", d)?;
        if d == "CAP_ALL" {
            caps.clear();
        } else {
            caps.retain(|c| *c != d);
        }
    }
    for a in add {
        let a = norm("--cap-add", a)?;
        let new: Vec<String> = if a == "CAP_ALL" {
            own_capabilities()
        } else {
            vec![a]
        };
        for c in new {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    Ok(caps)
}

/// Every capability berth itself holds (its bounding set), as docker
/// gives `--privileged` the daemon's: asking for more fails.
fn own_capabilities() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// `-v SRC:DST[:OPTS]` as an OCI bind mount; a missing source directory
/// is created, as docker does.
fn volume_mount(v: &str) -> Result<Value, EngineError> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => return Err(flag_err("-v", v, "expected SOURCE:DESTINATION[:OPTIONS]")),
    };
    if !src.starts_with('/') {
        return Err(flag_err(
            "-v",
            v,
            "named volumes are not supported yet: give an absolute host path",
        ));
    }
    if !dst.starts_with('/') {
        return Err(flag_err(
            "-v",
            v,
            "the destination must be an absolute path",
        ));
    }
    if !Path::new(src).exists() {
        std::fs::create_dir_all(src)
            .map_err(|e| flag_err("-v", v, format!("creating {src}: {e}")))?;
    }
    let mut options = vec!["rbind".to_string()];
    let mut propagation = "rprivate".to_string();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" | "rw" => options.push(o.to_string()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                propagation = o.to_string()
            }
            "z" | "Z" => {} // SELinux relabelling: nothing to do without SELinux
            _ => return Err(flag_err("-v", v, format!("unknown option {o:?}"))),
        }
    }
    options.push(propagation);
    Ok(json!({"destination": dst, "type": "bind", "source": src, "options": options}))
}

/// `--tmpfs DST[:OPTS]`, with docker's defaults noexec, nosuid, nodev.
fn tmpfs_mount(t: &str) -> Result<Value, EngineError> {
    let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
    if !dst.starts_with('/') {
        return Err(flag_err(
            "--tmpfs",
            t,
            "the destination must be an absolute path",
        ));
    }
    let mut options = vec![
        "noexec".to_string(),
        "nosuid".to_string(),
        "nodev".to_string(),
    ];
    options.extend(opts.split(',').filter(|o| !o.is_empty()).map(String::from));
    Ok(json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": options}))
}

/// `--mount type=bind|tmpfs,…`, docker's long form. Unlike `-v`, a bind
/// source that does not exist is an error, as docker's.
fn mount_flag(m: &str) -> Result<Value, EngineError> {
    let bad = |reason: String| flag_err("--mount", m, reason);
    let mut kind = "volume";
    let (mut src, mut dst) = (None, None);
    let (mut readonly, mut propagation) = (false, "rprivate".to_string());
    let (mut size, mut mode) = (None, None);
    for field in m.split(',') {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        match key {
            "type" => kind = value,
            "source" | "src" => src = Some(value),
            "target" | "destination" | "dst" => dst = Some(value),
            "readonly" | "ro" => readonly = matches!(value, "" | "true" | "1"),
            "bind-propagation" => propagation = value.to_string(),
            "tmpfs-size" => {
                size = Some(crate::units::parse_bytes(value).map_err(|e| bad(e.clone()))?)
            }
            "tmpfs-mode" => mode = Some(value),
            "consistency" => {}
            other => return Err(bad(format!("unknown field {other:?}"))),
        }
    }
    let dst = dst
        .filter(|d| d.starts_with('/'))
        .ok_or_else(|| bad("target must be an absolute path".into()))?;
    match kind {
        "bind" => {
            let src = src
                .filter(|s| s.starts_with('/'))
                .ok_or_else(|| bad("source must be an absolute host path".into()))?;
            if !Path::new(src).exists() {
                return Err(bad(format!("bind source path does not exist: {src}")));
            }
            let mut options = vec!["rbind".to_string(), propagation];
            options.push(if readonly { "ro" } else { "rw" }.to_string());
            Ok(json!({"destination": dst, "type": "bind", "source": src, "options": options}))
        }
        "tmpfs" => {
            let mut options: Vec<String> = vec!["nosuid".into(), "nodev".into()];
            if let Some(size) = size {
                options.push(format!("size={size}"));
            }
            if let Some(mode) = mode {
                options.push(format!("mode={mode}"));
            }
            if readonly {
                options.push("ro".into());
            }
            Ok(json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": options}))
        }
        other => Err(bad(format!(
            "type {other}: berth mounts bind and tmpfs (named volumes are not supported yet)"
        ))),
    }
}

/// `--ulimit NAME=SOFT[:HARD]`.
fn ulimit(u: &str) -> Result<Value, EngineError> {
    let (name, values) = u
        .split_once('=')
        .ok_or_else(|| flag_err("--ulimit", u, "expected NAME=SOFT[:HARD]"))?;
    let known = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if !known.contains(&name) {
        return Err(flag_err("--ulimit", u, "unknown limit"));
    }
    let (soft, hard) = values.split_once(':').unwrap_or((values, values));
    let num = |s: &str| -> Result<u64, EngineError> {
        if s == "-1" || s == "unlimited" {
            Ok(u64::MAX)
        } else {
            s.parse()
                .map_err(|_| flag_err("--ulimit", u, "limits are numbers"))
        }
    };
    let (soft, hard) = (num(soft)?, num(hard)?);
    if soft > hard {
        return Err(flag_err(
            "--ulimit",
            u,
            "the soft limit is above the hard limit",
        ));
    }
    Ok(json!({"type": format!("RLIMIT_{}", name.to_ascii_uppercase()), "soft": soft, "hard": hard}))
}

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

/// Where `--init`'s binary appears in the container, as docker's.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// The static init on this machine that `--init` binds into containers:
/// docker's `docker-init`, else Debian's `tini-static` (the same tini). A
/// static one: the image may have no C library, or another one.
fn find_init() -> Result<PathBuf, EngineError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    ["docker-init", "tini-static"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
        .ok_or(EngineError::NoInit)
}

pub fn container_spec(input: &SpecInput<'_>) -> Result<Value, EngineError> {
    let opts = input.opts;
    let mut args = process_args(input.image, opts);
    if args.is_empty() {
        return Err(EngineError::NoCommand(opts.image.clone()));
    }
    let init = if opts.init { Some(find_init()?) } else { None };
    if init.is_some() {
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
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
    let mut memory = serde_json::Map::new();
    if let Some(m) = opts.memory {
        memory.insert("limit".into(), json!(m));
    }
    if let Some(r) = opts.memory_reservation {
        memory.insert("reservation".into(), json!(r));
    }
    if let Some(s) = opts.memory_swap {
        if opts.memory.is_none() {
            return Err(flag_err(
                "--memory-swap",
                &s.to_string(),
                "needs --memory as well",
            ));
        }
        memory.insert("swap".into(), json!(s));
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(cpus) = opts.cpus {
        cpu.insert("quota".into(), json!((cpus * 100_000.0).round() as i64));
        cpu.insert("period".into(), json!(100_000));
    }
    if let Some(q) = opts.cpu_quota {
        cpu.insert("quota".into(), json!(q));
    }
    if let Some(p) = opts.cpu_period {
        cpu.insert("period".into(), json!(p));
    }
    if let Some(shares) = opts.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(cpus) = &opts.cpuset_cpus {
        cpu.insert("cpus".into(), json!(cpus));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = opts.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let caps = if opts.privileged {
        own_capabilities()
    } else {
        capabilities(&opts.cap_add, &opts.cap_drop)?
    };
    let mut no_new_privileges = false;
    // berth's default profile, unless unconfined or privileged (as docker).
    let mut seccomp = (!opts.privileged).then(|| crate::seccomp::default_profile(&caps));
    for o in &opts.security_opt {
        let (key, value) = o.split_once(['=', ':']).unwrap_or((o.as_str(), "true"));
        match (key, value) {
            ("no-new-privileges", "true") => no_new_privileges = true,
            ("no-new-privileges", "false") => no_new_privileges = false,
            ("seccomp", "unconfined") => seccomp = None,
            ("seccomp", path) => {
                let text = std::fs::read(path)
                    .map_err(|e| flag_err("--security-opt", o, format!("reading {path}: {e}")))?;
                let profile: Value = serde_json::from_slice(&text).map_err(|e| {
                    flag_err(
                        "--security-opt",
                        o,
                        format!("{path} is not a seccomp profile: {e}"),
                    )
                })?;
                if profile.get("defaultAction").is_none() {
                    return Err(flag_err(
                        "--security-opt",
                        o,
                        format!("{path} has no defaultAction: not a seccomp profile"),
                    ));
                }
                seccomp = Some(profile);
            }
            _ => {
                return Err(flag_err(
                    "--security-opt",
                    o,
                    "berth supports no-new-privileges and seccomp=unconfined|PROFILE.json",
                ))
            }
        }
    }
    let mut namespaces = vec![
        json!({"type": "mount"}),
        json!({"type": "uts"}),
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "cgroup"}),
    ];
    match opts.network.as_deref() {
        // A private network namespace with loopback only, until bridges exist.
        None | Some("none") | Some("default") => namespaces.push(json!({"type": "network"})),
        Some("host") => {}
        Some(other) => {
            return Err(flag_err(
                "--network",
                other,
                "berth supports none and host, so far",
            ))
        }
    }
    let shm_size = opts.shm_size.unwrap_or(64 << 20);
    let rlimits = opts
        .ulimits
        .iter()
        .map(|u| ulimit(u))
        .collect::<Result<Vec<_>, _>>()?;
    let mut extra_mounts = Vec::new();
    for v in &opts.volumes {
        extra_mounts.push(volume_mount(v)?);
    }
    for t in &opts.tmpfs {
        extra_mounts.push(tmpfs_mount(t)?);
    }
    for m in &opts.mounts {
        extra_mounts.push(mount_flag(m)?);
    }
    if let Some(init) = &init {
        extra_mounts.push(
            json!({"destination": INIT_PATH, "type": "bind", "source": init, "options": ["bind", "ro"]}),
        );
    }
    let mut spec = json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": opts.tty,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": rlimits,
            "noNewPrivileges": no_new_privileges
        },
        "root": {"path": input.rootfs, "readonly": opts.read_only},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm_size}")]},
            {"destination": "/etc/hostname", "type": "bind", "source": input.etc_dir.join("hostname"), "options": ["rbind", "rprivate"]},
            {"destination": "/etc/hosts", "type": "bind", "source": input.etc_dir.join("hosts"), "options": ["rbind", "rprivate"]},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": input.etc_dir.join("resolv.conf"), "options": ["rbind", "rprivate"]}
        ],
        "linux": {
            "cgroupsPath": format!("berth/{}", input.id),
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    if let Some(profile) = seccomp {
        spec["linux"]["seccomp"] = profile;
    }
    if let Some([rows, cols]) = opts.console_size {
        // The pty is made this size before the process runs (docker's
        // ConsoleSize: the size of berth's terminal).
        spec["process"]["consoleSize"] = json!({"height": rows, "width": cols});
    }
    if opts.privileged {
        // Everything docker's --privileged opens: every device, /sys and
        // the cgroup tree writable, nothing masked or read-only.
        spec["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
        spec["linux"]["maskedPaths"] = json!([]);
        spec["linux"]["readonlyPaths"] = json!([]);
        for m in spec["mounts"].as_array_mut().expect("mounts is a list") {
            match m["destination"].as_str() {
                Some("/sys") | Some("/sys/fs/cgroup") => {
                    if let Some(o) = m["options"].as_array_mut() {
                        o.retain(|x| x != "ro");
                        o.push(json!("rw"));
                    }
                }
                Some("/dev") => {
                    *m = json!({"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind", "rslave"]})
                }
                _ => {}
            }
        }
    }
    // The user's mounts last: they go over docker's defaults.
    spec["mounts"]
        .as_array_mut()
        .expect("mounts is a list")
        .extend(extra_mounts);
    Ok(spec)
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
    fn capabilities_add_and_drop() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let caps = capabilities(&s(&["net_admin"]), &s(&["CAP_MKNOD", "chown"])).unwrap();
        assert!(
            caps.contains(&"CAP_NET_ADMIN".into())
                && !caps.contains(&"CAP_MKNOD".into())
                && !caps.contains(&"CAP_CHOWN".into())
        );
        assert_eq!(
            capabilities(&s(&["KILL"]), &s(&["ALL"])).unwrap(),
            ["CAP_KILL"]
        );
        assert!(capabilities(&s(&["FLY"]), &[]).is_err());
    }

    #[test]
    fn mount_flag_long_form() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().display().to_string();
        let m = mount_flag(&format!(
            "type=bind,src={src},dst=/data,readonly,bind-propagation=rslave"
        ))
        .unwrap();
        assert_eq!(m["source"], src);
        assert_eq!(m["destination"], "/data");
        assert_eq!(m["options"], json!(["rbind", "rslave", "ro"]));
        let t = mount_flag("type=tmpfs,target=/scratch,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        assert_eq!(
            t["options"],
            json!(["nosuid", "nodev", "size=1048576", "mode=1770"])
        );
        for bad in [
            "type=bind,source=/no/such/dir,target=/x",
            "type=bind,source=relative,target=/x",
            "type=tmpfs,target=relative",
            "type=volume,source=v,target=/x",
            "type=bind,source=/,target=/x,color=red",
        ] {
            assert!(mount_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volume_tmpfs_and_ulimit_flags() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("made/by/run");
        let m = volume_mount(&format!("{}:/data:ro", src.display())).unwrap();
        assert!(src.is_dir(), "missing source not created");
        assert_eq!(m["options"], json!(["rbind", "ro", "rprivate"]));
        assert!(volume_mount("named:/data")
            .unwrap_err()
            .to_string()
            .contains("named volumes"));
        assert_eq!(
            tmpfs_mount("/run:size=64k").unwrap()["options"],
            json!(["noexec", "nosuid", "nodev", "size=64k"])
        );
        assert_eq!(
            ulimit("nofile=1024:2048").unwrap(),
            json!({"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048})
        );
        assert!(ulimit("nofile=10:5").is_err());
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
