//! A main listener, as both services run it: [`Listener::run`] accepts, admits each connection
//! under the caps before any TLS work, and serves it to its end (the handshake under a timeout,
//! the verified client certificate attached to every request as [`PeerCert`], HTTP/1.1 or
//! HTTP/2, and a close when it goes idle or the server stops).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::connections::{Activity, Admission, Permit};
use crate::tls::{PeerCert, handshake_failure_reason};

/// How long a connection may take for each stage.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The TLS handshake.
    pub handshake: Duration,
    /// An HTTP/1.1 request's headers.
    pub header: Duration,
    /// Without a request in flight before the connection is closed.
    pub idle: Duration,
}

/// What a connection reports to its service (metrics, aggregated audit).
pub trait Events: Send + Sync + 'static {
    /// The handshake failed (`reason` from [`handshake_failure_reason`], or `timeout`).
    fn handshake_failed(&self, reason: &'static str, remote: SocketAddr);
    /// The connection was closed for being idle.
    fn idle_closed(&self);
    /// The connection was refused before the handshake (`reason`: which cap).
    fn connection_refused(&self, reason: &'static str);
}

/// A bound main listener with its caps, routes and timeouts.
pub struct Listener {
    /// The bound socket.
    pub tcp: tokio::net::TcpListener,
    /// The connection caps.
    pub admission: Arc<Admission>,
    /// The service's routes.
    pub router: Router,
    /// Stage timeouts.
    pub timeouts: Timeouts,
}

impl Listener {
    /// Accepts until `stop_accepting` resolves, serving each admitted connection with the TLS
    /// configuration `acceptor` gives at accept. Then sets `stop` (every connection finishes its
    /// open requests and closes; HTTP/2 sends GOAWAY) and waits up to 30 s for them to close.
    pub async fn run(
        self,
        acceptor: impl Fn() -> TlsAcceptor,
        events: Arc<dyn Events>,
        stop: &tokio::sync::watch::Sender<bool>,
        stop_accepting: impl Future<Output = ()>,
    ) {
        let Listener { tcp: listener, admission, router, timeouts } = self;
        tokio::pin!(stop_accepting);
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut stop_accepting => break,
            };
            // Refused before the handshake: a refused client costs no TLS work.
            let permit = match admission.admit(remote.ip()) {
                Ok(permit) => permit,
                Err(refusal) => {
                    events.connection_refused(refusal.reason());
                    tracing::debug!(%remote, reason = refusal.reason(), "connection refused");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let conn = Connection { acceptor: acceptor(), router: router.clone(), timeouts };
            let (stop, events) = (stop.subscribe(), events.clone());
            tokio::spawn(async move { conn.serve(tcp, remote, permit, stop, events.as_ref()).await });
        }
        drop(listener);
        let _ = stop.send(true);
        if tokio::time::timeout(Duration::from_secs(30), admission.all_closed()).await.is_err() {
            tracing::warn!("connections still open after 30 s; closing");
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}

/// An accepted connection's service: the TLS configuration current at accept, the routes and
/// the timeouts.
pub struct Connection {
    /// The listener's TLS configuration when the connection was accepted.
    pub acceptor: TlsAcceptor,
    /// The service's routes.
    pub router: Router,
    /// Stage timeouts.
    pub timeouts: Timeouts,
}

impl Connection {
    /// Serves `tcp` until it ends, `stop` turns true or it goes idle; `permit` holds its slot
    /// under the connection caps until then.
    pub async fn serve(
        self,
        tcp: tokio::net::TcpStream,
        remote: SocketAddr,
        permit: Permit,
        stop: tokio::sync::watch::Receiver<bool>,
        events: &dyn Events,
    ) {
        serve(self, tcp, remote, permit, stop, events).await;
    }
}

async fn serve(
    Connection { acceptor, router, timeouts }: Connection,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    permit: Permit,
    mut stop: tokio::sync::watch::Receiver<bool>,
    events: &dyn Events,
) {
    let stream = match tokio::time::timeout(timeouts.handshake, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let reason = handshake_failure_reason(&e);
            events.handshake_failed(reason, remote);
            tracing::info!(%remote, reason, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            events.handshake_failed("timeout", remote);
            tracing::info!(%remote, "TLS handshake timed out");
            return;
        }
    };
    // The verifier made a certificate mandatory, so a missing one here is a bug: drop the
    // connection rather than serve it unidentified.
    let Some(peer) = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|der| PeerCert::from_der(der).ok())
    else {
        tracing::error!(%remote, "handshake completed without a usable client certificate");
        return;
    };
    let activity = Activity::new();
    let requests = activity.clone();
    let service = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        let guard = requests.request();
        req.extensions_mut().insert(peer.clone());
        let response = router.clone().oneshot(req.map(axum::body::Body::new));
        async move {
            let response = response.await;
            drop(guard);
            response
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(timeouts.header);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let idle = activity.idle_for(timeouts.idle);
    tokio::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
                break;
            }
            () = &mut idle, if !closing => {
                events.idle_closed();
                tracing::debug!(%remote, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
    drop(permit);
}
