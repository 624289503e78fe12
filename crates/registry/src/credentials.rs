//! Stored registry credentials, in the shape of docker's `config.json`:
//! `{"auths": {"HOST": {"auth": base64("user:password")}}}`, file mode
//! 0600. Docker Hub's key is docker's `https://index.docker.io/v1/`, so a
//! docker config file works as berth's and the other way round. Other keys
//! in the file are kept as they are.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::RegistryError;

const HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <password>)", self.username)
    }
}

impl Credential {
    /// The value of an `Authorization: Basic` header.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// The key a registry is stored under.
fn key(registry: &str) -> String {
    if registry == "docker.io" {
        HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// What a key in `auths` names: docker writes `https://index.docker.io/v1/`
/// and some tools write `https://host/` for other registries.
fn key_host(key: &str) -> &str {
    if key == HUB_KEY || key == "index.docker.io" || key == "registry-1.docker.io" {
        return "docker.io";
    }
    let bare = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    bare.split('/').next().unwrap_or(bare)
}

/// One credentials file, read whole and written back whole.
pub struct AuthFile {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl AuthFile {
    /// Reads `path`; a missing file holds no credentials.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let doc = match fs::read(path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(Value::Object(doc)) => doc,
                Ok(_) => return Err(bad(path, "not a JSON object".into())),
                Err(e) => return Err(bad(path, e.to_string())),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Map::new(),
            Err(source) => {
                return Err(RegistryError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Ok(AuthFile {
            path: path.to_path_buf(),
            doc,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn auths(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.doc
            .get("auths")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
    }

    /// The credentials stored for `registry` (a reference's domain:
    /// `docker.io`, `localhost:5000`, ...).
    pub fn get(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        let Some((_, entry)) = self.auths().find(|(k, _)| key_host(k) == registry) else {
            return Ok(None);
        };
        let Some(auth) = entry.get("auth").and_then(Value::as_str) else {
            return Ok(None);
        };
        let decoded = BASE64
            .decode(auth)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad(&self.path, format!("the auth of {registry} is not base64")))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| bad(&self.path, format!("the auth of {registry} has no ':'")))?;
        Ok(Some(Credential {
            username: username.to_string(),
            password: password.to_string(),
        }))
    }

    pub fn set(&mut self, registry: &str, cred: &Credential) {
        self.remove(registry);
        let auths = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        let auth = BASE64.encode(format!("{}:{}", cred.username, cred.password));
        auths
            .as_object_mut()
            .expect("made an object above")
            .insert(key(registry), serde_json::json!({ "auth": auth }));
    }

    /// Forgets `registry`; false when nothing was stored for it.
    pub fn remove(&mut self, registry: &str) -> bool {
        let Some(auths) = self.doc.get_mut("auths").and_then(Value::as_object_mut) else {
            return false;
        };
        let before = auths.len();
        auths.retain(|k, _| key_host(k) != registry);
        auths.len() != before
    }

    /// Writes the file atomically with mode 0600 (it holds passwords).
    pub fn save(&self) -> Result<(), RegistryError> {
        let io_err = |source| RegistryError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err)?;
        let mut text = serde_json::to_vec_pretty(&self.doc).expect("JSON values serialise");
        text.push(b'\n');
        tmp.write_all(&text).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(&self.path).map_err(|e| io_err(e.error))?;
        Ok(())
    }
}

fn bad(path: &Path, reason: String) -> RegistryError {
    RegistryError::Config {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_dockers_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        fs::write(&path, r#"{"credsStore": "x", "auths": {}}"#).unwrap();
        let mut f = AuthFile::load(&path).unwrap();
        let cred = Credential {
            username: "me".into(),
            password: "p:ss".into(),
        };
        f.set("docker.io", &cred);
        f.set("localhost:5000", &cred);
        f.save().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""https://index.docker.io/v1/""#), "{text}");
        assert!(
            text.contains(r#""credsStore": "x""#),
            "other keys kept: {text}"
        );
        assert!(text.contains(&BASE64.encode("me:p:ss")));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut f = AuthFile::load(&path).unwrap();
        assert_eq!(f.get("docker.io").unwrap(), Some(cred.clone()));
        assert_eq!(f.get("localhost:5000").unwrap(), Some(cred));
        assert!(f.remove("docker.io"));
        assert!(!f.remove("docker.io"));
        assert_eq!(f.get("docker.io").unwrap(), None);
    }

    #[test]
    fn keys_written_by_other_tools_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let auth = BASE64.encode("u:p");
        fs::write(
            &path,
            format!(r#"{{"auths": {{"https://reg.example:5000/v2/": {{"auth": "{auth}"}}}}}}"#),
        )
        .unwrap();
        let f = AuthFile::load(&path).unwrap();
        assert_eq!(f.get("reg.example:5000").unwrap().unwrap().username, "u");
    }
}
