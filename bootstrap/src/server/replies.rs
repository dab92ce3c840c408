//! The replies hyper writes itself, replaced by hardened ones.
//!
//! hyper answers a request it cannot parse on its own, before any service runs: 400 for a
//! malformed request line or header, 431 when the head outgrows the read buffer
//! (`max_buf_size`, which is how `MAX_HEADER_BYTES` is enforced), 414 for an overlong target.
//! Those replies are a bare status line with `content-length: 0`, and no setting changes them.
//! On a header-read timeout hyper writes nothing and closes.
//!
//! [`Guarded`] sits between hyper and the socket and follows the responses in the outgoing
//! byte stream: it holds each response head back until the head is complete (hyper may hand it
//! over in several writes), passes bodies through by their framing (`content-length`, chunked,
//! none for HEAD, 204, 304 and 1xx), and recognises a reply of hyper's own as a final head with
//! one of the statuses hyper answers with by itself ([`HYPERS_OWN`]) that lacks
//! `x-content-type-options`, which every response of the app carries
//! ([`latchkey_http::harden`]). Such a head is replaced by the hardened JSON reply of
//! [`LoopReplies`] for the same status, with `connection: close`; hyper closes the connection
//! after it anyway. When the connection's task learns that hyper gave up waiting for a request
//! head that had started to arrive on a connection not answered yet, the hardened 408 is written
//! as the connection closes.
//!
//! After such a reply the connection is closed gently: the write side is shut, and what the
//! client still sends is read and dropped for a moment (at most [`LINGER_TIME`] and
//! [`LINGER_BYTES`]) before closing. Closing a socket with unread bytes (the rest of a head over
//! the limit) makes the kernel send a reset, which can destroy the reply before the client
//! has read it.
//!
//! Anything in the stream that is not the HTTP/1.x hyper writes (which would be a bug) switches
//! the inspection off for the rest of the connection: bytes then pass as they are, so at worst
//! a reply of hyper's own goes out unhardened, as it did before, and an app response is never
//! altered.

use http::{Method, StatusCode};
use latchkey_http::LoopReplies;
use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{ready, Context, Poll},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How long a connection closed after a reply of the loop's own keeps reading the client.
pub(super) const LINGER_TIME: Duration = Duration::from_secs(2);
/// How much it reads (and drops) at most in that time.
pub(super) const LINGER_BYTES: usize = 1024 * 1024;
/// A response head longer than this is not one hyper wrote: inspection stops.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How much of what follows a head in the same write is sent with it.
const COALESCE_BYTES: usize = 64 * 1024;
/// The header every response of the app carries, and hyper's own replies do not.
const HARDENED_MARKER: &[u8] = b"x-content-type-options";
/// The statuses hyper answers with by itself: a request it cannot parse (400), a head over the
/// read buffer (431), a target over 64 KiB (414), a response it cannot encode (500).
const HYPERS_OWN: [u16; 4] = [400, 414, 431, 500];

/// What the service and the connection's task tell the connection's I/O.
#[derive(Clone, Default)]
pub(super) struct Exchange(Arc<ExchangeState>);

#[derive(Default)]
struct ExchangeState {
    /// The methods of the requests handed to the service and not yet answered, oldest first:
    /// a response to HEAD has no body whatever its `content-length` says.
    methods: Mutex<VecDeque<Method>>,
    head_timed_out: AtomicBool,
}

impl Exchange {
    /// A request reached the service (in order: HTTP/1.1 answers in order).
    pub(super) fn request_taken(&self, method: &Method) {
        self.methods().push_back(method.clone());
    }

    /// hyper gave up waiting for a request head (`header_read_timeout`).
    pub(super) fn head_timed_out(&self) {
        self.0.head_timed_out.store(true, Ordering::SeqCst);
    }

    fn answered(&self) -> Option<Method> {
        self.methods().pop_front()
    }

    fn did_head_time_out(&self) -> bool {
        self.0.head_timed_out.load(Ordering::SeqCst)
    }

    fn methods(&self) -> std::sync::MutexGuard<'_, VecDeque<Method>> {
        self.0
            .methods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The connection's I/O as hyper sees it: see the module's documentation.
///
/// It does not claim vectored writes, so hyper flattens each response into one buffer and
/// writes it with `poll_write` (a head may still arrive over several calls).
pub(super) struct Guarded<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// `None` only once dropped.
    io: Option<T>,
    framing: Framing,
    /// The response head being collected.
    head: Vec<u8>,
    /// Bytes accepted from hyper and not yet on the socket (`pending[sent..]`): a completed
    /// head, or the reply replacing it. They go out before anything else.
    pending: Vec<u8>,
    sent: usize,
    exchange: Exchange,
    replies: Arc<LoopReplies>,
    /// Bytes arrived on a connection that has not been answered yet: a request head timing out
    /// now had started. Once a response went out, a timeout closes the connection without a
    /// word, as hyper does: bytes read since cannot be told apart from the rest of a body, and
    /// a client reusing the connection would take an unasked 408 for its next request's answer.
    unanswered_bytes: bool,
    /// A final response head went out on this connection.
    answered_any: bool,
    /// A reply of hyper's own was replaced.
    replaced: bool,
    /// The head of the request being read (up to [`MAX_HEAD_BYTES`]), for the `Origin` a
    /// reply of the loop's own answers: an app on another origin can read why it failed.
    request_head: Vec<u8>,
    /// `request_head` holds a whole head (or all of it that is kept): what follows is a body.
    request_head_read: bool,
    /// A reply of the loop's own held back until more of the refused head is read for its
    /// `Origin` (a head over the limit, whose `Origin` comes after the bytes the server read).
    deferred: Option<StatusCode>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Guarded<T> {
    pub(super) fn new(io: T, exchange: Exchange, replies: Arc<LoopReplies>) -> Self {
        Self {
            io: Some(io),
            framing: Framing::Head,
            head: Vec::new(),
            pending: Vec::new(),
            sent: 0,
            exchange,
            replies,
            unanswered_bytes: false,
            answered_any: false,
            replaced: false,
            request_head: Vec::new(),
            request_head_read: false,
            deferred: None,
        }
    }

    /// Keeps the bytes of a request head as they arrive, when replies depend on them (CORS),
    /// up to [`MAX_HEAD_BYTES`] (twice the default `MAX_HEADER_BYTES`).
    fn note_incoming(&mut self, bytes: &[u8]) {
        if self.request_head_read || !self.replies.reads_requests() {
            return;
        }
        let room = MAX_HEAD_BYTES.saturating_sub(self.request_head.len());
        let from = self.request_head.len().saturating_sub(3);
        self.request_head
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        let tail = &self.request_head[from..];
        self.request_head_read = self.request_head.len() >= MAX_HEAD_BYTES
            || tail.windows(4).any(|window| window == b"\r\n\r\n")
            || tail.windows(2).any(|window| window == b"\n\n");
    }

    /// The reply of the loop's own for `status`, readable by the request's origin if allowed.
    fn loop_reply(&self, status: StatusCode) -> Vec<u8> {
        let head = &self.request_head;
        self.replies
            .render_for(status, target_of(head), origin_of(head))
    }

    fn io(&mut self) -> Pin<&mut T> {
        Pin::new(self.io.as_mut().expect("the I/O is there until dropped"))
    }

    /// Writes out `pending`.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let Self {
                io: socket,
                pending,
                sent,
                ..
            } = &mut *self;
            let socket = Pin::new(socket.as_mut().expect("the I/O is there until dropped"));
            let n = ready!(socket.poll_write(cx, &pending[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes bytes of a response head; returns how many (at least one). A completed head, or
    /// the reply replacing it, is added to `pending`.
    fn take_head(&mut self, bytes: &[u8]) -> usize {
        let before = self.head.len();
        self.head.extend_from_slice(bytes);
        // The blank line may have begun in an earlier write.
        let from = before.saturating_sub(3);
        let end = self.head[from..]
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .map(|at| from + at + 4);
        let Some(end) = end else {
            let prefix = self.head.len().min(5);
            if self.head[..prefix] != b"HTTP/"[..prefix] || self.head.len() > MAX_HEAD_BYTES {
                self.give_up();
            }
            return bytes.len();
        };
        self.head.truncate(end);
        let head = std::mem::take(&mut self.head);
        let mut answer = self.answer(head);
        self.pending.append(&mut answer);
        end - before
    }

    /// What goes out for the complete response head `head`; sets the framing that follows.
    fn answer(&mut self, head: Vec<u8>) -> Vec<u8> {
        let Some(parsed) = ResponseHead::parse(&head) else {
            tracing::debug!("the outgoing stream is not HTTP/1.x as expected; not inspected");
            self.framing = Framing::Opaque;
            return head;
        };
        if parsed.status < 200 {
            // 100 Continue comes before the final response; 101 hands the stream over.
            self.framing = if parsed.status == 101 {
                Framing::Opaque
            } else {
                Framing::Head
            };
            return head;
        }
        let method = self.exchange.answered();
        if !parsed.hardened && HYPERS_OWN.contains(&parsed.status) {
            tracing::debug!(
                status = parsed.status,
                "replacing a reply the HTTP library wrote itself"
            );
            self.framing = Framing::Replaced;
            self.replaced = true;
            let status = StatusCode::from_u16(parsed.status).unwrap_or(StatusCode::BAD_REQUEST);
            // Only a head over the limit is refused before all of it arrived.
            let origin_may_follow = parsed.status == 431
                && self.replies.reads_requests()
                && !self.request_head_read
                && origin_of(&self.request_head).is_none();
            if origin_may_follow {
                // Written once the rest of the head is read, as the connection closes.
                self.deferred = Some(status);
                return Vec::new();
            }
            return self.loop_reply(status);
        }
        self.unanswered_bytes = false;
        self.answered_any = true;
        // The next bytes in are the next request's; a long head's buffer is not kept.
        self.request_head = Vec::new();
        self.request_head_read = false;
        self.framing = parsed.body_framing(method.as_ref());
        head
    }

    /// Stops inspecting: what was held back goes out as it is, and all that follows.
    fn give_up(&mut self) {
        tracing::debug!("the outgoing stream is not HTTP/1.x as expected; not inspected");
        let head = std::mem::take(&mut self.head);
        self.pending.extend_from_slice(&head);
        self.framing = Framing::Opaque;
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = this.io().poll_read(cx, buf);
        if buf.filled().len() > before {
            this.note_incoming(&buf.filled()[before..]);
            if !this.answered_any {
                this.unanswered_bytes = true;
            }
        }
        polled
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Framing::Length(_) | Framing::Chunked(_) | Framing::Opaque = this.framing {
            // Straight through, but only up to the end of this body: the next head must be
            // looked at.
            let len = this.framing.body_len(buf);
            let n = ready!(this.io().poll_write(cx, &buf[..len]))?;
            this.framing.body_written(&buf[..n]);
            return Poll::Ready(Ok(n));
        }
        // A head, and what follows it in this write (up to `COALESCE_BYTES`): collected, so
        // that a response still goes out in one write, as hyper handed it over (a head and its
        // body in two small writes would wait on each other with Nagle's algorithm).
        let mut taken = 0;
        while taken < buf.len() && this.pending.len() < COALESCE_BYTES {
            let rest = &buf[taken..];
            taken += match this.framing {
                Framing::Head => this.take_head(rest),
                // Nothing follows a reply of the loop's own.
                Framing::Replaced => rest.len(),
                Framing::Length(_) | Framing::Chunked(_) | Framing::Opaque => {
                    let room = COALESCE_BYTES - this.pending.len();
                    let len = this.framing.body_len(rest).min(room);
                    this.pending.extend_from_slice(&rest[..len]);
                    this.framing.body_written(&rest[..len]);
                    len
                }
            };
        }
        // Sent now as far as the socket takes it; the rest before the next write, or at the
        // flush (an error shows again there).
        let _ = this.poll_pending(cx);
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        this.io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.head.is_empty() {
            // hyper never stops inside a head; if it did, what it wrote still goes out.
            this.give_up();
        }
        ready!(this.poll_pending(cx))?;
        if this.deferred.is_some() {
            // The held-back reply still has to go out on this socket.
            return Poll::Ready(Ok(()));
        }
        this.io().poll_shutdown(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Guarded<T> {
    fn drop(&mut self) {
        let Some(io) = self.io.take() else {
            return;
        };
        let between_responses = self.framing == Framing::Head
            && self.head.is_empty()
            && self.sent >= self.pending.len();
        let timed_out = self.exchange.did_head_time_out() && self.unanswered_bytes;
        let late =
            (timed_out && between_responses).then(|| self.loop_reply(StatusCode::REQUEST_TIMEOUT));
        if late.is_none() && !self.replaced {
            // An ordinary end: the socket closes as it always did.
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match self.deferred {
            Some(status) => {
                let (replies, head) =
                    (self.replies.clone(), std::mem::take(&mut self.request_head));
                runtime.spawn(async move {
                    let mut io = io;
                    let origin = read_on_for_origin(&mut io, &head).await;
                    let reply = replies.render_for(status, target_of(&head), origin.as_deref());
                    close_gently(io, Some(reply)).await;
                });
            }
            None => {
                runtime.spawn(close_gently(io, late));
            }
        }
    }
}

/// How long the rest of a refused head may take to arrive, for its `Origin`.
const ORIGIN_WAIT: Duration = Duration::from_secs(1);
/// A header line longer than this is not an `Origin` a browser sends; it is skipped.
const MAX_ORIGIN_LINE: usize = 4096;

/// Reads on in a head the server refused (its first bytes in `head`) up to its end, for the
/// value of an `Origin` header line; within [`ORIGIN_WAIT`] and [`LINGER_BYTES`], keeping no
/// more than one short line. What it reads is dropped, as lingering would drop it.
async fn read_on_for_origin<T: AsyncRead + Unpin>(socket: &mut T, head: &[u8]) -> Option<Vec<u8>> {
    let search = async {
        // The last line of `head` may go on in the socket.
        let partial = &head[head
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1)..];
        let mut line = partial.to_vec();
        let mut too_long = line.len() > MAX_ORIGIN_LINE;
        let mut buffer = [0u8; 8192];
        let mut read = 0;
        while read < LINGER_BYTES {
            let n = socket.read(&mut buffer).await.ok()?;
            if n == 0 {
                return None;
            }
            read += n;
            for &byte in &buffer[..n] {
                if byte != b'\n' {
                    if line.len() < MAX_ORIGIN_LINE {
                        line.push(byte);
                    } else {
                        too_long = true;
                    }
                    continue;
                }
                let whole = line.strip_suffix(b"\r").unwrap_or(&line);
                if whole.is_empty() {
                    return None;
                }
                if !too_long {
                    let mut with_end = whole.to_vec();
                    with_end.extend_from_slice(b"\r\n");
                    // A header line alone, under a stand-in request line.
                    let framed = [b"X / HTTP/1.1\r\n".as_slice(), &with_end].concat();
                    if let Some(origin) = origin_of(&framed) {
                        return Some(origin.to_vec());
                    }
                }
                line.clear();
                too_long = false;
            }
        }
        None
    };
    tokio::time::timeout(ORIGIN_WAIT, search)
        .await
        .ok()
        .flatten()
}

/// The target of the request line of `head`, or its start when the line is cut short (a
/// target over the limit): its path is what counts, and it comes first.
fn target_of(head: &[u8]) -> Option<&[u8]> {
    let line = head.split(|&b| b == b'\n').next()?;
    line.split(|&b| b == b' ').nth(1)
}

/// The value of the first `Origin` header in the (possibly cut short) request head `head`; a
/// line cut short is not read.
fn origin_of(head: &[u8]) -> Option<&[u8]> {
    let whole_lines = head.iter().rposition(|&b| b == b'\n')?;
    head[..whole_lines]
        .split(|&b| b == b'\n')
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            name.eq_ignore_ascii_case(b"origin")
                .then(|| value[1..].trim_ascii())
        })
}

/// Writes `reply` if there is one, shuts the write side, and reads what the client still sends
/// for a moment before the socket is closed (see the module's documentation).
async fn close_gently<T: AsyncRead + AsyncWrite + Unpin>(mut socket: T, reply: Option<Vec<u8>>) {
    let linger = async {
        if let Some(reply) = reply {
            socket.write_all(&reply).await?;
        }
        // It may be shut already (after a replaced reply hyper shut it itself).
        let _ = socket.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            let n = socket.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            drained += n;
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(LINGER_TIME, linger).await;
}

/// Where the outgoing byte stream is, response by response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// At or inside a response head (collected in `Guarded::head`).
    Head,
    /// This many more bytes of a body with a `content-length` (more than zero).
    Length(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Not followed any more: a body that runs to the end of the connection, or a stream that
    /// is not what hyper writes. Bytes pass as they are.
    Opaque,
    /// A reply of hyper's own was replaced: whatever hyper would still write is dropped.
    Replaced,
}

impl Framing {
    /// How many of `bytes` belong to the body being written (at least one).
    fn body_len(self, bytes: &[u8]) -> usize {
        match self {
            Self::Length(left) => {
                usize::try_from(left).map_or(bytes.len(), |left| left.min(bytes.len()))
            }
            Self::Chunked(mut chunk) => match chunk.advance(bytes) {
                Scan::Ends(at) => at,
                Scan::Continues | Scan::Invalid => bytes.len(),
            },
            Self::Head | Self::Opaque | Self::Replaced => bytes.len(),
        }
    }

    /// `written` (from [`Self::body_len`]'s bytes) went out.
    fn body_written(&mut self, written: &[u8]) {
        *self = match *self {
            Self::Length(left) => match left.saturating_sub(written.len() as u64) {
                0 => Self::Head,
                left => Self::Length(left),
            },
            Self::Chunked(mut chunk) => match chunk.advance(written) {
                Scan::Ends(_) => Self::Head,
                Scan::Continues => Self::Chunked(chunk),
                Scan::Invalid => {
                    tracing::debug!("a chunked body not as hyper writes it; not inspected");
                    Self::Opaque
                }
            },
            other => other,
        };
    }
}

/// What matters of a response head.
#[derive(Debug, PartialEq, Eq)]
struct ResponseHead {
    status: u16,
    /// It carries `x-content-type-options`: the app's.
    hardened: bool,
    content_length: Option<u64>,
    chunked: bool,
}

impl ResponseHead {
    /// `None` when `head` is not an HTTP/1.x response head.
    fn parse(head: &[u8]) -> Option<Self> {
        let mut lines = head
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
        let status_line = lines.next()?;
        let rest = status_line
            .strip_prefix(b"HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix(b"HTTP/1.0 "))?;
        let code = rest.get(..3)?;
        if !code.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let status = code
            .iter()
            .fold(0u16, |status, digit| status * 10 + u16::from(digit - b'0'));
        let mut parsed = Self {
            status,
            hardened: false,
            content_length: None,
            chunked: false,
        };
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = &line[..colon];
            let value = line[colon + 1..].trim_ascii();
            if name.eq_ignore_ascii_case(HARDENED_MARKER) {
                parsed.hardened = true;
            } else if name.eq_ignore_ascii_case(b"content-length") {
                parsed.content_length = Some(std::str::from_utf8(value).ok()?.parse().ok()?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                parsed.chunked = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
        }
        Some(parsed)
    }

    /// How the body after this final head is framed, for a request with `method`.
    fn body_framing(&self, method: Option<&Method>) -> Framing {
        let bodiless = method == Some(&Method::HEAD)
            || self.status == 204
            || self.status == 304
            || (method == Some(&Method::CONNECT) && (200..300).contains(&self.status));
        if bodiless {
            Framing::Head
        } else if self.chunked {
            Framing::Chunked(Chunk::start())
        } else {
            match self.content_length {
                Some(0) => Framing::Head,
                Some(length) => Framing::Length(length),
                // Delimited by the end of the connection.
                None => Framing::Opaque,
            }
        }
    }
}

/// Where a chunked body is, as hyper writes one: `<hex size>\r\n<data>\r\n` per chunk, then
/// `0\r\n`, trailer lines, and `\r\n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line: the size so far, and whether its digits have ended.
    Size {
        size: u64,
        digits_done: bool,
    },
    /// This many data bytes left.
    Data(u64),
    /// After the data: the `\r`, then the `\n`.
    DataCr,
    DataLf,
    /// After the last chunk: whether the current trailer line is empty so far (an empty one
    /// ends the body).
    Trailers {
        empty: bool,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// The body ends after this many of the bytes.
    Ends(usize),
    Continues,
    Invalid,
}

impl Chunk {
    fn start() -> Self {
        Self::Size {
            size: 0,
            digits_done: false,
        }
    }

    fn advance(&mut self, bytes: &[u8]) -> Scan {
        let mut i = 0;
        while i < bytes.len() {
            if let Self::Data(left) = *self {
                let take = left.min((bytes.len() - i) as u64);
                // `take` is at most `bytes.len() - i`, so it fits a usize.
                i += take as usize;
                *self = if take == left {
                    Self::DataCr
                } else {
                    Self::Data(left - take)
                };
                continue;
            }
            let byte = bytes[i];
            i += 1;
            *self = match (*self, byte) {
                (Self::Data(left), _) => Self::Data(left), // handled above
                (
                    Self::Size {
                        size,
                        digits_done: false,
                    },
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F',
                ) => {
                    let digit = match byte {
                        b'0'..=b'9' => byte - b'0',
                        b'a'..=b'f' => byte - b'a' + 10,
                        _ => byte - b'A' + 10,
                    };
                    match size
                        .checked_mul(16)
                        .and_then(|size| size.checked_add(u64::from(digit)))
                    {
                        Some(size) => Self::Size {
                            size,
                            digits_done: false,
                        },
                        None => return Scan::Invalid,
                    }
                }
                (Self::Size { size: 0, .. }, b'\n') => Self::Trailers { empty: true },
                (Self::Size { size, .. }, b'\n') => Self::Data(size),
                (Self::Size { size, .. }, _) => Self::Size {
                    size,
                    digits_done: true,
                },
                (Self::DataCr, b'\r') => Self::DataLf,
                (Self::DataCr | Self::DataLf, b'\n') => Self::start(),
                (Self::DataCr | Self::DataLf, _) => return Scan::Invalid,
                (Self::Trailers { empty: true }, b'\n') => return Scan::Ends(i),
                (Self::Trailers { .. }, b'\n') => Self::Trailers { empty: true },
                (Self::Trailers { empty }, b'\r') => Self::Trailers { empty },
                (Self::Trailers { .. }, _) => Self::Trailers { empty: false },
            };
        }
        Scan::Continues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_read_from_whole_header_lines_of_the_request_head() {
        let head = b"GET /api/users/me HTTP/1.1\r\nHost: a\r\nORIGIN:  https://app.example.com \r\nX: y\r\n\r\n";
        assert_eq!(origin_of(head), Some(&b"https://app.example.com"[..]));
        assert_eq!(origin_of(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        // Cut short inside the line: its value may be longer than what arrived.
        assert_eq!(
            origin_of(b"GET / HTTP/1.1\r\nOrigin: https://app.example.com"),
            None
        );
        // A body after the head is not read.
        assert_eq!(
            origin_of(b"POST / HTTP/1.1\r\nHost: a\r\n\r\nOrigin: https://x\r\n"),
            None
        );
        // No header line before the request line.
        assert_eq!(origin_of(b"Origin: https://x\r\nHost: a\r\n"), None);
    }

    #[test]
    fn the_target_is_read_from_a_whole_request_line() {
        assert_eq!(
            target_of(b"GET /api/users/me?x=1 HTTP/1.1\r\nHost: a\r\n"),
            Some(&b"/api/users/me?x=1"[..])
        );
        assert_eq!(
            target_of(b"GET /api/users/me?q=qqqq"),
            Some(&b"/api/users/me?q=qqqq"[..]),
            "cut short"
        );
        assert_eq!(target_of(b"GET"), None);
    }
    use latchkey_http::EdgeSettings;

    const APP_OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nx-content-type-options: nosniff\r\ncontent-length: 5\r\n\r\nhello";
    const APP_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nX-Content-Type-Options: nosniff\r\n\
        transfer-encoding: chunked\r\n\r\n5\r\nHTTP/\r\n10\r\n1.1 400 Bad Requ\r\n0\r\n\r\n";
    const APP_NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nx-content-type-options: nosniff\r\n\
        content-length: 2\r\n\r\n{}";
    const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    /// Not hardened, but not a status hyper answers with by itself (a bare endpoint's 404).
    const BARE_NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    const HYPERS_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
    const HYPERS_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
        connection: close\r\ncontent-length: 0\r\n\r\n";

    /// What reaches the client when hyper writes `writes` one after the other (each one whole,
    /// as `write_all` does), after requests with `methods` reached the service.
    async fn through_guard(methods: &[Method], writes: &[&[u8]]) -> Vec<u8> {
        let (ours, mut client) = tokio::io::duplex(1 << 20);
        let exchange = Exchange::default();
        for method in methods {
            exchange.request_taken(method);
        }
        let replies = Arc::new(LoopReplies::new(EdgeSettings::default()));
        let mut guarded = Guarded::new(ours, exchange, replies);
        for write in writes {
            guarded.write_all(write).await.unwrap();
        }
        guarded.flush().await.unwrap();
        guarded.shutdown().await.unwrap();
        drop(guarded);
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        received
    }

    /// `stream` handed over in writes split at `at`, then one byte at a time.
    fn splits(stream: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut ways: Vec<Vec<&[u8]>> = (0..=stream.len())
            .map(|at| vec![&stream[..at], &stream[at..]])
            .collect();
        ways.push(stream.chunks(1).collect());
        ways
    }

    fn is_hardened_reply(bytes: &[u8], status: &str, code: &str) -> bool {
        let text = String::from_utf8_lossy(bytes);
        text.starts_with(&format!("HTTP/1.1 {status} "))
            && text.contains("\r\nx-content-type-options: nosniff\r\n")
            && text.contains("\r\nconnection: close\r\n")
            && text.contains(&format!("\"error\":\"{code}\""))
    }

    #[tokio::test]
    async fn the_apps_responses_pass_unchanged_however_they_are_split() {
        let stream = [
            APP_OK,
            CONTINUE,
            APP_CHUNKED,
            APP_NOT_FOUND,
            BARE_NOT_FOUND,
            APP_OK,
        ]
        .concat();
        let methods = [
            Method::GET,
            Method::POST,
            Method::GET,
            Method::GET,
            Method::GET,
        ];
        for writes in splits(&stream) {
            assert_eq!(through_guard(&methods, &writes).await, stream);
        }
    }

    #[tokio::test]
    async fn a_reply_of_hypers_own_is_replaced_however_it_is_split() {
        for (reply, status, code) in [
            (HYPERS_400, "400", "bad_request"),
            (HYPERS_431, "431", "headers_too_large"),
        ] {
            // Alone, after a response with a body, after a chunked one, and after a HEAD
            // response whose `content-length` announces a body that is not there.
            for (methods, before) in [
                (vec![], vec![]),
                (vec![Method::GET], APP_OK.to_vec()),
                (vec![Method::GET], APP_CHUNKED.to_vec()),
                (vec![Method::HEAD], APP_OK[..APP_OK.len() - 5].to_vec()),
            ] {
                let stream = [&before[..], reply].concat();
                for writes in splits(&stream) {
                    let received = through_guard(&methods, &writes).await;
                    assert_eq!(received[..before.len()], before[..]);
                    assert!(
                        is_hardened_reply(&received[before.len()..], status, code),
                        "{}",
                        String::from_utf8_lossy(&received)
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn output_that_is_not_http_passes_as_it_is() {
        let stream = b"SSH-2.0-not-http\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n".to_vec();
        assert_eq!(through_guard(&[], &[&stream[..]]).await, stream);
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers() {
        for (body, end) in [
            (&b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1"[..], 15),
            (
                &b"A;ext=1\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\nrest"[..],
                40,
            ),
        ] {
            let mut chunk = Chunk::start();
            assert_eq!(chunk.advance(body), Scan::Ends(end));
            // The same, a byte at a time.
            let mut chunk = Chunk::start();
            for (i, byte) in body.iter().enumerate() {
                match chunk.advance(std::slice::from_ref(byte)) {
                    Scan::Continues => assert!(i + 1 < end, "{i}"),
                    Scan::Ends(1) => {
                        assert_eq!(i + 1, end);
                        break;
                    }
                    other => panic!("{other:?} at {i}"),
                }
            }
        }
        assert_eq!(Chunk::start().advance(b"5\r\nhelloXX"), Scan::Invalid);
    }

    #[test]
    fn response_heads_are_read() {
        assert_eq!(
            ResponseHead::parse(HYPERS_400),
            Some(ResponseHead {
                status: 400,
                hardened: false,
                content_length: Some(0),
                chunked: false,
            })
        );
        let chunked = ResponseHead::parse(APP_CHUNKED).unwrap();
        assert!(chunked.hardened && chunked.chunked);
        assert_eq!(ResponseHead::parse(b"SSH-2.0\r\n\r\n"), None);
        assert_eq!(
            ResponseHead::parse(APP_OK)
                .unwrap()
                .body_framing(Some(&Method::HEAD)),
            Framing::Head
        );
        assert_eq!(
            ResponseHead::parse(APP_OK).unwrap().body_framing(None),
            Framing::Length(5)
        );
    }
}
