//! Syslog over TLS (RFC 5425) on loopback with certificates made by the test: a client that
//! trusts the collector's CA delivers; when client certificates are required, a client without
//! one is refused (counted) and one with a certificate from the configured CA delivers.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, loopback_config};
use khetnet_collector::net::Count;
use khetnet_retention::record::{Body, Input};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Pki {
    ca: CertificateDer<'static>,
    client: (CertificateDer<'static>, Vec<u8>),
}

/// A CA, a server certificate for `localhost` and a client certificate, written as PEM files.
fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &ca).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["gateway-1010100001".to_string()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca).unwrap();

    std::fs::write(dir.join("server.crt"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    Pki {
        ca: ca.der().clone(),
        client: (client.der().clone(), client_key.serialize_der()),
    }
}

fn connector(pki: &Pki, with_client_cert: bool) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = if with_client_cert {
        builder
            .with_client_auth_cert(
                vec![pki.client.0.clone()],
                PrivateKeyDer::Pkcs8(pki.client.1.clone().into()),
            )
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    TlsConnector::from(Arc::new(config))
}

/// Connects, sends `lines` LF-framed, closes; `Err` when the server refused the client.
async fn send(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
    lines: &[String],
) -> std::io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    for line in lines {
        tls.write_all(format!("{line}\n").as_bytes()).await?;
    }
    tls.flush().await?;
    tls.shutdown().await?;
    // TLS 1.3 reports a refused client certificate only on the next read.
    let mut buf = [0u8; 16];
    match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

fn users(records: &[khetnet_retention::Record]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.origin.input == Input::SyslogTls)
        .filter_map(|r| match &r.body {
            Body::Session(s) => Some(s.user.clone()),
            _ => None,
        })
        .collect()
}

fn login(user: &str) -> String {
    format!("<134>Nov 21 10:59:59 router hotspot,account,info,debug {user} (10.5.50.9): logged in")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_syslog_is_received() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut config = loopback_config();
    config.syslog_tls = "127.0.0.1:0".into();
    config.tls_cert = Some(dir.path().join("server.crt"));
    config.tls_key = Some(dir.path().join("server.key"));
    let mut h = Harness::start(config).await;
    send(
        &connector(&pki, false),
        h.addr("syslog_tls"),
        &[login("tls1"), login("tls2")],
    )
    .await
    .unwrap();
    let records = h
        .wait_for("two TLS sessions", |r| users(r).len() == 2)
        .await;
    assert_eq!(users(&records), ["tls1", "tls2"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_when_required() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut config = loopback_config();
    config.syslog_tls = "127.0.0.1:0".into();
    config.tls_cert = Some(dir.path().join("server.crt"));
    config.tls_key = Some(dir.path().join("server.key"));
    config.tls_client_ca = Some(dir.path().join("ca.crt"));
    let mut h = Harness::start(config).await;
    let refused = send(
        &connector(&pki, false),
        h.addr("syslog_tls"),
        &[login("nocert")],
    )
    .await;
    assert!(
        refused.is_err(),
        "a client without a certificate is refused"
    );
    send(
        &connector(&pki, true),
        h.addr("syslog_tls"),
        &[login("withcert")],
    )
    .await
    .unwrap();
    let records = h
        .wait_for("the certified client's message", |r| !users(r).is_empty())
        .await;
    assert_eq!(users(&records), ["withcert"]);
    assert_eq!(
        h.running()
            .sources()
            .get(Input::SyslogTls, Count::Malformed),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn unreadable_tls_files_put_only_tls_down() {
    let mut config = loopback_config();
    config.syslog_tls = "127.0.0.1:0".into();
    config.tls_cert = Some("/nonexistent/server.crt".into());
    config.tls_key = Some("/nonexistent/server.key".into());
    let mut h = Harness::start(config).await;
    let tls = h
        .running()
        .inputs()
        .iter()
        .find(|i| i.name == "syslog_tls")
        .unwrap()
        .clone();
    match tls.state {
        khetnet_collector::InputState::Down(why) => {
            assert!(why.contains("/nonexistent/server.crt"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert!(h.running().local_addr("syslog_tcp").is_some());
    h.stop().await;
}
