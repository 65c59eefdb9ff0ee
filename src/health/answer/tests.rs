use super::*;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::ReadBuf;

/// Hands out its bytes one at a time, as a slow node would.
struct Trickle<'a>(&'a [u8]);

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some((first, rest)) = self.0.split_first() {
            buf.put_slice(&[*first]);
            self.0 = rest;
        }
        Poll::Ready(Ok(()))
    }
}

/// The answer read from `bytes`, delivered whole and byte by byte (both must agree).
async fn parse(bytes: &[u8]) -> Result<Answer, String> {
    let whole = read(&mut &bytes[..]).await;
    let trickled = read(&mut Trickle(bytes)).await;
    assert_eq!(format!("{whole:?}"), format!("{trickled:?}"));
    whole
}

#[tokio::test]
async fn content_length_body_is_read_and_the_connection_reusable() {
    let a = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nready")
        .await
        .unwrap();
    assert_eq!(
        (a.status, &a.body[..], a.truncated, a.reusable),
        (200, &b"ready"[..], false, true)
    );
}

#[tokio::test]
async fn chunked_body_with_extensions_and_trailers_is_read() {
    let a = parse(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        (a.status, &a.body[..], a.reusable),
        (500, &b"abcde"[..], true)
    );
}

#[tokio::test]
async fn a_body_without_length_ends_with_the_connection_and_is_not_reusable() {
    let a = parse(b"HTTP/1.1 200 OK\r\n\r\nall of it").await.unwrap();
    assert_eq!((&a.body[..], a.reusable), (&b"all of it"[..], false));
    let a = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz")
        .await
        .unwrap();
    assert_eq!((&a.body[..], a.reusable), (&b"zz"[..], false));
}

#[tokio::test]
async fn only_keep_alive_answers_are_reusable() {
    let cases: [(&[u8], bool); 6] = [
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
        (
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            true,
        ),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            false,
        ),
        // Both framings: read by chunks, never trusted with another request.
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            false,
        ),
    ];
    for (bytes, reusable) in cases {
        let a = parse(bytes).await.unwrap();
        assert_eq!(a.reusable, reusable, "{}", String::from_utf8_lossy(bytes));
    }
}

#[tokio::test]
async fn bytes_after_the_answer_make_the_connection_unusable() {
    // Read together with the answer here; bytes arriving later make the kept connection
    // readable, and `HealthConnection::take` drops it for that.
    let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200";
    let a = read(&mut &bytes[..]).await.unwrap();
    assert_eq!((&a.body[..], a.reusable), (&b"ok"[..], false));
}

#[tokio::test]
async fn interim_answers_are_skipped_and_bodiless_statuses_read_no_body() {
    let a =
        parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n")
            .await
            .unwrap();
    assert_eq!((a.status, a.body.len(), a.reusable), (204, 0, true));
}

#[tokio::test]
async fn a_long_body_is_cut_at_the_limit_and_not_reused() {
    let big = vec![b'x'; MAX_ANSWER_BYTES + 10];
    let mut by_length =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes();
    by_length.extend_from_slice(&big);
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(format!("{:x}\r\n", big.len()).as_bytes());
    chunked.extend_from_slice(&big);
    for bytes in [by_length, chunked] {
        let a = read(&mut &bytes[..]).await.unwrap();
        assert_eq!(
            (a.body.len(), a.truncated, a.reusable),
            (MAX_ANSWER_BYTES, true, false)
        );
    }
}

#[tokio::test]
async fn malformed_answers_are_errors_with_a_reason() {
    let head_over_limit = {
        let mut b = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        b.resize(MAX_ANSWER_BYTES + 100, b'a');
        b
    };
    let interim_flood = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_ANSWER_BYTES / 20);
    let cases: [(&[u8], &str); 11] = [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            "conflicting",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "invalid Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            "cut short",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-", "no complete answer head"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "invalid chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
            "not followed by CRLF",
        ),
        (&head_over_limit, "answer head over"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
            "invalid Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n\r\n\r\n",
            "invalid chunk size",
        ),
        (&interim_flood, "interim answers"),
    ];
    for (bytes, reason) in cases {
        let error = read(&mut &bytes[..]).await.unwrap_err();
        assert!(error.contains(reason), "{error:?} should say {reason:?}");
    }
}
