//! `run --rm` in the foreground: an image's layers under a writable layer,
//! berth-runtime in-process, docker's exit codes, nothing left behind.

mod common;
use common::*;

fn mounts_under(p: &std::path::Path) -> usize {
    let prefix = p.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&prefix)))
        .count()
}

fn assert_nothing_left(b: &Berth) {
    assert!(
        list_dir(&b.root().join("containers")).is_empty(),
        "container dirs left: {:?}",
        list_dir(&b.root().join("containers"))
    );
    assert_eq!(mounts_under(&b.root()), 0, "mounts left under the store");
    assert!(
        list_dir(&b.root().join("runtime")).is_empty(),
        "runtime state left"
    );
}

#[test]
fn run_returns_output_and_exit_code() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let out = b.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo hello from $$; echo oops >&2; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from 1\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_nothing_left(&b);
}

#[test]
fn run_flags_reach_the_container() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let out = b.run(&[
        "run", "--rm", "-e", "GREETING=hi", "--env", "PATH=/bin", "-w", "/tmp", "-u", "1000:1000", "-h", "box", "-m", "64m", "--cpus", "0.5",
        "busybox", "sh", "-c",
        "echo $GREETING; pwd; id -u; id -g; hostname; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["hi", "/tmp", "1000", "1000", "box", "67108864", "50000"]
    );
    // The image's CMD when no command is given; --entrypoint replaces it.
    let out = b.run(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        "busybox",
        "from",
        "entrypoint",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from entrypoint\n");
    assert_nothing_left(&b);
}

#[test]
fn the_writable_layer_is_the_containers_own() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let out = b.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo data > /bin/added; rm /etc/passwd; cat /bin/added; test -e /etc/passwd && echo still || echo gone",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "data\ngone\n");
    // The image is untouched, and the next container sees it whole.
    let upper = b.ok(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "busybox"]);
    let layer = std::path::Path::new(upper.trim());
    assert!(!layer.join("bin/added").exists() && layer.join("etc/passwd").exists());
    let out = b.run(&["run", "--rm", "busybox", "cat", "/etc/passwd"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("root:"));
    // A layer thrown away at the end is not synced: volatile. A kept
    // container's is an ordinary overlay.
    let root_mount = "grep '^overlay / ' /proc/mounts";
    let out = b.ok(&["run", "--rm", "busybox", "sh", "-c", root_mount]);
    assert!(out.contains("volatile"), "{out}");
    let out = b.ok(&["run", "--name", "kept", "busybox", "sh", "-c", root_mount]);
    assert!(
        out.contains("upperdir=") && !out.contains("volatile"),
        "{out}"
    );
    b.ok(&["rm", "kept"]);
    assert_nothing_left(&b);
}

#[test]
fn dockers_exit_codes_for_failures() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let out = b.run(&["run", "--rm", "busybox", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found"));
    let out = b.run(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(
        out.status.code(),
        Some(126),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --pull never: a missing image must not send the test to Docker Hub.
    let out = b.run(&["run", "--rm", "--pull", "never", "no-such-image"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such image: no-such-image"));
    // Without --rm the container is kept, as docker's is.
    let out = b.run(&["run", "--name", "kept", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(0));
    b.ok(&["rm", "kept"]);
    assert_nothing_left(&b);
}

#[test]
fn etc_hostname_hosts_and_resolv_conf_are_generated() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let out = b.run(&["run", "--rm", "-h", "web1", "busybox", "sh", "-c", "cat /etc/hostname; grep web1 /etc/hosts; grep -c nameserver /etc/resolv.conf; grep -c 127.0.0.1 /etc/resolv.conf"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "web1",
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines[1], "127.0.1.1\tweb1");
    assert!(lines[2].parse::<u32>().unwrap() >= 1, "{text}");
    assert_eq!(lines[3], "0", "a loopback nameserver was kept: {text}");
    // The image's own /etc/passwd is still there beside the generated files.
    let out = b.run(&["run", "--rm", "busybox", "cat", "/etc/passwd"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("root:"));
}

#[test]
fn mounts_limits_and_security_flags() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let host = b.path("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let missing = b.path("made-by-run");
    let out = b.run(&[
        "run", "--rm",
        "-v", &format!("{}:/data", host.display()),
        "-v", &format!("{}:/ro:ro", missing.display()),
        "--tmpfs", "/scratch:size=1m",
        "--read-only",
        "--pids-limit", "20", "-c", "512", "--cpuset-cpus", "0", "-m", "64m", "--memory-reservation", "32m", "--memory-swap", "128m",
        "--cap-drop", "ALL", "--cap-add", "KILL",
        "--security-opt", "no-new-privileges",
        "--ulimit", "nofile=512:1024",
        "busybox", "sh", "-c",
        "cat /data/in; echo out > /data/out; touch /ro/x 2>/dev/null || echo ro-volume; touch /scratch/x && echo tmpfs-ok; touch /x 2>/dev/null || echo ro-root; \
         cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/memory/memory.soft_limit_in_bytes; \
         grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; ulimit -n; ulimit -Hn",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        [
            "from host",
            "ro-volume",
            "tmpfs-ok",
            "ro-root",
            "20",
            "512",
            "0",
            "33554432",
            "CapEff:\t0000000000000020",
            "NoNewPrivs:\t1",
            "512",
            "1024"
        ]
    );
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "out\n");
    assert!(
        missing.is_dir(),
        "a missing -v source is created, as docker does"
    );
    let out = b.run(&["run", "--rm", "-v", "named:/data", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("named volumes are not supported yet"));
    let out = b.run(&["run", "--rm", "--cap-add", "FLY", "busybox", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown capability"));
}

#[test]
fn network_env_file_cpu_and_shm_flags() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let env_file = b.path("env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\nOVERRIDDEN=file\n").unwrap();
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    let script = "echo $FROM_FILE $OVERRIDDEN; readlink /proc/self/ns/net; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us; df -k /dev/shm | tail -1 | awk '{print $2}'";
    let out = b.run(&[
        "run",
        "--rm",
        "--env-file",
        env_file.to_str().unwrap(),
        "-e",
        "OVERRIDDEN=flag",
        "--network",
        "host",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "50000",
        "--shm-size",
        "2m",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "yes flag",
            host_net.to_str().unwrap(),
            "20000",
            "50000",
            "2048"
        ],
        "{text}"
    );
    // The default (and --network none): a network namespace of its own.
    let out = b.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_ne!(
        String::from_utf8_lossy(&out.stdout).trim(),
        host_net.to_str().unwrap()
    );
    // ... with only loopback in it, and loopback up (IFF_UP | IFF_LOOPBACK).
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "ls /sys/class/net; cat /sys/class/net/lo/flags"
        ]),
        "lo\n0x9\n"
    );
    let out = b.run(&["run", "--rm", "--network", "bridge", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("none and host"));
}

/// Runs `berth ARGS` on a terminal of its own (util-linux's `script`
/// gives it one, set to 30 rows x 100 columns), types `keys` once the
/// output shows `ready`, and returns the exit code and the output.
fn on_a_terminal(b: &Berth, args: &str, keys: &[u8]) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let berth = format!(
        "{} --root {} {args}",
        env!("CARGO_BIN_EXE_berth"),
        b.root().display()
    );
    let mut child = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("stty rows 30 cols 100; {berth}"),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen.lock().unwrap()).contains("ready") {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never got ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(keys);
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let text = format!("{}{err}", String::from_utf8_lossy(&seen.lock().unwrap()));
    (status.code(), text)
}

#[test]
fn run_it_gives_the_container_a_terminal() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let (code, out) = on_a_terminal(
        &b,
        "run --rm -it busybox sh -c 'tty; stty size; echo ready; read x; echo got $x; exit 5'",
        b"hello\r",
    );
    assert_eq!(code, Some(5), "{out}");
    assert!(out.contains("/dev/pts/0"), "the container's own pty: {out}");
    assert!(out.contains("30 100"), "the window size: {out}");
    assert!(out.contains("got hello"), "{out}");

    // Ctrl-C is the container's SIGINT.
    let (code, out) = on_a_terminal(
        &b,
        "run --rm -it busybox sh -c 'trap \"echo INT; exit 7\" INT; echo ready; while true; do sleep 0.1; done'",
        b"\x03",
    );
    assert_eq!(code, Some(7), "{out}");
    assert!(out.contains("INT"), "{out}");

    // The detach keys leave it running; it is removed when it ends.
    let (code, out) = on_a_terminal(
        &b,
        "run --rm -it --name detached busybox sh -c 'echo ready; read x; exit 0'",
        b"\x10\x11",
    );
    assert_eq!(code, Some(0), "{out}");
    let running = b.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(running.starts_with("detached Up"), "{running}");
    let id = b.ok(&["inspect", "-f", "{{.Id}}", "detached"]);
    b.ok(&["kill", "detached"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while b.root().join("containers").join(id.trim()).exists() {
        assert!(std::time::Instant::now() < deadline, "never removed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert_nothing_left(&b);
}

#[test]
fn stdin_reaches_the_container_only_with_i() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let out = b.run_with_stdin(&["run", "--rm", "-i", "busybox", "cat"], b"piped in\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped in\n");
    let out = b.run_with_stdin(&["run", "--rm", "busybox", "cat"], b"piped in\n");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "without -i: /dev/null"
    );
    let out = b.run_with_stdin(&["run", "--rm", "-it", "busybox", "cat"], b"x\n");
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the input device is not a TTY"));
}

#[test]
fn mount_flag_binds_and_tmpfs() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let host = b.path("shared");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("hello"), "from the host\n").unwrap();
    let out = b.run(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,source={},target=/data,readonly", host.display()),
        "--mount",
        "type=tmpfs,target=/scratch,tmpfs-size=1m",
        "busybox",
        "sh",
        "-c",
        "cat /data/hello; touch /data/x 2>/dev/null || echo read-only; touch /scratch/y && echo tmpfs ok; df -k /scratch | tail -1 | awk '{print $2}'",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from the host\nread-only\ntmpfs ok\n1024\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = b.run(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,source=/no/such/dir,target=/x",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bind source path does not exist"));
    assert_nothing_left(&b);
}

#[test]
fn seccomp_profiles_and_privileged() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let probe = "grep Seccomp: /proc/self/status; unshare -U true 2>/dev/null && echo userns || echo no-userns; \
                 mkdir -p /mnt; mount -t tmpfs t /mnt 2>/dev/null && echo mounted || echo no-mount";
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "sh", "-c", probe]);
        b.ok(&args)
    };
    // The default profile keeps namespaces and mounts from the container.
    assert_eq!(run(&[]), "Seccomp:\t2\nno-userns\nno-mount\n");
    assert_eq!(
        run(&["--security-opt", "seccomp=unconfined"]),
        "Seccomp:\t0\nuserns\nno-mount\n"
    );
    // A capability lets its syscalls through, as docker's profile does.
    assert_eq!(
        run(&["--cap-add", "SYS_ADMIN"]),
        "Seccomp:\t2\nuserns\nmounted\n"
    );
    assert_eq!(run(&["--privileged"]), "Seccomp:\t0\nuserns\nmounted\n");
    // The compiled filters are kept, one per profile; one that is not
    // this profile's is never taken (the whole key is checked).
    let cache = b.root().join("seccomp");
    assert_eq!(list_dir(&cache).len(), 2, "{:?}", list_dir(&cache));
    for f in list_dir(&cache) {
        std::fs::write(cache.join(f), b"\x02\0\0\0{}garbage").unwrap();
    }
    assert_eq!(run(&[]), "Seccomp:\t2\nno-userns\nno-mount\n");

    // An allow-list, as docker's: a syscall not on it gets EPERM where the
    // kernel would say ENOSYS; clone3 gets ENOSYS (libc falls back to
    // clone, whose flags the filter sees).
    let probe_c = b.path("probe.c");
    std::fs::write(
        &probe_c,
        "#include <errno.h>\n#include <stdio.h>\n#include <unistd.h>\n#include <sys/syscall.h>\n\
         int main(void) {\n\
           long r = syscall(1000); printf(\"%ld %d\\n\", r, errno);\n\
           r = syscall(SYS_clone3, 0, 0); printf(\"%ld %d\\n\", r, errno);\n\
           return 0;\n}\n",
    )
    .unwrap();
    let built = std::process::Command::new("gcc")
        .args(["-static", "-O", "-o"])
        .arg(b.path("probe"))
        .arg(&probe_c)
        .status()
        .unwrap();
    assert!(built.success());
    let volume = format!("{}:/probe:ro", b.path("probe").display());
    let out = b.ok(&["run", "--rm", "-v", &volume, "busybox", "/probe"]);
    assert_eq!(out, "-1 1\n-1 38\n");
    let out = b.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "-v",
        &volume,
        "busybox",
        "/probe",
    ]);
    assert!(out.starts_with("-1 38\n"), "{out}");
    // A profile of the user's own.
    let profile = b.path("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let out = b.run(&[
        "run",
        "--rm",
        "--security-opt",
        &format!("seccomp={}", profile.display()),
        "busybox",
        "sh",
        "-c",
        "mkdir /x 2>/dev/null && echo made || echo refused",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "refused\n");
    let out = b.run(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=/no/such.json",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/no/such.json"), "{err}");
    assert_nothing_left(&b);
}

#[test]
fn attach_to_a_detached_terminal_and_detach_again() {
    let b = Berth::new();
    b.import_busybox("busybox");
    // -dit: the monitor holds the terminal; "ready" until a line is read.
    b.ok(&[
        "run",
        "-dit",
        "--name",
        "shell",
        "busybox",
        "sh",
        "-c",
        "stty size; while ! read -t 0.1 x; do echo ready; done; echo got $x; stty size; exit 6",
    ]);
    let (code, out) = on_a_terminal(&b, "attach shell", b"hello\r");
    assert_eq!(code, Some(6), "{out}");
    assert!(out.contains("got hello"), "{out}");
    assert!(
        out.contains("30 100"),
        "the attached terminal's size: {out}"
    );
    assert_eq!(
        b.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "shell"
        ]),
        "exited 6\n"
    );
    assert!(b.ok(&["logs", "shell"]).contains("got hello"));

    // Ctrl-P Ctrl-Q: berth returns, the container runs on.
    b.ok(&[
        "run",
        "-dit",
        "--name",
        "stays",
        "busybox",
        "sh",
        "-c",
        "while true; do echo ready; sleep 0.1; done",
    ]);
    let (code, _) = on_a_terminal(&b, "attach stays", b"\x10\x11");
    assert_eq!(code, Some(0));
    assert_eq!(
        b.ok(&["inspect", "-f", "{{.State.Status}}", "stays"]),
        "running\n"
    );
    b.ok(&["rm", "-f", "stays", "shell"]);
    assert_nothing_left(&b);
}

#[test]
fn exec_it_gives_the_process_a_terminal() {
    // The size is asked first thing: the pty has berth's size before the
    // process runs (OCI's consoleSize, set by the runtime).
    let b = Berth::new();
    b.import_busybox("busybox");
    b.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]);
    let (code, out) = on_a_terminal(
        &b,
        "exec -it box sh -c 'stty size; tty; echo ready; read x; echo got $x; exit 9'",
        b"hi\r",
    );
    assert_eq!(code, Some(9), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("30 100"), "{out}");
    assert!(out.contains("got hi"), "{out}");
    b.ok(&["rm", "-f", "box"]);
    assert_nothing_left(&b);
}

#[test]
fn init_runs_the_command_reaps_orphans_and_passes_signals() {
    let b = Berth::new();
    b.import_busybox("busybox");
    // PID 1 is the init; an orphan (the inner sleep) is reaped by it.
    let script = "sh -c 'sleep 0.1 &'; sleep 0.4; ps -o pid,stat,comm";
    let out = b.ok(&["run", "--rm", "--init", "busybox", "sh", "-c", script]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][0], "1", "{out}");
    assert_eq!(rows[0][2], "docker-init", "{out}");
    assert!(
        !rows.iter().any(|r| r[1].starts_with('Z')),
        "a zombie is left: {out}"
    );
    assert!(!rows.iter().any(|r| r[2] == "sleep"), "{out}");

    // The user sees their command, not the init's; stop's SIGTERM reaches
    // a shell that would ignore it as PID 1.
    b.ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "inited",
        "busybox",
        "sh",
        "-c",
        "sleep 100",
    ]);
    let seen = b.ok(&[
        "inspect",
        "-f",
        "{{.Path}} {{json .Args}} {{.HostConfig.Init}} {{json .Mounts}}",
        "inited",
    ]);
    assert_eq!(seen.trim(), r#"sh ["-c","sleep 100"] true []"#);
    let ps = b.ok(&["ps", "--no-trunc", "--format", "{{.Command}}"]);
    assert_eq!(ps.trim(), "\"sh -c sleep 100\"");
    b.ok(&["stop", "-t", "30", "inited"]);
    let code = b.ok(&["inspect", "-f", "{{.State.ExitCode}}", "inited"]);
    assert_eq!(code.trim(), "143", "SIGTERM did not reach the command");
    b.ok(&["rm", "inited"]);

    // No static init on this machine: one clear line, docker's 125.
    let out = b
        .command(&["run", "--rm", "--init", "busybox", "true"])
        .env("PATH", b.path("empty"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--init: no static init") && err.lines().count() == 1,
        "{err}"
    );
    assert_nothing_left(&b);
}
