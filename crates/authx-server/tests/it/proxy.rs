//! A TCP proxy owned by a test, in front of a real service, to inject faults without stopping
//! the service other tests share: cut (connections dropped, new ones closed at once) and
//! frozen (connections open, nothing forwarded).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP proxy in front of a real service, that the test can cut and restore. Cutting drops
/// every open connection and refuses new ones (accepted, then closed at once), which is what
/// a crashed or restarting server looks like to a client.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// While set, bytes are held, not forwarded: the connections stay open and nothing
    /// answers, as with a frozen server or a stalled network path.
    frozen: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub(crate) async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let accept = {
            let cut = Arc::clone(&cut);
            let frozen = Arc::clone(&frozen);
            let conns = Arc::clone(&conns);
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let frozen = Arc::clone(&frozen);
                    let task = tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(&upstream).await {
                            let (client_in, client_out) = client.into_split();
                            let (server_in, server_out) = server.into_split();
                            tokio::join!(
                                forward(client_in, server_out, Arc::clone(&frozen)),
                                forward(server_in, client_out, frozen),
                            );
                        }
                    });
                    let mut list = conns.lock().unwrap();
                    list.retain(|h| !h.is_finished());
                    list.push(task.abort_handle());
                }
            })
            .abort_handle()
        };
        Self {
            addr,
            cut,
            frozen,
            conns,
            accept,
        }
    }

    pub(crate) fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    pub(crate) fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    pub(crate) fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, holding what it read while `frozen` is set.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
