//! Image commands on images made offline: import, images, inspect,
//! history, tag, rmi, prune, info.

mod common;
use common::*;

use std::path::Path;

fn inspect(b: &Berth, name: &str) -> serde_json::Value {
    let out = b.ok(&["image", "inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    v[0].clone()
}

#[test]
fn import_makes_a_one_layer_image_with_changes() {
    let b = Berth::new();
    let tar = b.path("rootfs.tar");
    std::fs::write(&tar, busybox_rootfs()).unwrap();
    let out = b.ok(&[
        "import",
        "-c",
        r#"CMD ["sh", "-c", "echo hi"]"#,
        "-c",
        "ENV GREETING=hello",
        "-c",
        "WORKDIR /tmp",
        "-c",
        "ENTRYPOINT [\"/bin/busybox\"]",
        "-m",
        "first import",
        tar.to_str().unwrap(),
        "example/busybox:v1",
    ]);
    let id = out.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");

    let img = inspect(&b, "example/busybox:v1");
    assert_eq!(img["Id"], id);
    assert_eq!(img["RepoTags"], serde_json::json!(["example/busybox:v1"]));
    assert_eq!(
        img["Config"]["Cmd"],
        serde_json::json!(["sh", "-c", "echo hi"])
    );
    assert_eq!(img["Config"]["Env"], serde_json::json!(["GREETING=hello"]));
    assert_eq!(img["Config"]["WorkingDir"], "/tmp");
    assert_eq!(
        img["Config"]["Entrypoint"],
        serde_json::json!(["/bin/busybox"])
    );
    assert_eq!(img["Comment"], "first import");
    assert_eq!(img["Os"], "linux");
    assert_eq!(img["RootFS"]["Type"], "layers");
    assert_eq!(img["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    // The image ID is the digest of the config blob in the store.
    let config = std::fs::read(b.root().join("blobs/sha256").join(&id[7..])).unwrap();
    assert_eq!(sha256_hex(&config), id[7..]);
}

#[test]
fn import_reads_stdin_and_compressed_tarballs() {
    let b = Berth::new();
    let raw = busybox_rootfs();
    let plain = b.run_with_stdin(&["import", "-", "plain"], &raw);
    assert_success(&plain, &["import", "-"]);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let gz_path = b.path("rootfs.tar.whatever");
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();
    b.ok(&["import", gz_path.to_str().unwrap(), "gzipped"]);

    let zst_path = b.path("rootfs.bin");
    std::fs::write(&zst_path, zstd::encode_all(&raw[..], 3).unwrap()).unwrap();
    b.ok(&["import", zst_path.to_str().unwrap(), "zstded"]);

    // Same content, whatever the compression: one layer (the diff ID is of
    // the uncompressed tar), shared by all three images.
    let layers: Vec<String> = ["plain", "gzipped", "zstded"]
        .iter()
        .map(|n| {
            inspect(&b, n)["RootFS"]["Layers"][0]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(layers.windows(2).all(|w| w[0] == w[1]), "{layers:?}");
    assert_eq!(layers[0], format!("sha256:{}", sha256_hex(&raw)));
    assert_eq!(b.layer_dirs().len(), 1);
}

#[test]
fn graph_driver_dirs_exist_and_hold_the_files() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let img = inspect(&b, "busybox");
    assert_eq!(img["GraphDriver"]["Name"], "overlay2");
    let data = &img["GraphDriver"]["Data"];
    for key in ["MergedDir", "UpperDir", "WorkDir"] {
        let p = data[key].as_str().unwrap();
        assert!(Path::new(p).is_dir(), "{key} {p} is not a directory");
        assert!(p.starts_with(b.root().to_str().unwrap()));
    }
    let upper = Path::new(data["UpperDir"].as_str().unwrap());
    assert_eq!(
        std::fs::read(upper.join("bin/busybox")).unwrap(),
        std::fs::read(BUSYBOX).unwrap()
    );
    assert_eq!(
        std::fs::read_link(upper.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(img["Size"].as_u64().unwrap() >= std::fs::metadata(BUSYBOX).unwrap().len());
}

#[test]
fn inspect_has_dockers_shape() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let img = inspect(&b, "busybox");
    // Field names and order as docker 20.10 prints them (../shared/reference),
    // plus docker 25's Descriptor.
    let keys: Vec<&str> = img
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "Id",
            "RepoTags",
            "RepoDigests",
            "Parent",
            "Comment",
            "Created",
            "Container",
            "ContainerConfig",
            "DockerVersion",
            "Author",
            "Config",
            "Architecture",
            "Os",
            "Size",
            "VirtualSize",
            "GraphDriver",
            "RootFS",
            "Metadata",
            "Descriptor"
        ]
    );
    let config_keys: Vec<&str> = img["Config"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        config_keys,
        [
            "Hostname",
            "Domainname",
            "User",
            "AttachStdin",
            "AttachStdout",
            "AttachStderr",
            "Tty",
            "OpenStdin",
            "StdinOnce",
            "Env",
            "Cmd",
            "Image",
            "Volumes",
            "WorkingDir",
            "Entrypoint",
            "OnBuild",
            "Labels"
        ]
    );
    assert!(img["Created"].as_str().unwrap().ends_with('Z'));
    assert!(img["Metadata"]["LastTagTime"]
        .as_str()
        .unwrap()
        .starts_with("20"));
    // --format takes Go templates.
    let id = img["Id"].as_str().unwrap();
    assert_eq!(
        b.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"])
            .trim(),
        id
    );
    assert_eq!(
        b.ok(&["inspect", "--format", "{{json .Config.Cmd}}", "busybox"])
            .trim(),
        r#"["sh"]"#
    );
    assert_eq!(
        b.ok(&[
            "inspect",
            "--format",
            "{{.GraphDriver.Name}} {{.Os}}",
            "busybox"
        ])
        .trim(),
        "overlay2 linux"
    );
    let line: serde_json::Value =
        serde_json::from_str(&b.ok(&["inspect", "-f", "{{json .}}", "busybox"])).unwrap();
    assert_eq!(line["Id"], id);
}

#[test]
fn names_ids_and_prefixes_resolve_as_in_docker() {
    let b = Berth::new();
    let id = b.import_busybox("busybox");
    let hex = &id[7..];
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        "docker.io/library/busybox:latest",
        "index.docker.io/library/busybox",
        &id,
        hex,
        &hex[..12],
        &hex[..4],
        &format!("sha256:{}", &hex[..12]),
    ] {
        assert_eq!(
            b.ok(&["image", "inspect", "-f", "{{.Id}}", name]).trim(),
            id,
            "{name}"
        );
    }
    // Two images: a one-character prefix both share is ambiguous.
    let mut rootfs = TarBuilder::new();
    rootfs.file("other", b"other", 0o644);
    let other = b.path("other.tar");
    std::fs::write(&other, rootfs.finish()).unwrap();
    let mut ids = vec![id.clone()];
    // Import until two IDs share a first hex digit (configs carry a time, so IDs differ).
    while {
        let mut firsts: Vec<char> = ids.iter().map(|i| i.chars().nth(7).unwrap()).collect();
        firsts.sort();
        firsts.dedup();
        firsts.len() == ids.len()
    } {
        ids.push(
            b.ok(&["import", other.to_str().unwrap()])
                .trim()
                .to_string(),
        );
    }
    let shared = ids
        .iter()
        .map(|i| i.chars().nth(7).unwrap())
        .find(|c| ids.iter().filter(|i| i.chars().nth(7) == Some(*c)).count() > 1)
        .unwrap();
    let (_, err) = b.fail(&["image", "inspect", &shared.to_string()]);
    assert!(err.contains("ambiguous"), "{err}");
}

#[test]
fn images_table_columns_and_flags() {
    let b = Berth::new();
    let id = b.import_busybox("busybox");
    b.ok(&["tag", "busybox", "localhost:5000/tools/busybox:1.36"]);
    let out = b.ok(&["images"]);
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0]
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    assert_eq!(lines.len(), 3, "{out}");
    assert!(out.contains("localhost:5000/tools/busybox"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("busybox ") && l.contains(&id[7..19]) && l.contains("ago")),
        "{out}"
    );
    assert!(
        lines[1].split_whitespace().last().unwrap().ends_with("MB"),
        "{out}"
    );

    assert_eq!(
        b.ok(&["images", "-q"]).lines().collect::<Vec<_>>(),
        [&id[7..19], &id[7..19]]
    );
    assert!(b
        .ok(&["images", "-q", "--no-trunc"])
        .lines()
        .all(|l| l == id));
    assert!(b
        .ok(&["images", "--digests"])
        .lines()
        .next()
        .unwrap()
        .contains("DIGEST"));
    assert!(b.ok(&["image", "ls", "-a"]).lines().count() == 3);
    assert!(b.ok(&["image", "list"]).lines().count() == 3);
    assert_eq!(
        b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .lines()
            .count(),
        2
    );
    let table = b.ok(&["images", "--format", "table {{.ID}}\t{{.Tag}}"]);
    assert!(table.starts_with("IMAGE ID"), "{table}");
    let json: serde_json::Value = serde_json::from_str(
        b.ok(&["images", "--format", "json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["ID"], &id[7..19]);
    // docker's positional repository argument.
    assert_eq!(b.ok(&["images", "-q", "busybox"]).lines().count(), 1);
}

#[test]
fn images_filters() {
    let b = Berth::new();
    let first = b.import_busybox("busybox");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = b.import_busybox("other/app:2.0");
    // Untag `busybox` by re-pointing it: the first image becomes dangling.
    b.ok(&["tag", "other/app:2.0", "busybox"]);
    let q = |f: &str| {
        b.ok(&["images", "-q", "--no-trunc", "--filter", f])
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(q("dangling=true"), std::slice::from_ref(&first));
    assert_eq!(q("dangling=false"), [second.clone(), second.clone()]);
    assert_eq!(q("reference=other/*"), std::slice::from_ref(&second));
    assert_eq!(q("reference=busy*"), std::slice::from_ref(&second));
    assert_eq!(q("reference=other/app:2*"), std::slice::from_ref(&second));
    assert!(q("reference=nothing*").is_empty());
    assert_eq!(
        q(&format!("before={}", &second[7..])),
        std::slice::from_ref(&first)
    );
    assert_eq!(
        q(&format!("since={}", &first[7..])),
        [second.clone(), second.clone()]
    );
    let (code, err) = b.fail(&["images", "--filter", "colour=blue"]);
    assert_eq!(code, 1);
    assert!(err.contains("colour=blue"), "{err}");
    let untagged = b.ok(&["images"]);
    assert!(
        untagged.lines().any(|l| l.starts_with("<none>")),
        "{untagged}"
    );
}

#[test]
fn history_lists_the_layers() {
    let b = Berth::new();
    let archive = docker_archive(
        &[random_layer("a", 1000, 1), random_layer("b", 3000, 2)],
        "two:layers",
    );
    b.run_with_stdin(&["load"], &archive);
    let out = b.ok(&["history", "two:layers"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE")
            && lines[0].contains("CREATED BY")
            && lines[0].contains("COMMENT")
    );
    assert_eq!(lines.len(), 3);
    assert!(
        lines[1].contains("layer 1")
            && lines[2].contains("<missing>")
            && lines[2].contains("layer 0"),
        "{out}"
    );
    let sizes = b.ok(&[
        "image",
        "history",
        "-H=false",
        "--format",
        "{{.Size}}",
        "two:layers",
    ]);
    let sizes: Vec<u64> = sizes.lines().map(|s| s.parse().unwrap()).collect();
    assert_eq!(sizes, [3000, 1000]);
    assert_eq!(
        b.ok(&["history", "-q", "two:layers"]).lines().nth(1),
        Some("<missing>")
    );
}

#[test]
fn rmi_untags_then_deletes_keeping_shared_layers() {
    let b = Berth::new();
    let base = random_layer("base", 4096, 7);
    b.run_with_stdin(
        &["load"],
        &docker_archive(&[base.clone(), random_layer("x", 10, 1)], "one:latest"),
    );
    b.run_with_stdin(
        &["load"],
        &docker_archive(&[base.clone(), random_layer("y", 10, 2)], "two:latest"),
    );
    assert_eq!(b.layer_dirs().len(), 3, "the base layer is stored once");
    let id_one = b
        .ok(&["inspect", "-f", "{{.Id}}", "one"])
        .trim()
        .to_string();
    b.ok(&["tag", "one", "one:again"]);

    // A tag among several: only untagged.
    assert_eq!(b.ok(&["rmi", "one:again"]).trim(), "Untagged: one:again");
    // The last tag: untagged and deleted, with its own layer; the shared base stays.
    let out = b.ok(&["rmi", "one"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Untagged: one:latest");
    assert_eq!(lines[1], format!("Deleted: {id_one}"));
    assert_eq!(lines.len(), 3, "image and its one unshared layer: {out}");
    assert_eq!(b.layer_dirs().len(), 2);
    let base_dir = b
        .root()
        .join("layers")
        .join(sha256_hex(&base))
        .join("diff/base");
    assert!(base_dir.is_file(), "shared layer lost");
    b.ok(&["rmi", "two"]);
    assert!(b.layer_dirs().is_empty());
    assert!(b.blobs().is_empty(), "blobs left: {:?}", b.blobs());
    assert!(b.ok(&["images", "-q"]).is_empty());
}

#[test]
fn rmi_by_id_with_tags_in_several_repositories_needs_force() {
    let b = Berth::new();
    let id = b.import_busybox("busybox");
    b.ok(&["tag", "busybox", "elsewhere/busybox"]);
    let (code, err) = b.fail(&["rmi", &id[7..19]]);
    assert_eq!(code, 1);
    assert!(
        err.contains("must be forced") && err.contains("multiple repositories"),
        "{err}"
    );
    let out = b.ok(&["rmi", "-f", &id[7..19]]);
    assert!(
        out.contains("Untagged: busybox:latest")
            && out.contains("Untagged: elsewhere/busybox:latest"),
        "{out}"
    );
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    // Several names: each is tried, failures reported, exit 1.
    b.import_busybox("again");
    let out = b.run(&["rmi", "nosuch", "again"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Untagged: again:latest"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such image: nosuch"));
}

#[test]
fn prune_removes_dangling_and_with_all_everything() {
    let b = Berth::new();
    let dangling = b.import_busybox("busybox");
    let tar = b.path("small.tar");
    let mut t = TarBuilder::new();
    t.file("small", b"small", 0o644);
    std::fs::write(&tar, t.finish()).unwrap();
    b.ok(&["import", tar.to_str().unwrap(), "busybox"]); // moves the tag
    let kept = b
        .ok(&["images", "-q", "--no-trunc", "--filter", "dangling=false"])
        .trim()
        .to_string();

    // Without -f it asks, and "no" keeps everything.
    let out = b.run_with_stdin(&["image", "prune"], b"n\n");
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("WARNING! This will remove all dangling images."));
    assert_eq!(b.ok(&["images", "-q", "-a"]).lines().count(), 2);

    let out = b.ok(&["image", "prune", "-f"]);
    assert!(out.starts_with("Deleted Images:\n"), "{out}");
    assert!(out.contains(&format!("deleted: {dangling}")), "{out}");
    assert!(
        out.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("Total reclaimed space: "),
        "{out}"
    );
    assert!(out.contains("MB"), "busybox's layer is freed: {out}");
    assert_eq!(b.ok(&["images", "-q", "--no-trunc"]).trim(), kept);

    let out = b.ok(&["image", "prune", "-a", "-f"]);
    assert!(
        out.contains("untagged: busybox:latest") && out.contains(&format!("deleted: {kept}")),
        "{out}"
    );
    assert!(b.ok(&["images", "-q"]).is_empty());
    assert!(b.layer_dirs().is_empty() && b.blobs().is_empty());
    assert_eq!(
        b.ok(&["image", "prune", "-f"]).trim(),
        "Total reclaimed space: 0B"
    );
}

#[test]
fn info_reports_the_setup() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let out = b.ok(&["info"]);
    for line in [
        " Images: 1",
        " Storage Driver: overlay2",
        "  Backing Filesystem: ",
        "  Overlay Supported: ",
        "  Layers: 1",
        " Cgroup Version: ",
        " Kernel Version: ",
        " Operating System: ",
        " Architecture: ",
        " CPUs: ",
        " Total Memory: ",
        " Default Registry: docker.io",
    ] {
        assert!(out.contains(line), "info lacks {line:?}:\n{out}");
    }
    assert!(out.contains(&format!(
        " Berth Root Dir: {}",
        b.root().canonicalize().unwrap().display()
    )));
    assert_eq!(
        b.ok(&["info", "--format", "{{.Driver}}"]).trim(),
        "overlay2"
    );
    assert_eq!(b.ok(&["info", "-f", "{{.Images}}"]).trim(), "1");
    let json: serde_json::Value =
        serde_json::from_str(&b.ok(&["info", "--format", "{{json .}}"])).unwrap();
    assert_eq!(json["OSType"], "linux");
    assert!(json["NCPU"].as_u64().unwrap() >= 1);
    assert!(json["MemTotal"].as_u64().unwrap() > 0);
    // This machine mounts cgroups hybrid (v1 controllers + cgroup2 at unified).
    let expected = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        "hybrid"
    } else {
        "v1"
    };
    assert_eq!(json["CgroupLayout"], expected);
}
