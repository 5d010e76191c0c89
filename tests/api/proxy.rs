//! A TCP proxy for the tests, between Tessera and Redis, that can make the network slow,
//! cut connections mid-reply, or stop passing anything (a black hole).
//!
//! TCP never loses bytes silently: a black hole holds them (nothing is read, so they wait in
//! the kernel's buffers) and passes them on when it lifts, unless the connection is cut first.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Everything passes at once.
    None,
    /// Every chunk, either way, waits this long first.
    Latency(Duration),
    /// A request reaches Redis, then its reply is cut off halfway and the connection closed
    /// (the command ran; its answer never arrives).
    CutReplies,
    /// Like `CutReplies`, but only for the reply to a request that contains these bytes (say
    /// `EVALSHA`: the script ran, its answer is lost).
    CutReplyTo(&'static str),
    /// A request is cut off before Redis sees it, and the connection closed (the command never
    /// ran).
    CutRequests,
    /// Nothing passes either way; connections stay open.
    BlackHole,
}

pub struct FaultProxy {
    pub port: u16,
    fault: watch::Sender<Fault>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `127.0.0.1:<upstream>`.
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (fault, watcher) = watch::channel(Fault::None);
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let spawned = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watcher = watcher.clone();
                let task = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let up = pump(
                        client_read,
                        server_write,
                        watcher.clone(),
                        Way::Request,
                        armed.clone(),
                    );
                    let down = pump(server_read, client_write, watcher, Way::Reply, armed);
                    // The first side to end (a cut, or a close) ends the connection.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
                let mut all = spawned.lock().unwrap();
                all.retain(|t| !t.is_finished());
                all.push(task);
            }
        });
        Self {
            port,
            fault,
            tasks,
            accept,
        }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// `redis://tessera:…@127.0.0.1:<proxy port>`: what a node is given instead of Redis's URL.
    pub fn url(&self) -> String {
        format!(
            "redis://{}:{}@127.0.0.1:{}",
            crate::helpers::ACL_USER,
            crate::helpers::ACL_PASSWORD,
            self.port
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Request,
    Reply,
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
    way: Way,
    // Set when a request matched `CutReplyTo`: the next reply on this connection is cut.
    armed: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // A black hole reads nothing until it lifts: the bytes wait, as in a stalled network.
        while *fault.borrow() == Fault::BlackHole {
            if fault.changed().await.is_err() {
                return;
            }
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // A change of fault while waiting for bytes is looked at before the next read.
            changed = fault.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let current = *fault.borrow();
        match (current, way) {
            (Fault::BlackHole, _) => {
                // Came in just as the hole opened: held until it lifts, then passed on.
                while *fault.borrow() == Fault::BlackHole {
                    if fault.changed().await.is_err() {
                        return;
                    }
                }
            }
            (Fault::Latency(delay), _) => tokio::time::sleep(delay).await,
            (Fault::CutRequests, Way::Request) => return,
            (Fault::CutReplies, Way::Reply) => {
                let _ = to.write_all(&buf[..n / 2]).await;
                return;
            }
            (Fault::CutReplyTo(pattern), Way::Request)
                if buf[..n]
                    .windows(pattern.len())
                    .any(|w| w == pattern.as_bytes()) =>
            {
                armed.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            (Fault::CutReplyTo(_), Way::Reply)
                if armed.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                let _ = to.write_all(&buf[..n / 2]).await;
                return;
            }
            _ => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
