//! `pull`: an image from a registry into the store.
//!
//! The manifest is resolved first (Docker Hub's mirrors in order, an index
//! narrowed to one platform). Then a few threads fetch the layers the
//! store lacks, each streaming its blob once: into the blob store (hashed
//! as it is written) and at the same time, through a second thread, into
//! the decompressor and a staged layer directory (hashed again for the
//! diff ID). A layer becomes
//! visible only after both digests check out, and the image only in the
//! one transaction at the end; an interrupted pull keeps the layers it
//! verified, so the next one finishes the job.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Mutex;
use std::time::Duration;

use berth_image::archive::LayerBlob;
use berth_image::blobstore::BlobError;
use berth_image::config::{ConfigError, ImageConfig};
use berth_image::manifest::{
    self, Descriptor, Index, Manifest, Platform, DOCKER_MANIFEST, OCI_MANIFEST,
};
use berth_image::{BlobStore, Digest, ImageRef};
use berth_registry::{Fetched, Registry, RegistryError};
use berth_storage::LayerStore;

use crate::register::{unpack_staged, LayerSource, Registration};
use crate::remote::Remote;
use crate::{Engine, EngineError};

/// Layers fetched at once (docker's `max-concurrent-downloads`).
const WORKERS: usize = 3;
/// Tries per blob before a transient failure is the pull's error.
const ATTEMPTS: u32 = 5;
/// An image config bigger than this is refused rather than read.
const CONFIG_MAX: u64 = 16 << 20;

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to take from an index; the host's when `None`.
    pub platform: Option<Platform>,
}

/// What a pull reports as it goes, for the CLI to print as docker does.
#[derive(Debug, Clone)]
pub enum PullProgress {
    /// The manifest is resolved: `TAG: Pulling from REPOSITORY`.
    Resolved {
        repository: String,
        tag: String,
    },
    Layer {
        digest: Digest,
        state: LayerState,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerState {
    Exists,
    Waiting,
    Downloading { done: u64, total: u64 },
    Verifying,
    Extracting,
    Complete,
    Retrying { attempt: u32, reason: String },
}

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub id: Digest,
    /// The normalised reference pulled (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The digest the registry knows the image by (an index's, when the
    /// tag names one).
    pub digest: Digest,
    /// False when the store already had this image under this name.
    pub fresh: bool,
}

/// Parses `os/arch[/variant]` as `--platform` takes it.
pub fn parse_platform(s: &str) -> Result<Platform, EngineError> {
    let parts: Vec<&str> = s.split('/').collect();
    let bad = || EngineError::RunFlag {
        flag: "--platform".into(),
        value: s.into(),
        reason: "expected os/arch[/variant], e.g. linux/arm64".into(),
    };
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts
                .get(2)
                .filter(|v| !v.is_empty())
                .map(|v| v.to_string()),
        }),
        _ => Err(bad()),
    }
}

fn platform_text(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// Whether an index entry serves `want`. A variant only narrows when
/// asked for; arm64's `v8` is what an entry without one means.
fn platform_matches(entry: &Platform, want: &Platform) -> bool {
    let variant = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
        ("arm64", None) => Some("v8".to_string()),
        (_, v) => v.map(String::from),
    };
    entry.os == want.os
        && entry.architecture == want.architecture
        && (want.variant.is_none() || variant(entry) == variant(want))
}

impl Engine {
    /// Pulls `reference` (a tag or a digest) into the store.
    pub fn pull(
        &mut self,
        remote: &Remote,
        reference: &ImageRef,
        opts: &PullOptions,
        progress: &(dyn Fn(PullProgress) + Sync),
    ) -> Result<Pulled, EngineError> {
        let image = berth_image::reference::familiar(&reference.to_string()).to_string();
        let (registry, top) = fetch_top_manifest(remote, reference, &image)?;
        let repo_digest = top.digest.clone();
        let fetched = self.narrow_to_platform(&registry, reference, &image, top, opts)?;
        progress(PullProgress::Resolved {
            repository: reference.path().to_string(),
            tag: reference
                .tag()
                .map_or_else(|| repo_digest.to_string(), String::from),
        });
        let manifest = Manifest::parse(&fetched.bytes, &fetched.digest)?;

        let lock = self.lock()?;
        let names: Vec<String> = reference.tagged().into_iter().collect();
        let repo_digests = vec![format!("{}@{repo_digest}", reference.name())];
        let previous = match names.first() {
            Some(n) => self.db.image_by_tag(n)?,
            None => None,
        };
        let config = self.fetch_config(&registry, reference.path(), &image, &manifest.config)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ConfigError::LayerCount {
                digest: manifest.config.digest.clone(),
                diff_ids: config.rootfs.diff_ids.len(),
                layers: manifest.layers.len(),
            }
            .into());
        }
        if let Some(want) = &opts.platform {
            let have = Platform {
                os: config.os.clone(),
                architecture: config.architecture.clone(),
                variant: config.variant.clone(),
            };
            if !platform_matches(&have, want) {
                return Err(EngineError::PlatformMismatch {
                    image,
                    have: platform_text(&have),
                    want: platform_text(want),
                });
            }
        }
        let id = manifest.config.digest.clone();
        let unpacked = if self.db.image(&id)?.is_some() {
            HashMap::new()
        } else {
            let fetcher = Fetcher {
                registry: &registry,
                repo: reference.path(),
                image: &image,
                id: &id,
                blobs: &self.blobs,
                layers: &self.layers,
                progress,
                cancelled: AtomicBool::new(false),
            };
            let jobs = self.layer_jobs(&manifest, &config, progress)?;
            fetcher.run(jobs)?
        };
        self.blobs.put(&fetched.bytes, Some(&fetched.digest))?;
        let layers: Vec<LayerBlob> = manifest
            .layers
            .iter()
            .map(|d| LayerBlob {
                digest: d.digest.clone(),
                size: d.size,
            })
            .collect();
        self.register_locked(
            &lock,
            &id,
            &Registration {
                manifest: Some(&fetched.digest),
                layers: &layers,
                names: &names,
                repo_digests: &repo_digests,
                unpacked,
            },
        )?;
        Ok(Pulled {
            fresh: previous.as_ref() != Some(&id),
            id,
            reference: reference.to_string(),
            digest: repo_digest,
        })
    }

    /// Every tag of `reference`'s repository (`pull --all-tags`).
    pub fn remote_tags(
        &self,
        remote: &Remote,
        reference: &ImageRef,
    ) -> Result<Vec<String>, EngineError> {
        let image = berth_image::reference::familiar(reference.name()).to_string();
        let mut last = None;
        for endpoint in remote.config.pull_endpoints(reference.domain()) {
            let listed = remote
                .connect(reference.domain(), &endpoint)
                .and_then(|r| r.tags(reference.path(), &image));
            match listed {
                Ok(tags) => return Ok(tags),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("there is always the registry itself").into())
    }

    /// An index is narrowed to the manifest for the platform; a manifest
    /// of a kind berth cannot run is refused.
    fn narrow_to_platform(
        &self,
        registry: &Registry,
        reference: &ImageRef,
        image: &str,
        top: Fetched,
        opts: &PullOptions,
    ) -> Result<Fetched, EngineError> {
        let fetched = if manifest::is_index(&top.media_type) {
            let index = Index::parse(&top.bytes, &top.digest)?;
            let want = opts
                .platform
                .clone()
                .unwrap_or_else(manifest::host_platform);
            let entry = index
                .manifests
                .iter()
                .find(|d| {
                    d.platform
                        .as_ref()
                        .is_some_and(|p| platform_matches(p, &want))
                })
                .ok_or_else(|| RegistryError::NoPlatform {
                    image: image.to_string(),
                    platform: platform_text(&want),
                })?;
            registry.manifest(reference.path(), &entry.digest.to_string(), image)?
        } else {
            top
        };
        if fetched.media_type != DOCKER_MANIFEST && fetched.media_type != OCI_MANIFEST {
            return Err(RegistryError::UnsupportedMediaType {
                registry: registry.host().to_string(),
                image: image.to_string(),
                media_type: fetched.media_type,
            }
            .into());
        }
        Ok(fetched)
    }

    /// The image config, from the store or the registry (checked).
    fn fetch_config(
        &self,
        registry: &Registry,
        repo: &str,
        image: &str,
        desc: &Descriptor,
    ) -> Result<ImageConfig, EngineError> {
        if !self.blobs.contains(&desc.digest) {
            let (body, _) = registry.blob(repo, &desc.digest, image)?;
            let mut bytes = Vec::new();
            body.take(CONFIG_MAX).read_to_end(&mut bytes).map_err(|e| {
                RegistryError::Unreachable {
                    registry: registry.host().to_string(),
                    reason: format!("reading the config of {image}: {e}"),
                }
            })?;
            self.blobs
                .put(&bytes, Some(&desc.digest))
                .map_err(|e| mismatch(e, registry, image, "a config"))?;
        }
        Ok(ImageConfig::parse(
            &self.blobs.read(&desc.digest)?,
            &desc.digest,
        )?)
    }

    /// What each layer needs: nothing when its blob and unpacked layer
    /// are both here, else a download, an unpack or both.
    fn layer_jobs(
        &self,
        manifest: &Manifest,
        config: &ImageConfig,
        progress: &(dyn Fn(PullProgress) + Sync),
    ) -> Result<Vec<Job>, EngineError> {
        let mut jobs = Vec::new();
        for (index, ((desc, diff_id), chain)) in manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .zip(config.chain_ids())
            .enumerate()
        {
            let unpacked = self.db.layer_size(&chain)?.is_some() && self.layers.exists(chain.hex());
            let stored = self.blobs.contains(&desc.digest);
            let state = if unpacked && stored {
                LayerState::Exists
            } else {
                jobs.push(Job {
                    index,
                    desc: desc.clone(),
                    diff_id: diff_id.clone(),
                    chain,
                    download: !stored,
                    unpack: !unpacked,
                });
                LayerState::Waiting
            };
            progress(PullProgress::Layer {
                digest: desc.digest.clone(),
                state,
            });
        }
        Ok(jobs)
    }
}

/// The manifest (or index) the reference names, from the first endpoint
/// that has it: Docker Hub's mirrors, then the registry itself.
fn fetch_top_manifest(
    remote: &Remote,
    reference: &ImageRef,
    image: &str,
) -> Result<(Registry, Fetched), EngineError> {
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    for endpoint in remote.config.pull_endpoints(reference.domain()) {
        let found = remote
            .connect(reference.domain(), &endpoint)
            .and_then(|r| Ok((r.manifest(reference.path(), &wanted, image)?, r)));
        match found {
            Ok((fetched, registry)) => return Ok((registry, fetched)),
            Err(e) if endpoint.mirror => {
                tracing::info!(mirror = %endpoint.host, error = %e, "mirror failed, trying the next");
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("pull_endpoints always ends with the registry itself")
}

/// A blob store digest mismatch is the registry's fault: say so.
fn mismatch(e: BlobError, registry: &Registry, image: &str, what: &'static str) -> EngineError {
    match e {
        BlobError::DigestMismatch { expected, actual } => RegistryError::DigestMismatch {
            registry: registry.host().to_string(),
            image: image.to_string(),
            what,
            expected,
            actual,
        }
        .into(),
        other => other.into(),
    }
}

/// One layer to fetch.
struct Job {
    index: usize,
    desc: Descriptor,
    diff_id: Digest,
    chain: Digest,
    /// The blob is not in the store.
    download: bool,
    /// The unpacked layer is not in the store.
    unpack: bool,
}

/// Why one try at a layer failed.
enum Failure {
    /// The network failed: worth another try.
    Transient(String),
    Fatal(EngineError),
}

impl<E: Into<EngineError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Fatal(e.into())
    }
}

/// What the fetching threads share.
struct Fetcher<'a> {
    registry: &'a Registry,
    repo: &'a str,
    image: &'a str,
    id: &'a Digest,
    blobs: &'a BlobStore,
    layers: &'a LayerStore,
    progress: &'a (dyn Fn(PullProgress) + Sync),
    /// Set when one layer failed for good: the others stop.
    cancelled: AtomicBool,
}

impl Fetcher<'_> {
    /// Runs the jobs on a few threads; returns the sizes of the layers
    /// they unpacked, by chain ID, or the first error.
    fn run(&self, jobs: Vec<Job>) -> Result<HashMap<Digest, u64>, EngineError> {
        let workers = jobs.len().min(WORKERS);
        let queue = Mutex::new(VecDeque::from(jobs));
        let unpacked = Mutex::new(HashMap::new());
        let failed: Mutex<Option<EngineError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let Some(job) = queue.lock().expect("not poisoned").pop_front() else {
                        return;
                    };
                    if self.cancelled.load(Ordering::Relaxed) {
                        return;
                    }
                    match self.layer(&job) {
                        Ok(Some(size)) => {
                            unpacked
                                .lock()
                                .expect("not poisoned")
                                .insert(job.chain, size);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            self.cancelled.store(true, Ordering::Relaxed);
                            failed.lock().expect("not poisoned").get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        match failed.into_inner().expect("not poisoned") {
            Some(e) => Err(e),
            None => Ok(unpacked.into_inner().expect("not poisoned")),
        }
    }

    fn report(&self, job: &Job, state: LayerState) {
        (self.progress)(PullProgress::Layer {
            digest: job.desc.digest.clone(),
            state,
        });
    }

    /// One layer, tried again with back-off while the network fails.
    fn layer(&self, job: &Job) -> Result<Option<u64>, EngineError> {
        let mut delay = Duration::from_millis(250);
        for attempt in 1.. {
            match self.attempt(job) {
                Ok(size) => {
                    self.report(job, LayerState::Complete);
                    return Ok(size);
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(reason)) => {
                    if attempt == ATTEMPTS || self.cancelled.load(Ordering::Relaxed) {
                        return Err(RegistryError::Unreachable {
                            registry: self.registry.host().to_string(),
                            reason: format!(
                                "layer {} of {}: {reason} (tried {attempt} times)",
                                job.desc.digest, self.image
                            ),
                        }
                        .into());
                    }
                    tracing::info!(layer = %job.desc.digest, %reason, "download failed, retrying");
                    self.report(job, LayerState::Retrying { attempt, reason });
                    std::thread::sleep(delay);
                    delay *= 2;
                }
            }
        }
        unreachable!("the loop returns by its last attempt")
    }

    fn source<'j>(&'j self, job: &'j Job) -> LayerSource<'j> {
        LayerSource {
            image: self.id,
            index: job.index,
            digest: &job.desc.digest,
            diff_id: &job.diff_id,
        }
    }

    fn attempt(&self, job: &Job) -> Result<Option<u64>, Failure> {
        if !job.download {
            self.report(job, LayerState::Extracting);
            let blob = self.blobs.open_blob(&job.desc.digest)?;
            let (staged, size) = unpack_staged(self.layers, blob, &self.source(job))?;
            self.layers.commit(staged, job.chain.hex())?;
            return Ok(Some(size));
        }
        let (body, _) = self
            .registry
            .blob(self.repo, &job.desc.digest, self.image)
            .map_err(|e| match e.is_transient() {
                true => Failure::Transient(e.to_string()),
                false => Failure::Fatal(e.into()),
            })?;
        let mut net = NetReader {
            inner: body,
            read: 0,
            size: job.desc.size,
            failure: None,
            next_report: 0,
            fetcher: self,
            job,
        };
        let mut writer = self.blobs.writer()?;
        // Two threads per layer: this one takes the bytes off the network
        // into the blob store (hashing them), the other inflates, hashes
        // and unpacks them, so the two halves of the work overlap.
        let (rest, staged) = std::thread::scope(|s| {
            let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
            let source = self.source(job);
            let unpacker = job.unpack.then(|| {
                s.spawn(move || unpack_staged(self.layers, ChannelReader::new(rx), &source))
            });
            let rest = pump(&mut net, &mut writer, unpacker.is_some().then_some(&tx));
            drop(tx);
            let staged = unpacker.map(|h| h.join().expect("unpacking never panics"));
            (rest, staged)
        });
        if let Some(reason) = net.failure.take() {
            return Err(Failure::Transient(reason));
        }
        if net.read < job.desc.size {
            return Err(Failure::Transient(format!(
                "connection closed after {} of {} bytes",
                net.read, job.desc.size
            )));
        }
        rest.map_err(|source| EngineError::Io {
            path: self.blobs.path(&job.desc.digest),
            source,
        })?;
        self.report(job, LayerState::Verifying);
        writer
            .commit(Some(&job.desc.digest))
            .map_err(|e| mismatch(e, self.registry, self.image, "a layer"))?;
        match staged {
            None => Ok(None),
            Some(staged) => {
                let (staged, size) = staged?;
                self.layers.commit(staged, job.chain.hex())?;
                Ok(Some(size))
            }
        }
    }
}

/// The network side of a download: stops at the manifest's size, keeps
/// the first read error (a dropped connection is worth a retry, unlike a
/// hostile tar), reports progress and notices cancellation.
struct NetReader<'a, R> {
    inner: R,
    read: u64,
    size: u64,
    failure: Option<String>,
    next_report: u64,
    fetcher: &'a Fetcher<'a>,
    job: &'a Job,
}

impl<R: Read> Read for NetReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.fetcher.cancelled.load(Ordering::Relaxed) {
            return Err(io::Error::other("pull cancelled"));
        }
        let left = self.size - self.read;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..max]) {
            Ok(n) => {
                self.read += n as u64;
                if self.read >= self.next_report || n == 0 {
                    self.next_report = self.read + (512 << 10);
                    self.fetcher.report(
                        self.job,
                        LayerState::Downloading {
                            done: self.read,
                            total: self.size,
                        },
                    );
                }
                Ok(n)
            }
            Err(e) => {
                self.failure.get_or_insert_with(|| e.to_string());
                Err(e)
            }
        }
    }
}

/// Moves a blob's bytes from the network into the blob store and, when
/// the layer is to be unpacked, on to the unpacking thread. An unpacker
/// that stopped early (a hostile tar) no longer takes them; the blob is
/// still read to its end, so its digest can be checked.
fn pump(
    net: &mut impl Read,
    blob: &mut impl Write,
    unpack: Option<&SyncSender<Vec<u8>>>,
) -> io::Result<()> {
    let mut buf = vec![0; 256 << 10];
    loop {
        let n = match net.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        blob.write_all(&buf[..n])?;
        if let Some(tx) = unpack {
            let _ = tx.send(buf[..n].to_vec());
        }
    }
}

/// The unpacking thread's end of the pump: the chunks as one stream,
/// ending when the pump stops sending.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: Receiver<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        parse_platform(s).unwrap()
    }

    #[test]
    fn platforms_match_as_docker_matches_them() {
        assert!(platform_matches(&p("linux/amd64"), &p("linux/amd64")));
        assert!(!platform_matches(&p("linux/arm64"), &p("linux/amd64")));
        assert!(platform_matches(&p("linux/arm/v7"), &p("linux/arm")));
        assert!(!platform_matches(&p("linux/arm/v6"), &p("linux/arm/v7")));
        assert!(platform_matches(&p("linux/arm64"), &p("linux/arm64/v8")));
        assert!(!platform_matches(&p("windows/amd64"), &p("linux/amd64")));
        assert!(parse_platform("amd64").is_err());
        assert!(parse_platform("linux/").is_err());
    }
}
