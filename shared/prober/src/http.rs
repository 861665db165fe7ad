//! One health probe: `GET <url>` with a deadline, a capped body read, redirects followed only
//! on the same host, and target addresses checked against the address policy — for IP
//! literals before the request, for names inside DNS resolution (so a name that resolves to
//! the metadata service is refused too, not just the literal address).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pantheon_domain::health::ProbeError;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Client, Url};

use crate::address_policy::AddressPolicy;
use crate::config::ProberConfig;

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: u32,
    pub error: Option<ProbeError>,
    /// The answer's `X-Pantheon-Load` header, as sent (at most 64 bytes; see
    /// [`crate::load_reports`]); `None` when it sent none.
    pub load: Option<String>,
}

/// The resolver refused every address of a name.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves only to denied addresses ({range})")]
struct Denied {
    name: String,
    range: String,
}

#[derive(Debug, Clone)]
struct PolicyResolver {
    policy: AddressPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut denied = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(range) => {
                        denied = Some(range);
                        false
                    }
                })
                .collect();
            if allowed.is_empty()
                && let Some(range) = denied
            {
                let err: Box<dyn std::error::Error + Send + Sync> = Box::new(Denied {
                    name: host,
                    range: range.to_string(),
                });
                return Err(err);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Probes health URLs; cheap to clone (one shared connection pool).
#[derive(Debug, Clone)]
pub struct HttpProber {
    client: Client,
    /// Keeps no idle connection: every request opens a new one (confirmations, ADR 0008).
    fresh: Client,
    policy: AddressPolicy,
    timeout: Duration,
    max_body: usize,
    success: Vec<(u16, u16)>,
}

impl HttpProber {
    pub fn new(config: &ProberConfig) -> Result<Self, String> {
        let policy = AddressPolicy::new(config.deny.clone(), config.allow.clone());
        let redirects = || {
            reqwest::redirect::Policy::custom(|attempt| {
                let first_host = attempt
                    .previous()
                    .first()
                    .and_then(|u| u.host_str().map(str::to_owned));
                if attempt.previous().len() > 3 {
                    attempt.error("too many redirects")
                } else if attempt.url().host_str().map(str::to_owned) != first_host {
                    attempt.error("redirect to another host")
                } else {
                    attempt.follow()
                }
            })
        };
        let builder = || {
            Client::builder()
                .dns_resolver(Arc::new(PolicyResolver {
                    policy: policy.clone(),
                }))
                .redirect(redirects())
                .connect_timeout(config.timeout)
                .timeout(config.timeout)
                .user_agent(concat!("pantheon-prober/", env!("CARGO_PKG_VERSION")))
        };
        let client = builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let fresh = builder()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            client,
            fresh,
            policy,
            timeout: config.timeout,
            max_body: config.max_body_bytes,
            success: config.success_statuses.clone(),
        })
    }

    fn failed(start: Instant, status: Option<u16>, kind: ProbeError) -> Outcome {
        Outcome {
            ok: false,
            status,
            latency_ms: elapsed_ms(start),
            error: Some(kind),
            load: None,
        }
    }

    /// Probes one URL. Never fails: every problem is an outcome with an error kind.
    pub async fn probe(&self, url: &str) -> Outcome {
        self.probe_with(&self.client, url, self.timeout).await
    }

    /// [`HttpProber::probe`] with a longer deadline than the configured `timeout` (at least
    /// it): the prober's patience when many nodes look slow at once (Lifeguard).
    pub async fn probe_within(&self, url: &str, timeout: Duration) -> Outcome {
        let timeout = timeout.max(self.timeout);
        self.probe_with(&self.client, url, timeout).await
    }

    /// Probes one URL on a new connection (none is kept for reuse), so a broken pooled
    /// keep-alive connection cannot make the node look dead; `timeout` as in
    /// [`HttpProber::probe_within`].
    pub async fn probe_fresh(&self, url: &str, timeout: Duration) -> Outcome {
        let timeout = timeout.max(self.timeout);
        self.probe_with(&self.fresh, url, timeout).await
    }

    async fn probe_with(&self, client: &Client, url: &str, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let Ok(parsed) = Url::parse(url) else {
            return Self::failed(start, None, ProbeError::Protocol);
        };
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && self.policy.check(ip).is_err()
        {
            return Self::failed(start, None, ProbeError::Policy);
        }
        match tokio::time::timeout(timeout, self.fetch(client, parsed, timeout)).await {
            Err(_) => Self::failed(start, None, ProbeError::Timeout),
            Ok(Err(kind)) => Self::failed(start, None, kind),
            Ok(Ok((status, load))) => {
                let ok = self
                    .success
                    .iter()
                    .any(|(a, b)| (*a..=*b).contains(&status));
                Outcome {
                    ok,
                    status: Some(status),
                    latency_ms: elapsed_ms(start),
                    error: (!ok).then_some(ProbeError::Status),
                    load,
                }
            }
        }
    }

    async fn fetch(
        &self,
        client: &Client,
        url: Url,
        timeout: Duration,
    ) -> Result<(u16, Option<String>), ProbeError> {
        let request = client.get(url).timeout(timeout);
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let load = response
            .headers()
            .get(crate::load_reports::HEADER)
            .map(|v| crate::load_reports::header_text(v.as_bytes()));
        // Read (part of) the body so a well-behaved node's connection can be reused; stop at
        // the cap so a node streaming garbage cannot make us read forever.
        let mut read = 0usize;
        while read < self.max_body {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => break,
                Err(e) => return Err(classify(e)),
            }
        }
        Ok((status, load))
    }
}

fn elapsed_ms(start: Instant) -> u32 {
    u32::try_from(start.elapsed().as_millis()).unwrap_or(u32::MAX)
}

fn classify(e: reqwest::Error) -> ProbeError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.downcast_ref::<Denied>().is_some() {
            return ProbeError::Policy;
        }
        source = s.source();
    }
    if e.is_timeout() {
        ProbeError::Timeout
    } else if e.is_connect() {
        ProbeError::Refused
    } else {
        ProbeError::Protocol
    }
}
