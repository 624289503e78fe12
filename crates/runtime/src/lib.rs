//! An OCI runtime: a bundle (config.json and a root filesystem) in, an
//! isolated process out.
//!
//! The create path is plain synchronous code in a single-threaded process:
//! the runtime clones itself into the container's namespaces, and parent
//! and child step through the create sequence (see `create`) over one
//! socket.

pub mod cgroups;
pub mod config;
pub mod create;
mod error;
pub mod exec;
pub mod hooks;
mod init;
pub mod lifecycle;
pub mod mounts;
mod process;
pub mod sealed;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sync;

pub use error::RuntimeError;
