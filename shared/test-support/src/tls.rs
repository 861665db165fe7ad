//! A real Redis speaking TLS only, with certificates made at test time, for tests of
//! Pantheon's `rediss://` support: server verification, client certificates (mutual TLS),
//! an unknown CA, and a certificate for the wrong host name.
//!
//! [`TestTls::start`] generates with `rcgen`, as PEM files in a temp dir:
//! - a CA ([`ca_file`](TestTls::ca_file)),
//! - a server certificate signed by it, for `localhost` and the IP `127.0.0.1` by default
//!   ([`TlsOptions::server_names`]: put only `example.invalid` there for mismatch tests),
//! - a client certificate signed by the same CA ([`client_cert_file`](TestTls::client_cert_file)),
//! - a second, unrelated CA and a client certificate signed by it
//!   ([`other_ca_file`](TestTls::other_ca_file)): what "unknown CA" tests trust or present.
//!
//! It then runs `redis-server --port 0 --tls-port <free>` (no plain-text port) with
//! `tls-auth-clients yes` or `no` ([`TlsOptions::require_client_cert`]).

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::auth::{Probe, Server, redis_cli};

/// How to start a [`TestTls`].
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// `tls-auth-clients yes`: clients must present a certificate signed by the CA.
    /// Otherwise `no`: clients are not asked for one.
    pub require_client_cert: bool,
    /// Subject alternative names of the server certificate: DNS names, or IP addresses
    /// (which become IP SANs). Default: `localhost` and `127.0.0.1`.
    pub server_names: Vec<String>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            require_client_cert: false,
            server_names: vec![String::from("localhost"), String::from("127.0.0.1")],
        }
    }
}

impl TlsOptions {
    /// A server certificate valid only for `example.invalid`: a client that checks the host
    /// name must refuse it, whether it connects to `localhost` or `127.0.0.1`.
    pub fn mismatched_name() -> Self {
        TlsOptions {
            server_names: vec![String::from("example.invalid")],
            ..TlsOptions::default()
        }
    }
}

/// A TLS-only Redis on 127.0.0.1 and the certificates to talk to it. Drop kills and reaps the
/// server and removes the files.
pub struct TestTls {
    options: TlsOptions,
    /// The PEM files in `certs`, so that getters can hand out `&Path`.
    files: Vec<PathBuf>,
    server: Server,
    // Last field: the server reads the files at start, and on restart.
    certs: TempDir,
}

impl fmt::Debug for TestTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestTls")
            .field("url", &self.url())
            .field("options", &self.options)
            .field("certs", &self.certs.path())
            .finish_non_exhaustive()
    }
}

const CA: &str = "ca.crt";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";
const CLIENT_CERT: &str = "client.crt";
const CLIENT_KEY: &str = "client.key";
const OTHER_CA: &str = "other-ca.crt";
const OTHER_CLIENT_CERT: &str = "other-client.crt";
const OTHER_CLIENT_KEY: &str = "other-client.key";
const FILES: [&str; 8] = [
    CA,
    SERVER_CERT,
    SERVER_KEY,
    CLIENT_CERT,
    CLIENT_KEY,
    OTHER_CA,
    OTHER_CLIENT_CERT,
    OTHER_CLIENT_KEY,
];

impl TestTls {
    /// Default [`TlsOptions`]: certificate for `localhost` and `127.0.0.1`, no client
    /// certificate required.
    pub async fn start() -> TestTls {
        Self::start_with(TlsOptions::default()).await
    }

    /// Generates the certificates, starts the server and waits until
    /// `redis-cli --tls` gets PONG from it (with the CA and the client certificate).
    ///
    /// # Panics
    /// When a certificate cannot be made or the server does not answer within 10 s.
    pub async fn start_with(options: TlsOptions) -> TestTls {
        let certs = tempfile::Builder::new()
            .prefix("pantheon-tls-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for certificates: {e}"));
        write_certificates(certs.path(), &options.server_names)
            .unwrap_or_else(|e| panic!("cannot generate test certificates: {e}"));
        let file = |name: &str| certs.path().join(name).display().to_string();
        let probe = Probe::Cli {
            args: vec![
                "--tls".into(),
                "--cacert".into(),
                file(CA),
                "--cert".into(),
                file(CLIENT_CERT),
                "--key".into(),
                file(CLIENT_KEY),
                "-h".into(),
                "127.0.0.1".into(),
            ],
        };
        let auth_clients = if options.require_client_cert {
            "yes"
        } else {
            "no"
        };
        let config = |port: u16| {
            format!(
                "port 0\ntls-port {port}\nsave \"\"\nappendonly no\n\
                 tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients {auth_clients}\n",
                crate::auth::quote(&file(SERVER_CERT)),
                crate::auth::quote(&file(SERVER_KEY)),
                crate::auth::quote(&file(CA)),
            )
        };
        let server = Server::start("TLS redis-server", probe, crate::free_port, &[], config).await;
        let files = FILES.iter().map(|name| certs.path().join(name)).collect();
        TestTls {
            options,
            files,
            server,
            certs,
        }
    }

    /// `rediss://127.0.0.1:<port>`: verified against the IP SAN.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.server.port())
    }

    /// `rediss://localhost:<port>`: verified against the DNS SAN.
    pub fn url_localhost(&self) -> String {
        format!("rediss://localhost:{}", self.server.port())
    }

    /// The TLS port (there is no plain-text port).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The options the server was started with.
    pub fn options(&self) -> &TlsOptions {
        &self.options
    }

    /// PEM of the CA that signed the server and client certificates: what clients trust.
    pub fn ca_file(&self) -> &Path {
        self.path(CA)
    }

    /// PEM of the server's certificate.
    pub fn server_cert_file(&self) -> &Path {
        self.path(SERVER_CERT)
    }

    /// PEM of a client certificate signed by [`ca_file`](Self::ca_file).
    pub fn client_cert_file(&self) -> &Path {
        self.path(CLIENT_CERT)
    }

    /// PEM (PKCS#8) of the key of [`client_cert_file`](Self::client_cert_file).
    pub fn client_key_file(&self) -> &Path {
        self.path(CLIENT_KEY)
    }

    /// PEM of a CA unrelated to the server: a client trusting only it must refuse the server.
    pub fn other_ca_file(&self) -> &Path {
        self.path(OTHER_CA)
    }

    /// PEM of a client certificate signed by [`other_ca_file`](Self::other_ca_file): the
    /// server must refuse it when it requires client certificates.
    pub fn other_client_cert_file(&self) -> &Path {
        self.path(OTHER_CLIENT_CERT)
    }

    /// PEM (PKCS#8) of the key of [`other_client_cert_file`](Self::other_client_cert_file).
    pub fn other_client_key_file(&self) -> &Path {
        self.path(OTHER_CLIENT_KEY)
    }

    /// Runs `redis-cli --tls --cacert <ca> [--cert <client> --key <key>] -h 127.0.0.1 -p
    /// <port> <command>` (bounded) and returns its trimmed output, or the error (e.g. a
    /// refused handshake). For checks that need no TLS support in the `redis` crate.
    pub async fn cli(
        &self,
        ca: &Path,
        client: Option<(&Path, &Path)>,
        command: &[&str],
    ) -> Result<String, String> {
        let mut args = vec![
            String::from("--tls"),
            String::from("--cacert"),
            ca.display().to_string(),
        ];
        if let Some((cert, key)) = client {
            args.extend([
                String::from("--cert"),
                cert.display().to_string(),
                String::from("--key"),
                key.display().to_string(),
            ]);
        }
        args.extend([
            String::from("-h"),
            String::from("127.0.0.1"),
            String::from("-p"),
            self.port().to_string(),
        ]);
        redis_cli(&args, command).await
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts the server again on the same port with the same certificates.
    ///
    /// # Panics
    /// When it does not come back within 10 s.
    pub async fn restart(&mut self) {
        self.server.restart().await;
    }

    fn path(&self, name: &str) -> &Path {
        self.files
            .iter()
            .find(|p| p.file_name().is_some_and(|f| f == name))
            .map(PathBuf::as_path)
            .unwrap_or_else(|| panic!("no certificate file {name}"))
    }
}

/// Writes the CA, server, client, other-CA and other-client certificates and keys.
fn write_certificates(dir: &Path, server_names: &[String]) -> Result<(), String> {
    let write = |name: &str, contents: String| {
        std::fs::write(dir.join(name), contents).map_err(|e| format!("cannot write {name}: {e}"))
    };
    let (ca, ca_pem) = new_ca("Pantheon test CA")?;
    write(CA, ca_pem)?;
    let (server_cert, server_key) = leaf(
        &ca,
        "Pantheon test server",
        server_names,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    write(SERVER_CERT, server_cert)?;
    write(SERVER_KEY, server_key)?;
    let (client_cert, client_key) = leaf(
        &ca,
        "Pantheon test client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    write(CLIENT_CERT, client_cert)?;
    write(CLIENT_KEY, client_key)?;
    let (other, other_pem) = new_ca("Unrelated test CA")?;
    write(OTHER_CA, other_pem)?;
    let (other_cert, other_key) = leaf(
        &other,
        "Unknown test client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    write(OTHER_CLIENT_CERT, other_cert)?;
    write(OTHER_CLIENT_KEY, other_key)?;
    Ok(())
}

/// A self-signed CA: the issuer to sign with, and its certificate as PEM.
fn new_ca(name: &str) -> Result<(Issuer<'static, KeyPair>, String), String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((Issuer::new(params, key), cert.pem()))
}

/// A certificate signed by `issuer` and its PKCS#8 key, both PEM.
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    names: &[String],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    // ECDSA keys only sign (no key encipherment).
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}
