//! Slow clients (issue #13, item 7): a client that sends its headers a
//! byte at a time, or keeps a connection open without a request, is cut
//! off after `header_read_timeout_ms` / `idle_timeout_ms`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Server, wait_for_close};
use crate::api::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_slowly_are_cut_off_after_the_header_read_timeout() {
    let limit = Duration::from_millis(500);
    let server = Server::start(&["--header-read-timeout-ms", "500"], &[]).await;
    let mut stream = TcpStream::connect(&server.addr).await.expect("connect");
    let began = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: imx\r\n")
        .await
        .expect("write the request line");
    // One more header line every 50 ms: never a whole head.
    let mut trickle = tokio::time::interval(Duration::from_millis(50));
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                read = stream.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                },
                _ = trickle.tick() => {
                    if stream.write_all(b"X-Slow: a\r\n").await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow client was never cut off");
    assert!(began.elapsed() >= limit, "cut off before the limit");
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_without_a_request_is_closed_after_the_idle_timeout() {
    let args = [
        "--idle-timeout-ms",
        "300",
        "--header-read-timeout-ms",
        "60000",
    ];
    let server = Server::start(&args, &[]).await;
    let mut stream = TcpStream::connect(&server.addr).await.expect("connect");
    // The server's idle timer starts when it has answered, which is after
    // this instant but may be before the client has read the answer.
    let sent = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: imx\r\n\r\n")
        .await
        .expect("write a request");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.ends_with(b"ok\n") {
        let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .expect("the answer in time")
            .expect("read");
        assert!(read > 0, "closed before answering");
        answer.extend_from_slice(&buffer[..read]);
    }
    // The header timeout is a minute: only the idle timeout can close it.
    wait_for_close(&mut stream, WAIT)
        .await
        .expect("closed as idle");
    assert!(sent.elapsed() >= Duration::from_millis(300));
    server.assert_healthy().await;
}
