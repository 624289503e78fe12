//! save and load: round trips through berth itself and through skopeo
//! (the interop check), broken archives, concurrent loads, and a load
//! killed part way.

mod common;
use common::*;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(["--insecure-policy"])
        .args(args)
        .output()
        .expect("skopeo (Debian's skopeo package) must be installed for the interop tests");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn id_of(b: &Berth, name: &str) -> String {
    b.ok(&["image", "inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

#[test]
fn save_then_load_round_trips() {
    let a = Berth::new();
    let id = a.import_busybox("busybox");
    a.ok(&["tag", "busybox", "localhost:5000/me/busybox:v1"]);
    let file = a.path("saved.tar");
    a.ok(&[
        "save",
        "-o",
        file.to_str().unwrap(),
        "busybox",
        "localhost:5000/me/busybox:v1",
    ]);

    let b = Berth::new();
    let out = b.ok(&["load", "-i", file.to_str().unwrap()]);
    assert_eq!(
        out,
        "Loaded image: busybox:latest\nLoaded image: localhost:5000/me/busybox:v1\n"
    );
    assert_eq!(id_of(&b, "busybox"), id);
    assert_eq!(id_of(&b, "localhost:5000/me/busybox:v1"), id);
    let upper = b.ok(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "busybox"]);
    assert!(std::path::Path::new(upper.trim())
        .join("bin/busybox")
        .is_file());

    // Through a pipe too, and by ID (no tag recorded, as docker).
    let c = Berth::new();
    let saved = a.command(&["save", &id[7..19]]).output().unwrap();
    assert!(saved.status.success());
    let out = c.run_with_stdin(&["load"], &saved.stdout);
    assert_success(&out, &["load"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("Loaded image ID: {id}")
    );
    assert!(c.ok(&["images"]).contains("<none>"));
}

#[test]
fn saved_archive_reads_in_skopeo_both_ways_and_back() {
    let b = Berth::new();
    let id = b.import_busybox("busybox");
    let file = b.path("saved.tar");
    b.ok(&["save", "-o", file.to_str().unwrap(), "busybox"]);

    // skopeo reads berth's archive as docker's format and as an OCI layout.
    let docker: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("docker-archive:{}", file.display()),
    ]))
    .unwrap();
    let oci: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("oci-archive:{}", file.display()),
    ]))
    .unwrap();
    assert_eq!(docker["Layers"], oci["Layers"]);
    let config: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        &format!("docker-archive:{}", file.display()),
    ]))
    .unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));

    // skopeo rewrites it with gzip and zstd layers; berth loads both back
    // to the same image ID (the config, and so the diff IDs, are unchanged).
    for (compression, tag) in [("gzip", "gz"), ("zstd", "zst")] {
        let out = b.path(&format!("{tag}.tar"));
        skopeo(&[
            "copy",
            "--dest-compress",
            "--dest-compress-format",
            compression,
            &format!("docker-archive:{}", file.display()),
            &format!("oci-archive:{}:busybox:{tag}", out.display()),
        ]);
        let c = Berth::new();
        assert_eq!(
            c.ok(&["load", "-i", out.to_str().unwrap()]).trim(),
            format!("Loaded image: busybox:{tag}")
        );
        assert_eq!(id_of(&c, &format!("busybox:{tag}")), id);
        let media = c.ok(&[
            "inspect",
            "-f",
            "{{.Descriptor.digest}}",
            &format!("busybox:{tag}"),
        ]);
        // --format oci keeps the compressed blobs and the manifest byte for byte.
        let again = c.path("again.tar");
        c.ok(&[
            "save",
            "--format",
            "oci",
            "-o",
            again.to_str().unwrap(),
            &format!("busybox:{tag}"),
        ]);
        let inspected: serde_json::Value = serde_json::from_str(&skopeo(&[
            "inspect",
            &format!("oci-archive:{}", again.display()),
        ]))
        .unwrap();
        assert_eq!(inspected["Digest"].as_str().unwrap(), media.trim());
        // And back to docker's format, through skopeo, into berth again
        // (skopeo 1.9 converts no zstd layer to docker's format).
        if compression == "zstd" {
            continue;
        }
        let docker_tar = c.path("docker.tar");
        skopeo(&[
            "copy",
            &format!("oci-archive:{}", again.display()),
            &format!("docker-archive:{}:busybox:{tag}", docker_tar.display()),
        ]);
        let d = Berth::new();
        d.ok(&["load", "-i", docker_tar.to_str().unwrap()]);
        assert_eq!(id_of(&d, &format!("busybox:{tag}")), id);
    }
}

#[test]
fn broken_archives_are_refused_cleanly() {
    let b = Berth::new();
    // Not an image archive.
    let mut t = TarBuilder::new();
    t.file("hello.txt", b"hi", 0o644);
    let (code, err) = fail_load(&b, &t.finish());
    assert_eq!(code, 1);
    assert!(err.contains("not an image archive"), "{err}");

    // manifest.json naming a layer the archive lacks.
    let mut t = TarBuilder::new();
    t.file(
        "c.json",
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        0o644,
    );
    t.file(
        "manifest.json",
        br#"[{"Config":"c.json","RepoTags":["x:y"],"Layers":["missing/layer.tar"]}]"#,
        0o644,
    );
    let (_, err) = fail_load(&b, &t.finish());
    assert!(err.contains("missing/layer.tar"), "{err}");

    // A layer whose content does not match the config's diff ID.
    let good = docker_archive(&[random_layer("f", 100, 1)], "tampered:latest");
    let tampered = tamper(
        &good,
        &random_layer("f", 100, 1),
        &random_layer("f", 100, 2),
    );
    let (_, err) = fail_load(&b, &tampered);
    assert!(
        err.contains("uncompresses to") || err.contains("diff"),
        "{err}"
    );

    // An OCI blob whose bytes do not match its name.
    let mut t = TarBuilder::new();
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644);
    t.file(
        &format!("blobs/sha256/{}", "0".repeat(64)),
        b"not what the name says",
        0o644,
    );
    let (_, err) = fail_load(&b, &t.finish());
    assert!(err.contains("does not match its digest"), "{err}");

    // A truncated archive.
    let (_, err) = fail_load(&b, &good[..good.len() / 3]);
    assert!(!err.is_empty());

    assert!(b.ok(&["images", "-q", "-a"]).is_empty());
    assert!(b.layer_dirs().is_empty(), "{:?}", b.layer_dirs());
    assert!(b.blobs().is_empty(), "{:?}", b.blobs());
}

fn fail_load(b: &Berth, archive: &[u8]) -> (i32, String) {
    let out = b.run_with_stdin(&["load"], archive);
    assert!(!out.status.success(), "broken archive loaded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    (out.status.code().unwrap(), err)
}

/// Replaces the bytes of one layer inside an archive with another of the
/// same length.
fn tamper(archive: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let pos = archive
        .windows(from.len())
        .position(|w| w == from)
        .expect("layer in archive");
    let mut out = archive.to_vec();
    out[pos..pos + from.len()].copy_from_slice(to);
    out
}

#[test]
fn concurrent_loads_of_one_archive_both_succeed() {
    let b = Berth::new();
    let archive = docker_archive(
        &[random_layer("a", 2 << 20, 1), random_layer("b", 2 << 20, 2)],
        "twice:latest",
    );
    let file = b.path("archive.tar");
    std::fs::write(&file, &archive).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            b.command(&["load", "-i", file.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_success(&out, &["load"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "Loaded image: twice:latest"
        );
    }
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(b.layer_dirs().len(), 2);
    assert!(b.ok(&["info"]).contains("  Layers: 2"));
}

#[test]
fn a_load_killed_part_way_leaves_nothing_and_can_be_retried() {
    let archive = docker_archive(
        &[
            random_layer("a", 8 << 20, 1),
            random_layer("b", 8 << 20, 2),
            random_layer("c", 8 << 20, 3),
        ],
        "killed:latest",
    );
    for fraction in [10, 40, 70, 99] {
        let b = Berth::new();
        let mut child = b
            .command(&["load"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let cut = archive.len() * fraction / 100;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&archive[..cut]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        drop(stdin);

        assert!(
            b.ok(&["images", "-q", "-a"]).is_empty(),
            "half-loaded image visible at {fraction}%"
        );
        // The store is usable at once (no stale lock), and a retry completes.
        let file = b.path("archive.tar");
        std::fs::write(&file, &archive).unwrap();
        assert_eq!(
            b.ok(&["load", "-i", file.to_str().unwrap()]).trim(),
            "Loaded image: killed:latest"
        );
        assert_eq!(b.layer_dirs().len(), 3);
        assert!(
            list_dir(&b.root().join("tmp")).is_empty(),
            "leftovers not swept: {:?}",
            list_dir(&b.root().join("tmp"))
        );
        b.ok(&["rmi", "killed"]);
        assert!(
            b.blobs().is_empty(),
            "blobs of the killed load remain: {:?}",
            b.blobs()
        );
    }
}
