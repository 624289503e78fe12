//! One registry endpoint's HTTP API, as the OCI distribution spec names
//! it: `/v2/` to find the auth scheme, manifests and blobs to pull, blob
//! uploads (and cross-repository mounts) and manifests to push.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

use berth_image::Digest;
use serde::Deserialize;
use ureq::http::Response;
use ureq::{Agent, Body, SendBody};

use crate::auth::{repository_scope, Challenge, TokenResponse};
use crate::config::{Endpoint, RegistryConfig};
use crate::credentials::Credential;
use crate::RegistryError;

/// What berth asks for when it fetches a manifest: both schema 2 and OCI,
/// single images and indexes.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and error bodies are small; anything bigger is refused
/// rather than read into memory.
const MANIFEST_MAX: u64 = 4 << 20;

/// A registry endpoint with its auth state: the scheme it asked for and
/// the tokens fetched so far, one per scope. Shared by the threads of a
/// pull.
pub struct Registry {
    agent: Agent,
    /// `scheme://host[:port]`.
    base: String,
    host: String,
    credential: Option<Credential>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, String>>,
}

/// A manifest as the registry sent it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// What starting a blob upload gave.
pub enum Upload {
    /// The registry linked the blob from another repository: done.
    Mounted,
    /// An upload session to send the bytes to.
    Session(String),
}

/// The first entry of a registry's `{"errors": [...]}` body.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Debug, Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// What a request was after, for naming a 404.
enum Target<'a> {
    Manifest,
    Blob(&'a Digest),
    Other,
}

impl Registry {
    /// Connects to `endpoint`: asks `/v2/` over each scheme it allows in
    /// turn, and keeps the auth scheme the registry names.
    pub fn connect(
        config: &RegistryConfig,
        endpoint: &Endpoint,
        credential: Option<Credential>,
    ) -> Result<Self, RegistryError> {
        let agent = config.agent(endpoint)?;
        // Why the schemes tried so far failed: when HTTPS fails and plain
        // HTTP reaches something that is not a registry (an HTTPS server
        // answering 400), the HTTPS failure is the one to report.
        let mut reason: Option<String> = None;
        for scheme in &endpoint.schemes {
            let base = format!("{scheme}://{}", endpoint.host);
            let resp = match agent.get(format!("{base}/v2/")).call() {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::debug!(%base, error = %e, "registry ping failed");
                    reason.get_or_insert_with(|| {
                        let mut r = describe(&e);
                        if r.contains("certificate") {
                            r.push_str(&format!(
                                " (trust its CA in {}/ca.crt, or list it in insecure-registries)",
                                config.certs_dir(&endpoint.host).display()
                            ));
                        }
                        r
                    });
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let challenge = match status {
                200 => None,
                401 => www_authenticate(&resp),
                _ => {
                    return Err(match reason {
                        Some(reason) => RegistryError::Unreachable {
                            registry: endpoint.host.clone(),
                            reason,
                        },
                        None => RegistryError::Protocol {
                            registry: endpoint.host.clone(),
                            what: "GET /v2/".into(),
                            reason: format!("status {status}: not an OCI registry"),
                        },
                    })
                }
            };
            drain(resp);
            return Ok(Registry {
                agent,
                base,
                host: endpoint.host.clone(),
                credential,
                challenge: Mutex::new(challenge),
                tokens: Mutex::new(HashMap::new()),
            });
        }
        Err(RegistryError::Unreachable {
            registry: endpoint.host.clone(),
            reason: reason.unwrap_or_else(|| "no URL scheme to try".into()),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Checks the credentials (`berth login`): a token without a scope
    /// for a token service, `/v2/` itself for basic auth.
    pub fn check_login(&self) -> Result<(), RegistryError> {
        let resp = self.call(&[], |auth| self.get("/v2/", auth).call())?;
        match resp.status().as_u16() {
            200 => Ok(()),
            401 | 403 => Err(RegistryError::Unauthorized {
                registry: self.host.clone(),
                detail: error_detail(resp),
            }),
            _ => Err(self.status_error("GET", "/v2/", "", "login", Target::Other, resp)),
        }
    }

    /// The manifest (or index) `reference` (a tag or a digest) of `repo`.
    /// A manifest asked for by digest is checked against it.
    pub fn manifest(
        &self,
        repo: &str,
        reference: &str,
        image: &str,
    ) -> Result<Fetched, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let scope = [repository_scope(repo, "pull")];
        let resp = self.call(&scope, |auth| {
            self.get(&path, auth).header("Accept", ACCEPT).call()
        })?;
        if resp.status() != 200 {
            let err = self.status_error("GET", &path, image, "pull", Target::Manifest, resp);
            // Distribution answers MANIFEST_UNKNOWN for a repository that
            // does not exist too; its tag list tells the two apart.
            if matches!(err, RegistryError::ManifestNotFound { .. })
                && Digest::parse(reference).is_err()
            {
                if let Err(e @ RegistryError::RepositoryNotFound { .. }) = self.tags(repo, image) {
                    return Err(e);
                }
            }
            return Err(err);
        }
        let header_type = header(&resp, "content-type");
        let bytes = read_limited(resp, &self.host, &path)?;
        let digest = Digest::of(&bytes);
        if let Ok(expected) = Digest::parse(reference) {
            if expected != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: self.host.clone(),
                    image: image.to_string(),
                    what: "a manifest",
                    expected,
                    actual: digest,
                });
            }
        }
        // Some registries answer with a generic type; the manifest's own
        // `mediaType` field then says what it is.
        let media_type = match header_type.split(';').next().map(str::trim) {
            Some(t) if t.starts_with("application/vnd.") => t.to_string(),
            _ => embedded_media_type(&bytes).unwrap_or_default(),
        };
        Ok(Fetched {
            bytes,
            media_type,
            digest,
        })
    }

    /// A blob's bytes as they stream in, and the length the registry
    /// announced. The caller hashes them against `digest`.
    pub fn blob(
        &self,
        repo: &str,
        digest: &Digest,
        image: &str,
    ) -> Result<(impl Read + Send + 'static, Option<u64>), RegistryError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let scope = [repository_scope(repo, "pull")];
        let resp = self.call(&scope, |auth| self.get(&path, auth).call())?;
        if resp.status() != 200 {
            return Err(self.status_error("GET", &path, image, "pull", Target::Blob(digest), resp));
        }
        let body = resp.into_body();
        let len = body.content_length();
        Ok((body.into_reader(), len))
    }

    /// Whether `repo` already has the blob.
    pub fn has_blob(
        &self,
        repo: &str,
        digest: &Digest,
        image: &str,
    ) -> Result<bool, RegistryError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let scope = [repository_scope(repo, "pull,push")];
        let resp = self.call(&scope, |auth| {
            with_auth(self.agent.head(self.url(&path)), auth).call()
        })?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error("HEAD", &path, image, "push", Target::Other, resp)),
        }
    }

    /// Starts a blob upload to `repo`, asking first to mount the blob
    /// from `from` (another repository of this registry that has it).
    pub fn start_upload(
        &self,
        repo: &str,
        digest: &Digest,
        from: Option<&str>,
        image: &str,
    ) -> Result<Upload, RegistryError> {
        let mut path = format!("/v2/{repo}/blobs/uploads/");
        let mut scope = vec![repository_scope(repo, "pull,push")];
        if let Some(from) = from {
            path.push_str(&format!("?mount={digest}&from={from}"));
            scope.push(repository_scope(from, "pull"));
        }
        let resp = self.call(&scope, |auth| {
            with_auth(self.agent.post(self.url(&path)), auth).send_empty()
        })?;
        match resp.status().as_u16() {
            201 => Ok(Upload::Mounted),
            202 => {
                let location = header(&resp, "location");
                if location.is_empty() {
                    return Err(RegistryError::Protocol {
                        registry: self.host.clone(),
                        what: format!("POST {path}"),
                        reason: "no Location for the upload".into(),
                    });
                }
                drain(resp);
                Ok(Upload::Session(location))
            }
            _ => Err(self.status_error("POST", &path, image, "push", Target::Other, resp)),
        }
    }

    /// Sends a whole blob to an upload session, in one request.
    pub fn finish_upload(
        &self,
        repo: &str,
        location: &str,
        digest: &Digest,
        size: u64,
        body: &mut dyn Read,
        image: &str,
    ) -> Result<(), RegistryError> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}digest={digest}", self.absolute(location));
        let auth = self.authorization(&[repository_scope(repo, "pull,push")], false)?;
        let resp = with_auth(self.agent.put(&url), auth.as_deref())
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", size.to_string())
            .send(SendBody::from_reader(body))
            .map_err(|e| self.unreachable(&e))?;
        match resp.status().as_u16() {
            201 | 204 => {
                drain(resp);
                Ok(())
            }
            _ => Err(self.status_error("PUT", location, image, "push", Target::Other, resp)),
        }
    }

    /// Puts a manifest under `reference` (a tag or its digest).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        image: &str,
    ) -> Result<(), RegistryError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let scope = [repository_scope(repo, "pull,push")];
        let resp = self.call(&scope, |auth| {
            with_auth(self.agent.put(self.url(&path)), auth)
                .header("Content-Type", media_type)
                .send(bytes)
        })?;
        match resp.status().as_u16() {
            201 | 200 => {
                drain(resp);
                Ok(())
            }
            _ => Err(self.status_error("PUT", &path, image, "push", Target::Other, resp)),
        }
    }

    /// Every tag of `repo` (`pull --all-tags`).
    pub fn tags(&self, repo: &str, image: &str) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let path = format!("/v2/{repo}/tags/list");
        let scope = [repository_scope(repo, "pull")];
        let resp = self.call(&scope, |auth| self.get(&path, auth).call())?;
        if resp.status() != 200 {
            return Err(self.status_error("GET", &path, image, "pull", Target::Other, resp));
        }
        let bytes = read_limited(resp, &self.host, &path)?;
        let tags: Tags = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
            registry: self.host.clone(),
            what: format!("GET {path}"),
            reason: e.to_string(),
        })?;
        Ok(tags.tags.unwrap_or_default())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An upload `Location` may be relative to the registry.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            self.url(location)
        }
    }

    fn get(
        &self,
        path: &str,
        auth: Option<&str>,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        with_auth(self.agent.get(self.url(path)), auth)
    }

    /// Sends a request with the authorization `scope` needs. A 401 names
    /// the scheme (a registry may not ask at `/v2/`) or says the token is
    /// stale or short of the scope: the request is sent once more with a
    /// fresh one.
    fn call<F>(&self, scope: &[String], send: F) -> Result<Response<Body>, RegistryError>
    where
        F: Fn(Option<&str>) -> Result<Response<Body>, ureq::Error>,
    {
        let auth = self.authorization(scope, false)?;
        let resp = send(auth.as_deref()).map_err(|e| self.unreachable(&e))?;
        if resp.status() != 401 {
            return Ok(resp);
        }
        if let Some(c) = www_authenticate(&resp) {
            *self.challenge.lock().expect("not poisoned") = Some(c);
        }
        let fresh = self.authorization(scope, true)?;
        if fresh.is_none() || fresh == auth {
            return Ok(resp);
        }
        drain(resp);
        send(fresh.as_deref()).map_err(|e| self.unreachable(&e))
    }

    /// The `Authorization` value for `scope`, fetching a token if the
    /// registry wants one and none is cached (or `refresh`).
    fn authorization(
        &self,
        scope: &[String],
        refresh: bool,
    ) -> Result<Option<String>, RegistryError> {
        let challenge = self.challenge.lock().expect("not poisoned").clone();
        let (realm, service) = match challenge {
            None => return Ok(None),
            Some(Challenge::Basic) => return Ok(self.credential.as_ref().map(Credential::basic)),
            Some(Challenge::Bearer { realm, service }) => (realm, service),
        };
        let key = scope.join(" ");
        if !refresh {
            if let Some(t) = self.tokens.lock().expect("not poisoned").get(&key) {
                return Ok(Some(format!("Bearer {t}")));
            }
        }
        let token = self.fetch_token(&realm, service.as_deref(), scope)?;
        self.tokens
            .lock()
            .expect("not poisoned")
            .insert(key, token.clone());
        Ok(Some(format!("Bearer {token}")))
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &[String],
    ) -> Result<String, RegistryError> {
        let mut req = self.agent.get(realm);
        if let Some(s) = service {
            req = req.query("service", s);
        }
        for s in scope {
            req = req.query("scope", s);
        }
        if let Some(c) = &self.credential {
            req = req
                .query("account", &c.username)
                .header("Authorization", c.basic());
        }
        let resp = req.call().map_err(|e| RegistryError::Unreachable {
            registry: format!("{} (token service {realm})", self.host),
            reason: describe(&e),
        })?;
        match resp.status().as_u16() {
            200 => {}
            401 | 403 => {
                return Err(RegistryError::Unauthorized {
                    registry: self.host.clone(),
                    detail: error_detail(resp),
                })
            }
            status => {
                return Err(RegistryError::Status {
                    registry: self.host.clone(),
                    method: "GET",
                    path: realm.to_string(),
                    status,
                    message: error_detail(resp),
                })
            }
        }
        let bytes = read_limited(resp, &self.host, realm)?;
        serde_json::from_slice::<TokenResponse>(&bytes)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.host.clone(),
                what: format!("token service {realm}"),
                reason: "no token in the answer".into(),
            })
    }

    fn unreachable(&self, e: &ureq::Error) -> RegistryError {
        RegistryError::Unreachable {
            registry: self.host.clone(),
            reason: describe(e),
        }
    }

    /// The error for a response that is not what the request wanted.
    fn status_error(
        &self,
        method: &'static str,
        path: &str,
        image: &str,
        action: &'static str,
        target: Target,
        resp: Response<Body>,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let body: ErrorBody = read_limited(resp, &self.host, path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let first = body.errors.first();
        let code = first.map_or("", |e| e.code.as_str());
        let message = first.map_or(String::new(), |e| e.message.clone());
        let registry = self.host.clone();
        let image = image.to_string();
        match (status, code, target) {
            (401, _, _) if self.credential.is_some() && self.is_basic() => {
                RegistryError::Unauthorized {
                    registry,
                    detail: with_colon(&message),
                }
            }
            (401 | 403, _, _) => RegistryError::Denied {
                action,
                image,
                registry,
                detail: with_colon(&message),
            },
            (404, "NAME_UNKNOWN", _) => RegistryError::RepositoryNotFound { image, registry },
            (404, _, Target::Manifest) => RegistryError::ManifestNotFound { image, registry },
            (404, _, Target::Blob(digest)) => RegistryError::BlobNotFound {
                image,
                registry,
                digest: digest.clone(),
            },
            _ => RegistryError::Status {
                registry,
                method,
                path: path.to_string(),
                status,
                message: if message.is_empty() {
                    code.to_string()
                } else {
                    message
                },
            },
        }
    }

    fn is_basic(&self) -> bool {
        matches!(
            *self.challenge.lock().expect("not poisoned"),
            Some(Challenge::Basic)
        )
    }
}

fn with_auth<B>(req: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => req.header("Authorization", a),
        None => req,
    }
}

fn header(resp: &Response<Body>, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn www_authenticate(resp: &Response<Body>) -> Option<Challenge> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(Challenge::parse)
}

fn read_limited(resp: Response<Body>, host: &str, what: &str) -> Result<Vec<u8>, RegistryError> {
    resp.into_body()
        .into_with_config()
        .limit(MANIFEST_MAX)
        .read_to_vec()
        .map_err(|e| RegistryError::Unreachable {
            registry: host.to_string(),
            reason: format!("reading {what}: {}", describe(&e)),
        })
}

/// Reads what is left of a response so its connection can be reused.
fn drain(resp: Response<Body>) {
    let _ = std::io::copy(
        &mut resp.into_body().into_reader().take(MANIFEST_MAX),
        &mut std::io::sink(),
    );
}

/// The registry's own words for a failure, for an error's tail.
fn error_detail(resp: Response<Body>) -> String {
    let text = resp
        .into_body()
        .into_with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    let message = serde_json::from_str::<ErrorBody>(&text)
        .ok()
        .and_then(|b| b.errors.into_iter().next())
        .map(|e| e.message)
        .unwrap_or_else(|| text.lines().next().unwrap_or("").trim().to_string());
    with_colon(&message)
}

fn with_colon(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn embedded_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let peek: Peek = serde_json::from_slice(bytes).ok()?;
    peek.media_type.or_else(|| {
        // An OCI manifest or index may leave out its mediaType.
        Some(if peek.manifests.is_some() {
            berth_image::manifest::OCI_INDEX.to_string()
        } else {
            berth_image::manifest::OCI_MANIFEST.to_string()
        })
    })
}

/// A transport failure in words: the cause without ureq's wrapping.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => other.to_string(),
    }
}
