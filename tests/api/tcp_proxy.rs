//! A TCP relay between the app and a service (Redis), which a test can cut and restore: an outage of
//! that service for this app alone, while other tests keep using the real one. It can also cut at a
//! chosen moment: when the app sends a given byte string (a key only one command names), or freeze the
//! connections open at the time (they stay open and pass nothing, as to a peer gone silent).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

pub struct TcpProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    up: watch::Sender<bool>,
    links: Mutex<Vec<AbortHandle>>,
    /// Cut everything, before passing it on, when the app sends this.
    cut_on: Mutex<Option<Vec<u8>>>,
    /// Raised by [`TcpProxy::freeze`]: connections made before it pass nothing more.
    frozen_before: AtomicU64,
}

impl Shared {
    fn cut(&self) {
        self.up.send_replace(false);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl TcpProxy {
    pub async fn start(target: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            up: watch::channel(true).0,
            links: Mutex::default(),
            cut_on: Mutex::default(),
            frozen_before: AtomicU64::new(0),
        });
        let target = target.to_owned();
        let relay = shared.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                // While cut, connections are accepted and closed at once: the client sees its
                // connection fail, as it would with the service down.
                if !*relay.up.borrow() {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let shared = relay.clone();
                let link = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&target).await {
                        link_up(inbound, outbound, &shared).await;
                    }
                });
                relay.links.lock().unwrap().push(link.abort_handle());
            }
        });
        TcpProxy { port, shared }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.cut();
    }

    /// Cuts (as [`Self::cut`]) as soon as the app sends `bytes`, which the service never receives.
    pub fn cut_when_sent(&self, bytes: &[u8]) {
        *self.shared.cut_on.lock().unwrap() = Some(bytes.to_vec());
    }

    /// The connections open now stay open but pass nothing more, either way, and never close: as
    /// when the service moved to another address or a firewall dropped the flow. New connections
    /// pass as usual.
    pub fn freeze(&self) {
        self.shared.frozen_before.fetch_add(1, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        *self.shared.cut_on.lock().unwrap() = None;
        self.shared.up.send_replace(true);
    }
}

async fn link_up(inbound: TcpStream, outbound: TcpStream, shared: &Arc<Shared>) {
    let (mut from_app, mut to_app) = inbound.into_split();
    let (mut from_service, mut to_service) = outbound.into_split();
    let generation = shared.frozen_before.load(Ordering::SeqCst);
    let frozen = {
        let shared = shared.clone();
        move || shared.frozen_before.load(Ordering::SeqCst) != generation
    };
    let answers = tokio::spawn({
        let frozen = frozen.clone();
        async move {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                let read = match from_service.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read,
                };
                if frozen() {
                    // Holding both ends open, forever.
                    std::future::pending::<()>().await;
                }
                if to_app.write_all(&buffer[..read]).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut buffer = vec![0u8; 16 * 1024];
    // The end of what was sent before, so a string split across two reads is still seen.
    let mut seen: Vec<u8> = Vec::new();
    loop {
        let read = match from_app.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let sent = &buffer[..read];
        if frozen() {
            std::future::pending::<()>().await;
        }
        let cut_on = shared.cut_on.lock().unwrap().clone();
        if let Some(pattern) = cut_on {
            seen.extend_from_slice(sent);
            if seen.windows(pattern.len()).any(|w| w == pattern.as_slice()) {
                answers.abort();
                shared.cut();
                return;
            }
            let keep = seen.len().saturating_sub(pattern.len());
            seen.drain(..keep);
        }
        if to_service.write_all(sent).await.is_err() {
            break;
        }
    }
    answers.abort();
}
