//! pull, push, login and logout against Debian's docker-registry on
//! 127.0.0.1, with images put there by skopeo, and through a proxy that
//! plays a token service or breaks the traffic.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::registry::{oci_index_layout, Mode, Proxy, Registry};
use common::*;

/// A docker-archive of `layers` written beside the store, as a skopeo source.
fn archive(b: &Berth, name: &str, layers: &[Vec<u8>]) -> String {
    let path = b.path(&format!("{name}.tar"));
    std::fs::write(&path, docker_archive(layers, &format!("{name}:latest"))).unwrap();
    format!("docker-archive:{}", path.display())
}

/// The busybox rootfs as a skopeo source.
fn busybox_archive(b: &Berth) -> String {
    archive(b, "busybox", &[busybox_rootfs()])
}

fn layers_of(b: &Berth, reg: &Registry, reference: &str) -> Vec<String> {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{reference}", reg.host()))
        .output()
        .unwrap();
    let _ = b;
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn inspect(b: &Berth, name: &str, format: &str) -> String {
    b.ok(&["image", "inspect", "--format", format, name])
        .trim()
        .to_string()
}

/// Every blob in the store hashes to its name: nothing corrupt is visible.
fn assert_blobs_verified(b: &Berth) {
    for hex in b.blobs() {
        let bytes = std::fs::read(b.root().join("blobs/sha256").join(&hex)).unwrap();
        assert_eq!(sha256_hex(&bytes), hex, "a blob does not match its name");
    }
}

#[test]
fn pull_gzip_and_zstd_images_from_a_registry() {
    let reg = Registry::start();
    let b = Berth::new();
    let src = archive(
        &b,
        "app",
        &[random_layer("a", 300_000, 1), random_layer("b", 200_000, 2)],
    );
    reg.skopeo_copy(&src, "team/app:1", &[]);
    let zsrc = archive(&b, "zapp", &[random_layer("z", 100_000, 3)]);
    reg.skopeo_copy(&zsrc, "team/zapp:1", &["--dest-compress-format", "zstd"]);

    let name = format!("{}/team/app:1", reg.host());
    let out = b.ok(&["pull", &name]);
    let digest = reg.skopeo_digest("team/app:1");
    assert!(out.starts_with("1: Pulling from team/app\n"), "{out}");
    assert_eq!(out.matches("Pull complete").count(), 2, "{out}");
    assert!(out.contains(&format!("Digest: {digest}\n")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}\n")),
        "{out}"
    );
    assert!(out.ends_with(&format!("{name}\n")), "{out}");
    assert_eq!(b.layer_dirs().len(), 2);
    assert_eq!(
        inspect(&b, &name, "{{json .RepoDigests}}"),
        format!(r#"["{}/team/app@{digest}"]"#, reg.host())
    );
    // The compressed blobs are kept as the registry sent them.
    for layer in layers_of(&b, &reg, "team/app:1") {
        assert!(b.blobs().contains(&layer[7..].to_string()));
    }
    let again = b.ok(&["pull", &name]);
    assert!(again.contains(&format!("Status: Image is up to date for {name}")));

    let zname = format!("{}/team/zapp:1", reg.host());
    b.ok(&["pull", "-q", &zname]);
    let zlayer = &layers_of(&b, &reg, "team/zapp:1")[0][7..];
    let zblob = std::fs::read(b.root().join("blobs/sha256").join(zlayer)).unwrap();
    assert_eq!(&zblob[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a zstd layer");
    assert_eq!(b.layer_dirs().len(), 3);
    let files = b.root().join("layers");
    assert!(std::fs::read_dir(&files)
        .unwrap()
        .any(|e| e.unwrap().path().join("diff/z").is_file()));
    assert_blobs_verified(&b);

    // By digest: untagged, listed by repository, found by name@digest.
    let c = Berth::new();
    let by_digest = format!("{}/team/app@{digest}", reg.host());
    let out = c.ok(&["pull", &by_digest]);
    assert!(out.ends_with(&format!("{by_digest}\n")), "{out}");
    let listed = c.ok(&["images", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}"]);
    assert_eq!(listed, format!("{}/team/app <none> {digest}\n", reg.host()));
    assert_eq!(
        inspect(&c, &by_digest, "{{.Id}}"),
        inspect(&b, &name, "{{.Id}}")
    );
}

#[test]
fn an_index_resolves_to_this_machines_platform() {
    let reg = Registry::start();
    let b = Berth::new();
    let layer = |arch: &str| {
        let mut t = TarBuilder::new();
        t.file("arch", arch.as_bytes(), 0o644);
        t.finish()
    };
    let layout = b.path("multi");
    oci_index_layout(
        &layout,
        &[
            ("linux", "arm64", layer("arm64")),
            ("linux", "amd64", layer("amd64")),
        ],
    );
    reg.skopeo_copy(
        &format!("oci:{}:multi", layout.display()),
        "multi:1",
        &["--all"],
    );
    let name = format!("{}/multi:1", reg.host());
    let index_digest = reg.skopeo_digest("multi:1");
    let host_arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    let out = b.ok(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    assert_eq!(inspect(&b, &name, "{{.Architecture}}"), host_arch);
    assert_eq!(
        inspect(&b, &name, "{{json .RepoDigests}}"),
        format!(r#"["{}/multi@{index_digest}"]"#, reg.host())
    );

    let c = Berth::new();
    c.ok(&["pull", "--platform", "linux/arm64", &name]);
    assert_eq!(inspect(&c, &name, "{{.Architecture}}"), "arm64");

    let (code, err) = c.fail(&["pull", "--platform", "linux/s390x", &name]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no matching manifest for linux/s390x") && err.contains("multi:1"),
        "{err}"
    );
}

#[test]
fn push_then_pull_back_keeps_the_digest() {
    let reg = Registry::start();
    let b = Berth::new();
    let name = format!("{}/pushed:1", reg.host());
    let id = b.import_busybox(&name);
    let out = b.ok(&["push", &name]);
    assert!(
        out.starts_with(&format!(
            "The push refers to repository [{}/pushed]\n",
            reg.host()
        )),
        "{out}"
    );
    assert!(out.contains(": Pushed\n"), "{out}");
    let digest = reg.skopeo_digest("pushed:1");
    assert!(
        out.contains(&format!("1: digest: {digest} size: ")),
        "{out}"
    );
    assert!(b.ok(&["push", &name]).contains(": Layer already exists\n"));

    // Another repository of the same registry: the layer is mounted.
    let other = format!("{}/team/other:2", reg.host());
    b.ok(&["tag", &name, &other]);
    let out = b.ok(&["push", &other]);
    assert!(out.contains(": Mounted from pushed\n"), "{out}");
    assert_eq!(reg.skopeo_digest("team/other:2"), digest);

    let c = Berth::new();
    c.ok(&["pull", &other]);
    assert_eq!(inspect(&c, &other, "{{.Id}}"), id);
    assert_eq!(
        inspect(&c, &other, "{{json .RepoDigests}}"),
        format!(r#"["{}/team/other@{digest}"]"#, reg.host())
    );

    // Pulled from one registry, pushed to another: the same digest.
    let second = Registry::start();
    let moved = format!("{}/moved:1", second.host());
    c.ok(&["tag", &other, &moved]);
    let out = c.ok(&["push", &moved]);
    assert!(out.contains(&format!("1: digest: {digest} ")), "{out}");
    assert_eq!(second.skopeo_digest("moved:1"), digest);

    let (code, err) = b.fail(&["push", &format!("{}/never:1", reg.host())]);
    assert_eq!(code, 1);
    assert!(
        err.contains("An image does not exist locally with the tag"),
        "{err}"
    );
}

#[test]
fn basic_auth_login_pull_logout() {
    let reg = Registry::with_basic_auth("alice", "s3cret");
    let b = Berth::new();
    reg.skopeo_copy(
        &busybox_archive(&b),
        "private/bb:1",
        &["--dest-creds", "alice:s3cret"],
    );
    let name = format!("{}/private/bb:1", reg.host());
    let (code, err) = b.fail(&["pull", &name]);
    assert_eq!(code, 1);
    assert!(
        err.contains("access denied") && err.contains("berth login"),
        "{err}"
    );

    let login = |password: &str| {
        b.run_with_stdin(
            &["login", "-u", "alice", "--password-stdin", &reg.host()],
            format!("{password}\n").as_bytes(),
        )
    };
    let wrong = login("wrong");
    assert_eq!(wrong.status.code(), Some(1));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(
        !b.path("auth.json").exists(),
        "nothing stored for a failed login"
    );

    let right = login("s3cret");
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&right.stdout), "Login Succeeded\n");
    let auth = std::fs::read_to_string(b.path("auth.json")).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&auth).unwrap();
    assert_eq!(
        stored["auths"][reg.host()]["auth"],
        "YWxpY2U6czNjcmV0",
        "base64 of alice:s3cret, as docker stores it"
    );
    let mode = std::fs::metadata(b.path("auth.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    b.ok(&["pull", &name]);
    assert_eq!(
        b.ok(&["logout", &reg.host()]),
        format!("Removing login credentials for {}\n", reg.host())
    );
    b.ok(&["rmi", &name]);
    b.fail(&["pull", &name]);
}

#[test]
fn failures_name_the_image_and_the_registry() {
    let reg = Registry::start();
    let b = Berth::new();
    reg.skopeo_copy(&busybox_archive(&b), "there:1", &[]);
    let host = reg.host();
    let cases = [
        (
            format!("{host}/nowhere:1"),
            format!("repository {host}/nowhere:1 not found on {host}"),
        ),
        (
            format!("{host}/there:nope"),
            format!("manifest for {host}/there:nope not found on {host}"),
        ),
        (
            "127.0.0.1:1/x:1".to_string(),
            "registry 127.0.0.1:1 is unreachable: Connection refused".to_string(),
        ),
        (
            format!("{host}/UPPER:1"),
            "invalid reference format".to_string(),
        ),
    ];
    for (name, want) in cases {
        let (code, err) = b.fail(&["pull", &name]);
        assert!(code == 1 || code == 125, "{name}: exit {code}");
        assert!(err.contains(&want), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
    }
    assert_eq!(b.ok(&["images", "-q"]), "");
    assert!(b.layer_dirs().is_empty());
}

#[test]
fn docker_hub_names_are_pulled_through_the_configured_mirror() {
    let reg = Registry::start();
    let b = Berth::new();
    reg.skopeo_copy(&busybox_archive(&b), "library/busybox:latest", &[]);
    std::fs::write(
        b.path("config.json"),
        format!(r#"{{"registry-mirrors": ["http://{}"]}}"#, reg.host()),
    )
    .unwrap();
    // `run` pulls a missing image, its progress on stderr.
    let c = Berth::new();
    std::fs::copy(b.path("config.json"), c.path("config.json")).unwrap();
    let (code, err) = c.fail(&["run", "--rm", "--pull", "never", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("No such image: busybox"), "{err}");
    let out = c
        .command(&["run", "--rm", "busybox", "echo", "pulled and ran"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pulled and ran\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("Unable to find image 'busybox:latest' locally\n")
            && err.contains("Pull complete"),
        "{err}"
    );
    let out = c
        .command(&["run", "--rm", "busybox", "true"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "present: no pull");
    // Missing, and no registry to get it from: one clear line.
    let d = Berth::new();
    let (code, err) = d.fail(&["run", "--rm", "127.0.0.1:1/nothing", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("registry 127.0.0.1:1 is unreachable"), "{err}");

    let out = b.ok(&["pull", "busybox"]);
    assert!(out.starts_with("Using default tag: latest\n"), "{out}");
    assert!(
        out.contains("Status: Downloaded newer image for busybox:latest"),
        "{out}"
    );
    assert!(out.ends_with("docker.io/library/busybox:latest\n"), "{out}");
    assert_eq!(
        b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "busybox:latest\n"
    );
    let out = b.ok(&["run", "--rm", "busybox", "echo", "from the mirror"]);
    assert_eq!(out, "from the mirror\n");
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let reg = Registry::start();
    let b = Berth::new();
    reg.skopeo_copy(
        &archive(&b, "c", &[random_layer("c", 200_000, 7)]),
        "corrupt:1",
        &[],
    );
    let layer = layers_of(&b, &reg, "corrupt:1").remove(0);
    let proxy = Proxy::start(reg.port, Mode::Corrupt(layer.clone()));
    let (code, err) = b.fail(&["pull", &format!("{}/corrupt:1", proxy.host())]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("does not match its digest") && err.contains(&layer),
        "{err}"
    );
    assert_eq!(b.ok(&["images", "-q"]), "");
    assert!(b.layer_dirs().is_empty(), "no layer from corrupt bytes");
    assert!(!b.blobs().contains(&layer[7..].to_string()));
    assert_blobs_verified(&b);
}

#[test]
fn a_manifest_of_an_unsupported_media_type_is_refused() {
    let reg = Registry::start();
    let b = Berth::new();
    reg.skopeo_copy(&busybox_archive(&b), "old:1", &[]);
    let schema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws";
    let proxy = Proxy::start(reg.port, Mode::ManifestType(schema1.into()));
    let (code, err) = b.fail(&["pull", &format!("{}/old:1", proxy.host())]);
    assert_eq!(code, 1);
    assert!(
        err.contains(schema1) && err.contains("a media type berth does not support"),
        "{err}"
    );
    assert_eq!(b.ok(&["images", "-q"]), "");
}

#[test]
fn a_connection_dropped_mid_blob_is_retried() {
    let reg = Registry::start();
    let b = Berth::new();
    reg.skopeo_copy(
        &archive(&b, "d", &[random_layer("d", 400_000, 9)]),
        "drop:1",
        &[],
    );
    let layer = layers_of(&b, &reg, "drop:1").remove(0);
    let proxy = Proxy::start(
        reg.port,
        Mode::Drop {
            digest: layer.clone(),
            bytes: 5000,
            times: 2,
        },
    );
    let name = format!("{}/drop:1", proxy.host());
    let out = b.ok(&["pull", &name]);
    assert!(out.contains("Retrying"), "{out}");
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(proxy.blob_requests(), 4, "config + 2 dropped + 1 whole");
    assert_blobs_verified(&b);

    // A registry that never finishes: a clear error after the retries.
    let c = Berth::new();
    proxy.set_mode(Mode::Drop {
        digest: layer,
        bytes: 5000,
        times: 100,
    });
    let (code, err) = c.fail(&["pull", &name]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unreachable") && err.contains("tried 5 times"),
        "{err}"
    );
    assert_eq!(c.ok(&["images", "-q"]), "");
}

#[test]
fn the_bearer_token_flow_fetches_one_token_per_scope() {
    let reg = Registry::start();
    let b = Berth::new();
    reg.skopeo_copy(
        &archive(
            &b,
            "t",
            &[random_layer("t1", 50_000, 4), random_layer("t2", 50_000, 5)],
        ),
        "tokened/app:1",
        &[],
    );
    reg.skopeo_copy(&busybox_archive(&b), "tokened/bb:1", &[]);
    let proxy = Proxy::start(reg.port, Mode::Token);
    b.ok(&["pull", &format!("{}/tokened/app:1", proxy.host())]);
    assert_eq!(
        proxy.token_requests(),
        1,
        "one token for the repository's pull scope"
    );
    b.ok(&["pull", &format!("{}/tokened/bb:1", proxy.host())]);
    assert_eq!(proxy.token_requests(), 2);
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 2);
}

#[test]
fn two_concurrent_pulls_of_one_image_both_succeed() {
    let reg = Registry::start();
    let b = Berth::new();
    reg.skopeo_copy(
        &archive(
            &b,
            "cc",
            &[
                random_layer("c1", 500_000, 11),
                random_layer("c2", 500_000, 12),
            ],
        ),
        "concurrent:1",
        &[],
    );
    let name = format!("{}/concurrent:1", reg.host());
    let children: Vec<_> = (0..2)
        .map(|_| {
            b.command(&["pull", "-q", &name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(b.layer_dirs().len(), 2);
}

#[test]
fn a_pull_killed_mid_blob_leaves_nothing_and_the_next_one_finishes() {
    let reg = Registry::start();
    let b = Berth::new();
    reg.skopeo_copy(
        &archive(
            &b,
            "k",
            &[
                random_layer("k1", 100_000, 21),
                random_layer("k2", 800_000, 22),
            ],
        ),
        "killed:1",
        &[],
    );
    let big = layers_of(&b, &reg, "killed:1").remove(1);
    let proxy = Proxy::start(
        reg.port,
        Mode::Stall {
            digest: big,
            bytes: 100_000,
        },
    );
    let name = format!("{}/killed:1", proxy.host());
    let mut child = b
        .command(&["pull", &name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the stalled blob has been asked for, then a little more.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.blob_requests() < 3 {
        assert!(Instant::now() < deadline, "the pull never reached the blob");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap(); // SIGKILL, by the child's PID
    child.wait().unwrap();
    assert_eq!(b.ok(&["images", "-q"]), "");
    assert_blobs_verified(&b);

    proxy.set_mode(Mode::Pass);
    let out = b.ok(&["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(b.layer_dirs().len(), 2);
    let tmp = b.root().join("tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0, "scratch swept");
    assert_blobs_verified(&b);
}

#[test]
fn a_tls_registry_is_trusted_through_certs_d_or_as_insecure() {
    let (reg, ca) = Registry::with_tls();
    let b = Berth::new();
    reg.skopeo_copy(&busybox_archive(&b), "secure/bb:1", &[]);
    let name = format!("{}/secure/bb:1", reg.host());

    let (code, err) = b.fail(&["pull", &name]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("registry {} is unreachable", reg.host()))
            && err.contains("invalid peer certificate")
            && err.contains("certs.d"),
        "{err}"
    );

    // docker's layout: certs.d/HOST:PORT/ca.crt beside the config file.
    let certs = b.path(&format!("certs.d/{}", reg.host()));
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), &ca).unwrap();
    b.ok(&["pull", &name]);

    let c = Berth::new();
    std::fs::write(
        c.path("config.json"),
        format!(r#"{{"insecure-registries": ["{}"]}}"#, reg.host()),
    )
    .unwrap();
    c.ok(&["pull", &name]);
}

#[test]
fn pull_all_tags_and_push_all_tags() {
    let reg = Registry::start();
    let b = Berth::new();
    let repo = format!("{}/tags", reg.host());
    b.import_busybox(&format!("{repo}:one"));
    b.ok(&["tag", &format!("{repo}:one"), &format!("{repo}:two")]);
    let out = b.ok(&["push", "--all-tags", &repo]);
    assert!(
        out.contains("one: digest: ") && out.contains("two: digest: "),
        "{out}"
    );

    let c = Berth::new();
    let out = c.ok(&["pull", "--all-tags", &repo]);
    assert!(
        out.contains(&format!("{repo}:one\n")) && out.contains(&format!("{repo}:two\n")),
        "{out}"
    );
    assert_eq!(c.ok(&["images", "--format", "{{.Tag}}"]), "one\ntwo\n");
    let (code, err) = c.fail(&["pull", "--all-tags", &format!("{repo}:one")]);
    assert_eq!(code, 125);
    assert!(err.contains("tag can't be used with --all-tags"), "{err}");
}
