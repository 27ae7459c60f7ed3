//! One HTTP/1.1-over-TLS client connection of the load generator and the requests it sends;
//! shared by the closed-loop runner (`load.rs`), the workloads and the soak.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// TLS server name (SNI and certificate check) and `Host`.
    pub host: String,
    /// Client configuration with the identity to present.
    pub tls: Arc<rustls::ClientConfig>,
}

/// Why an operation failed.
#[derive(Debug)]
pub struct OpError(pub String);

impl OpError {
    /// An unexpected status.
    pub fn status(what: &str, status: StatusCode) -> Self {
        Self(format!("{what}_{}", status.as_u16()))
    }
}

/// An HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

/// A response, body collected.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Target {
    /// TCP connect, TLS handshake, HTTP/1.1 handshake.
    pub async fn connect(&self) -> Result<Conn, OpError> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|_| OpError("connect".into()))?;
        let _ = tcp.set_nodelay(true);
        let name =
            ServerName::try_from(self.host.clone()).map_err(|_| OpError("server_name".into()))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|_| OpError("tls".into()))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|_| OpError("http_handshake".into()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    /// A request to this target with `Host` set.
    pub fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.host.as_str())
    }
}

impl Conn {
    /// Sends one request and reads the whole response.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, OpError> {
        self.sender
            .ready()
            .await
            .map_err(|_| OpError("connection_closed".into()))?;
        let res = self
            .sender
            .send_request(req)
            .await
            .map_err(|_| OpError("http".into()))?;
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|_| OpError("body".into()))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Builds a request with a body and content type.
pub fn with_body(
    builder: hyper::http::request::Builder,
    content_type: &'static str,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, OpError> {
    builder
        .header(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        )
        .body(Full::new(body))
        .map_err(|_| OpError("request".into()))
}

/// Builds a request without a body.
pub fn empty(builder: hyper::http::request::Builder) -> Result<Request<Full<Bytes>>, OpError> {
    builder
        .body(Full::new(Bytes::new()))
        .map_err(|_| OpError("request".into()))
}

