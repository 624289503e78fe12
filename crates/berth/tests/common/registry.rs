//! Registries for tests, all on 127.0.0.1: Debian's docker-registry
//! (Distribution 2.8) on a free port with its storage in a temporary
//! directory, and a small HTTP proxy in front of it that can play a token
//! service, corrupt a blob, drop a connection mid-blob or stall.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A docker-registry process; killed (by its PID) on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with(None, None)
    }

    /// A registry serving HTTPS with a certificate for 127.0.0.1 signed by
    /// a CA made for it; returns the CA's certificate (PEM) too.
    pub fn with_tls() -> (Self, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(d.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        let ca = std::fs::read(d.join("ca.crt")).unwrap();
        let reg = Self::start_with(None, Some((d.join("server.crt"), d.join("server.key"))));
        (reg, ca)
    }

    /// A registry that wants basic auth for `user`/`password`.
    pub fn with_basic_auth(user: &str, password: &str) -> Self {
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd (install apache2-utils)");
        assert!(out.status.success());
        Self::start_with(Some(String::from_utf8(out.stdout).unwrap()), None)
    }

    fn start_with(htpasswd: Option<String>, tls: Option<(PathBuf, PathBuf)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((cert, key)) = tls {
            let (c, k) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::copy(cert, &c).unwrap();
            std::fs::copy(key, &k).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                c.display(),
                k.display()
            ));
        }
        if let Some(h) = htpasswd {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, h).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (install Debian's docker-registry)");
        wait_for_port(port);
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Copies an image with skopeo (`src` is a skopeo transport reference)
    /// to `reference` (a path on this registry, with tag).
    pub fn skopeo_copy(&self, src: &str, reference: &str, extra: &[&str]) {
        let dest = format!("docker://{}/{reference}", self.host());
        let out = Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .args(extra)
            .arg(src)
            .arg(&dest)
            .output()
            .expect("skopeo (install Debian's skopeo)");
        assert!(
            out.status.success(),
            "skopeo copy {src} {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The manifest digest skopeo sees for `reference`.
    pub fn skopeo_digest(&self, reference: &str) -> String {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{reference}", self.host()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("sha256:{}", super::sha256_hex(&out.stdout))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to the traffic it forwards.
#[derive(Clone, Debug)]
pub enum Mode {
    Pass,
    /// Answers 401 with a Bearer challenge unless the request carries a
    /// token it issued for the repository's scope; issues tokens at
    /// `/token`.
    Token,
    /// Flips one byte of the blob with this digest.
    Corrupt(String),
    /// Closes the connection after `bytes` of the blob's body, the next
    /// `times` times it is asked for.
    Drop {
        digest: String,
        bytes: usize,
        times: usize,
    },
    /// Sends `bytes` of the blob's body, then nothing until the mode changes.
    Stall {
        digest: String,
        bytes: usize,
    },
    /// Answers manifest requests with this Content-Type.
    ManifestType(String),
}

struct Shared {
    mode: Mutex<Mode>,
    /// Tokens issued: token -> the scopes asked for.
    tokens: Mutex<Vec<(String, String)>>,
    token_requests: AtomicUsize,
    blob_requests: AtomicUsize,
    stop: AtomicBool,
}

/// A one-connection-per-request HTTP/1.1 proxy on 127.0.0.1.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    pub fn start(upstream: u16, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            tokens: Mutex::new(Vec::new()),
            token_requests: AtomicUsize::new(0),
            blob_requests: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, port, &s);
                });
            }
        });
        Proxy { port, shared }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    pub fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    pub fn blob_requests(&self) -> usize {
        self.shared.blob_requests.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        *self.shared.mode.lock().unwrap() = Mode::Pass;
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(conn: &mut TcpStream, status: &str, headers: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body)
}

fn serve(mut conn: TcpStream, upstream: u16, port: u16, s: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut content_length = 0usize;
    let mut authorization = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("authorization:") {
            authorization = line["authorization:".len()..].trim().to_string();
        }
        if lower.starts_with("connection:") {
            continue;
        }
        head.push(line);
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    let request_line = head.first().cloned().unwrap_or_default();
    let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
    let mode = s.mode.lock().unwrap().clone();

    if let Mode::Token = mode {
        if let Some(query) = path.strip_prefix("/token?") {
            s.token_requests.fetch_add(1, Ordering::SeqCst);
            let scopes: Vec<String> = query
                .split('&')
                .filter_map(|kv| kv.strip_prefix("scope="))
                .map(percent_decode)
                .collect();
            let mut tokens = s.tokens.lock().unwrap();
            let token = format!("token-{}", tokens.len());
            tokens.push((token.clone(), scopes.join(" ")));
            return respond(
                &mut conn,
                "200 OK",
                "Content-Type: application/json\r\n",
                format!(r#"{{"token": "{token}"}}"#).as_bytes(),
            );
        }
        // /v2/<repo>/(manifests|blobs|tags)/... needs a token for <repo>.
        let repo = path
            .strip_prefix("/v2/")
            .and_then(|p| {
                ["/manifests/", "/blobs/", "/tags/"]
                    .iter()
                    .find_map(|k| p.split_once(k))
            })
            .map(|(r, _)| r.to_string());
        let granted = authorization.strip_prefix("Bearer ").is_some_and(|t| {
            s.tokens.lock().unwrap().iter().any(|(tok, scopes)| {
                tok == t
                    && repo
                        .as_ref()
                        .is_none_or(|r| scopes.contains(&format!("repository:{r}:pull")))
            })
        });
        if !granted {
            let scope = repo
                .map(|r| format!(",scope=\"repository:{r}:pull\""))
                .unwrap_or_default();
            return respond(
                &mut conn,
                "401 Unauthorized",
                &format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test-registry\"{scope}\r\nContent-Type: application/json\r\n"
                ),
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
        }
    }

    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    for line in &head {
        if line.to_ascii_lowercase().starts_with("authorization:") && matches!(mode, Mode::Token) {
            continue;
        }
        up.write_all(line.as_bytes())?;
    }
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    let (resp_head, resp_body) = response.split_at(split);
    let blob_digest = path
        .split_once("/blobs/")
        .map(|(_, d)| d.to_string())
        .filter(|_| request_line.starts_with("GET "));
    if blob_digest.is_some() {
        s.blob_requests.fetch_add(1, Ordering::SeqCst);
    }
    let is = |d: &str| blob_digest.as_deref() == Some(d);
    match mode {
        Mode::Corrupt(d) if is(&d) && !resp_body.is_empty() => {
            let mut bad = resp_body.to_vec();
            let mid = bad.len() / 2;
            bad[mid] ^= 0xff;
            conn.write_all(resp_head)?;
            conn.write_all(&bad)?;
        }
        Mode::Drop {
            digest,
            bytes,
            times,
        } if is(&digest) && times > 0 => {
            *s.mode.lock().unwrap() = Mode::Drop {
                digest,
                bytes,
                times: times - 1,
            };
            conn.write_all(resp_head)?;
            conn.write_all(&resp_body[..bytes.min(resp_body.len())])?;
            conn.flush()?;
            conn.shutdown(Shutdown::Both)?;
        }
        Mode::ManifestType(media_type) if path.contains("/manifests/") => {
            let head = String::from_utf8_lossy(resp_head);
            let head: String = head
                .split_inclusive("\r\n")
                .map(|line| {
                    if line.to_ascii_lowercase().starts_with("content-type:") {
                        format!("Content-Type: {media_type}\r\n")
                    } else {
                        line.to_string()
                    }
                })
                .collect();
            conn.write_all(head.as_bytes())?;
            conn.write_all(resp_body)?;
        }
        Mode::Stall { digest, bytes } if is(&digest) => {
            conn.write_all(resp_head)?;
            conn.write_all(&resp_body[..bytes.min(resp_body.len())])?;
            conn.flush()?;
            while matches!(*s.mode.lock().unwrap(), Mode::Stall { .. })
                && !s.stop.load(Ordering::SeqCst)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            conn.shutdown(Shutdown::Both)?;
        }
        _ => {
            conn.write_all(resp_head)?;
            conn.write_all(resp_body)?;
        }
    }
    Ok(())
}

/// Writes an OCI image layout at `dir` holding, under the name `multi`,
/// an index of one image per (os, architecture, layer tar): a multi-arch
/// image for `skopeo copy --all oci:DIR:multi`.
pub fn oci_index_layout(dir: &Path, images: &[(&str, &str, Vec<u8>)]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = super::sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut manifests = Vec::new();
    for (os, arch, layer) in images {
        let (layer_digest, layer_size) = put(layer);
        let config = serde_json::json!({
            "architecture": arch,
            "os": os,
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let (config_digest, config_size) = put(config.to_string().as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
        });
        let (m_digest, m_size) = put(manifest.to_string().as_bytes());
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m_digest, "size": m_size,
            "platform": {"architecture": arch, "os": os},
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let (i_digest, i_size) = put(index.to_string().as_bytes());
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": i_digest, "size": i_size,
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(dir.join("index.json"), top.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}
