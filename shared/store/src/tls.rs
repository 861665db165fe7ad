//! TLS settings for `rediss://` deployments, and plain-words causes for TLS failures.
//!
//! Without a CA file the system's trust store is used (managed Redis services present
//! publicly trusted certificates). A client certificate is sent only when both its
//! certificate and key files are set.

use std::path::{Path, PathBuf};

use redis::{ClientTlsConfig, TlsCertificates};
use serde::{Deserialize, Serialize};

use crate::tls_pair::PairError;

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

    /// Reads the files, with an error naming the setting and the file; a client key that is
    /// not the certificate's is refused here, before any connection.
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
            (Some(cert), Some(key)) => {
                let client_cert = read("cert_file", cert)?;
                let client_key = read("key_file", key)?;
                crate::tls_pair::check(&client_cert, &client_key).map_err(|e| match e {
                    PairError::Mismatch => format!(
                        "tls.key_file {} does not match tls.cert_file {}",
                        key.display(),
                        cert.display()
                    ),
                    PairError::NoCertificate => format!("tls.cert_file {}: {e}", cert.display()),
                    PairError::NoKey | PairError::BadKey(_) => {
                        format!("tls.key_file {}: {e}", key.display())
                    }
                })?;
                Some(ClientTlsConfig {
                    client_cert,
                    client_key,
                })
            }
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
///
/// Which side refused matters: rustls says `invalid peer certificate: ...` when this client
/// does not accept the server's certificate, and `received fatal alert: ...` when the server
/// sent an alert, i.e. the server refused something of ours (with a client certificate: that
/// certificate). The alert is checked first: `UnknownCA` in an alert is the server not
/// trusting our certificate, not us distrusting its.
pub fn explain(error: &str) -> Option<&'static str> {
    let e = error.to_ascii_lowercase();
    if let Some(alert) = received_alert(&e) {
        return explain_alert(alert);
    }
    if e.contains("unknownissuer") || e.contains("unknown issuer") || e.contains("unknownca") {
        Some(
            "the server's certificate is signed by a CA this client does not trust: set tls.ca_file (PANTHEON_TLS__CA_FILE) to the CA that signed it",
        )
    } else if e.contains("notvalidforname") || e.contains("not valid for name") {
        Some(
            "the server's certificate does not name the host in the URL (hostname mismatch): use the name the certificate was issued for",
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

/// The alert's name (lower case, rustls's `Debug` spelling) in `received fatal alert: X`.
fn received_alert(lowercase: &str) -> Option<&str> {
    let at = lowercase.find("received fatal alert: ")? + "received fatal alert: ".len();
    lowercase[at..]
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .filter(|name| !name.is_empty())
}

/// What an alert from the server says about us.
fn explain_alert(alert: &str) -> Option<&'static str> {
    match alert {
        // TLS 1.3 servers (Redis with `tls-auth-clients yes`) send `certificate_required`;
        // older ones a bare `handshake_failure`.
        "certificaterequired" | "handshakefailure" => Some(
            "the server requires a client certificate: set tls.cert_file and tls.key_file (PANTHEON_TLS__CERT_FILE, PANTHEON_TLS__KEY_FILE)",
        ),
        "unknownca"
        | "badcertificate"
        | "certificateunknown"
        | "unsupportedcertificate"
        | "accessdenied" => Some(
            "the server refused this client's certificate (tls.cert_file): it is not signed by a CA the server trusts (its tls-ca-cert-file)",
        ),
        "certificateexpired" | "certificaterevoked" => Some(
            "the server refused this client's certificate (tls.cert_file): it has expired or was revoked",
        ),
        "decrypterror" => Some(
            "the server refused this client's certificate (tls.cert_file): the signature made with tls.key_file does not verify",
        ),
        _ => None,
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
        assert!(
            explain("received fatal alert: UnknownCA")
                .is_some_and(|s| s.contains("server refused this client's certificate"))
        );
        assert!(
            explain("received fatal alert: BadCertificate")
                .is_some_and(|s| s.contains("server refused this client's certificate"))
        );
        assert_eq!(explain("Connection refused (os error 111)"), None);
    }
}
