//! `rediss://` with certificates generated at test time: a CA file, with and without client
//! certificates; the usual failures, each named for the side that refused (this client not
//! trusting the server, or the server refusing our certificate); and a key that does not
//! match its certificate, refused as configuration before any connection.

use std::time::Duration;

use pantheon_client::{JoinOp, Pantheon};
use pantheon_projector::ProjectorConfig;
use pantheon_store::{Deployment, TlsFiles};
use pantheon_test_support::tls::{TestTls, TlsOptions};

use super::{spawn, wait_applied};
use crate::cli::pantheon;
use crate::diagnoses::{assert_one_line, pantheon_plain};

const WAIT: Duration = Duration::from_secs(20);

fn files(tls: &TestTls, client_cert: bool) -> TlsFiles {
    TlsFiles {
        ca_file: Some(tls.ca_file().to_path_buf()),
        cert_file: client_cert.then(|| tls.client_cert_file().to_path_buf()),
        key_file: client_cert.then(|| tls.client_key_file().to_path_buf()),
    }
}

async fn connect_error(url: &str, files: &TlsFiles) -> String {
    let deployment = Deployment::new(url, files).expect("deployment");
    match Pantheon::builder(url, "t")
        .deployment(deployment)
        .connect()
        .await
    {
        Ok(_) => panic!("connected although TLS should fail"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_story_runs_over_tls_with_and_without_client_certificates() {
    for require_client_cert in [false, true] {
        let tls = TestTls::start_with(TlsOptions {
            require_client_cert,
            ..TlsOptions::default()
        })
        .await;
        let deployment =
            Deployment::new(&tls.url(), &files(&tls, require_client_cert)).expect("deployment");
        let mut config = ProjectorConfig::new(deployment.clone(), "tls");
        config.lease_ttl = Duration::from_millis(1500);
        config.block = Duration::from_millis(100);
        config.prober_watchdog = None;
        let _projector = spawn(config);
        let client = Pantheon::builder(&tls.url(), "tls")
            .deployment(deployment)
            .connect()
            .await
            .expect("connect over TLS");
        let id = client
            .join(JoinOp::new("n1", "http://127.0.0.1", 9, "health"))
            .await
            .expect("join");
        wait_applied(&client, id, WAIT).await;
        let ids = client.distribute(["a", "b"]).await.expect("distribute");
        wait_applied(&client, ids[0], WAIT).await;
        // No prober runs: n1 stays joining and the keys wait, unowned (read over TLS).
        let n1 = client.node_health("n1").await.expect("read").expect("n1");
        assert_eq!(n1.state, "joining");
        assert!(client.key_node("a").await.expect("read").is_none());

        // The CLI reads the same settings from the documented environment variables.
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = tls.ca_file().display().to_string();
        let cert = tls.client_cert_file().display().to_string();
        let key = tls.client_key_file().display().to_string();
        let mut env = vec![("PANTHEON_TLS__CA_FILE", ca.as_str())];
        if require_client_cert {
            env.push(("PANTHEON_TLS__CERT_FILE", cert.as_str()));
            env.push(("PANTHEON_TLS__KEY_FILE", key.as_str()));
        }
        let run = pantheon(
            dir.path(),
            &env,
            &[
                "nodes",
                "--json",
                "--redis-url",
                &tls.url(),
                "--cluster",
                "tls",
            ],
        )
        .await;
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("\"n1\""), "{run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_say_unknown_ca_hostname_mismatch_or_client_certificate_required() {
    let tls = TestTls::start_with(TlsOptions {
        require_client_cert: true,
        ..TlsOptions::default()
    })
    .await;
    // A CA that did not sign the server's certificate.
    let unknown_ca = TlsFiles {
        ca_file: Some(tls.other_ca_file().to_path_buf()),
        ..TlsFiles::default()
    };
    let e = connect_error(&tls.url(), &unknown_ca).await;
    assert!(e.contains("CA this client does not trust"), "{e}");
    // The right CA, but no client certificate for a server that requires one.
    let e = connect_error(&tls.url(), &files(&tls, false)).await;
    assert!(e.contains("requires a client certificate"), "{e}");
    // A certificate issued for another name.
    let wrong_name = TestTls::start_with(TlsOptions::mismatched_name()).await;
    let e = connect_error(&wrong_name.url(), &files(&wrong_name, false)).await;
    assert!(e.contains("hostname mismatch"), "{e}");
    // A plain URL with TLS files is a configuration error, not a silent plain connection.
    let e = Deployment::new(
        &tls.url().replace("rediss://", "redis://"),
        &files(&tls, true),
    )
    .expect_err("tls files with redis://")
    .to_string();
    assert!(e.contains("use rediss://"), "{e}");
}

/// A client certificate signed by a CA the server does not trust: the server refuses it (an
/// alert in the handshake), and the error says so instead of blaming this client's trust in
/// the server's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_the_server_does_not_trust_is_the_servers_refusal() {
    let tls = TestTls::start_with(TlsOptions {
        require_client_cert: true,
        ..TlsOptions::default()
    })
    .await;
    let foreign = TlsFiles {
        ca_file: Some(tls.ca_file().to_path_buf()),
        cert_file: Some(tls.other_client_cert_file().to_path_buf()),
        key_file: Some(tls.other_client_key_file().to_path_buf()),
    };
    let e = connect_error(&tls.url(), &foreign).await;
    assert!(
        e.contains("server refused this client's certificate"),
        "{e}"
    );
    assert!(!e.contains("this client does not trust"), "{e}");

    let dir = tempfile::tempdir().expect("temp dir");
    let ca = tls.ca_file().display().to_string();
    let cert = tls.other_client_cert_file().display().to_string();
    let key = tls.other_client_key_file().display().to_string();
    let env = [
        ("PANTHEON_TLS__CA_FILE", ca.as_str()),
        ("PANTHEON_TLS__CERT_FILE", cert.as_str()),
        ("PANTHEON_TLS__KEY_FILE", key.as_str()),
    ];
    let run = pantheon_plain(dir.path(), &env, &["nodes", "--redis-url", &tls.url()]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_one_line(&run);
    assert!(
        run.stderr
            .contains("server refused this client's certificate"),
        "{run:?}"
    );
}

/// A key file that is not the certificate's is a local configuration error: exit 64 naming
/// both files, found before any connection (the same answer whether or not a server listens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_match_the_certificate_is_a_configuration_error() {
    let tls = TestTls::start_with(TlsOptions {
        require_client_cert: true,
        ..TlsOptions::default()
    })
    .await;
    let ca = tls.ca_file().display().to_string();
    let cert = tls.client_cert_file().display().to_string();
    let key = tls.other_client_key_file().display().to_string();
    let sentence = format!("tls.key_file {key} does not match tls.cert_file {cert}");
    let mismatched = TlsFiles {
        ca_file: Some(tls.ca_file().to_path_buf()),
        cert_file: Some(tls.client_cert_file().to_path_buf()),
        key_file: Some(tls.other_client_key_file().to_path_buf()),
    };
    let e = Deployment::new(&tls.url(), &mismatched)
        .expect_err("a key of another certificate")
        .to_string();
    assert!(e.contains(&sentence), "{e}");

    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        ("PANTHEON_TLS__CA_FILE", ca.as_str()),
        ("PANTHEON_TLS__CERT_FILE", cert.as_str()),
        ("PANTHEON_TLS__KEY_FILE", key.as_str()),
        ("PANTHEON_LOCAL_REDIS__START", "false"),
    ];
    let nowhere = format!(
        "rediss://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    );
    for args in [
        vec!["nodes", "--redis-url", &tls.url()],
        vec!["nodes", "--redis-url", &nowhere],
        vec!["up", "--redis-url", &tls.url()],
    ] {
        let run = pantheon_plain(dir.path(), &env, &args).await;
        assert_eq!(run.code, 64, "{args:?}: {run:?}");
        assert!(run.stderr.contains(&sentence), "{args:?}: {run:?}");
        assert!(!run.stderr.contains("cannot reach"), "{args:?}: {run:?}");
        if args[0] == "nodes" {
            assert_one_line(&run);
        }
    }
}
