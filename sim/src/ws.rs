//! WebSocket (RFC 6455) on the traffic port, as MI's WebSocket inbound endpoints serve it:
//! `GET /ws/echo` with the upgrade headers is answered `101 Switching Protocols`, and every
//! text, binary or continuation frame is then sent back as it came (same FIN bit and opcode,
//! unmasked), a ping is answered with a pong, a close with a close carrying the same payload.
//!
//! The frame codec ([`Frame`], [`decode`]) and a tiny client ([`WsClient`]) are public so
//! tests can speak WebSocket through a proxy, or write raw frames themselves.
//!
//! | request | answer |
//! |---|---|
//! | `GET /ws/echo` + `Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13`, a valid `Sec-WebSocket-Key` | `101`, `Sec-WebSocket-Accept`, then echo |
//! | the same with another `Sec-WebSocket-Version` | `426` + `Sec-WebSocket-Version: 13` |
//! | anything else to `/ws/echo` (no upgrade headers, a bad key, not GET, HTTP/1.0) | `400` |
//!
//! The server closes with 1002 (protocol error) on an unmasked client frame, reserved bits or
//! opcodes, or a control frame that is fragmented or over 125 bytes; with 1009 on a payload
//! over [`MAX_PAYLOAD`]; with 1001 (going away) when the node shuts down MI-style. Text is
//! not checked for UTF-8.

use super::Shared;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// The path of the echo endpoint on the traffic port.
pub const ECHO_PATH: &str = "/ws/echo";

/// The GUID RFC 6455 appends to the key before hashing.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest payload the echo endpoint (and [`WsClient`]) accepts in one frame: 16 MiB.
pub const MAX_PAYLOAD: u64 = 16 << 20;

/// Close codes used here (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (the node shuts down).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.digest().bytes())
}

/// A frame's opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: a further fragment of a text or binary message.
    Continuation,
    /// 0x1
    Text,
    /// 0x2
    Binary,
    /// 0x8
    Close,
    /// 0x9
    Ping,
    /// 0xA
    Pong,
}

impl Opcode {
    /// The 4-bit value on the wire.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// The opcode of a 4-bit value; `None` for the reserved ones.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One frame (RSV bits are always 0: no extension is negotiated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Last fragment of its message.
    pub fin: bool,
    /// What the frame is.
    pub opcode: Opcode,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A final frame.
    pub fn new(opcode: Opcode, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            fin: true,
            opcode,
            payload: payload.into(),
        }
    }

    /// A whole text message.
    pub fn text(text: &str) -> Frame {
        Frame::new(Opcode::Text, text.as_bytes())
    }

    /// A whole binary message.
    pub fn binary(data: impl Into<Vec<u8>>) -> Frame {
        Frame::new(Opcode::Binary, data)
    }

    /// A ping.
    pub fn ping(data: impl Into<Vec<u8>>) -> Frame {
        Frame::new(Opcode::Ping, data)
    }

    /// A close frame with a status code and a reason.
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        Frame::new(Opcode::Close, payload)
    }

    /// The status code of a close frame that has one.
    pub fn close_code(&self) -> Option<u16> {
        match (self.opcode, self.payload.as_slice()) {
            (Opcode::Close, [a, b, ..]) => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    /// The frame on the wire: masked with `mask` (a client's frames must be), or not (a
    /// server's). The shortest length encoding is used.
    pub fn encode(&self, mask: Option<[u8; 4]>) -> Vec<u8> {
        let len = self.payload.len();
        let mut out = Vec::with_capacity(len + 14);
        out.push(u8::from(self.fin) << 7 | self.opcode.bits());
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&short.to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// A frame read off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The frame, unmasked.
    pub frame: Frame,
    /// Whether it came masked (client frames must, server frames must not).
    pub masked: bool,
    /// How many bytes of the buffer it took.
    pub len: usize,
}

/// Why bytes are not a frame this codec accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// An RSV bit is set, but no extension was negotiated.
    ReservedBits,
    /// A reserved opcode (3–7, 0xB–0xF).
    ReservedOpcode(u8),
    /// A control frame without FIN or with a payload over 125 bytes.
    BadControl,
    /// A 64-bit length with the top bit set.
    BadLength,
    /// A payload over the limit.
    TooBig(u64),
}

impl FrameError {
    /// The close code to answer with.
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::TooBig(_) => close_code::TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ReservedBits => write!(f, "RSV bits set without an extension"),
            FrameError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            FrameError::BadControl => write!(f, "control frame fragmented or over 125 bytes"),
            FrameError::BadLength => write!(f, "64-bit payload length with the top bit set"),
            FrameError::TooBig(len) => write!(f, "payload of {len} bytes over {MAX_PAYLOAD}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The first frame in `buf`: `Ok(None)` if more bytes are needed.
pub fn decode(buf: &[u8], max_payload: u64) -> Result<Option<Decoded>, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(FrameError::ReservedOpcode(b0 & 0x0F))?;
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if len >> 63 != 0 {
        return Err(FrameError::BadLength);
    }
    if opcode.is_control() && (!fin || len > 125) {
        return Err(FrameError::BadControl);
    }
    if len > max_payload {
        return Err(FrameError::TooBig(len));
    }
    let mask = if masked {
        let Some(key) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    let end = at + len as usize;
    let Some(data) = buf.get(at..end) else {
        return Ok(None);
    };
    let payload = match mask {
        Some(key) => data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect(),
        None => data.to_vec(),
    };
    Ok(Some(Decoded {
        frame: Frame {
            fin,
            opcode,
            payload,
        },
        masked,
        len: end,
    }))
}

/// Read the next frame from `io`, keeping extra bytes in `buf` for the next call. `Ok(None)`
/// at end of stream between frames; a [`FrameError`] comes as `InvalidData` (its inner error).
pub async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
) -> io::Result<Option<Decoded>> {
    loop {
        match decode(buf, MAX_PAYLOAD) {
            Ok(Some(decoded)) => {
                buf.advance(decoded.len);
                return Ok(Some(decoded));
            }
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        if io.read_buf(buf).await? == 0 {
            return match buf.is_empty() {
                true => Ok(None),
                false => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
    }
}

/// Whether a comma-separated header (`Connection`, `Upgrade`) lists `token`.
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A key is base64 of 16 bytes.
fn valid_key(key: &HeaderValue) -> bool {
    key.to_str()
        .ok()
        .and_then(|k| BASE64.decode(k.trim()).ok())
        .is_some_and(|k| k.len() == 16)
}

/// What a connection of the traffic port carries into a session it hands over: the node's
/// kill and shutdown switches, and a token the port's server waits for on shutdown.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) kill: watch::Receiver<bool>,
    pub(crate) drain: watch::Receiver<bool>,
    pub(crate) alive: mpsc::Sender<()>,
}

fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Answer a request to [`ECHO_PATH`]: 101 and an echo session, or 400/426.
pub(crate) fn handshake(
    mut request: Request<hyper::body::Incoming>,
    shared: Arc<Shared>,
    session: Session,
) -> Response<Full<Bytes>> {
    let headers = request.headers();
    let upgrade = request.method() == Method::GET
        && request.version() == Version::HTTP_11
        && lists(headers, header::CONNECTION, "upgrade")
        && lists(headers, header::UPGRADE, "websocket");
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| valid_key(k))
        .and_then(|k| k.to_str().ok())
        .map(str::to_string);
    let Some(key) = key.filter(|_| upgrade) else {
        return answer(StatusCode::BAD_REQUEST);
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes().trim_ascii() != b"13")
    {
        let mut response = answer(StatusCode::UPGRADE_REQUIRED);
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                shared.ws_upgrades.fetch_add(1, Ordering::Relaxed);
                shared.ws_open.fetch_add(1, Ordering::Relaxed);
                echo(TokioIo::new(upgraded), &shared, session).await;
                shared.ws_open.fetch_sub(1, Ordering::Relaxed);
            }
            Err(e) => log::debug!("mi-sim {}: upgrade: {e}", shared.options.name),
        }
    });
    let mut response = answer(StatusCode::SWITCHING_PROTOCOLS);
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept_key(&key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The echo session on an upgraded connection.
async fn echo<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO, shared: &Shared, session: Session) {
    let Session {
        mut kill,
        mut drain,
        alive: _alive,
    } = session;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let read = tokio::select! {
            // Kill first: a crash drops the drain switch too, and must not say goodbye.
            biased;
            _ = super::serve::turned_on(&mut kill) => return,
            read = read_frame(&mut io, &mut buf) => read,
            _ = super::serve::turned_on(&mut drain) => {
                let bye = Frame::close(close_code::GOING_AWAY, "node shutting down");
                let _ = io.write_all(&bye.encode(None)).await;
                break;
            }
        };
        let reply = match read {
            Ok(Some(Decoded { masked: false, .. })) => {
                Frame::close(close_code::PROTOCOL_ERROR, "unmasked client frame")
            }
            Ok(Some(Decoded { frame, .. })) => match frame.opcode {
                Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                    shared.ws_frames.fetch_add(1, Ordering::Relaxed);
                    frame
                }
                Opcode::Ping => Frame::new(Opcode::Pong, frame.payload),
                Opcode::Pong => continue,
                Opcode::Close => frame,
            },
            Ok(None) => break,
            Err(e) => match e.get_ref().and_then(|e| e.downcast_ref::<FrameError>()) {
                Some(bad) => Frame::close(bad.close_code(), &bad.to_string()),
                None => break,
            },
        };
        let closing = reply.opcode == Opcode::Close;
        let written = io.write_all(&reply.encode(None)).await;
        if closing || written.is_err() {
            break;
        }
    }
    let _ = io.shutdown().await;
}

/// A random-enough value for keys and masks (not for anything secret).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// A fresh `Sec-WebSocket-Key`: base64 of 16 random bytes.
pub fn new_key() -> String {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&random_u64().to_le_bytes());
    raw[8..].copy_from_slice(&random_u64().to_le_bytes());
    BASE64.encode(raw)
}

/// The handshake request a client sends, byte for byte.
pub fn handshake_request(host: &str, path: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    )
}

/// A minimal WebSocket client for tests: one handshake, then frames (masked, as a client
/// must send them). Over any stream: a TcpStream, or a TLS stream to an HTTPS node.
pub struct WsClient<S = TcpStream> {
    stream: S,
    buf: BytesMut,
    /// The handshake answer's status line and headers, as received.
    pub response_head: String,
}

impl WsClient<TcpStream> {
    /// Connect to `addr` and upgrade `path` (e.g. [`ECHO_PATH`]); an error (`Other`, naming
    /// the answer's status line) unless the answer is 101 with the right
    /// `Sec-WebSocket-Accept`.
    pub async fn connect(addr: SocketAddr, path: &str) -> io::Result<WsClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        WsClient::upgrade(stream, &addr.to_string(), path).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    /// Upgrade an open connection (e.g. one that already carried plain requests, or a TLS
    /// stream).
    pub async fn upgrade(mut stream: S, host: &str, path: &str) -> io::Result<WsClient<S>> {
        let key = new_key();
        stream
            .write_all(handshake_request(host, path, &key).as_bytes())
            .await?;
        let mut buf = BytesMut::with_capacity(4096);
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > 64 * 1024 {
                return Err(io::Error::other("handshake answer head over 64 KiB"));
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed during the handshake after {:?}",
                        String::from_utf8_lossy(&buf)
                    ),
                ));
            }
        };
        let head = String::from_utf8_lossy(&buf.split_to(end)).into_owned();
        let status_line = head.lines().next().unwrap_or_default();
        if status_line.split(' ').nth(1) != Some("101") {
            return Err(io::Error::other(format!(
                "handshake answered {status_line}"
            )));
        }
        let accept = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-accept")
                .then(|| value.trim().to_string())
        });
        if accept.as_deref() != Some(accept_key(&key).as_str()) {
            return Err(io::Error::other(format!(
                "Sec-WebSocket-Accept {accept:?}, expected {:?}",
                accept_key(&key)
            )));
        }
        Ok(WsClient {
            stream,
            buf,
            response_head: head,
        })
    }

    /// Send a frame, masked with a fresh key.
    pub async fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let mask = (random_u64() as u32).to_be_bytes();
        self.send_raw(&frame.encode(Some(mask))).await
    }

    /// Send bytes as they are (hand-made frames).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next frame from the server; `Ok(None)` once it closed the connection.
    pub async fn recv(&mut self) -> io::Result<Option<Frame>> {
        Ok(read_frame(&mut self.stream, &mut self.buf)
            .await?
            .map(|d| d.frame))
    }

    /// Send a text message and return the next frame.
    pub async fn echo_text(&mut self, text: &str) -> io::Result<Option<Frame>> {
        self.send(&Frame::text(text)).await?;
        self.recv().await
    }

    /// Send a close with `code` and return the server's close frame (`None` if it closed
    /// without one).
    pub async fn close(mut self, code: u16) -> io::Result<Option<Frame>> {
        self.send(&Frame::close(code, "")).await?;
        loop {
            match self.recv().await? {
                Some(f) if f.opcode == Opcode::Close => return Ok(Some(f)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// The connection and the bytes read past the last frame.
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.stream, self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn rfc_6455_example_frames() {
        // §5.7: a single-frame unmasked text "Hello", and the same masked.
        let hello = Frame::text("Hello");
        assert_eq!(hello.encode(None), b"\x81\x05Hello");
        let masked = hello.encode(Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(
            masked,
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
        let decoded = decode(&masked, MAX_PAYLOAD).unwrap().unwrap();
        assert_eq!(
            (decoded.frame, decoded.masked, decoded.len),
            (hello, true, 11)
        );
        // A fragmented unmasked text message.
        let first = decode(b"\x01\x03Hel", MAX_PAYLOAD).unwrap().unwrap();
        assert_eq!((first.frame.fin, first.frame.opcode), (false, Opcode::Text));
        let last = decode(b"\x80\x02lo", MAX_PAYLOAD).unwrap().unwrap();
        assert_eq!(
            (last.frame.fin, last.frame.opcode),
            (true, Opcode::Continuation)
        );
    }

    #[test]
    fn lengths_use_the_shortest_encoding_and_round_trip() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let frame = Frame::binary(vec![7u8; len]);
            let wire = frame.encode(Some([1, 2, 3, 4]));
            let header = match len {
                0..=125 => 6,
                126..=65535 => 8,
                _ => 14,
            };
            assert_eq!(wire.len(), header + len, "{len}");
            // Every prefix is incomplete, the whole is one frame.
            assert_eq!(decode(&wire[..wire.len() - 1], MAX_PAYLOAD), Ok(None));
            let decoded = decode(&wire, MAX_PAYLOAD).unwrap().unwrap();
            assert_eq!(decoded.frame, frame);
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(decode(b"\xC1\x00", 10), Err(FrameError::ReservedBits));
        assert_eq!(decode(b"\x83\x00", 10), Err(FrameError::ReservedOpcode(3)));
        assert_eq!(decode(b"\x09\x00", 10), Err(FrameError::BadControl));
        assert_eq!(
            decode(b"\x89\x7e\x00\x7e", 200),
            Err(FrameError::BadControl)
        );
        assert_eq!(decode(b"\x82\x0b", 10), Err(FrameError::TooBig(11)));
        assert_eq!(
            decode(b"\x82\x7f\x80\0\0\0\0\0\0\0", u64::MAX),
            Err(FrameError::BadLength)
        );
    }

    #[test]
    fn close_frames_carry_their_code() {
        let close = Frame::close(close_code::GOING_AWAY, "bye");
        assert_eq!(close.payload, b"\x03\xe9bye");
        assert_eq!(close.close_code(), Some(1001));
        assert_eq!(Frame::new(Opcode::Close, vec![]).close_code(), None);
    }
}
