//! containerd (Debian's, with its runc shim) runs a container through
//! berth-runtime: `ctr run --runc-binary berth-runtime`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A containerd of the test's own: its root, state, socket and config in a
/// temporary directory; stopped (by PID) and unmounted on drop.
struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("berth-containerd-")
            .tempdir()
            .unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{d}/containerd.sock\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable = true\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("containerd.log")).unwrap())
            .spawn()
            .expect("containerd (Debian's containerd package) must be installed");
        let c = Containerd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.path().join("containerd.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Anything containerd left mounted under its root.
        let prefix = self.dir.path().display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = rustix::mount::unmount(p, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn sha256(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// A docker-archive of a busybox image, made here from Debian's busybox-static.
fn busybox_archive(path: &Path) {
    let mut layer = tar::Builder::new(Vec::new());
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static");
    let mut add = |name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        layer.append_data(&mut h, name, data).unwrap();
    };
    for dir in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        add(dir, tar::EntryType::Directory, &[], None, 0o755);
    }
    add(
        "bin/busybox",
        tar::EntryType::Regular,
        &busybox,
        None,
        0o755,
    );
    for applet in ["sh", "echo", "cat", "hostname"] {
        add(
            &format!("bin/{applet}"),
            tar::EntryType::Symlink,
            &[],
            Some("busybox"),
            0o777,
        );
    }
    let layer = layer.into_inner().unwrap();
    let diff = sha256(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]}
    }))
    .unwrap();
    let config_name = format!("{}.json", sha256(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([{"Config": config_name, "RepoTags": ["berth-test/busybox:latest"], "Layers": ["layer.tar"]}])).unwrap();
    let mut archive = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in [
        ("layer.tar", &layer),
        (config_name.as_str(), &config),
        ("manifest.json", &manifest),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        archive.append_data(&mut h, name, &data[..]).unwrap();
    }
    archive.into_inner().unwrap().flush().unwrap();
}

#[test]
fn containerd_runs_a_container_through_berth_runtime() {
    let ctd = Containerd::start();
    let archive: PathBuf = ctd.dir.path().join("busybox.tar");
    busybox_archive(&archive);
    let import = ctd.ctr(&["image", "import", archive.to_str().unwrap()]);
    assert!(
        import.status.success(),
        "import: {}",
        String::from_utf8_lossy(&import.stderr)
    );

    let runtime = env!("CARGO_BIN_EXE_berth-runtime");
    let id = format!("ctr-{}", std::process::id());
    let cgroup = format!("berth/test-{id}");
    let out = ctd.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        runtime,
        "--cgroup",
        &cgroup,
        "docker.io/berth-test/busybox:latest",
        &id,
        "sh",
        "-c",
        "echo hello from pid $$; exit 7",
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "ctr run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from pid 1\n");
    assert!(
        !Path::new("/sys/fs/cgroup/pids").join(&cgroup).exists(),
        "cgroup left behind"
    );
}
