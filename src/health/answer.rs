//! Reading one HTTP/1.x answer to a probe: the head parsed by `httparse`, the body framed by
//! `Content-Length`, chunked coding or the connection's end (RFC 9112 §6.3) and cut at
//! [`MAX_ANSWER_BYTES`].
//!
//! Why not hyper's client: a probe is one fixed GET and a short answer, and a hyper client
//! connection per probe (handshake, dispatcher, channels, 8 KiB buffers) was most of the
//! prober's user time at 5000 nodes (see docs/bench/health-cost.md).

use httparse::Status;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A probe reads at most this much of an answer body (and buffers at most this much of its head).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Most headers an answer may have.
const MAX_HEADERS: usize = 64;

/// Longest chunk-size line (with extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// An HTTP answer, cut at [`MAX_ANSWER_BYTES`].
#[derive(Debug)]
pub(super) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub truncated: bool,
    /// The connection can carry another request: the answer was whole and framed, said
    /// keep-alive (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `keep-alive`), and
    /// nothing arrived after it.
    pub reusable: bool,
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Length(usize),
    Chunked,
    /// Read until the node closes the connection.
    UntilClose,
}

/// What the head of an answer says: how its body ends, and whether the connection may
/// carry another request once the body is read.
#[derive(Debug)]
struct Head {
    len: usize,
    status: u16,
    framing: Framing,
    keep_alive: bool,
}

/// Reads one answer from `stream`. Interim (1xx) answers are skipped.
pub(super) async fn read<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Answer, String> {
    let mut input = Input {
        stream,
        buf: Vec::with_capacity(1024),
        pos: 0,
    };
    // Interim answers count against the head budget: a node cannot keep a probe reading
    // `100 Continue` for its whole deadline.
    let mut interim = 0;
    let head = loop {
        match parse_head(input.unread())? {
            Some(head) if (100..200).contains(&head.status) && head.status != 101 => {
                input.pos += head.len;
                interim += head.len;
                if interim >= MAX_ANSWER_BYTES {
                    return Err(format!("over {MAX_ANSWER_BYTES} bytes of interim answers"));
                }
            }
            Some(head) => break head,
            None if input.unread().len() >= MAX_ANSWER_BYTES => {
                return Err(format!("answer head over {MAX_ANSWER_BYTES} bytes"));
            }
            None => input.fill("no complete answer head").await?,
        }
    };
    input.pos += head.len;
    let mut body = Body::default();
    match head.framing {
        Framing::Length(n) => input.copy(n, &mut body).await?,
        Framing::Chunked => input.chunked(&mut body).await?,
        Framing::UntilClose => input.until_close(&mut body).await?,
    }
    let whole_and_alone = !body.truncated && input.unread().is_empty();
    Ok(Answer {
        status: head.status,
        reusable: head.keep_alive && whole_and_alone,
        truncated: body.truncated,
        body: body.bytes,
    })
}

/// The head at the start of `bytes`, or `None` if it is not all there yet.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let status = response.code.unwrap_or_default();
    let http_11 = response.version == Some(1);
    let mut lengths = None;
    let mut chunked = None;
    let (mut close, mut keep_alive) = (false, false);
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or_default();
        let tokens = || value.split(',').map(str::trim);
        if header.name.eq_ignore_ascii_case("content-length") {
            let digits = value.trim();
            let n = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<usize>().ok())
                .flatten()
                .ok_or_else(|| format!("invalid Content-Length {value:?}"))?;
            if lengths.is_some_and(|m| m != n) {
                return Err("conflicting Content-Length headers".into());
            }
            lengths = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only when it is the final coding (RFC 9112 §6.3, point 4).
            let last = tokens().rfind(|t| !t.is_empty());
            chunked = Some(last.is_some_and(|t| t.eq_ignore_ascii_case("chunked")));
        } else if header.name.eq_ignore_ascii_case("connection") {
            close |= tokens().any(|t| t.eq_ignore_ascii_case("close"));
            keep_alive |= tokens().any(|t| t.eq_ignore_ascii_case("keep-alive"));
        }
    }
    let framing = match (chunked, lengths) {
        _ if matches!(status, 101 | 204 | 304) => Framing::Length(0),
        (Some(true), _) => Framing::Chunked,
        (Some(false), _) => Framing::UntilClose,
        (None, Some(n)) => Framing::Length(n),
        (None, None) => Framing::UntilClose,
    };
    // An answer with both framings, or an HTTP/1.0 one with Transfer-Encoding, is framed
    // faultily (RFC 9112 §6.1, §6.3): it is read, and the connection closed after it. So is
    // one that ends with the connection, or switches protocols.
    let says_keep_alive = if http_11 {
        !(close || chunked.is_some() && lengths.is_some())
    } else {
        keep_alive && chunked.is_none()
    };
    Ok(Some(Head {
        len,
        status,
        framing,
        keep_alive: says_keep_alive && status != 101 && framing != Framing::UntilClose,
    }))
}

/// The body read so far, cut at [`MAX_ANSWER_BYTES`].
#[derive(Default)]
struct Body {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Body {
    /// Appends what room allows; false once the body is cut.
    fn push(&mut self, data: &[u8]) -> bool {
        let room = MAX_ANSWER_BYTES - self.bytes.len();
        if data.len() > room {
            self.bytes.extend_from_slice(&data[..room]);
            self.truncated = true;
            return false;
        }
        self.bytes.extend_from_slice(data);
        true
    }
}

/// The connection's bytes: `buf[pos..]` is read but not yet consumed.
struct Input<'a, R> {
    stream: &'a mut R,
    buf: Vec<u8>,
    pos: usize,
}

impl<R: AsyncRead + Unpin> Input<'_, R> {
    fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes; the node closing the connection first is an error saying `missing`.
    async fn fill(&mut self, missing: &str) -> Result<(), String> {
        match self.fill_or_end().await? {
            true => Ok(()),
            false => Err(format!("connection closed: {missing}")),
        }
    }

    /// Reads more bytes: false if the node closed the connection instead.
    async fn fill_or_end(&mut self) -> Result<bool, String> {
        // Consumed bytes go, so the buffer holds at most what is still being parsed.
        self.buf.drain(..self.pos);
        self.pos = 0;
        if self.buf.len() == self.buf.capacity() {
            self.buf.reserve(self.buf.len().max(1024));
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(n) => Ok(n > 0),
            Err(e) => Err(format!("reading the answer: {e}")),
        }
    }

    /// Moves `n` body bytes into `body` (stopping where it is cut).
    async fn copy(&mut self, mut n: usize, body: &mut Body) -> Result<(), String> {
        while n > 0 {
            if self.pos == self.buf.len() {
                self.fill("answer body cut short").await?;
            }
            let take = n.min(self.buf.len() - self.pos);
            let whole = body.push(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            n -= take;
            if !whole {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reads a chunked body and its trailers.
    async fn chunked(&mut self, body: &mut Body) -> Result<(), String> {
        loop {
            // httparse reads an empty size line as 0: a size must have a digit.
            let starts_with_digit = self.unread().first().is_some_and(u8::is_ascii_hexdigit);
            let size = match httparse::parse_chunk_size(self.unread()) {
                Ok(Status::Complete((used, size))) if starts_with_digit => {
                    self.pos += used;
                    usize::try_from(size).map_err(|_| "chunk size too large".to_string())?
                }
                Ok(Status::Partial) if self.unread().len() < MAX_CHUNK_LINE => {
                    self.fill("chunked body cut short").await?;
                    continue;
                }
                _ => return Err("invalid chunk size line".into()),
            };
            if size == 0 {
                return self.trailers().await;
            }
            self.copy(size, body).await?;
            if body.truncated {
                return Ok(());
            }
            self.line_end().await?;
        }
    }

    /// The CRLF after a chunk's data.
    async fn line_end(&mut self) -> Result<(), String> {
        while self.unread().len() < 2 {
            self.fill("chunked body cut short").await?;
        }
        if !self.unread().starts_with(b"\r\n") {
            return Err("chunk data not followed by CRLF".into());
        }
        self.pos += 2;
        Ok(())
    }

    /// Skips the trailer section after the last chunk, up to its empty line.
    async fn trailers(&mut self) -> Result<(), String> {
        let mut seen = 0;
        loop {
            match self.unread().windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.pos += 2;
                    return Ok(());
                }
                Some(end) => {
                    self.pos += end + 2;
                    seen += end + 2;
                }
                None => self.fill("trailers cut short").await?,
            }
            if seen + self.unread().len() > MAX_CHUNK_LINE {
                return Err("trailer section too long".into());
            }
        }
    }

    /// Reads the body up to the node's close (or the cut).
    async fn until_close(&mut self, body: &mut Body) -> Result<(), String> {
        loop {
            let whole = body.push(self.unread());
            self.pos = self.buf.len();
            if !whole || !self.fill_or_end().await? {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
