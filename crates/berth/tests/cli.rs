//! The command line itself: help, version, usage errors and exit codes.

mod common;
use common::*;

#[test]
fn help_lists_commands_and_flags() {
    let b = Berth::new();
    let help = b.ok(&["--help"]);
    for cmd in [
        "images", "image", "import", "load", "save", "tag", "rmi", "history", "inspect", "info",
    ] {
        assert!(help.contains(cmd), "--help lacks {cmd}: {help}");
    }
    assert!(help.contains("--root"));
    let images = b.ok(&["images", "--help"]);
    for flag in [
        "--all",
        "--digests",
        "--filter",
        "--format",
        "--no-trunc",
        "--quiet",
    ] {
        assert!(images.contains(flag), "images --help lacks {flag}");
    }
    assert!(b.ok(&["image", "prune", "--help"]).contains("--force"));
}

#[test]
fn version_flag_and_command() {
    let b = Berth::new();
    assert!(b.ok(&["-v"]).starts_with("berth "));
    assert!(b.ok(&["--version"]).starts_with("berth "));
    assert!(b.ok(&["version"]).starts_with("berth version "));
}

#[test]
fn unknown_flag_and_command_are_one_line_and_125() {
    let b = Berth::new();
    for args in [
        &["images", "--bogus"][..],
        &["frobnicate"],
        &["rmi"],
        &["images", "--format"],
    ] {
        let (code, err) = b.fail(args);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?} printed more than one line: {err}"
        );
        assert!(err.starts_with("berth: "), "{err}");
    }
}

#[test]
fn missing_image_is_a_clear_error() {
    let b = Berth::new();
    let (code, err) = b.fail(&["rmi", "nosuch"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "Error: No such image: nosuch");
    let out = b.run(&["image", "inspect", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let (_, err) = b.fail(&["tag", "nosuch", "x"]);
    assert!(err.contains("No such image: nosuch"), "{err}");
    let (_, err) = b.fail(&["history", "nosuch"]);
    assert!(err.contains("No such image: nosuch"), "{err}");
}

#[test]
fn bad_references_are_refused() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let (_, err) = b.fail(&["tag", "busybox", "Bad/Name"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let (_, err) = b.fail(&["tag", "busybox", &format!("x@sha256:{}", "a".repeat(64))]);
    assert!(err.contains("digest"), "{err}");
}

#[test]
fn root_comes_from_the_environment_too() {
    let b = Berth::new();
    b.import_busybox("busybox");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["images", "-q"])
        .env("BERTH_ROOT", b.root())
        .output()
        .unwrap();
    assert_success(&out, &["images", "-q"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn a_reader_gone_ends_a_listing_quietly() {
    let b = Berth::new();
    b.import_busybox("busybox");
    // `berth images | true`: the pipe's reader is gone before berth writes.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = b
        .command(&["images"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
