//! berth's registry client: the OCI distribution API over HTTP(S), with
//! docker's auth flows, mirrors, insecure registries and certs.d, and
//! credentials stored as docker stores them. Blocking I/O on plain
//! threads: the engine that drives it forks containers, and never has an
//! async runtime alive.

pub mod auth;
mod client;
pub mod config;
pub mod credentials;
mod error;

pub use client::{Fetched, Registry, Upload};
pub use config::{Endpoint, RegistryConfig};
pub use credentials::{AuthFile, Credential};
pub use error::RegistryError;
