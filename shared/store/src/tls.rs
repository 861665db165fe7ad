//! TLS settings for `rediss://` deployments, and plain-words causes for TLS failures.
//!
//! Without a CA file the system's trust store is used (managed Redis services present
//! publicly trusted certificates). A client certificate is sent only when both its
//! certificate and key files are set.

use std::path::{Path, PathBuf};

use redis::{ClientTlsConfig, TlsCertificates};
use serde::{Deserialize, Serialize};

/// `[tls]` settings: PEM files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate(s) that signed the server's certificate (default: the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for servers that require one (`tls-auth-clients yes`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// True when no file is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// Reads the files, with an error naming the setting and the file.
    pub fn load(&self) -> Result<Option<TlsCertificates>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let read = |setting: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| format!("tls.{setting} {}: {e}", path.display()))
                .and_then(|bytes| {
                    if bytes.windows(5).any(|w| w == b"-----") {
                        Ok(bytes)
                    } else {
                        Err(format!(
                            "tls.{setting} {} is not a PEM file",
                            path.display()
                        ))
                    }
                })
        };
        let root_cert = self
            .ca_file
            .as_deref()
            .map(|p| read("ca_file", p))
            .transpose()?;
        let client_tls = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read("cert_file", cert)?,
                client_key: read("key_file", key)?,
            }),
            (None, None) => None,
            (Some(_), None) => return Err("tls.cert_file is set but tls.key_file is not".into()),
            (None, Some(_)) => return Err("tls.key_file is set but tls.cert_file is not".into()),
        };
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }
}

/// The cause of a TLS failure in plain words, when `error` (as text) is one; `None` for
/// anything else.
pub fn explain(error: &str) -> Option<&'static str> {
    let e = error.to_ascii_lowercase();
    if e.contains("unknownissuer") || e.contains("unknown issuer") || e.contains("unknownca") {
        Some(
            "the server's certificate is signed by a CA this client does not trust: set tls.ca_file (PANTHEON_TLS__CA_FILE) to the CA that signed it",
        )
    } else if e.contains("notvalidforname") || e.contains("not valid for name") {
        Some(
            "the server's certificate does not name the host in the URL (hostname mismatch): use the name the certificate was issued for",
        )
    } else if e.contains("certificaterequired")
        || e.contains("certificate required")
        || e.contains("handshakefailure") && e.contains("alert")
    {
        Some(
            "the server requires a client certificate: set tls.cert_file and tls.key_file (PANTHEON_TLS__CERT_FILE, PANTHEON_TLS__KEY_FILE)",
        )
    } else if e.contains("badcertificate") || e.contains("unknown_ca") || e.contains("decrypterror")
    {
        Some(
            "the server rejected the client certificate: it is not signed by a CA the server trusts",
        )
    } else if e.contains("invalidcontenttype")
        || e.contains("corrupt message")
        || e.contains("invalidmessage")
    {
        Some(
            "the server did not answer in TLS: is this a TLS port (rediss://), or a plain one (redis://)?",
        )
    } else if e.contains("expired") && e.contains("cert") {
        Some("the server's certificate has expired")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_client_certificate_settings_are_refused() {
        let files = TlsFiles {
            cert_file: Some("/nonexistent/c.pem".into()),
            ..TlsFiles::default()
        };
        assert!(files.load().err().is_some_and(|e| e.contains("key_file")));
        let files = TlsFiles {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        assert!(
            files
                .load()
                .err()
                .is_some_and(|e| e.contains("tls.ca_file /nonexistent/ca.pem"))
        );
    }

    #[test]
    fn explains_the_usual_tls_failures() {
        assert!(
            explain("invalid peer certificate: UnknownIssuer")
                .is_some_and(|s| s.contains("ca_file"))
        );
        assert!(
            explain("invalid peer certificate: NotValidForName")
                .is_some_and(|s| s.contains("hostname"))
        );
        assert!(
            explain("received fatal alert: CertificateRequired")
                .is_some_and(|s| s.contains("cert_file"))
        );
        assert_eq!(explain("Connection refused (os error 111)"), None);
    }
}
