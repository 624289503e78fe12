//! Containers that outlive the command: run -d, create/start, ps, logs,
//! stop, kill, wait, rm, rename, inspect, restart policies, the monitor,
//! and what is left behind (nothing).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn mounts_under(p: &std::path::Path) -> usize {
    let prefix = p.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&prefix)))
        .count()
}

/// The cgroup directories of a container, on every hierarchy.
fn cgroup_dirs(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = h.path().join("berth").join(id);
        if p.exists() {
            out.push(p.display().to_string());
        }
    }
    out
}

fn state(b: &Berth, name: &str) -> serde_json::Value {
    let out = b.ok(&["inspect", "--format", "{{json .State}}", name]);
    serde_json::from_str(out.trim()).unwrap()
}

fn pid_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(") ").next().unwrap_or("").starts_with(['Z', 'X']))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_detached_then_ps_logs_stop_start_rm() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let id = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "echo started >> /tmp/runs; cat /tmp/runs | wc -l; echo to-stderr >&2; \
             trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "run -d prints the full ID: {id}");
    wait_for("the first log line", || {
        b.ok(&["logs", "web"]).contains('1')
    });

    let ps = b.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        lines[1].starts_with(&id[..12]) && lines[1].contains("Up ") && lines[1].ends_with("web"),
        "{ps}"
    );
    assert_eq!(b.ok(&["ps", "-q"]), format!("{}\n", &id[..12]));

    let out = b.command(&["logs", "web"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    let s = state(&b, "web");
    assert_eq!(s["Status"], "running");
    assert!(pid_alive(s["Pid"].as_i64().unwrap()));

    // By unique ID prefix too; the trap answers SIGTERM.
    assert_eq!(b.ok(&["stop", &id[..8]]), format!("{}\n", &id[..8]));
    let s = state(&b, "web");
    assert_eq!(
        (s["Status"].as_str(), s["ExitCode"].as_i64()),
        (Some("exited"), Some(0))
    );
    assert!(b.ok(&["logs", "web"]).ends_with("bye\n"));
    assert_eq!(b.ok(&["ps", "-q"]), "");
    assert!(b.ok(&["ps", "-a"]).contains("Exited (0)"));

    // Started again: the same writable layer (the file has two lines).
    b.ok(&["start", "web"]);
    wait_for("the second run's output", || {
        b.ok(&["logs", "web"]).contains("2\n")
    });
    let (code, err) = b.fail(&["rm", "web"]);
    assert_eq!(code, 1);
    assert!(err.contains("container is running"), "{err}");
    b.ok(&["rm", "-f", "web"]);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert!(list_dir(&b.root().join("containers")).is_empty());
    assert!(list_dir(&b.root().join("runtime")).is_empty());
    assert_eq!(mounts_under(&b.root()), 0);
    assert!(cgroup_dirs(&id).is_empty(), "{:?}", cgroup_dirs(&id));
}

#[test]
fn create_start_wait_and_the_foreground_run() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let id = b.ok(&[
        "create",
        "--name",
        "job",
        "busybox",
        "sh",
        "-c",
        "echo done; exit 3",
    ]);
    let id = id.trim();
    assert_eq!(state(&b, "job")["Status"], "created");
    assert!(b.ok(&["ps", "-a"]).contains("Created"));
    b.ok(&["start", "job"]);
    assert_eq!(b.ok(&["wait", "job"]), "3\n");
    assert_eq!(b.ok(&["logs", "job"]), "done\n");
    assert!(b.ok(&["ps", "-a", "--filter", "exited=3"]).contains("job"));
    assert_eq!(b.ok(&["ps", "-a", "--filter", "exited=0", "-q"]), "");
    assert_eq!(
        b.ok(&[
            "ps",
            "-a",
            "--filter",
            "status=exited",
            "--format",
            "{{.Names}} {{.Status}}"
        ])
        .split(" Exited")
        .next(),
        Some("job")
    );

    // Foreground without --rm: the output, the exit code, the container kept.
    let out = b.run(&[
        "run",
        "--name",
        "fg",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(state(&b, "fg")["ExitCode"], 4);

    // Names are unique; rename frees the old one.
    let (code, err) = b.fail(&["create", "--name", "job", "busybox"]);
    assert_eq!(code, 125);
    assert!(
        err.contains(r#"The container name "/job" is already in use by container"#)
            && err.contains(id),
        "{err}"
    );
    b.ok(&["rename", "job", "job2"]);
    b.ok(&["create", "--name", "job", "busybox"]);
    let (_, err) = b.fail(&["rename", "job", "fg"]);
    assert!(err.contains("already in use"), "{err}");

    // Not found / not runnable: docker's words and exit codes.
    let (_, err) = b.fail(&["start", "nothing-here"]);
    assert!(err.contains("No such container: nothing-here"), "{err}");
    let out = b.run(&["run", "--name", "bad", "busybox", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(state(&b, "bad")["ExitCode"], 127);

    assert_eq!(
        b.ok(&["container", "prune", "-f"])
            .lines()
            .filter(|l| l.len() == 64)
            .count(),
        4
    );
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

#[test]
fn inspect_has_dockers_shape_and_real_directories() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let host = b.path("data");
    std::fs::create_dir_all(&host).unwrap();
    let bind = format!("{}:/data:ro", host.display());
    let id = b.ok(&[
        "run",
        "-d",
        "--name",
        "shape",
        "-l",
        "tier=web",
        "-m",
        "64m",
        "--restart",
        "on-failure:2",
        "-v",
        &bind,
        "--tmpfs",
        "/scratch",
        "busybox",
        "sleep",
        "60",
    ]);
    let id = id.trim();
    let out = b.ok(&["container", "inspect", "shape"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v[0];
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    // docker 20.10's keys in its order (shared/reference's container inspect).
    assert_eq!(
        keys(c),
        [
            "Id",
            "Created",
            "Path",
            "Args",
            "State",
            "Image",
            "ResolvConfPath",
            "HostnamePath",
            "HostsPath",
            "LogPath",
            "Name",
            "RestartCount",
            "Driver",
            "Platform",
            "MountLabel",
            "ProcessLabel",
            "AppArmorProfile",
            "ExecIDs",
            "HostConfig",
            "GraphDriver",
            "Mounts",
            "Config",
            "NetworkSettings",
        ]
    );
    assert_eq!(
        keys(&c["State"]),
        [
            "Status",
            "Running",
            "Paused",
            "Restarting",
            "OOMKilled",
            "Dead",
            "Pid",
            "ExitCode",
            "Error",
            "StartedAt",
            "FinishedAt",
        ]
    );
    assert_eq!(c["HostConfig"]["MaskedPaths"][0], "/proc/asound");
    assert_eq!(c["Id"], id);
    assert_eq!(c["Name"], "/shape");
    assert_eq!(c["Path"], "sleep");
    assert_eq!(c["Args"], serde_json::json!(["60"]));
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(c["Config"]["Labels"]["tier"], "web");
    assert_eq!(c["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(c["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    for dir in ["MergedDir", "UpperDir", "WorkDir"] {
        let p = c["GraphDriver"]["Data"][dir].as_str().unwrap();
        assert!(std::path::Path::new(p).is_dir(), "{dir} {p}");
    }
    for lower in c["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .split(':')
    {
        assert!(std::path::Path::new(lower).is_dir(), "{lower}");
    }
    assert!(std::path::Path::new(c["LogPath"].as_str().unwrap()).is_file());
    assert_eq!(
        c["Mounts"],
        serde_json::json!([
            {"Type": "bind", "Source": host.display().to_string(), "Destination": "/data", "Mode": "ro", "RW": false, "Propagation": "rprivate"},
            {"Type": "tmpfs", "Source": "", "Destination": "/scratch", "Mode": "", "RW": true, "Propagation": ""},
        ])
    );
    // ps -s: what the container wrote, and with its image.
    b.ok(&[
        "exec",
        "shape",
        "sh",
        "-c",
        "head -c 5000 /bin/busybox > /tmp/blob",
    ]);
    let size = b.ok(&[
        "ps",
        "-s",
        "--format",
        "{{.Size}}",
        "--filter",
        "name=shape",
    ]);
    assert!(size.starts_with("5kB (virtual "), "{size}");
    // `inspect` finds containers before images; images still by name.
    assert_eq!(b.ok(&["inspect", "-f", "{{.Name}}", "shape"]), "/shape\n");
    assert!(b
        .ok(&["inspect", "-f", "{{.Id}}", "busybox"])
        .starts_with("sha256:"));
    let (_, err) = b.fail(&["inspect", "nothing"]);
    assert!(err.contains("No such object: nothing"), "{err}");
    b.ok(&["rm", "-f", "shape"]);
}

#[test]
fn restart_policies_and_rm_after_exit() {
    let b = Berth::new();
    b.import_busybox("busybox");
    b.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo try; exit 1",
    ]);
    wait_for("two restarts", || {
        let s = state(&b, "flaky");
        s["Status"] == "exited" && b.ok(&["inspect", "-f", "{{.RestartCount}}", "flaky"]) == "2\n"
    });
    assert_eq!(b.ok(&["logs", "flaky"]), "try\ntry\ntry\n");
    assert_eq!(state(&b, "flaky")["ExitCode"], 1);

    // --rm with -d: gone once it exits.
    b.ok(&["run", "-d", "--rm", "--name", "gone", "busybox", "true"]);
    wait_for("the --rm container to go", || {
        b.ok(&["ps", "-aq", "--filter", "name=gone"]).is_empty()
    });

    // always, until stopped.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "again",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "echo x; sleep 0.05",
    ]);
    wait_for("a restart", || {
        b.ok(&["logs", "again"]).lines().count() >= 3
    });
    b.ok(&["stop", "-t", "1", "again"]);
    let s = state(&b, "again");
    assert_eq!(s["Status"], "exited");
    let count = b.ok(&["logs", "again"]).lines().count();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        b.ok(&["logs", "again"]).lines().count(),
        count,
        "stopped means stopped"
    );

    let (_, err) = b.fail(&[
        "run",
        "--rm",
        "-d",
        "--restart",
        "always",
        "busybox",
        "true",
    ]);
    assert!(err.contains("conflicting options"), "{err}");
    b.ok(&["rm", "-f", "flaky", "again"]);
}

#[test]
fn a_killed_monitor_takes_its_container_and_start_works_again() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let id = b.ok(&["run", "-d", "--name", "orphan", "busybox", "sleep", "300"]);
    let id = id.trim();
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(b.root().join("containers").join(id).join("state.json")).unwrap(),
    )
    .unwrap();
    let monitor = st["monitor_pid"].as_i64().unwrap();
    let pid = st["pid"].as_i64().unwrap();
    // SIGKILL, as a reboot would: by the monitor's own PID.
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &monitor.to_string()])
        .status()
        .unwrap()
        .success());
    wait_for("the container's process to die with its monitor", || {
        !pid_alive(pid)
    });
    let s = state(&b, "orphan");
    assert_eq!(s["Status"], "exited");
    assert!(b.ok(&["ps", "-a"]).contains("Exited (137)"));
    b.ok(&["start", "orphan"]);
    assert_eq!(state(&b, "orphan")["Status"], "running");
    b.ok(&["kill", "orphan"]);
    assert_eq!(b.ok(&["wait", "orphan"]), "137\n");
    b.ok(&["rm", "orphan"]);
    assert!(cgroup_dirs(id).is_empty());
}

/// SIGKILLs a running container's monitor, as a reboot would, and waits
/// for its process to die with it.
fn kill_as_a_reboot_would(b: &Berth, name: &str) {
    let id = b.ok(&["inspect", "-f", "{{.Id}}", name]);
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            b.root()
                .join("containers")
                .join(id.trim())
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let pid = st["pid"].as_i64().unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &st["monitor_pid"].as_i64().unwrap().to_string()])
        .status()
        .unwrap()
        .success());
    wait_for("the container's process to die with its monitor", || {
        !pid_alive(pid)
    });
}

#[test]
fn start_all_restarts_what_docker_restarts_at_boot() {
    let b = Berth::new();
    b.import_busybox("busybox");
    for (name, policy) in [
        ("always", "always"),
        ("unless", "unless-stopped"),
        ("stopped", "unless-stopped"),
        ("never", "no"),
        ("failing", "on-failure"),
    ] {
        b.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "busybox",
            "sleep",
            "300",
        ]);
    }
    b.ok(&["stop", "-t", "0", "stopped"]);
    for name in ["always", "unless", "never", "failing"] {
        kill_as_a_reboot_would(&b, name);
    }
    let boot = [
        "start",
        "--all",
        "--filter",
        "restart-policy=always",
        "--filter",
        "restart-policy=unless-stopped",
    ];
    let started = b.ok(&boot);
    assert_eq!(started, "always\nunless\n");
    let running = |n: &str| state(&b, n)["Status"] == "running";
    assert!(running("always") && running("unless"));
    assert!(!running("stopped") && !running("never") && !running("failing"));
    // Nothing left to start: a second boot run does nothing.
    assert_eq!(b.ok(&boot), "");
    let (code, err) = b.fail(&["start", "--all", "--filter", "status=exited"]);
    assert_eq!(code, 1);
    assert!(err.contains("restart-policy="), "{err}");
    // Without filters: every container not running.
    assert_eq!(b.ok(&["start", "--all"]), "stopped\nnever\nfailing\n");
    b.ok(&[
        "rm", "-f", "always", "unless", "stopped", "never", "failing",
    ]);
}

#[test]
fn images_in_use_are_kept() {
    let b = Berth::new();
    let image = b.import_busybox("busybox");
    b.ok(&["create", "--name", "user", "busybox"]);
    let (code, err) = b.fail(&["rmi", "busybox"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("container") && err.contains("is using its referenced image"),
        "{err}"
    );
    b.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(b.ok(&["images", "-q"]).trim(), &image[7..19]);
    // Forced: untagged, kept for the container, which still runs.
    b.ok(&["rmi", "-f", "busybox"]);
    assert_eq!(b.ok(&["images", "-q"]).trim(), &image[7..19]);
    b.ok(&["start", "-a", "user"]);
    b.ok(&["rm", "user"]);
    b.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(b.ok(&["images", "-q"]), "");

    // A foreground `run --rm` has no record, but its image is in use too.
    b.import_busybox("busybox");
    let shared = b.path("shared");
    std::fs::create_dir(&shared).unwrap();
    let volume = format!("{}:/shared", shared.display());
    let script = "touch /shared/running; while [ ! -e /shared/done ]; do sleep 0.05; done";
    let mut fg = b
        .command(&["run", "--rm", "-v", &volume, "busybox", "sh", "-c", script])
        .spawn()
        .unwrap();
    wait_for("the container to run", || shared.join("running").exists());
    let (_, err) = b.fail(&["rmi", "busybox"]);
    assert!(err.contains("is using its referenced image"), "{err}");
    b.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(
        b.ok(&["images", "--format", "{{.Repository}}"]).trim(),
        "busybox"
    );
    std::fs::write(shared.join("done"), "").unwrap();
    assert!(fg.wait().unwrap().success());
    b.ok(&["rmi", "busybox"]);
}

#[test]
fn fifty_parallel_run_d_all_succeed_and_leave_nothing() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let children: Vec<_> = (0..50)
        .map(|i| {
            b.command(&[
                "run",
                "-d",
                "--name",
                &format!("c{i}"),
                "busybox",
                "sleep",
                "300",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut ids = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    assert_eq!(b.ok(&["ps", "-q"]).lines().count(), 50);
    let mut args = vec!["rm", "-f"];
    let names: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    args.extend(names.iter().map(String::as_str));
    b.ok(&args);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert_eq!(mounts_under(&b.root()), 0);
    for id in &ids {
        assert!(cgroup_dirs(id).is_empty());
    }
}

#[test]
fn a_run_d_killed_at_any_point_leaves_a_running_container_or_none() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let names: Vec<String> = (0..16).map(|i| format!("k{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let mut child = b
            .command(&["run", "-d", "--name", name, "busybox", "sleep", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(3 * i as u64));
        let _ = child.kill(); // SIGKILL, by the child's own PID
        child.wait().unwrap();
    }
    // Monitors left without their berth remove what they made.
    std::thread::sleep(Duration::from_millis(500));
    let mut running = 0;
    let listed = b.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    for name in &names {
        let status = listed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or("");
        match status {
            "" => {
                // None: and the name is free.
                b.ok(&["create", "--name", name, "busybox"]);
            }
            "running" => running += 1,
            other => panic!("{name} was left {other:?}"),
        }
    }
    eprintln!(
        "{running} of {} survived as running containers",
        names.len()
    );
    b.ok(&["container", "prune", "-f"]);
    let mut args = vec!["rm", "-f"];
    let live = b.ok(&["ps", "-aq"]);
    args.extend(live.lines());
    if args.len() > 2 {
        b.ok(&args);
    }
}

#[test]
fn two_hundred_containers_alive_at_once() {
    let b = Berth::new();
    b.import_busybox("busybox");
    for batch in 0..10 {
        let children: Vec<_> = (0..20)
            .map(|_| {
                b.command(&["run", "-d", "busybox", "sleep", "300"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "batch {batch}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let ps = b.ok(&["ps"]);
    assert_eq!(
        ps.lines().count(),
        201,
        "a header and 200 running containers"
    );
    assert_eq!(
        ps.lines().skip(1).filter(|l| l.contains(" Up ")).count(),
        200
    );
    let names: Vec<&str> = ps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 200, "generated names are unique");
    let ids = b.ok(&["ps", "-q"]);
    let mut args = vec!["rm", "-f"];
    args.extend(ids.lines());
    b.ok(&args);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert_eq!(mounts_under(&b.root()), 0);
}

#[test]
fn a_full_disk_during_create_is_one_clear_error() {
    let b = Berth::new();
    std::fs::create_dir_all(b.root()).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(b.root())
        .status()
        .unwrap();
    assert!(mounted.success());
    b.import_busybox("busybox");
    // Fill what is left.
    let filler = b.root().join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let (code, err) = b.fail(&["run", "-d", "--name", "full", "busybox", "sleep", "30"]);
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(b.ok(&["ps", "-aq"]), "", "nothing half-made");
    assert!(list_dir(&b.root().join("containers")).is_empty());
    b.ok(&["run", "-d", "--name", "full", "busybox", "sleep", "30"]);
    b.ok(&["rm", "-f", "full"]);
}

#[test]
fn exec_top_pause_in_a_running_container() {
    let b = Berth::new();
    b.import_busybox("busybox");
    b.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo made > /tmp/f; exec sleep 300",
    ]);
    wait_for("the file", || {
        b.run(&["exec", "box", "cat", "/tmp/f"]).status.success()
    });
    assert_eq!(b.ok(&["exec", "box", "cat", "/tmp/f"]), "made\n");
    // Its own namespaces: PID 1 is the container's sleep.
    assert_eq!(
        b.ok(&["exec", "box", "cat", "/proc/1/cmdline"]),
        "sleep\u{0}300\u{0}"
    );
    assert_eq!(
        b.ok(&[
            "exec",
            "-e",
            "A=1",
            "-w",
            "/tmp",
            "-u",
            "1000:1000",
            "box",
            "sh",
            "-c",
            "echo $A $(pwd) $(id -u):$(id -g)"
        ]),
        "1 /tmp 1000:1000\n"
    );
    assert_eq!(
        b.run(&["exec", "box", "sh", "-c", "exit 3"]).status.code(),
        Some(3)
    );
    assert_eq!(
        b.run(&["exec", "box", "no-such-command"]).status.code(),
        Some(127)
    );
    let out = b.run_with_stdin(&["exec", "-i", "box", "cat"], b"through stdin\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through stdin\n");
    let out = b.run_with_stdin(&["exec", "box", "cat"], b"not without -i\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");

    let top = b.ok(&["top", "box"]);
    let mut lines = top.lines();
    assert!(lines.next().unwrap().contains("PID"), "{top}");
    let procs: Vec<&str> = lines.collect();
    assert_eq!(procs.len(), 1, "{top}");
    assert!(procs[0].ends_with("sleep 300"), "{top}");

    b.ok(&["pause", "box"]);
    assert_eq!(state(&b, "box")["Status"], "paused");
    assert!(b.ok(&["ps"]).contains("(Paused)"));
    b.ok(&["unpause", "box"]);
    assert_eq!(state(&b, "box")["Status"], "running");
    b.ok(&["rm", "-f", "box"]);
    let (_, err) = b.fail(&["exec", "box", "true"]);
    assert!(err.contains("No such container: box"), "{err}");
}

#[test]
fn logs_follow_rotate_and_restart() {
    let b = Berth::new();
    b.import_busybox("busybox");
    b.ok(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done; sleep 0.3; echo last",
    ]);
    // -f follows to the end of the container.
    let out = b.ok(&["logs", "-f", "chatty"]);
    assert!(out.ends_with("line-199\nlast\n"), "{out}");
    let dir = b
        .root()
        .join("containers")
        .join(b.ok(&["inspect", "-f", "{{.Id}}", "chatty"]).trim());
    let logs: Vec<String> = list_dir(&dir)
        .into_iter()
        .filter(|n| n.contains("-json.log"))
        .collect();
    assert_eq!(logs.len(), 2, "max-file=2: {logs:?}");
    for l in &logs {
        assert!(
            std::fs::metadata(dir.join(l)).unwrap().len() <= 2048,
            "max-size=2k: {l}"
        );
    }
    // What was rotated away is gone; what is kept is the tail, in order.
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() < 201);
    assert_eq!(b.ok(&["logs", "--tail", "2", "chatty"]), "line-199\nlast\n");
    let stamped = b.ok(&["logs", "-t", "--tail", "1", "chatty"]);
    assert!(
        stamped.starts_with("20") && stamped.ends_with("Z last\n"),
        "{stamped}"
    );
    assert_eq!(
        b.ok(&["logs", "--since", "1h", "--tail", "1", "chatty"]),
        "last\n"
    );
    assert_eq!(
        b.ok(&["logs", "--until", "2000-01-01T00:00:00Z", "chatty"]),
        ""
    );

    // restart: stopped (if running) and started again on the same layer.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        "busybox",
        "sh",
        "-c",
        "echo run >> /tmp/n; wc -l < /tmp/n; exec sleep 300",
    ]);
    wait_for("the first run", || b.ok(&["logs", "counter"]) == "1\n");
    assert_eq!(b.ok(&["restart", "-t", "0", "counter"]), "counter\n");
    wait_for("the second run", || b.ok(&["logs", "counter"]) == "1\n2\n");
    assert_eq!(state(&b, "counter")["Status"], "running");
    b.ok(&["rm", "-f", "counter", "chatty"]);
}

#[test]
fn an_oom_killed_container_says_so() {
    let b = Berth::new();
    b.import_busybox("busybox");
    b.ok(&[
        "run",
        "-d",
        "--name",
        "hungry",
        "-m",
        "16m",
        "--memory-swap",
        "16m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(b.ok(&["wait", "hungry"]), "137\n");
    assert_eq!(state(&b, "hungry")["OOMKilled"], true);
    b.ok(&["run", "-d", "--name", "fed", "-m", "16m", "busybox", "true"]);
    assert_eq!(b.ok(&["wait", "fed"]), "0\n");
    assert_eq!(state(&b, "fed")["OOMKilled"], false);
    b.ok(&["rm", "hungry", "fed"]);
}

#[test]
fn the_foreground_run_passes_signals_to_the_container() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let child = b
        .command(&[
            "run",
            "--name",
            "proxied",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the container to be ready", || {
        b.run(&["logs", "proxied"]).stdout.starts_with(b"ready")
    });
    // SIGTERM to berth (our own child, by its PID) reaches the container.
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\ngot-term\n");
    b.ok(&["rm", "proxied"]);
}

#[test]
fn stdin_without_a_terminal_goes_through_the_monitor() {
    let b = Berth::new();
    b.import_busybox("busybox");
    // run -i: berth's stdin is the container's, its end too (StdinOnce).
    let args = [
        "run",
        "-i",
        "--name",
        "once",
        "busybox",
        "sh",
        "-c",
        "cat; echo done",
    ];
    let out = b.run_with_stdin(&args, b"one\ntwo\n");
    assert_success(&out, &args);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\ndone\n");
    let config = b.ok(&[
        "inspect",
        "-f",
        "{{.Config.OpenStdin}} {{.Config.StdinOnce}} {{.Config.AttachStdin}} {{.Config.Tty}}",
        "once",
    ]);
    assert_eq!(config.trim(), "true true true false");
    // start -ai: this run's input and output only, not the last run's.
    let args = ["start", "-ai", "once"];
    let out = b.run_with_stdin(&args, b"again\n");
    assert_success(&out, &args);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "again\ndone\n");
    b.ok(&["rm", "once"]);

    // run -di: stdin stays open for one attach after another.
    b.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "open",
        "busybox",
        "sh",
        "-c",
        "while read l; do echo got $l; done; echo eof",
    ]);
    for (i, line) in ["hello", "second"].iter().enumerate() {
        let mut attach = b
            .command(&["attach", "open"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut input = attach.stdin.take().unwrap();
            input.write_all(format!("{line}\n").as_bytes()).unwrap();
        } // The client's input ends here; the container's must not.
        wait_for("the line to reach the container", || {
            b.ok(&["logs", "open"]).lines().count() == i + 1
        });
        // attach follows until the container ends: ours, ended by its PID.
        attach.kill().unwrap();
        attach.wait().unwrap();
    }
    assert_eq!(b.ok(&["logs", "open"]), "got hello\ngot second\n");
    assert_eq!(state(&b, "open")["Status"], "running");
    b.ok(&["rm", "-f", "open"]);

    // Without -i the container reads /dev/null: cat ends at once.
    b.ok(&["run", "-d", "--name", "closed", "busybox", "cat"]);
    wait_for("cat to end", || state(&b, "closed")["Status"] == "exited");
    assert_eq!(state(&b, "closed")["ExitCode"], 0);
    b.ok(&["rm", "closed"]);
}

#[test]
fn processes_start_with_default_signals() {
    let b = Berth::new();
    b.import_busybox("busybox");
    // berth ignores SIGPIPE, as every Rust program: the container must
    // not inherit that (`yes` would complain instead of dying quietly).
    let script = "grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -1";
    let want = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\ny\n";
    let args = ["run", "--rm", "busybox", "sh", "-c", script];
    let out = b.run(&args);
    assert_success(&out, &args);
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    b.ok(&["run", "-d", "--name", "sig", "busybox", "sleep", "60"]);
    let args = ["exec", "sig", "sh", "-c", script];
    let out = b.run(&args);
    assert_success(&out, &args);
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    b.ok(&["run", "--name", "sig2", "busybox", "sh", "-c", script]);
    assert_eq!(b.ok(&["logs", "sig2"]), want);
    b.ok(&["rm", "-f", "sig", "sig2"]);
}

/// Sets a directory's modification time `secs` into the past.
fn age(dir: &std::path::Path, secs: u64) {
    let then = std::time::SystemTime::now() - Duration::from_secs(secs);
    std::fs::File::open(dir)
        .unwrap()
        .set_modified(then)
        .unwrap();
}

#[test]
fn a_half_made_container_is_swept_but_a_running_rm_one_is_not() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let containers = b.root().join("containers");
    // What a berth killed while making a container leaves: a directory
    // with its overlay mounted, no record, no monitor.
    let orphan = containers.join("0".repeat(64));
    for sub in ["upper", "work", "merged", "lower"] {
        std::fs::create_dir_all(orphan.join(sub)).unwrap();
    }
    let options = format!(
        "lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work",
        orphan.display()
    );
    let merged = orphan.join("merged");
    assert!(std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&merged)
        .status()
        .unwrap()
        .success());
    age(&orphan, 120);
    // A foreground run --rm, as old: no record, no monitor, but running.
    let shared = b.path("shared");
    std::fs::create_dir(&shared).unwrap();
    let volume = format!("{}:/shared", shared.display());
    let script = "echo kept > /written; touch /shared/running; \
                  while [ ! -e /shared/done ]; do sleep 0.05; done; cat /written";
    let fg = b
        .command(&["run", "--rm", "-v", &volume, "busybox", "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the container to run", || shared.join("running").exists());
    let running: Vec<_> = list_dir(&containers)
        .into_iter()
        .filter(|d| *d != "0".repeat(64))
        .collect();
    assert_eq!(running.len(), 1, "{running:?}");
    age(&containers.join(&running[0]), 120);

    b.ok(&["create", "--name", "sweeper", "busybox", "true"]);
    assert!(!orphan.exists(), "the orphan is still there");
    assert_eq!(mounts_under(&orphan), 0);
    assert!(containers.join(&running[0]).exists());
    std::fs::write(shared.join("done"), "").unwrap();
    let out = fg.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\n");
    b.ok(&["rm", "sweeper"]);
    assert!(list_dir(&containers).is_empty());
}

#[test]
fn a_killed_foreground_run_rm_takes_its_container_with_it() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let shared = b.path("shared");
    std::fs::create_dir(&shared).unwrap();
    let volume = format!("{}:/shared", shared.display());
    let mut fg = b
        .command(&[
            "run",
            "--rm",
            "-v",
            &volume,
            "busybox",
            "sh",
            "-c",
            "touch /shared/running; sleep 100",
        ])
        .spawn()
        .unwrap();
    wait_for("the container to run", || shared.join("running").exists());
    let containers = b.root().join("containers");
    let id = list_dir(&containers).pop().unwrap();
    let procs = format!("/sys/fs/cgroup/pids/berth/{id}/cgroup.procs");
    assert!(!std::fs::read_to_string(&procs).unwrap().trim().is_empty());
    // Our own child, by its PID.
    fg.kill().unwrap();
    fg.wait().unwrap();
    wait_for("the container's processes to end", || {
        std::fs::read_to_string(&procs).map_or(true, |p| p.trim().is_empty())
    });
    // What berth left is swept once it is old enough.
    age(&containers.join(&id), 120);
    b.ok(&["create", "--name", "sweeper", "busybox", "true"]);
    assert!(!containers.join(&id).exists());
    assert!(cgroup_dirs(&id).is_empty(), "{:?}", cgroup_dirs(&id));
    assert_eq!(mounts_under(&containers.join(&id)), 0);
    b.ok(&["rm", "sweeper"]);
}
