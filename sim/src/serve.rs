//! How a node serves its two ports: MI's opening order, the accept loops, MI-style graceful
//! close of the traffic port, and one connection (plain HTTP, or TLS on an HTTPS traffic port).

use super::{Phase, Shared, lock, mi, ws};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

/// Bind (without listening) so the port is ours but refuses connections, as MI's ports do
/// while CApps deploy.
pub(crate) fn reserve(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// One life of the node, from start (or restart) until everything closed: the startup delay,
/// then both ports served until a kill, or a graceful close of the traffic port and a kill.
pub(crate) async fn live(
    shared: Arc<Shared>,
    traffic: TcpSocket,
    health: TcpSocket,
    mut kill: watch::Receiver<bool>,
    close_traffic: watch::Receiver<bool>,
) {
    let name = shared.options.name.clone();
    tokio::select! {
        _ = tokio::time::sleep(shared.options.startup_delay) => {}
        _ = turned_on(&mut kill) => {
            shared.phase.send_replace(Phase::Stopped);
            return;
        }
    }
    // MI opens the pass-through transports first, the internal API (health) port last.
    let listeners = traffic
        .listen(1024)
        .and_then(|t| Ok((t, health.listen(1024)?)));
    let (traffic, health) = match listeners {
        Ok(pair) => pair,
        Err(e) => {
            log::error!("mi-sim {name}: cannot listen: {e}");
            shared.phase.send_replace(Phase::Stopped);
            return;
        }
    };
    {
        // Ignore a stale Running if a shutdown already started.
        let _ = shared.phase.send_if_modified(|p| {
            let starting = *p == Phase::Starting;
            if starting {
                *p = Phase::Running;
            }
            starting
        });
    }
    let traffic_task = serve(
        traffic,
        shared.clone(),
        Endpoint::Traffic,
        kill.clone(),
        Some(close_traffic),
    );
    let health_task = serve(health, shared.clone(), Endpoint::Health, kill.clone(), None);
    tokio::join!(traffic_task, health_task);
    shared.phase.send_replace(Phase::Stopped);
}

#[derive(Clone, Copy)]
enum Endpoint {
    Traffic,
    Health,
}

/// Accept and serve connections until killed, or (traffic port) until closed gracefully:
/// then idle connections close, requests in flight finish, WebSocket sessions are sent a
/// close frame, and this returns once every connection and session has ended.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    endpoint: Endpoint,
    mut kill: watch::Receiver<bool>,
    mut close: Option<watch::Receiver<bool>>,
) {
    // Every connection and WebSocket session holds a clone of `alive`: `recv` returns `None`
    // once all of them have ended. `drain` asks them to finish.
    let (alive, mut all_ended) = mpsc::channel::<()>(1);
    let (drain, drain_rx) = watch::channel(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let session = ws::Session {
                        kill: kill.clone(),
                        drain: drain_rx.clone(),
                        alive: alive.clone(),
                    };
                    tokio::spawn(connection(stream, shared.clone(), endpoint, session));
                }
                Err(e) => {
                    log::warn!("mi-sim {}: accept: {e}", shared.options.name);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = turned_on(&mut kill) => return,
            _ = switched_on(&mut close) => break,
        }
    }
    drop(listener);
    drain.send_replace(true);
    drop(alive);
    tokio::select! {
        _ = all_ended.recv() => {}
        _ = turned_on(&mut kill) => {}
    }
}

/// Serve one connection: on an HTTPS traffic port, the TLS handshake first; then HTTP/1.1.
async fn connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    endpoint: Endpoint,
    session: ws::Session,
) {
    let tls = match endpoint {
        Endpoint::Traffic => lock(&shared.tls).as_ref().map(|t| t.server_config()),
        Endpoint::Health => None,
    };
    let Some(config) = tls else {
        return http(stream, shared, endpoint, session).await;
    };
    let (mut kill, mut drain) = (session.kill.clone(), session.drain.clone());
    let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let accepted = tokio::select! {
        accepted = handshake => accepted,
        // No request is in flight yet: a shutdown drops it like an idle connection.
        _ = turned_on(&mut kill) => return,
        _ = turned_on(&mut drain) => return,
    };
    match accepted {
        Ok(stream) => {
            shared.tls_handshakes.fetch_add(1, Ordering::Relaxed);
            http(stream, shared, endpoint, session).await;
        }
        // A client that distrusts the certificate (or a TCP-only probe) ends here; only this
        // connection is affected.
        Err(e) => {
            shared
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            log::debug!("mi-sim {}: TLS handshake: {e}", shared.options.name);
        }
    }
}

/// HTTP/1.1 with upgrades (the WebSocket endpoint takes the connection over); on `drain`,
/// finish gracefully; on `kill`, drop it at once.
async fn http<S>(stream: S, shared: Arc<Shared>, endpoint: Endpoint, session: ws::Session)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut kill, mut drain) = (session.kill.clone(), session.drain.clone());
    let service = service_fn(move |request| {
        let shared = shared.clone();
        let session = session.clone();
        async move {
            match endpoint {
                Endpoint::Traffic => mi::traffic(request, shared, session).await,
                Endpoint::Health => mi::health(request, shared).await,
            }
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = turned_on(&mut kill) => return,
        _ = turned_on(&mut drain) => {}
    }
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection => {}
        _ = turned_on(&mut kill) => {}
    }
}

/// Resolves when the switch turns on (or its sender is gone).
pub(crate) async fn turned_on(switch: &mut watch::Receiver<bool>) {
    // The borrow guard is dropped here, so callers' futures stay `Send`.
    let _ = switch.wait_for(|on| *on).await.map(|_| ());
}

/// Like [`turned_on`]; never resolves if there is no switch.
async fn switched_on(switch: &mut Option<watch::Receiver<bool>>) {
    match switch {
        Some(rx) => turned_on(rx).await,
        None => std::future::pending().await,
    }
}
