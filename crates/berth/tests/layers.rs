//! Layer unpacking through the real binary: what a layer may carry is
//! kept, and hostile layers are refused with nothing written outside.

mod common;
use common::*;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn import(b: &Berth, tar: &[u8], name: &str) -> std::process::Output {
    let path = b.path(&format!("{name}.tar"));
    std::fs::write(&path, tar).unwrap();
    b.run(&["import", path.to_str().unwrap(), name])
}

fn upper_dir(b: &Berth, name: &str) -> PathBuf {
    PathBuf::from(
        b.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.GraphDriver.Data.UpperDir}}",
            name,
        ])
        .trim(),
    )
}

#[test]
fn keeps_what_a_layer_carries() {
    let b = Berth::new();
    let mut t = TarBuilder::new();
    t.dir("d", 0o750);
    t.file_owned("d/f", b"content", 0o4755, 1000, 1001, 1_600_000_000);
    t.symlink("s", "d/f");
    t.hardlink("h", "d/f");
    t.device("null", tar::EntryType::Char, 1, 3);
    t.device("loop", tar::EntryType::Block, 7, 0);
    t.device("fifo", tar::EntryType::Fifo, 0, 0);
    t.file(".wh.gone", b"", 0o644);
    t.dir("o", 0o755);
    t.file("o/.wh..wh..opq", b"", 0o644);
    t.pax(&[("SCHILY.xattr.user.berth", b"yes")]);
    t.file("x", b"with xattr", 0o600);
    t.file("nested/deep/file", b"parents made on demand", 0o644);
    let out = import(&b, &t.finish(), "features");
    assert_success(&out, &["import"]);
    let up = upper_dir(&b, "features");

    let f = std::fs::metadata(up.join("d/f")).unwrap();
    assert_eq!(f.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!((f.uid(), f.gid()), (1000, 1001));
    assert_eq!(f.mtime(), 1_600_000_000);
    assert_eq!(
        std::fs::metadata(up.join("d"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o750
    );
    assert_eq!(
        std::fs::metadata(up.join("d")).unwrap().mtime(),
        1_700_000_000,
        "dir mtime set after its children"
    );
    assert_eq!(std::fs::read_link(up.join("s")).unwrap(), Path::new("d/f"));
    assert_eq!(
        std::fs::metadata(up.join("h")).unwrap().ino(),
        f.ino(),
        "hard link shares the inode"
    );
    let null = std::fs::metadata(up.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix_dev(1, 3));
    assert!(std::fs::metadata(up.join("loop"))
        .unwrap()
        .file_type()
        .is_block_device());
    assert!(std::fs::metadata(up.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    // Whiteouts become overlayfs whiteouts.
    let gone = std::fs::symlink_metadata(up.join("gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert!(!up.join(".wh.gone").exists());
    assert_eq!(
        getxattr(&up.join("o"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!up.join("o/.wh..wh..opq").exists());
    assert_eq!(
        getxattr(&up.join("x"), "user.berth").as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(
        std::fs::read(up.join("nested/deep/file")).unwrap(),
        b"parents made on demand"
    );
}

fn rustix_dev(major: u64, minor: u64) -> u64 {
    (major << 8) | minor
}

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new("getfattr")
        .args(["--only-values", "--absolute-names", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr (Debian's attr package)");
    out.status.success().then_some(out.stdout)
}

/// Asserts a hostile layer is refused with one error line containing
/// `expect`, leaves no image, layer or blob, and wrote nothing outside.
fn assert_refused(tar: &[u8], expect: &str, outside: &Path) {
    let b = Berth::new();
    let out = import(&b, tar, "hostile");
    assert!(!out.status.success(), "hostile layer was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "more than one error line: {err}"
    );
    assert!(
        b.ok(&["images", "-q", "-a"]).is_empty(),
        "an image appeared"
    );
    assert!(
        b.layer_dirs().is_empty(),
        "a layer appeared: {:?}",
        b.layer_dirs()
    );
    assert!(b.blobs().is_empty(), "blobs left: {:?}", b.blobs());
    assert!(
        list_dir(&b.root().join("tmp")).is_empty(),
        "staging left behind"
    );
    assert!(
        list_dir(outside).is_empty(),
        "something was written outside: {:?}",
        list_dir(outside)
    );
    assert!(!b.root().join("evil").exists() && !b.dir.path().join("evil").exists());
}

fn outside_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-outside-")
        .tempdir()
        .unwrap()
}

#[test]
fn refuses_dot_dot() {
    let o = outside_dir();
    let mut t = TarBuilder::new();
    t.file("ok", b"fine", 0o644);
    t.file("../../../evil", b"escaped", 0o644);
    assert_refused(&t.finish(), "contains '..'", o.path());
    let mut t = TarBuilder::new();
    t.file("a/../../evil", b"escaped", 0o644);
    assert_refused(&t.finish(), "contains '..'", o.path());
}

#[test]
fn refuses_absolute_paths() {
    let o = outside_dir();
    let mut t = TarBuilder::new();
    t.file(&format!("{}/evil", o.path().display()), b"escaped", 0o644);
    assert_refused(&t.finish(), "absolute path", o.path());
}

#[test]
fn refuses_writing_through_a_symlink() {
    let o = outside_dir();
    let mut t = TarBuilder::new();
    t.symlink("link", o.path().to_str().unwrap());
    t.file("link/evil", b"escaped", 0o644);
    assert_refused(&t.finish(), "symlink", o.path());
    // Relative targets that climb out are no different.
    let mut t = TarBuilder::new();
    t.symlink("up", "../../../../../../../../..");
    t.file(&format!("up{}/evil", o.path().display()), b"escaped", 0o644);
    assert_refused(&t.finish(), "symlink", o.path());
}

#[test]
fn refuses_hard_links_outside_the_layer() {
    let o = outside_dir();
    std::fs::create_dir_all(o.path().join("src")).unwrap();
    let secret = o.path().join("src/secret");
    std::fs::write(&secret, b"secret").unwrap();
    let check = |tar: Vec<u8>| {
        let b = Berth::new();
        let out = import(&b, &tar, "hostile");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("hard link target"), "{err}");
        assert!(b.layer_dirs().is_empty());
        assert_eq!(
            std::fs::metadata(&secret).unwrap().nlink(),
            1,
            "the secret got a new link"
        );
    };
    let mut t = TarBuilder::new();
    t.hardlink("h", secret.to_str().unwrap());
    check(t.finish());
    let mut t = TarBuilder::new();
    t.hardlink("h", "../../../../../../../../../etc/passwd");
    check(t.finish());
    // Through a symlink inside the layer.
    let mut t = TarBuilder::new();
    t.symlink("l", o.path().join("src").to_str().unwrap());
    t.hardlink("h", "l/secret");
    check(t.finish());
}

#[test]
fn refuses_a_symlink_replaced_by_a_directory() {
    let o = outside_dir();
    let mut t = TarBuilder::new();
    t.symlink("d", o.path().to_str().unwrap());
    t.dir("d", 0o755);
    t.file("d/evil", b"escaped", 0o644);
    assert_refused(&t.finish(), "replace a symlink with a directory", o.path());
}

#[test]
fn refuses_absurd_sizes_and_truncated_archives() {
    let o = outside_dir();
    // A header that claims two terabytes.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(2 << 40);
    h.set_mode(0o644);
    h.set_path("huge").unwrap();
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[0u8; 4096]);
    assert_refused(&tar, "header claims", o.path());

    // A real archive cut off in the middle of a file.
    let full = busybox_rootfs();
    assert_refused(&full[..full.len() / 2], "truncated or corrupt", o.path());
    // The same, gzipped and cut.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &full).unwrap();
    let gz = gz.finish().unwrap();
    assert_refused(&gz[..gz.len() / 2], "truncated or corrupt", o.path());
    // Not a tar at all.
    assert_refused(&[0x42u8; 10000], "truncated or corrupt", o.path());
}
