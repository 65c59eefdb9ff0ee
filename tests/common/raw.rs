//! HTTP/1.x on raw sockets, for the framing tests (`tests/framing.rs`): a capture backend
//! that records every request exactly as it arrived (and every byte of every connection) and
//! answers as told, and a client that writes bytes as given and reads answers one at a time.
//!
//! The backend parses strictly (RFC 9112): a request it cannot parse is recorded as an error
//! and answered 400 with the connection closed; it never guesses. A request that carries
//! both `Transfer-Encoding` and `Content-Length` is parsed by `Transfer-Encoding` (and the
//! tests check that none arrives that way). While a body is awaited after
//! `Expect: 100-continue`, it sends `100 Continue`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long any single wait on a socket may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Captured {
    /// Which backend connection it came on (0, 1, … in accept order).
    pub connection: usize,
    /// The request line and header fields, byte for byte, through the empty line.
    pub head: Vec<u8>,
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header fields in order, names as received.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body as framed on the wire (chunk sizes and trailers included).
    pub wire_body: Vec<u8>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Captured {
    /// Every value of the field `name` (case-insensitive).
    pub fn all(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The first value of `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.all(name)
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Head and wire body: every byte of this request.
    pub fn raw(&self) -> Vec<u8> {
        [self.head.as_slice(), self.wire_body.as_slice()].concat()
    }
}

/// What the backend does after a request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Write these bytes and keep reading the connection.
    Keep(Vec<u8>),
    /// Write these bytes and close the connection.
    Close(Vec<u8>),
}

/// The answer of [`CaptureBackend::ok`]: 200, `x-target` naming the request's target, body
/// `ok\n`.
pub fn ok_reply(request: &Captured) -> Reply {
    Reply::Keep(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nx-target: {}\r\n\r\nok\n",
            request.target
        )
        .into_bytes(),
    )
}

#[derive(Default)]
struct Record {
    requests: Vec<Captured>,
    errors: Vec<String>,
    streams: Vec<Vec<u8>>,
}

type Replier = dyn Fn(&Captured) -> Reply + Send + Sync;

/// A raw HTTP/1.x backend on a loopback port that records what reaches it.
#[derive(Clone)]
pub struct CaptureBackend {
    pub addr: SocketAddr,
    record: Arc<Mutex<Record>>,
}

fn lock(record: &Mutex<Record>) -> MutexGuard<'_, Record> {
    record
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CaptureBackend {
    /// A backend answering every request with [`ok_reply`].
    pub async fn ok() -> CaptureBackend {
        CaptureBackend::start(ok_reply).await
    }

    /// A backend answering each request with `reply(request)`.
    pub async fn start(
        reply: impl Fn(&Captured) -> Reply + Send + Sync + 'static,
    ) -> CaptureBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let reply: Arc<Replier> = Arc::new(reply);
        let rec = record.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let id = {
                    let mut r = lock(&rec);
                    r.streams.push(Vec::new());
                    r.streams.len() - 1
                };
                tokio::spawn(serve(stream, id, rec.clone(), reply.clone()));
            }
        });
        CaptureBackend { addr, record }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Captured> {
        lock(&self.record).requests.clone()
    }

    /// The targets of every request so far.
    pub fn targets(&self) -> Vec<String> {
        lock(&self.record)
            .requests
            .iter()
            .map(|r| r.target.clone())
            .collect()
    }

    /// What the backend could not parse (each with the bytes it was given).
    pub fn errors(&self) -> Vec<String> {
        lock(&self.record).errors.clone()
    }

    /// Every byte each connection carried (connections that carried none included: the
    /// proxy's TCP probes).
    pub fn streams(&self) -> Vec<Vec<u8>> {
        lock(&self.record).streams.clone()
    }

    /// The request for `target`, once it has arrived (panics after [`DEADLINE`]).
    pub async fn wait_for(&self, target: &str) -> Captured {
        let started = std::time::Instant::now();
        loop {
            if let Some(r) = self.requests().into_iter().find(|r| r.target == target) {
                return r;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{target} did not reach the backend; it saw {:?}, errors {:?}",
                self.targets(),
                self.errors()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

enum Parsed {
    /// A whole request, and how many bytes it took.
    Request(Box<Captured>, usize),
    /// More bytes needed; whether the head is complete and asks for `100-continue`.
    Partial {
        expects_continue: bool,
    },
    Error(String),
}

async fn serve(mut stream: TcpStream, id: usize, record: Arc<Mutex<Record>>, reply: Arc<Replier>) {
    let mut buf = Vec::new();
    // Whether the request at the start of `buf` was sent 100 Continue already.
    let mut continued = false;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        lock(&record).streams[id].extend_from_slice(&chunk[..n]);
        // Record every whole request in the buffer before answering any of them: bytes a
        // proxy sent along with a request are seen as soon as they arrive.
        let mut answers = Vec::new();
        let mut failed = None;
        loop {
            match parse(&buf, id) {
                Parsed::Request(request, used) => {
                    buf.drain(..used);
                    continued = false;
                    answers.push(reply(&request));
                    lock(&record).requests.push(*request);
                }
                Parsed::Partial { expects_continue } => {
                    if expects_continue && !continued {
                        continued = true;
                        answers.push(Reply::Keep(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()));
                    }
                    break;
                }
                Parsed::Error(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        for answer in answers {
            match answer {
                Reply::Keep(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Reply::Close(bytes) => {
                    let _ = stream.write_all(&bytes).await;
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
        if let Some(e) = failed {
            lock(&record).errors.push(format!(
                "connection {id}: {e}: {:?}",
                String::from_utf8_lossy(&buf)
            ));
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// The first request in `buf`, parsed strictly.
fn parse(buf: &[u8], connection: usize) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut fields);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Parsed::Partial {
                expects_continue: false,
            };
        }
        Err(e) => return Parsed::Error(format!("request head: {e}")),
    };
    let headers: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    let mut captured = Captured {
        connection,
        head: buf[..head_len].to_vec(),
        method: request.method.unwrap_or_default().to_string(),
        target: request.path.unwrap_or_default().to_string(),
        version: request.version.unwrap_or_default(),
        headers,
        wire_body: Vec::new(),
        body: Vec::new(),
    };
    let expects_continue = captured
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    let rest = &buf[head_len..];
    let te = captured.all("transfer-encoding");
    let framed = if !te.is_empty() {
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect();
        if codings.last().map(String::as_str) != Some("chunked") {
            return Parsed::Error(format!(
                "Transfer-Encoding {codings:?} does not end in chunked"
            ));
        }
        match dechunk(rest) {
            Ok(Some((body, used))) => Some((body, used)),
            Ok(None) => None,
            Err(e) => return Parsed::Error(e),
        }
    } else {
        let lengths: Vec<String> = captured
            .all("content-length")
            .iter()
            .map(|v| String::from_utf8_lossy(v).trim().to_string())
            .collect();
        let length = match lengths.as_slice() {
            [] => 0,
            [one] => match one.parse::<usize>() {
                Ok(n) if one.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Parsed::Error(format!("Content-Length {one:?}")),
            },
            more => return Parsed::Error(format!("Content-Length {more:?}")),
        };
        (rest.len() >= length).then(|| (rest[..length].to_vec(), length))
    };
    match framed {
        Some((body, used)) => {
            captured.wire_body = rest[..used].to_vec();
            captured.body = body;
            Parsed::Request(Box::new(captured), head_len + used)
        }
        None => Parsed::Partial { expects_continue },
    }
}

/// A chunked body at the start of `buf`: (body, bytes used), `None` if incomplete.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (start, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete(pair)) => pair,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(format!("chunk size line at body byte {at}")),
        };
        at += start;
        let size = usize::try_from(size).map_err(|_| "chunk size".to_string())?;
        if size == 0 {
            break;
        }
        let Some(data) = buf.get(at..at + size) else {
            return Ok(None);
        };
        body.extend_from_slice(data);
        at += size;
        match buf.get(at..at + 2) {
            Some(b"\r\n") => at += 2,
            Some(_) => return Err(format!("no CRLF after chunk data at body byte {at}")),
            None => return Ok(None),
        }
    }
    // Trailer fields, then the empty line.
    loop {
        let Some(end) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        at += end + 2;
        if end == 0 {
            return Ok(Some((body, at)));
        }
    }
}

/// The data of the whole chunks and of the last, partial one in `buf`.
fn dechunk_partial(mut buf: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(httparse::Status::Complete((start, size))) = httparse::parse_chunk_size(buf) {
        let data = &buf[start..];
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size == 0 {
            break;
        }
        if data.len() < size.saturating_add(2) {
            body.extend_from_slice(&data[..data.len().min(size)]);
            break;
        }
        body.extend_from_slice(&data[..size]);
        buf = &data[size + 2..];
    }
    body
}

/// An answer as the client read it.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    /// Status line and header fields, through the empty line.
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Framed by `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

impl Answer {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the answer says `Connection: close`.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|c| c.to_ascii_lowercase().contains("close"))
    }
}

/// How a read for an answer ended.
#[derive(Debug)]
pub enum Read {
    Answer(Answer),
    /// The head came, then the connection ended before the whole body: the answer with the
    /// part of the body that came (de-chunked as far as it goes).
    Cut(Answer),
    /// The connection ended (EOF or reset) before a whole answer head; what had come of it.
    Closed(Vec<u8>),
}

impl Read {
    /// The answer; panics naming `what` if the connection closed instead.
    pub fn answer(self, what: &str) -> Answer {
        match self {
            Read::Answer(a) => a,
            Read::Cut(a) => panic!("{what}: connection closed in the body of {a:?}"),
            Read::Closed(rest) => panic!(
                "{what}: connection closed instead of an answer (after {:?})",
                String::from_utf8_lossy(&rest)
            ),
        }
    }

    /// The status, `None` when the connection closed without an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Read::Answer(a) | Read::Cut(a) => Some(a.status),
            Read::Closed(_) => None,
        }
    }
}

/// A client connection that writes bytes as given.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl RawClient {
    /// Connect to `addr`.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Write `bytes` in one write (a proxy that answered and closed may make it fail: ignored).
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let _ = self.stream.write_all(bytes.as_ref()).await;
    }

    /// Read more bytes; false at end of stream (or reset). Panics after [`DEADLINE`].
    async fn fill(&mut self, what: &str) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                false
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!(
                "{what}: nothing more within {DEADLINE:?} (have {:?})",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// The next answer (interim 1xx answers included) to a request whose method was HEAD or
    /// not, framed as RFC 9112 §6.3 says.
    pub async fn read(&mut self, head_request: bool) -> Read {
        let (status, head, headers, head_len) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut answer = httparse::Response::new(&mut fields);
            match answer.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers: Vec<(String, String)> = answer
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let head = String::from_utf8_lossy(&self.buf[..n]).into_owned();
                    break (answer.code.unwrap_or_default(), head, headers, n);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => panic!(
                    "unparseable answer ({e}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
            if !self.fill("answer head").await {
                return Read::Closed(std::mem::take(&mut self.buf));
            }
        };
        self.buf.drain(..head_len);
        let mut answer = Answer {
            status,
            head,
            headers,
            body: Vec::new(),
            chunked: false,
        };
        if head_request || status < 200 || status == 204 || status == 304 {
            return Read::Answer(answer);
        }
        let chunked = answer
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().trim_end().ends_with("chunked"));
        if chunked {
            answer.chunked = true;
            loop {
                match dechunk(&self.buf) {
                    Ok(Some((body, used))) => {
                        answer.body = body;
                        self.buf.drain(..used);
                        return Read::Answer(answer);
                    }
                    Ok(None) => {}
                    Err(e) => panic!("bad chunked answer: {e}: {:?}", self.buf),
                }
                if !self.fill("chunked answer body").await {
                    answer.body = dechunk_partial(&std::mem::take(&mut self.buf));
                    return Read::Cut(answer);
                }
            }
        }
        match answer
            .header("content-length")
            .map(|l| l.trim().parse::<usize>())
        {
            Some(Ok(length)) => {
                while self.buf.len() < length {
                    if !self.fill("answer body").await {
                        answer.body = std::mem::take(&mut self.buf);
                        return Read::Cut(answer);
                    }
                }
                answer.body = self.buf.drain(..length).collect();
            }
            Some(Err(_)) => panic!("bad Content-Length in {:?}", answer.head),
            // Delimited by the end of the connection.
            None => {
                while self.fill("close-delimited answer body").await {}
                answer.body = std::mem::take(&mut self.buf);
            }
        }
        Read::Answer(answer)
    }

    /// The next final answer, skipping interim (1xx) ones; the 1xx statuses seen before it.
    pub async fn read_final(&mut self, head_request: bool) -> (Vec<u16>, Read) {
        let mut interim = Vec::new();
        loop {
            match self.read(head_request).await {
                Read::Answer(a) if a.status < 200 => interim.push(a.status),
                other => return (interim, other),
            }
        }
    }

    /// Wait until the peer closes the connection: the bytes that came first, or `None` if
    /// it is still open after [`DEADLINE`].
    pub async fn closed(&mut self) -> Option<Vec<u8>> {
        let started = std::time::Instant::now();
        let mut chunk = [0u8; 16 * 1024];
        while !self.eof {
            let left = DEADLINE.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => self.eof = true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
        Some(std::mem::take(&mut self.buf))
    }
}
