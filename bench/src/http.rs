//! A minimal HTTP/1.1 client on one keep-alive connection.
//!
//! Written here rather than pulled in (hyper, reqwest) to keep the benchmark's dependencies
//! to what the workspace already builds, and so the client adds as little CPU as possible to
//! the machine it shares with the server.

use std::{io, net::SocketAddr};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Responses with larger headers are treated as broken rather than buffered without limit.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serialises a request once, so load loops can send the same bytes over and over.
pub fn request(
    method: &str,
    path: &str,
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default().as_bytes());
    bytes
}

/// One request on a fresh connection.
pub async fn once(addr: SocketAddr, request: &[u8]) -> io::Result<Response> {
    Conn::connect(addr).await?.send(request).await
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// `Retry-After` in seconds, when the server sent one as a number.
    pub retry_after: Option<u64>,
    /// The server will close the connection after this response.
    pub close: bool,
    pub body: Vec<u8>,
}

pub struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        // Requests are written in one piece; Nagle would only add latency to the figures.
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Sends a request made by [`request`] and reads the whole response.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request).await?;
        self.read_response().await
    }

    /// Writes a request without waiting for anything, then drops the connection: a client
    /// that gives up on its request.
    pub async fn send_and_abandon(mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request).await
    }

    async fn read_response(&mut self) -> io::Result<Response> {
        let head_len = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(invalid("response headers too large"));
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_len])
            .map_err(|_| invalid("response headers are not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        let mut content_length = None;
        let mut chunked = false;
        // HTTP/1.0 closes by default; 1.1 keeps the connection unless told otherwise.
        let mut close = version == "HTTP/1.0";
        let mut retry_after = None;
        for line in lines.filter(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                return Err(invalid("bad header line"));
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    content_length = Some(
                        value
                            .parse::<usize>()
                            .map_err(|_| invalid("bad Content-Length"))?,
                    );
                }
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "connection" => {
                    let value = value.to_ascii_lowercase();
                    if value.contains("close") {
                        close = true;
                    } else if value.contains("keep-alive") {
                        close = false;
                    }
                }
                "retry-after" => retry_after = value.parse().ok(),
                _ => {}
            }
        }
        self.buf.drain(..head_len);

        // The benchmark never sends HEAD, so only the status decides whether a body follows.
        let body = if status / 100 == 1 || status == 204 || status == 304 {
            Vec::new()
        } else if chunked {
            self.read_chunked().await?
        } else if let Some(len) = content_length {
            self.take(len).await?
        } else {
            // No framing: the body runs to the end of the connection.
            close = true;
            loop {
                if self.fill_or_eof().await? == 0 {
                    break std::mem::take(&mut self.buf);
                }
            }
        };
        Ok(Response {
            status,
            retry_after,
            close,
            body,
        })
    }

    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            body.extend_from_slice(&self.take(size).await?);
            if !self.line().await?.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    }

    /// One line without its CRLF.
    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(invalid("line too long"));
            }
            self.fill().await?;
        }
    }

    async fn take(&mut self, len: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < len {
            self.fill().await?;
        }
        Ok(self.buf.drain(..len).collect())
    }

    /// Reads more bytes; the connection ending here is an error.
    async fn fill(&mut self) -> io::Result<()> {
        if self.fill_or_eof().await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-response",
            ));
        }
        Ok(())
    }

    async fn fill_or_eof(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
