//! A Redis deployment as configured: its URL, TLS files and how durable a write must be
//! before it is reported. Built once from settings; [`crate::Redis`] connects through it.

use std::fmt;
use std::time::Duration;

use redis::TlsCertificates;

use crate::tls::TlsFiles;
use crate::url::{RedisUrl, UrlError};

/// How many replicas must hold a log entry before a writer reports it (Redis `WAIT`).
///
/// The fold is deterministic, so a log entry that reached a replica is enough: a promoted
/// replica re-derives every read model and event from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// 0: report as soon as the master has the entry.
    pub replicas: u32,
    /// How long to wait for them.
    pub timeout: Duration,
}

/// The default `WAIT` timeout.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(2);

impl Durability {
    /// One replica on Sentinel and Cluster (they promote replicas on their own), none on a
    /// single server.
    pub fn default_for(url: &RedisUrl) -> Self {
        Self {
            replicas: u32::from(url.topology.is_replicated()),
            timeout: DEFAULT_WAIT_TIMEOUT,
        }
    }
}

/// A configured Redis deployment. `Debug` never shows secrets.
#[derive(Clone)]
pub struct Deployment {
    pub url: RedisUrl,
    tls: Option<TlsCertificates>,
    pub durability: Durability,
}

/// A deployment that cannot be used as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeploymentError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("{0}")]
    Tls(String),
}

impl Deployment {
    /// Parses the URL and reads the TLS files (TLS files with a `redis://` URL are an error:
    /// they would silently do nothing).
    pub fn new(url: &str, tls: &TlsFiles) -> Result<Self, DeploymentError> {
        let url = RedisUrl::parse(url)?;
        if !url.tls && !tls.is_empty() {
            return Err(DeploymentError::Tls(format!(
                "tls files are set but the URL {url} is not a TLS one; use rediss://"
            )));
        }
        let certificates = tls.load().map_err(DeploymentError::Tls)?;
        Ok(Self {
            durability: Durability::default_for(&url),
            url,
            tls: certificates,
        })
    }

    /// A plain deployment from a URL alone (tests, tools).
    pub fn from_url(url: &str) -> Result<Self, DeploymentError> {
        Self::new(url, &TlsFiles::default())
    }

    /// Replaces the durability settings.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    pub(crate) fn tls_certificates(&self) -> Option<&TlsCertificates> {
        self.tls.as_ref()
    }
}

/// A local server, `redis://127.0.0.1:6379`, without TLS.
impl Default for Deployment {
    fn default() -> Self {
        let url = RedisUrl::default();
        Self {
            durability: Durability::default_for(&url),
            url,
            tls: None,
        }
    }
}

impl fmt::Debug for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployment")
            .field("url", &self.url)
            .field("tls_files", &self.tls.is_some())
            .field("durability", &self.durability)
            .finish()
    }
}
