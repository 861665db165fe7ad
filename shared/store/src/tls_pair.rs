//! Whether a client certificate and a private key belong together, checked when the `[tls]`
//! files are read: a mismatched pair is a local configuration error, and finding it here
//! names the two files, where the handshake would only fail with a vague alert from the
//! server.

use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why a certificate and key (PEM) cannot be used together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    #[error("holds no PEM certificate")]
    NoCertificate,
    #[error("holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    #[error("the key cannot be used: {0}")]
    BadKey(String),
    #[error("the key does not match the certificate")]
    Mismatch,
}

/// Checks that `key_pem` is the private key of the first certificate in `cert_pem`.
pub fn check(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), PairError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(PairError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| PairError::NoKey)?;
    match CertifiedKey::from_der(chain, key, &default_provider()) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(PairError::Mismatch),
        Err(e) => Err(PairError::BadKey(e.to_string())),
    }
}
