//! A TCP proxy on loopback that can cut a service off: used to make S3 (or any endpoint)
//! unreachable for one process while everything else keeps talking to the emulator directly.
//!
//! Point the process under test at [`CutProxy::url`] (for example `AWS_ENDPOINT_URL_S3`), then
//! [`CutProxy::cut`] drops every open connection and refuses new ones (they are accepted and
//! closed at once, as a host whose service is down answers), and [`CutProxy::restore`] lets
//! traffic through again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::HarnessError;

/// A loopback TCP proxy to `127.0.0.1:{target}` that can be cut and restored.
#[derive(Debug)]
pub struct CutProxy {
    port: u16,
    cut: watch::Sender<bool>,
    refused: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    /// Starts the proxy on a free loopback port, passing traffic to `127.0.0.1:{target}`.
    pub async fn start(target: u16) -> Result<Self, HarnessError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let (cut, cut_rx) = watch::channel(false);
        let refused = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept_loop(listener, target, cut_rx, refused.clone()));
        Ok(Self {
            port,
            cut,
            refused,
            accept,
        })
    }

    /// `http://127.0.0.1:{port}`: the endpoint to give the process under test.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every open connection and refuses new ones until [`CutProxy::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets traffic through again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// Whether the proxy is cut.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    /// Connections refused while cut (so a test can show the process really tried).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Open connections end with the watch sender.
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: u16,
    cut: watch::Receiver<bool>,
    refused: Arc<AtomicU64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *cut.borrow() {
            refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        tokio::spawn(pass(client, target, cut.clone()));
    }
}

/// Copies both ways until either side closes or the proxy is cut (then both are dropped).
async fn pass(mut client: TcpStream, target: u16, mut cut: watch::Receiver<bool>) {
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = cut.wait_for(|c| *c) => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> u16 {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    async fn round_trip(port: u16) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf.to_vec())
    }

    #[tokio::test]
    async fn passes_traffic_refuses_it_while_cut_and_passes_it_again_after_restore() {
        let proxy = CutProxy::start(echo_server().await).await.unwrap();
        assert_eq!(
            round_trip(proxy.port()).await.as_deref(),
            Some(&b"ping"[..])
        );
        proxy.cut();
        assert_eq!(round_trip(proxy.port()).await, None);
        assert!(proxy.refused() >= 1);
        proxy.restore();
        assert_eq!(
            round_trip(proxy.port()).await.as_deref(),
            Some(&b"ping"[..])
        );
    }

    #[tokio::test]
    async fn cutting_drops_connections_that_are_already_open() {
        let proxy = CutProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        proxy.cut();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let _ = s.write_all(b"ping").await;
        let n = s.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "the open connection was closed");
    }
}
