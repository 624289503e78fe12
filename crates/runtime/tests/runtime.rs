//! berth-runtime driven through its command line, on bundles made offline
//! from Debian's busybox-static: what the container sees is what the spec
//! asked for, and nothing is left behind.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

const BUSYBOX: &str = "/bin/busybox";

/// A bundle and a runtime root in one temporary directory; every container
/// made through it is force-deleted on drop.
struct Bundle {
    dir: tempfile::TempDir,
    ids: std::cell::RefCell<Vec<String>>,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-runtime-test-")
            .tempdir()
            .unwrap();
        let rootfs = dir.path().join("bundle/rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        for d in ["proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
            .unwrap_or_else(|e| panic!("{BUSYBOX}: {e} (install busybox-static)"));
        let out = Command::new(BUSYBOX).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        )
        .unwrap();
        let b = Bundle {
            dir,
            ids: Default::default(),
        };
        let spec = b.runtime(&["spec", "--bundle", b.bundle().to_str().unwrap()]);
        assert!(
            spec.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&spec.stderr)
        );
        b
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs berth-runtime. Its output goes through files, not pipes: a
    /// created container's init inherits them, and would hold a pipe open
    /// long after `create` returned.
    fn runtime(&self, args: &[&str]) -> Output {
        let out_path = self.dir.path().join("stdout");
        let err_path = self.dir.path().join("stderr");
        let status = Command::new(env!("CARGO_BIN_EXE_berth-runtime"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: std::fs::read(&out_path).unwrap(),
            stderr: std::fs::read(&err_path).unwrap(),
        }
    }

    /// Rewrites config.json: the default spec, no terminal, this test's own
    /// cgroup, then `edit`.
    fn config(&self, id: &str, edit: impl FnOnce(&mut Value)) {
        let path = self.bundle().join("config.json");
        let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        c["process"]["terminal"] = json!(false);
        c["linux"]["cgroupsPath"] = json!(cgroup_path(id));
        edit(&mut c);
        std::fs::write(&path, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    }

    fn id(&self, name: &str) -> String {
        let id = format!("{name}-{}", std::process::id());
        self.ids.borrow_mut().push(id.clone());
        id
    }

    /// `run` of `args` (with `edit` on the config); returns the output.
    fn run(&self, name: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> Output {
        let id = self.id(name);
        self.config(&id, |c| {
            c["process"]["args"] = json!(args);
            edit(c);
        });
        self.runtime(&["run", "--bundle", self.bundle().to_str().unwrap(), &id])
    }

    /// `run` of a shell script, asserting success; returns stdout.
    fn sh(&self, name: &str, script: &str, edit: impl FnOnce(&mut Value)) -> String {
        let out = self.run(name, &["sh", "-c", script], edit);
        assert!(
            out.status.success(),
            "{script}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `create` of container `id` (configured already) with `extra` flags;
    /// asserts success.
    fn create(&self, id: &str, extra: &[&str]) {
        let bundle = self.bundle();
        let mut args = vec!["create", "--bundle", bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(id);
        let out = self.runtime(&args);
        assert!(
            out.status.success(),
            "create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// create + start of container `id` (configured already); returns its PID.
    fn start(&self, id: &str) -> i64 {
        self.create(id, &[]);
        let out = self.runtime(&["start", id]);
        assert!(
            out.status.success(),
            "start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.state(id)["pid"].as_i64().unwrap()
    }

    fn state(&self, id: &str) -> Value {
        let out = self.runtime(&["state", id]);
        assert!(
            out.status.success(),
            "state: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.runtime(&["delete", "--force", id]);
        }
    }
}

fn cgroup_path(id: &str) -> String {
    format!("berth/test-{id}")
}

fn no_cgroup_left(id: &str) {
    for h in ["memory", "pids", "cpu", "devices", "freezer", "unified"] {
        let p = Path::new("/sys/fs/cgroup").join(h).join(cgroup_path(id));
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn run_returns_output_and_exit_code() {
    let b = Bundle::new();
    let out = b.run(
        "exit",
        &["sh", "-c", "echo hello; echo oops >&2; exit 3"],
        |_| {},
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    let id = format!("exit-{}", std::process::id());
    assert!(!b.root().join(&id).exists(), "state left after run");
    no_cgroup_left(&id);
}

#[test]
fn the_container_sees_only_itself() {
    let b = Bundle::new();
    let out = b.sh(
        "isolated",
        "echo pid=$$; hostname; ls /sys/class/net; awk '$5 == \"/\"' /proc/self/mountinfo | wc -l; ls /proc | grep -c '^[0-9]'",
        |c| c["hostname"] = json!("inside"),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "inside");
    assert_eq!(lines[2], "lo", "host interfaces visible: {out}");
    assert_eq!(lines[3], "1", "the rootfs is not the root mount: {out}");
    assert!(
        lines[4].parse::<u32>().unwrap() <= 3,
        "host processes visible: {out}"
    );
}

#[test]
fn capabilities_and_user_are_the_configs() {
    let b = Bundle::new();
    let out = b.sh("caps", "grep Cap /proc/self/status; id -u; id -g; id -G; cat /proc/self/attr/current 2>/dev/null; grep NoNewPrivs /proc/self/status", |c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [20, 30]});
    });
    assert!(out.contains("CapBnd:\t0000000020000420"), "{out}");
    // A non-root user keeps no effective or permitted capability unless asked (ambient).
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("\n1000\n1001\n"), "{out}");
    assert!(out.contains("1001 20 30"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn masked_and_readonly_paths_and_readonly_root() {
    let b = Bundle::new();
    let out = b.sh(
        "paths",
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo writable-sys || echo ro-sys; touch /newfile 2>/dev/null && echo writable-root || echo ro-root; touch /tmp/x 2>/dev/null && echo writable-tmp || echo ro-tmp",
        |c| {
            c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}));
        },
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["0", "0", "ro-sys", "ro-root", "writable-tmp"],
        "{out}"
    );
}

#[test]
fn devices_present_and_absent() {
    let b = Bundle::new();
    let out = b.sh(
        "devices",
        "ls /dev; head -c 4 /dev/zero | wc -c; ls -l /dev/null | cut -c1; readlink /dev/fd; echo x > /dev/null && echo null-ok",
        |_| {},
    );
    for present in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "fd",
        "stdin",
    ] {
        assert!(
            out.lines().any(|l| l == present),
            "/dev/{present} missing: {out}"
        );
    }
    for absent in ["sda", "vda", "kmsg", "mem"] {
        assert!(
            !out.lines().any(|l| l == absent),
            "/dev/{absent} present: {out}"
        );
    }
    assert!(out.contains("\n4\nc\n/proc/self/fd\nnull-ok\n"), "{out}");
}

#[test]
fn lifecycle_created_running_stopped_deleted() {
    let b = Bundle::new();
    let id = b.id("life");
    b.config(&id, |c| c["process"]["args"] = json!(["sleep", "100"]));
    let pid_file = b.dir.path().join("pid");
    b.create(&id, &["--pid-file", pid_file.to_str().unwrap()]);
    let s = b.state(&id);
    assert_eq!(s["status"], "created");
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["ociVersion"], "1.2.0");
    let pid = s["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    assert_eq!(
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/pids/{}/cgroup.procs",
            cgroup_path(&id)
        ))
        .unwrap()
        .trim(),
        pid.to_string()
    );
    let out = b.runtime(&["list", "--format", "json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    // A created container is deleted (its waiting init killed), as runc does.
    let out = b.runtime(&["delete", &id]);
    assert!(
        out.status.success(),
        "delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap()
                .contains(") Z")
    );
    no_cgroup_left(&id);
}

#[test]
fn start_kill_delete() {
    let b = Bundle::new();
    let id = b.id("skd");
    b.config(&id, |c| c["process"]["args"] = json!(["sleep", "100"]));
    b.create(&id, &[]);
    assert_eq!(b.state(&id)["status"], "created");
    let out = b.runtime(&["start", &id]);
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(b.state(&id)["status"], "running");
    let pid = b.state(&id)["pid"].as_i64().unwrap();
    assert!(std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .starts_with("sleep"));
    // start twice is refused.
    let again = b.runtime(&["start", &id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is running"));
    // delete without force refuses a running container.
    assert!(!b.runtime(&["delete", &id]).status.success());
    assert!(b.runtime(&["pause", &id]).status.success());
    assert_eq!(b.state(&id)["status"], "paused");
    assert!(b.runtime(&["resume", &id]).status.success());
    assert_eq!(b.state(&id)["status"], "running");
    let ps = b.runtime(&["ps", "--format", "json", &id]);
    assert_eq!(
        serde_json::from_slice::<Vec<i64>>(&ps.stdout).unwrap(),
        [pid]
    );
    assert!(b.runtime(&["kill", &id, "KILL"]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while b.state(&id)["status"] != "stopped" {
        assert!(
            std::time::Instant::now() < deadline,
            "container did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = b.runtime(&["delete", &id]);
    assert!(
        out.status.success(),
        "delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!b.runtime(&["state", &id]).status.success());
    no_cgroup_left(&id);
}

#[test]
fn memory_limit_oom_kills_and_pids_limit_stops_forks() {
    let b = Bundle::new();
    let out = b.run(
        "oom",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        |c| {
            c["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
        },
    );
    assert_eq!(
        out.status.code(),
        Some(137),
        "not OOM-killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = b.sh(
        "pids",
        // Only shell builtins after the fork storm: with every slot taken, a
        // fork for cat would fail too.
        "sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 3 & done' 2>/dev/null; read max < /sys/fs/cgroup/pids/pids.max; read cur < /sys/fs/cgroup/pids/pids.current; read ev < /sys/fs/cgroup/pids/pids.events; echo $max; echo $cur; echo $ev",
        |c| c["linux"]["resources"]["pids"] = json!({"limit": 6}),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "6");
    assert!(
        lines[1].parse::<u32>().unwrap() <= 6,
        "more than 6 processes: {out}"
    );
    let refused: u32 = lines[2].strip_prefix("max ").unwrap().parse().unwrap();
    assert!(refused > 0, "no fork was refused: {out}");
}

#[test]
fn cpu_limits_reach_the_cgroup_files() {
    let b = Bundle::new();
    let out = b.sh(
        "cpu",
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/memory/memory.limit_in_bytes",
        |c| {
            c["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000, "shares": 512});
            c["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
        },
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["50000", "100000", "512", "67108864"]
    );
}

#[test]
fn no_descriptor_or_host_cwd_leaks_in() {
    // Checked from the host, on the running process: a look from inside
    // would see the looking tool's own descriptors.
    let b = Bundle::new();
    let id = b.id("fds");
    b.config(&id, |c| {
        c["process"]["args"] = json!(["sleep", "100"]);
        c["process"]["cwd"] = json!("/tmp/work");
    });
    b.start(&id);
    let pid = b.state(&id)["pid"].as_i64().unwrap();
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    assert_eq!(
        fds,
        ["0", "1", "2"],
        "descriptors leaked into the container"
    );
    // Seen from the host, the cwd is a path inside the container's own root
    // (the host's root being detached from its mount namespace).
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, Path::new("/tmp/work"));
    let inside = std::fs::metadata(format!("/proc/{pid}/cwd")).unwrap();
    let expected = std::fs::metadata(b.bundle().join("rootfs/tmp/work")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (inside.dev(), inside.ino()),
        (expected.dev(), expected.ino()),
        "the cwd is not the rootfs's /tmp/work"
    );
}

#[test]
fn the_runtime_runs_from_a_sealed_copy() {
    let b = Bundle::new();
    let id = b.id("sealed");
    b.config(&id, |c| c["process"]["args"] = json!(["true"]));
    b.create(&id, &[]);
    // Until start, the container's init is the runtime itself.
    let pid = b.state(&id)["pid"].as_i64().unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().starts_with("/memfd:berth-runtime"),
        "{}",
        exe.display()
    );
    let write = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/exe"));
    assert!(
        write.is_err(),
        "the runtime binary is writable through /proc/<pid>/exe"
    );
}

#[test]
fn errors_are_clear_and_leave_nothing() {
    let b = Bundle::new();
    let out = b.run("nocmd", &["no-such-program"], |_| {});
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("executable file not found in $PATH"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let id = format!("nocmd-{}", std::process::id());
    assert!(!b.root().join(&id).exists());
    no_cgroup_left(&id);

    let out = b.runtime(&["create", "--bundle", "/nonexistent", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent"));
    let out = b.runtime(&["state", "nosuch"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = b.runtime(&[
        "create",
        "--bundle",
        b.bundle().to_str().unwrap(),
        "../evil",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid container id"));
    // An rlimit above the hard limit is one clear line.
    let out = b.run("rlimit", &["true"], |c| {
        c["process"]["rlimits"] =
            json!([{"type": "RLIMIT_NOFILE", "soft": 1u64 << 40, "hard": 1u64 << 40}]);
    });
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot set RLIMIT_NOFILE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hooks_get_the_state() {
    let b = Bundle::new();
    let log = b.dir.path().join("hooks.log");
    let rootfs = b.bundle().join("rootfs");
    let hook = |stage: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {stage} $(cat) >> {}", log.display())]});
    let out = b.run("hooks", &["true"], |c| {
        c["hooks"] = json!({
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
            // In the container's mount namespace before pivot_root (so
            // through the host's path to the rootfs), then inside it.
            "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/created", rootfs.display())]}],
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "test -f /created && cat > /started"]}]
        });
        c["root"]["readonly"] = json!(false);
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("createRuntime {") && lines[0].contains("\"status\":\"creating\""),
        "{text}"
    );
    assert!(lines[1].starts_with("poststart {"), "{text}");
    assert!(
        lines[2].starts_with("poststop {") && lines[2].contains("hooks-"),
        "{text}"
    );
}

#[test]
fn user_namespace_maps_root() {
    let b = Bundle::new();
    let out = b.sh("userns", "id -u; cat /proc/self/uid_map", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        // sysfs of a network namespace owned by another user namespace, and
        // a cgroup bind, are fine; keep the default mounts.
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
}

#[test]
fn a_hundred_containers_leak_nothing() {
    let b = Bundle::new();
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let fds_before = std::fs::read_dir("/proc/self/fd").unwrap().count();
    for i in 0..100 {
        let out = b.run(&format!("loop{i}"), &["true"], |_| {});
        assert!(
            out.status.success(),
            "run {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .count(),
        mounts_before
    );
    assert!(std::fs::read_dir("/proc/self/fd").unwrap().count() <= fds_before + 2);
    assert!(
        std::fs::read_dir(b.root()).map(|d| d.count()).unwrap_or(0) == 0,
        "state left"
    );
    for i in 0..100 {
        no_cgroup_left(&format!("loop{i}-{}", std::process::id()));
    }
}

#[test]
fn seccomp_filters_syscalls() {
    let b = Bundle::new();
    let out = b.sh(
        "seccomp",
        "grep '^Seccomp:' /proc/self/status; mkdir /tmp/d 2>&1 || echo refused; touch /tmp/f && echo touched",
        |c| {
            c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
            });
        },
    );
    assert!(out.contains("Seccomp:\t2"), "no filter: {out}");
    assert!(
        out.contains("Operation not permitted") && out.contains("refused"),
        "mkdir not refused: {out}"
    );
    assert!(out.contains("touched"), "{out}");
}

/// Accepts one connection on a console socket and receives the pty
/// master (runc's protocol: SCM_RIGHTS, the pty name as payload).
fn receive_pty(listener: &std::os::unix::net::UnixListener) -> (String, std::fs::File) {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::mem::MaybeUninit;
    let (stream, _) = listener.accept().unwrap();
    let mut name = [0u8; 64];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        &stream,
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::empty(),
    )
    .unwrap();
    let pty_name = String::from_utf8_lossy(&name[..got.bytes]).into_owned();
    let master = control
        .drain()
        .find_map(|m| match m {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .expect("the pty master");
    (pty_name, std::fs::File::from(master))
}

/// Everything the process behind `master` writes, until it is gone (the
/// read then fails with EIO).
fn read_pty(mut master: std::fs::File) -> String {
    use std::io::Read;
    let mut text = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn terminal_master_goes_to_the_console_socket() {
    let b = Bundle::new();
    let id = b.id("tty");
    b.config(&id, |c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 33, "width": 111});
        c["process"]["args"] = json!(["sh", "-c", "tty; stty size; echo hello"]);
    });
    let sock = b.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    b.create(&id, &["--console-socket", sock.to_str().unwrap()]);
    let (pty_name, master) = receive_pty(&listener);
    assert!(pty_name.starts_with("/dev/pts/"), "{pty_name}");
    assert!(b.runtime(&["start", &id]).status.success());
    let text = read_pty(master);
    assert!(text.contains(&pty_name), "tty did not name the pty: {text}");
    assert!(text.contains("hello"), "{text}");
    // Sized before the process ran (consoleSize).
    assert!(text.contains("33 111"), "{text}");

    // exec --tty into a running container, through a console socket too.
    let id = b.id("ttyexec");
    b.config(&id, |c| c["process"]["args"] = json!(["sleep", "100"]));
    b.start(&id);
    let sock = b.dir.path().join("exec.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let reader = std::thread::spawn(move || {
        let (name, master) = receive_pty(&listener);
        (name, read_pty(master))
    });
    let out = b.runtime(&[
        "exec",
        "--tty",
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        "tty; echo exec-hello",
    ]);
    assert!(
        out.status.success(),
        "exec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (name, text) = reader.join().unwrap();
    assert!(
        text.contains(&name) && text.contains("exec-hello"),
        "{text}"
    );
}

#[test]
fn exec_joins_a_running_container() {
    let b = Bundle::new();
    let id = b.id("exec");
    b.config(&id, |c| {
        c["process"]["args"] = json!(["sleep", "100"]);
        c["hostname"] = json!("execbox");
    });
    b.start(&id);

    let out = b.runtime(&["exec", &id, "sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep :memory: /proc/self/cgroup; grep ^0:: /proc/self/cgroup; exit 5"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "execbox");
    assert!(lines[1].starts_with("sleep"), "{text}");
    // At the root of the container's cgroup namespace: its own cgroup.
    assert!(
        lines[2].ends_with(":memory:/"),
        "not in the container's cgroup: {text}"
    );
    // And in its cgroup2 one (cloned into it: CLONE_INTO_CGROUP).
    assert_eq!(lines[3], "0::/", "not in the container's cgroup2 cgroup");

    let out = b.runtime(&[
        "exec",
        "--user",
        "1000:1000",
        "--cwd",
        "/tmp",
        "--env",
        "GREETING=hi",
        &id,
        "sh",
        "-c",
        "id -u; pwd; echo $GREETING",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1000\n/tmp\nhi\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let process = b.dir.path().join("process.json");
    std::fs::write(&process, r#"{"args": ["sh", "-c", "echo from-json"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]}"#).unwrap();
    let out = b.runtime(&["exec", "--process", process.to_str().unwrap(), &id]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from-json\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = b.runtime(&["exec", &id, "no-such-program"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("executable file not found"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let pid_file = b.dir.path().join("exec.pid");
    let out = b.runtime(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "50",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .starts_with("sleep"));
    let ps = b.runtime(&["ps", "--format", "json", &id]);
    assert!(serde_json::from_slice::<Vec<i32>>(&ps.stdout)
        .unwrap()
        .contains(&pid));
    // delete --force takes the exec'd process down with the container.
    assert!(b.runtime(&["delete", "--force", &id]).status.success());
    no_cgroup_left(&id);
}

#[test]
fn namespaces_can_be_joined_by_path() {
    let b = Bundle::new();
    let first = b.id("nsowner");
    b.config(&first, |c| {
        c["process"]["args"] = json!(["sleep", "100"]);
        c["hostname"] = json!("shared-uts");
    });
    b.start(&first);
    let pid = b.state(&first)["pid"].as_i64().unwrap();
    let out = b.sh("nsjoiner", "hostname; readlink /proc/self/ns/net", |c| {
        c.as_object_mut().unwrap().remove("hostname");
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "uts" || ns["type"] == "network" {
                let name = if ns["type"] == "uts" { "uts" } else { "net" };
                ns["path"] = json!(format!("/proc/{pid}/ns/{name}"));
            }
        }
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "shared-uts");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(lines[1], theirs.to_str().unwrap());
}

#[test]
fn mount_destinations_never_leave_the_rootfs() {
    // The image holds a symlink to a host directory; a mount onto a path
    // through it must land inside the rootfs (CVE-2021-30465's class).
    let b = Bundle::new();
    let host = tempfile::Builder::new()
        .prefix("berth-host-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::symlink(host.path(), b.bundle().join("rootfs/escape")).unwrap();
    let out = b.sh("symlink", "ls -d /escape/sub && echo mounted-inside; grep -c ' /escape/sub\\| '\"$(readlink /escape)\"'/sub ' /proc/self/mountinfo", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/escape/sub", "type": "tmpfs", "source": "tmpfs"}));
    });
    assert!(out.contains("mounted-inside"), "{out}");
    assert!(
        list(host.path()).is_empty(),
        "the mount created {:?} on the host",
        list(host.path())
    );
    // Inside the rootfs, the symlink's target path was made instead.
    let inside = b
        .bundle()
        .join("rootfs")
        .join(host.path().strip_prefix("/").unwrap())
        .join("sub");
    assert!(inside.is_dir(), "{} missing", inside.display());
}

#[test]
fn the_container_init_is_single_threaded() {
    // The process that clones has no other thread: a created container's
    // init (still a copy of the runtime) shows one.
    let b = Bundle::new();
    let id = b.id("threads");
    b.config(&id, |c| c["process"]["args"] = json!(["true"]));
    b.create(&id, &[]);
    let pid = b.state(&id)["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l == "Threads:\t1"), "{status}");
    assert!(status.lines().any(|l| l == "Name:\tberth:init"), "{status}");
}

fn list(p: &Path) -> Vec<String> {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn personality_oom_score_and_sysctl() {
    let b = Bundle::new();
    let out = b.sh(
        "persona",
        "uname -m; cat /proc/self/oom_score_adj; cat /proc/sys/net/ipv4/ip_forward",
        |c| {
            c["linux"]["personality"] = json!({"domain": "LINUX32"});
            c["process"]["oomScoreAdj"] = json!(500);
            c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        },
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["i686", "500", "1"]);
}

#[test]
fn time_namespace_with_offsets() {
    let b = Bundle::new();
    let out = b.sh("timens", "cut -d. -f1 /proc/uptime", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1000000, "nanosecs": 0}});
    });
    let host: u64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let inside: u64 = out.trim().parse().unwrap();
    assert!(
        inside >= host + 1_000_000 - 5,
        "uptime {inside} does not carry the offset (host {host})"
    );
}

#[test]
fn cgroup2_device_program_enforces_the_rules() {
    // This machine's cgroup2 hierarchy (at /sys/fs/cgroup/unified on the
    // hybrid layout, or /sys/fs/cgroup) takes device programs whatever its
    // controllers: attach one and check what a process in it may open.
    use berth_runtime::cgroups::{bpf, DeviceRule};
    let root = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    };
    let dir = Path::new(root).join(format!("berth/test-bpf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Removed even when an assertion fails (the shell below has exited by then).
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _guard = RemoveDir(dir.clone());
    let rule = |allow, kind, major, minor, access: &str| DeviceRule {
        allow,
        kind,
        major,
        minor,
        access: access.into(),
    };
    let rules = [
        rule(false, 'a', None, None, "rwm"),
        rule(true, 'c', Some(1), Some(3), "rwm"), // /dev/null
        rule(true, 'c', Some(1), None, "r"),      // any 1:* read-only
        rule(false, 'c', Some(1), Some(8), "rwm"), // /dev/random: denied after all
    ];
    bpf::attach(&dir, &rules).expect("loading and attaching the device program");
    let script = format!(
        "echo $$ > {}/cgroup.procs || exit 99; \
         echo x > /dev/null && echo null-write-ok; \
         head -c1 /dev/zero >/dev/null 2>&1 && echo zero-read-ok; \
         (echo x > /dev/zero) 2>/dev/null && echo zero-write-ok; \
         head -c1 /dev/random >/dev/null 2>&1 && echo random-read-ok; \
         head -c1 /dev/tty >/dev/null 2>&1 && echo tty-ok; true",
        dir.display()
    );
    let out = Command::new(BUSYBOX)
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&dir);
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "null-write-ok\nzero-read-ok\n"
    );
}

#[test]
fn a_missing_cwd_is_made_inside_the_rootfs() {
    // The image's symlink points at a host directory: the cwd it leads to
    // is made inside the rootfs, never on the host.
    let b = Bundle::new();
    let host = tempfile::Builder::new()
        .prefix("berth-host-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::symlink(host.path(), b.bundle().join("rootfs/work")).unwrap();
    let out = b.sh("cwdlink", "pwd", |c| {
        c["process"]["cwd"] = json!("/work/sub")
    });
    // Inside the container the symlink resolves to the same path, in its rootfs.
    assert_eq!(out.trim(), host.path().join("sub").to_str().unwrap());
    assert!(
        list(host.path()).is_empty(),
        "the cwd was made on the host: {:?}",
        list(host.path())
    );
    let inside = b
        .bundle()
        .join("rootfs")
        .join(host.path().strip_prefix("/").unwrap())
        .join("sub");
    assert!(inside.is_dir(), "{} missing", inside.display());
}
