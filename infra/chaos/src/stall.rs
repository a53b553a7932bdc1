//! A syslog collector that stops reading: a loopback TCP proxy in front of rsyslog with small
//! socket buffers that, while paused, reads nothing from its clients, so their writes block once
//! the buffers are full, as with a collector whose input thread is stuck. TLS passes through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use crate::error::ChaosError;

/// Receive buffer of the proxy's sockets: small, so that a pause is felt at once.
const RECV_BUFFER: u32 = 16 * 1024;

/// The stalling proxy.
#[derive(Debug, Clone)]
pub struct StallProxy {
    addr: SocketAddr,
    target: Arc<AtomicU16>,
    paused: watch::Sender<bool>,
}

impl StallProxy {
    /// Starts the proxy on a free loopback port; connections fail until [`Self::set_target`].
    pub async fn start() -> Result<Self, ChaosError> {
        let err = |source| ChaosError::Injector {
            what: "syslog stall proxy",
            source,
        };
        let socket = TcpSocket::new_v4().map_err(err)?;
        socket.set_recv_buffer_size(RECV_BUFFER).map_err(err)?;
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(err)?;
        let listener = socket.listen(128).map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        let target = Arc::new(AtomicU16::new(0));
        let (paused, paused_rx) = watch::channel(false);
        let t = target.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let port = t.load(Ordering::Relaxed);
                tokio::spawn(pipe(client, port, paused_rx.clone()));
            }
        });
        Ok(Self {
            addr,
            target,
            paused,
        })
    }

    /// The port to give the forwarder.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Passes connections to `127.0.0.1:{port}` (rsyslog's TLS port).
    pub fn set_target(&self, port: u16) {
        self.target.store(port, Ordering::Relaxed);
    }

    /// Stops (true) or resumes (false) reading from the clients.
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }
}

async fn pipe(client: TcpStream, port: u16, paused: watch::Receiver<bool>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let mut paused = paused;
        let mut buf = vec![0u8; 8192];
        loop {
            if paused.wait_for(|p| !*p).await.is_err() {
                return;
            }
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    };
    tokio::select! {
        () = up => {},
        () = down => {},
    }
}
