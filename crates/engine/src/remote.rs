//! The registries an engine talks to: the settings (mirrors, insecure
//! registries, certs.d) and the stored credentials, and connecting to an
//! endpoint with the credentials that belong to it.

use berth_registry::{AuthFile, Credential, Endpoint, Registry, RegistryConfig, RegistryError};

pub struct Remote {
    pub config: RegistryConfig,
    pub auth: AuthFile,
}

impl Remote {
    /// Connects to `endpoint`, with the credentials stored for its host
    /// (a mirror's own, never Docker Hub's).
    pub(crate) fn connect(
        &self,
        domain: &str,
        endpoint: &Endpoint,
    ) -> Result<Registry, RegistryError> {
        let key = if endpoint.mirror {
            &endpoint.host
        } else {
            domain
        };
        let credential = self.auth.get(key)?;
        Registry::connect(&self.config, endpoint, credential)
    }

    /// The registry itself, for pushes and logins.
    pub(crate) fn connect_direct(&self, domain: &str) -> Result<Registry, RegistryError> {
        self.connect(domain, &self.config.endpoint(domain))
    }

    /// Checks `cred` against the registry, then stores it.
    pub fn login(&mut self, domain: &str, cred: &Credential) -> Result<(), RegistryError> {
        let endpoint = self.config.endpoint(domain);
        Registry::connect(&self.config, &endpoint, Some(cred.clone()))?.check_login()?;
        self.auth.set(domain, cred);
        self.auth.save()
    }

    /// Forgets the credentials of `domain`; false when there were none.
    pub fn logout(&mut self, domain: &str) -> Result<bool, RegistryError> {
        if !self.auth.remove(domain) {
            return Ok(false);
        }
        self.auth.save()?;
        Ok(true)
    }
}
