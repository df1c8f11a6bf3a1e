//! TLS on the gRPC port: with a certificate configured (generated here with rcgen) the
//! service answers over TLS to a client that trusts it, refuses plain text, and still
//! answers health probes on its plain-text health port.

use dvk_tests::{Service, health, settings, tonic_health_client};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_serves_tls_only_and_probes_use_the_health_port() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    let health_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut s = settings(&dir.path().join("registration"), None);
    s.tls.tls_cert_file = Some(cert_file);
    s.tls.tls_key_file = Some(key_file);
    s.health_listen = Some(health_addr);
    let service = Service::registration_with_settings(s).await;
    let serving = health::health_check_response::ServingStatus::Serving as i32;
    let check = |ch: Channel| async move {
        tonic_health_client(ch)
            .check(health::HealthCheckRequest { service: dvk_registration::SERVICE_NAME.into() })
            .await
            .map(|r| r.into_inner().status)
    };

    // A client that trusts the certificate is served over TLS.
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(cert.pem())).domain_name("localhost");
    let secure = Channel::from_shared(format!("https://{}", service.addr)).unwrap().tls_config(tls).unwrap();
    let mut status = None;
    for _ in 0..100 {
        if let Ok(ch) = secure.connect().await
            && let Ok(s) = check(ch).await
        {
            status = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(serving));

    // Plain text to the service port gets nowhere.
    let plain = Channel::from_shared(format!("http://{}", service.addr)).unwrap();
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(ch) => check(ch).await.is_err(),
    };
    assert!(refused, "a plain-text call was answered on the TLS port");

    // A client that does not trust the certificate is refused.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let untrusted =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(other.cert.pem())).domain_name("localhost");
    let wrong = Channel::from_shared(format!("https://{}", service.addr)).unwrap().tls_config(untrusted).unwrap();
    let refused = match wrong.connect().await {
        Err(_) => true,
        Ok(ch) => check(ch).await.is_err(),
    };
    assert!(refused, "a client that does not trust the certificate was served");

    // Probes: the plain-text health port answers.
    let probe = Channel::from_shared(format!("http://{health_addr}")).unwrap().connect().await.unwrap();
    assert_eq!(check(probe).await.unwrap(), serving);
    service.stop().await;
}
