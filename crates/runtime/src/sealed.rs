//! Running the runtime from a sealed copy of itself (CVE-2019-5736).
//!
//! A container's process can reach the runtime binary through
//! /proc/<pid>/exe while the runtime is inside the container's namespaces,
//! and overwrite it on the host. So before anything else, create-like
//! commands copy the binary into a memfd, seal it against writes, and
//! re-execute from it: what the container can reach is an anonymous,
//! read-only copy.

use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{MemfdFlags, SealFlags};

const MARK: &str = "_BERTH_RUNTIME_SEALED";

/// Re-executes this process from a sealed memfd, unless it already runs
/// from one. Returns only on failure.
pub fn ensure_sealed() -> std::io::Result<()> {
    if std::env::var_os(MARK).is_some() {
        std::env::remove_var(MARK);
        return Ok(());
    }
    let mut exe = File::open("/proc/self/exe")?;
    let memfd = rustix::fs::memfd_create(
        "berth-runtime",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut copy = File::from(memfd);
    std::io::copy(&mut exe, &mut copy)?;
    rustix::fs::fcntl_add_seals(
        &copy,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    let to_c = |b: &[u8]| {
        CString::new(b).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let argv: Vec<CString> = std::env::args_os()
        .map(|a| to_c(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| to_c(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<Result<_, _>>()?;
    envp.push(to_c(format!("{MARK}=1").as_bytes())?);
    Err(berth_sys::fexecve(
        std::os::fd::AsFd::as_fd(&copy),
        &argv,
        &envp,
    ))
}
