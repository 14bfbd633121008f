//! One HTTP/1.1 GET over TCP, with rustls when the URL is https: the
//! kubeconfig's CA (else the system's), its client certificate, and its
//! bearer token or basic auth. Every failure becomes a [`FetchError`] that
//! names its cause; the `Authorization` header is marked sensitive and
//! never printed.

use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine as _;
use http_body_util::{BodyExt, Empty};
use hyper::{
    Request, StatusCode,
    body::Bytes,
    header::{AUTHORIZATION, HOST, HeaderValue, USER_AGENT},
};
use hyper_util::rt::TokioIo;
use rustls::{
    CertificateError, ClientConfig, RootCertStore,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

use super::{FetchError, HttpSource};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// GETs `uri`, giving up after `timeout` in all.
pub(super) async fn get(uri: &hyper::Uri, src: &HttpSource, timeout: Duration) -> Result<Vec<u8>, FetchError> {
    let url = src.url.clone();
    match tokio::time::timeout(timeout, get_inner(uri, src)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout { url, after: timeout }),
    }
}

async fn get_inner(uri: &hyper::Uri, src: &HttpSource) -> Result<Vec<u8>, FetchError> {
    let url = src.url.as_str();
    let https = uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https"));
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let started = Instant::now();
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(FetchError::Connect { url: url.into(), reason: e.to_string() }),
        Err(_) => return Err(FetchError::Timeout { url: url.into(), after: started.elapsed() }),
    };
    let _ = tcp.set_nodelay(true);
    if https {
        let config = tls_config(src)?;
        let name = src.creds.as_ref().and_then(|c| c.tls_server_name.clone()).unwrap_or_else(|| host.clone());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| FetchError::Tls { url: url.into(), reason: format!("bad server name {name:?}: {e}") })?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| FetchError::Tls { url: url.into(), reason: tls_reason(&e, src, &name) })?;
        request(tls, uri, src).await
    } else {
        request(tcp, uri, src).await
    }
}

async fn request<S>(stream: S, uri: &hyper::Uri, src: &HttpSource) -> Result<Vec<u8>, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let url = src.url.as_str();
    let conn_err = |e: hyper::Error| FetchError::Connect { url: url.into(), reason: e.to_string() };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(conn_err)?;
    // The connection task ends when the response is read and `sender` drops.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = Request::get(path)
        .header(HOST, authority)
        .header(USER_AGENT, concat!("ktrace/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Source(format!("{url}: {e}")))?;
    if let Some(auth) = authorization(src) {
        req.headers_mut().insert(AUTHORIZATION, auth);
    }
    let resp = sender.send_request(req).await.map_err(|e| {
        if e.is_incomplete_message() || e.is_closed() {
            FetchError::Truncated { url: url.into(), reason: format!("the server closed the connection: {e}") }
        } else {
            conn_err(e)
        }
    })?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    buf.extend_from_slice(d);
                }
            }
            Err(e) => {
                return Err(FetchError::Truncated {
                    url: url.into(),
                    reason: format!("the connection ended after {} bytes ({e})", buf.len()),
                });
            }
        }
    }
    match status {
        StatusCode::OK => Ok(buf),
        StatusCode::UNAUTHORIZED => Err(FetchError::Unauthorized { url: url.into(), hint: unauthorized_hint(src) }),
        StatusCode::FORBIDDEN => Err(FetchError::Forbidden {
            url: url.into(),
            user: src.creds.as_ref().map(|c| c.user.clone()).unwrap_or_else(|| "system:anonymous".into()),
        }),
        StatusCode::NOT_FOUND => Err(FetchError::NotFound { url: url.into() }),
        s => {
            let text = String::from_utf8_lossy(&buf);
            let first: String =
                text.lines().next().unwrap_or("").chars().filter(|c| !c.is_control()).take(200).collect();
            Err(FetchError::Status { url: url.into(), status: s.as_u16(), body: first })
        }
    }
}

fn authorization(src: &HttpSource) -> Option<HeaderValue> {
    let c = src.creds.as_ref()?;
    let value = if let Some(t) = &c.token {
        format!("Bearer {}", t.0.trim())
    } else if let Some((user, pass)) = &c.basic {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", pass.0)))
    } else {
        return None;
    };
    let mut v = HeaderValue::from_str(&value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn unauthorized_hint(src: &HttpSource) -> String {
    match &src.creds {
        Some(c) if c.token.is_some() => format!(
            "the server rejected the bearer token of user {:?} from {} (expired or wrong token?)",
            c.user,
            c.path.display()
        ),
        Some(c) if c.basic.is_some() => format!("the server rejected the username/password from {}", c.path.display()),
        Some(c) if c.client_cert.is_some() => {
            format!("the server rejected the client certificate of user {:?} from {}", c.user, c.path.display())
        }
        Some(c) => format!("user {:?} in {} has no token or client certificate", c.user, c.path.display()),
        None => src.no_creds_why.clone().unwrap_or_else(|| "no credentials were sent".into()),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(src: &HttpSource) -> Result<ClientConfig, FetchError> {
    let url = src.url.as_str();
    let tls_err = |reason: String| FetchError::Tls { url: url.into(), reason };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?;
    let creds = src.creds.as_ref();
    let builder = if creds.is_some_and(|c| c.insecure) {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        let (pem, origin) = match creds.and_then(|c| c.ca.clone()) {
            Some(ca) => ca,
            None => (
                std::fs::read(SYSTEM_CA).map_err(|e| tls_err(format!("reading the system CAs {SYSTEM_CA}: {e}")))?,
                SYSTEM_CA.to_string(),
            ),
        };
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| tls_err(format!("{origin} is not PEM: {e}")))?;
            // A bad entry in a system bundle should not stop the good ones.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(tls_err(format!("{origin} holds no usable CA certificate")));
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match creds.and_then(|c| c.client_cert.as_ref()) {
        Some((cert_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| tls_err(format!("the client certificate is not PEM: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.0.as_bytes())
                .map_err(|_| tls_err("the client key is not a PEM private key".into()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| tls_err(format!("the client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Names the certificate problem behind a failed handshake.
fn tls_reason(e: &io::Error, src: &HttpSource, name: &str) -> String {
    let ca = match src.creds.as_ref().and_then(|c| c.ca.as_ref()) {
        Some((_, origin)) => {
            format!(
                "the CA in {origin} of kubeconfig {}",
                src.creds.as_ref().map(|c| c.path.display().to_string()).unwrap_or_default()
            )
        }
        None => format!("any CA trusted by this system ({SYSTEM_CA}); the kubeconfig names no certificate-authority"),
    };
    let Some(rustls_err) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return format!("the handshake failed: {e}");
    };
    match rustls_err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => format!("the server's certificate is not signed by {ca}"),
            CertificateError::BadSignature => {
                format!("the server's certificate has a bad signature (checked against {ca})")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                "the server's certificate is not valid for {name:?} (set tls-server-name in the kubeconfig to a name it holds)"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clock)".into()
            }
            other => format!("the server's certificate was refused: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => {
            format!("the server refused the handshake ({alert:?}); check the client certificate")
        }
        other => format!("the handshake failed: {other}"),
    }
}

/// `insecure-skip-tls-verify: true`: accept any server certificate, but
/// still check handshake signatures so the session is at least consistent.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
