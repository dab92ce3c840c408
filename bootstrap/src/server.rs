//! The HTTP server loop: hyper with the timeouts poem's own `Server` does not offer.
//!
//! poem's server cannot bound how long a client may take to send its request headers, so a
//! client that sends half a request line and waits would hold a connection (and a task) forever
//! (slowloris). Here every connection gets hyper's header-read timeout and an idle timeout, and
//! shutdown stops accepting at once and lets in-flight requests finish within a grace period.
//!
//! HTTP/1.1 only: hyper's header-read timeout does not cover cleartext HTTP/2 (h2c), which a
//! login service behind a TLS-terminating proxy has no use for (so there is no HTTP/2 header
//! limit to set either: a client's HTTP/2 preface is refused like any malformed request). Slow
//! request bodies are bounded by the HTTP layer's body-read timeout.
//!
//! A request's head (request line and headers) may be at most `max_header_bytes` long: hyper's
//! read buffer is capped there, and a head that does not fit is answered 431. The replies hyper
//! writes itself (400, 431, 414) and the 408 for a head that timed out are hardened like every
//! other response, by the I/O wrapper in `replies`.

mod replies;

use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use latchkey_http::{EdgeSettings, LoopReplies};
use poem::{endpoint::BoxEndpoint, web::LocalAddr, web::RemoteAddr, Endpoint, Response};
use replies::{Exchange, Guarded};
use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
};

#[derive(Clone, Debug)]
pub struct ServeSettings {
    /// A request's headers must arrive within this long of the server starting to read them.
    pub header_read_timeout: Duration,
    /// The longest request head (request line and headers) accepted; longer ones get 431. At
    /// least 8192 (hyper's smallest read buffer; smaller values are raised to it).
    pub max_header_bytes: usize,
    /// The headers of the replies the loop writes itself (HSTS, CORS), as the app's.
    pub edge: EdgeSettings,
    /// A connection with no bytes in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// After the shutdown signal, in-flight requests get this long to finish.
    pub shutdown_grace: Duration,
    /// Between the shutdown signal and closing the listener: readiness answers 503 while new
    /// connections are still served, so load balancers stop sending before anything is refused.
    pub shutdown_delay: Duration,
}

/// Serves `endpoint` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    endpoint: BoxEndpoint<'static, Response>,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let endpoint = Arc::new(endpoint);
    let replies = Arc::new(LoopReplies::new(settings.edge));
    let graceful = GracefulShutdown::new();
    // HTTP/1 only: hyper's own builder, since hyper-util's `auto` cannot bound a head.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        // A head longer than this is answered 431, however it arrives; the read buffer may
        // not be smaller (hyper panics below its minimum of 8192).
        .max_header_size(settings.max_header_bytes)
        .max_buf_size(settings.max_header_bytes.max(MIN_BUF_SIZE));
    let local = listener.local_addr()?;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let endpoint = endpoint.clone();
        let activity = Activity::new();
        let in_service = activity.clone();
        let exchange = Exchange::default();
        let taken = exchange.clone();
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let endpoint = endpoint.clone();
                let busy = in_service.request_started();
                taken.request_taken(req.method());
                async move {
                    let _busy = busy;
                    let req = poem::Request::from((
                        req,
                        LocalAddr(local.into()),
                        RemoteAddr(peer.into()),
                        http::uri::Scheme::HTTP,
                    ));
                    let response: http::Response<_> = endpoint.get_response(req).await.into();
                    Ok::<_, Infallible>(response)
                }
            });
        let io = TokioIo::new(Guarded::new(
            Tracked {
                inner: stream,
                activity: activity.clone(),
            },
            exchange.clone(),
            replies.clone(),
        ));
        let connection = graceful.watch(builder.serve_connection(io, service));
        let idle_timeout = settings.idle_timeout;
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                ended = &mut connection => {
                    if ended.as_ref().err().is_some_and(hyper::Error::is_timeout) {
                        exchange.head_timed_out();
                    }
                }
                () = activity.idle_for(idle_timeout) => {
                    tracing::debug!(%peer, "closing an idle connection");
                }
            }
            // The connection, and with it the socket, is dropped only here: a head that timed
            // out is answered 408 as it closes (see `replies`).
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(settings.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; dropping the remaining connections");
        }
    }
    Ok(())
}

/// hyper's smallest read buffer (`max_buf_size` panics below it).
const MIN_BUF_SIZE: usize = 8192;

/// When a connection last moved a byte, and how many of its requests are being handled,
/// shared between its I/O, its service and its watchdog.
#[derive(Clone)]
struct Activity {
    started: Instant,
    last_millis: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
}

/// Marks a request as being handled until dropped (also when the handler is cancelled).
struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_millis: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(AtomicU64::new(0)),
        }
    }

    fn request_started(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(now, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `limit` while no request was being handled: a
    /// request waiting on a busy hashing pool or a slow store is not idleness.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
            let deadline = self.started + last + limit;
            if Instant::now() >= deadline {
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                tokio::time::sleep(limit).await;
                continue;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

struct Tracked<T> {
    inner: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
