//! Test harness: runs the real `berth` binary against a temporary store,
//! and builds image fixtures offline (from Debian's busybox-static, or
//! from bytes the test writes).

#![allow(dead_code)] // each test file uses its own subset

pub mod registry;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

pub const BUSYBOX: &str = "/bin/busybox";

/// A temporary berth store, removed (with everything under it) on drop.
pub struct Berth {
    pub dir: TempDir,
}

/// Whatever a test leaves running in its store (it failed half-way) is
/// removed with the store: its containers (and so their monitors and
/// processes, by berth's own `rm -f`), then any mount under it.
impl Drop for Berth {
    fn drop(&mut self) {
        let containers = self.root().join("containers");
        if std::fs::read_dir(&containers).is_ok_and(|mut d| d.next().is_some()) {
            if let Ok(out) = self.command(&["ps", "-aq", "--no-trunc"]).output() {
                for id in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = self.command(&["rm", "-f", id]).output();
                }
            }
            // Containers without a record (a foreground `run --rm` whose
            // berth a failing test left or killed): their cgroups.
            for entry in std::fs::read_dir(&containers)
                .into_iter()
                .flatten()
                .flatten()
            {
                remove_container_cgroups(&entry.file_name().to_string_lossy());
            }
        }
        let prefix = self.dir.path().display().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .map(String::from)
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

/// Ends the processes in container `id`'s cgroups (the test's container:
/// berth's own subtree, by PID) and removes the cgroups.
fn remove_container_cgroups(id: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let dir = h.path().join("berth").join(id);
        let procs = dir.join("cgroup.procs");
        for _ in 0..100 {
            let pids = std::fs::read_to_string(&procs).unwrap_or_default();
            if pids.trim().is_empty() {
                break;
            }
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

impl Berth {
    pub fn new() -> Self {
        Berth {
            dir: tempfile::Builder::new()
                .prefix("berth-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A scratch path beside the store, for the test's own files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("--root").arg(self.root()).args(args);
        c.env_remove("BERTH_ROOT");
        // Registry settings and credentials of this test only; no proxy
        // between berth and the test's registries.
        c.env("BERTH_CONFIG_FILE", self.path("config.json"))
            .env("BERTH_AUTH_FILE", self.path("auth.json"));
        for proxy in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            c.env_remove(proxy);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run berth")
    }

    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait berth")
    }

    /// Runs berth, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&out, args);
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs berth, asserts failure, returns (exit code, stderr).
    pub fn fail(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "berth {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Imports the busybox rootfs as `name`, returns the image ID.
    pub fn import_busybox(&self, name: &str) -> String {
        let tar = self.path(&format!("rootfs-{}.tar", name.replace(['/', ':'], "_")));
        std::fs::write(&tar, busybox_rootfs()).unwrap();
        self.ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            tar.to_str().unwrap(),
            name,
        ])
        .trim()
        .to_string()
    }

    /// Layer directories in the store.
    pub fn layer_dirs(&self) -> Vec<String> {
        list_dir(&self.root().join("layers"))
    }

    pub fn blobs(&self) -> Vec<String> {
        list_dir(&self.root().join("blobs/sha256"))
    }
}

pub fn list_dir(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "berth {args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tar of a minimal root filesystem: busybox-static and a few applet
/// links, /etc/passwd, /tmp.
pub fn busybox_rootfs() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("{BUSYBOX}: {e} (install Debian's busybox-static)"));
    let mut b = TarBuilder::new();
    b.dir("bin", 0o755);
    b.file("bin/busybox", &busybox, 0o755);
    for applet in [
        "sh", "ls", "cat", "echo", "true", "sleep", "tty", "stty", "id", "mkdir", "mount",
        "unshare", "grep", "head", "wc", "dd",
    ] {
        b.symlink(&format!("bin/{applet}"), "busybox");
    }
    b.dir("etc", 0o755);
    b.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
    b.dir("tmp", 0o1777);
    b.finish()
}

/// Writes tar archives entry by entry, including ones no well-behaved
/// tool would write.
pub struct TarBuilder {
    inner: tar::Builder<Vec<u8>>,
}

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder {
            inner: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// Appends with the name written raw, so `..` and absolute names pass.
    pub fn raw(&mut self, mut h: tar::Header, name: &str, data: &[u8]) -> &mut Self {
        let field = &mut h.as_old_mut().name;
        assert!(name.len() < field.len());
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.inner.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.raw(
            Self::header(tar::EntryType::Regular, mode, data.len() as u64),
            name,
            data,
        )
    }

    pub fn file_owned(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.raw(h, name, data)
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(Self::header(tar::EntryType::Directory, mode, 0), name, &[])
    }

    fn link(&mut self, kind: tar::EntryType, name: &str, target: &str) -> &mut Self {
        let mut h = Self::header(kind, 0o777, 0);
        let field = &mut h.as_old_mut().linkname;
        field.fill(0);
        field[..target.len()].copy_from_slice(target.as_bytes());
        self.raw(h, name, &[])
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Symlink, name, target)
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Link, name, target)
    }

    pub fn device(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = Self::header(kind, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.raw(h, name, &[])
    }

    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.inner
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let inner = std::mem::replace(&mut self.inner, tar::Builder::new(Vec::new()));
        inner.into_inner().unwrap()
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use std::process::Command as C;
    // The test's own digest, computed by a tool other than berth.
    let mut child = C::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A docker-archive (legacy `docker save` layout) with one image of the
/// given uncompressed layers, tagged `tag`.
pub fn docker_archive(layers: &[Vec<u8>], tag: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-02T03:04:05Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().enumerate().map(|(i, _)| serde_json::json!({"created": "2026-01-02T03:04:05Z", "created_by": format!("layer {i}")})).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", sha256_hex(&config));
    let mut b = TarBuilder::new();
    let mut layer_paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let dir = format!("layer{i}");
        b.dir(&dir, 0o755);
        b.file(&format!("{dir}/layer.tar"), l, 0o644);
        layer_paths.push(format!("{dir}/layer.tar"));
    }
    b.file(&config_name, &config, 0o644);
    let manifest =
        serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": layer_paths}]);
    b.file(
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
        0o644,
    );
    b.finish()
}

/// A layer holding one file of `size` pseudo-random bytes.
pub fn random_layer(name: &str, size: usize, seed: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(size);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    let mut b = TarBuilder::new();
    b.file(name, &data, 0o644);
    b.finish()
}
