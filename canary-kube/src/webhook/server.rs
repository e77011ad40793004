//! The webhook's HTTPS server: TLS with certificates read again when they change, HTTP/1.1,
//! one path ([`HOLD_PATH`]), bounded bodies and reads, and a graceful stop.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::certificates::Certificates;
use super::{RolloutSource, review};
use crate::Client;
use crate::error::{Error, Result};

/// The path the API server posts reviews to (`clientConfig.service.path` in
/// `deploy/webhook.yaml`).
pub const HOLD_PATH: &str = "/hold";

/// The largest request body read, in bytes: 7 MiB. A review of an UPDATE carries the object
/// twice (`object` and `oldObject`), each within the API server's own request limit of
/// 3 MiB (k8s.io/apiserver `pkg/server/config.go`, `NewConfig`: `MaxRequestBodyBytes`),
/// plus the review's own fields. Larger bodies are answered 413, which the API server treats
/// as a failed call (`failurePolicy: Ignore`: the write goes through, the controller holds).
pub const BODY_LIMIT: usize = 7 * 1024 * 1024;

/// How much of a body over [`BODY_LIMIT`] is read and thrown away before answering 413, so
/// that the client reads the answer instead of a reset connection; beyond it the connection
/// is closed.
const DISCARD_LIMIT: usize = 16 * 1024 * 1024;

/// How long the server waits on a client before it closes the connection (or, for a body,
/// answers 408).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The TLS handshake: 10 s by default.
    pub handshake: Duration,
    /// A request's head, idle time between requests included: 30 s by default (hyper's
    /// own). The API server keeps connections to a webhook open and reuses them, so idle
    /// ones are not closed sooner.
    pub head: Duration,
    /// A request's body: 10 s by default. The API server gives up on a call after the
    /// configuration's `timeoutSeconds` (5 in `deploy/webhook.yaml`, at most 30).
    pub body: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(10),
            head: Duration::from_secs(30),
            body: Duration::from_secs(10),
        }
    }
}

/// The most connections served at once; more are closed as they come (the API server then
/// counts the call as failed and, with `failurePolicy: Ignore`, lets the write through).
const MAX_CONNECTIONS: usize = 256;

/// How long open connections get to finish their request once the server stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The admission webhook's HTTPS server, bound to its address with its certificate read.
#[derive(Debug)]
pub struct WebhookServer {
    listener: TcpListener,
    certificates: Arc<Certificates>,
    timeouts: Timeouts,
}

/// Serves the webhook for `client` on `address` with the PEM certificate chain `cert` and
/// private key `key` until `shutdown` completes: [`WebhookServer::bind`] then
/// [`WebhookServer::serve`].
///
/// # Errors
///
/// [`Error::Webhook`] when the address cannot be bound or the certificate or key cannot be
/// used.
pub async fn serve(
    client: Client,
    address: SocketAddr,
    cert: &Path,
    key: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let server = WebhookServer::bind(address, cert, key).await?;
    server.serve(Arc::new(client), shutdown).await;
    Ok(())
}

impl WebhookServer {
    /// Binds `address` and reads the certificate chain `cert` and private key `key` (PEM
    /// files, as in a cert-manager Secret's `tls.crt` and `tls.key`). Each new connection
    /// reads the files again and uses their new contents when they changed.
    ///
    /// # Errors
    ///
    /// [`Error::Webhook`] when the address cannot be bound or the files cannot be used, so
    /// that a misconfigured webhook fails at start.
    pub async fn bind(address: SocketAddr, cert: &Path, key: &Path) -> Result<Self> {
        let certificates = Arc::new(Certificates::load(cert, key).await?);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| Error::webhook(format!("cannot listen on {address}"), e))?;
        Ok(WebhookServer {
            listener,
            certificates,
            timeouts: Timeouts::default(),
        })
    }

    /// The server with other [`Timeouts`] than the defaults.
    #[must_use]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The address the server listens on (with the port the system chose for port 0).
    ///
    /// # Errors
    ///
    /// [`Error::Webhook`] when the socket cannot tell.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::webhook("the webhook's address", e))
    }

    /// Answers reviews with the Rollouts of `rollouts` until `shutdown` completes, then lets
    /// open connections finish their request for a few seconds.
    pub async fn serve<S: RolloutSource + 'static>(
        self,
        rollouts: Arc<S>,
        shutdown: impl Future<Output = ()>,
    ) {
        let (stop, stopped) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) if connections.len() >= MAX_CONNECTIONS => {
                        tracing::warn!(%peer, "the webhook has too many connections; closing one");
                        drop(stream);
                    }
                    Ok((stream, _)) => {
                        connections.spawn(connection(
                            stream,
                            Arc::clone(&self.certificates),
                            Arc::clone(&rollouts),
                            self.timeouts,
                            stopped.clone(),
                        ));
                    }
                    Err(error) => {
                        // Out of file descriptors, for one: wait rather than spin.
                        tracing::warn!(%error, "the webhook cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.listener);
        let _ = stop.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("the webhook closes connections that did not finish in time");
        }
    }
}

/// One connection: TLS handshake with the current certificate, then HTTP/1.1 requests until
/// the client closes, a read times out, or the server stops.
async fn connection<S: RolloutSource + 'static>(
    stream: TcpStream,
    certificates: Arc<Certificates>,
    rollouts: Arc<S>,
    timeouts: Timeouts,
    mut stopped: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(certificates.config().await);
    let tls = match tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, "webhook TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("webhook TLS handshake timed out");
            return;
        }
    };
    let service = service_fn(move |request| {
        let rollouts = Arc::clone(&rollouts);
        async move { Ok::<_, Infallible>(respond(&*rollouts, request, timeouts.body).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.head);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(error) = served {
                tracing::debug!(%error, "webhook connection ended");
            }
        }
        () = async { let _ = stopped.wait_for(|stopped| *stopped).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The answer to one HTTP request. Error answers are fixed texts: nothing of the request is
/// echoed.
async fn respond<S: RolloutSource + ?Sized>(
    rollouts: &S,
    request: Request<Incoming>,
    body_timeout: Duration,
) -> Response<Full<Bytes>> {
    if request.uri().path() != HOLD_PATH {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if request.method() != Method::POST {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only POST is served");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > (BODY_LIMIT + DISCARD_LIMIT) as u64) {
        return too_large();
    }
    let body = match tokio::time::timeout(body_timeout, read_body(request.into_body())).await {
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "the body was not sent in time"),
        Ok(Body::Unreadable) => return text(StatusCode::BAD_REQUEST, "the body cannot be read"),
        Ok(Body::TooLarge) => return too_large(),
        Ok(Body::Read(body)) => body,
    };
    match review(rollouts, &body).await {
        Ok(answer) => {
            let mut response = Response::new(Full::new(Bytes::from(answer)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => {
            tracing::debug!(%error, "the webhook cannot read a review");
            text(
                StatusCode::BAD_REQUEST,
                "the body is not an AdmissionReview with a request",
            )
        }
    }
}

/// A request body, read.
enum Body {
    Read(Vec<u8>),
    TooLarge,
    Unreadable,
}

/// Reads a body of at most [`BODY_LIMIT`] bytes; a larger one is read on, and thrown away,
/// up to [`DISCARD_LIMIT`] more.
async fn read_body(mut body: Incoming) -> Body {
    let mut read = Vec::new();
    let mut discarded = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Body::Unreadable;
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if discarded == 0 && read.len() + data.len() <= BODY_LIMIT {
            read.extend_from_slice(&data);
        } else {
            read = Vec::new();
            discarded += data.len();
            if discarded > DISCARD_LIMIT {
                return Body::TooLarge;
            }
        }
    }
    if discarded > 0 {
        Body::TooLarge
    } else {
        Body::Read(read)
    }
}

fn too_large() -> Response<Full<Bytes>> {
    let limit = BODY_LIMIT / (1024 * 1024);
    let mut response = text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body is larger than {limit} MiB"),
    );
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
