//! The few requests gatehouse makes to a provider (discovery, JWKS, token
//! endpoint): one HTTP/1.1 request per connection over our own hyper and
//! rustls (no second HTTP stack), each under the provider's timeout, with
//! the answer's body capped.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

/// Discovery documents and JWKS are a few kilobytes; Entra's JWKS about 10.
const MAX_ANSWER: usize = 1024 * 1024;

pub struct Client {
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

/// The provider could not be asked: no connection, a timeout, or an answer
/// that is not HTTP.
#[derive(Debug, Clone)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Client {
    pub fn new(ca_file: Option<&std::path::Path>, timeout: Duration) -> Result<Client, String> {
        let roots = match ca_file {
            Some(ca) => crate::pem::load_ca_bundle(ca)?,
            None => crate::tls::system_roots()?,
        };
        let mut tls = rustls::ClientConfig::builder_with_provider(crate::pem::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Client { tls: Arc::new(tls), timeout })
    }

    pub async fn get(&self, url: &str) -> Result<(StatusCode, Bytes), Unreachable> {
        self.send(Method::GET, url, None, None).await
    }

    /// POST of a form, with `Authorization` if given.
    pub async fn post_form(
        &self,
        url: &str,
        authorization: Option<&str>,
        form: String,
    ) -> Result<(StatusCode, Bytes), Unreachable> {
        self.send(Method::POST, url, authorization, Some(form)).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        authorization: Option<&str>,
        form: Option<String>,
    ) -> Result<(StatusCode, Bytes), Unreachable> {
        match tokio::time::timeout(self.timeout, self.send_now(method, url, authorization, form)).await {
            Ok(r) => r,
            Err(_) => Err(Unreachable(format!("{url}: no answer within {}s", self.timeout.as_secs()))),
        }
    }

    async fn send_now(
        &self,
        method: Method,
        url: &str,
        authorization: Option<&str>,
        form: Option<String>,
    ) -> Result<(StatusCode, Bytes), Unreachable> {
        let fail = |what: &str, e: &dyn std::fmt::Display| Unreachable(format!("{url}: {what}: {e}"));
        let uri: http::Uri = url.parse().map_err(|e| fail("not a URL", &e))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(Unreachable(format!("{url}: not an http(s) URL"))),
        };
        let host = uri.host().ok_or_else(|| Unreachable(format!("{url}: no host")))?.to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_else(|| host.clone());
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let tcp =
            tokio::net::TcpStream::connect((bare.as_str(), port)).await.map_err(|e| fail("cannot connect", &e))?;
        let _ = tcp.set_nodelay(true);
        let body = form.clone().map(Bytes::from).unwrap_or_default();
        let mut req = Request::builder().method(method).uri(path).header(header::HOST, authority);
        req = req.header(header::ACCEPT, "application/json").header(header::USER_AGENT, "gatehouse");
        if form.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(a) = authorization {
            let v = HeaderValue::from_str(a).map_err(|_| Unreachable("unusable Authorization".into()))?;
            req = req.header(header::AUTHORIZATION, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| fail("request", &e))?;
        let resp = if https {
            let name = rustls::pki_types::ServerName::try_from(bare.clone()).map_err(|e| fail("server name", &e))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| fail("TLS", &e))?;
            exchange(hyper_util::rt::TokioIo::new(tls), req).await
        } else {
            exchange(hyper_util::rt::TokioIo::new(tcp), req).await
        }
        .map_err(|e| fail("HTTP", &e))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| fail("answer cut or too large", &e))?
            .to_bytes();
        Ok((status, bytes))
    }
}

async fn exchange<T>(
    io: T,
    req: Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, Box<dyn std::error::Error + Send + Sync>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send.send_request(req).await?)
}
