//! Serving the status router so that idle clients cannot exhaust it (nor,
//! through it, the process's file descriptors): a cap on open connections,
//! where the connection idle the longest makes way for a new one; a
//! header-read timeout, which also bounds idle keep-alive connections; and
//! an inactivity timeout for connections on which nothing moves.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use super::Limits;

/// One open connection, as the accept loop sees it.
struct Conn {
    /// When the table started: the origin of the millisecond stamps.
    epoch: Instant,
    /// Requests being answered.
    busy: AtomicUsize,
    /// The last time a byte moved either way (ms since `epoch`).
    last_activity: AtomicU64,
    /// Since when no request is being answered (ms since `epoch`).
    idle_since: AtomicU64,
    /// Asks the connection to close (it is the idle one making way).
    close: Notify,
}

impl Conn {
    fn now(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    fn touch(&self) {
        self.last_activity.store(self.now(), Ordering::Relaxed);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A request in progress on a connection; the connection is idle again
/// once every one is dropped (answered or abandoned).
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        conn.touch();
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open connections.
struct Table {
    epoch: Instant,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Table {
    fn add(&self) -> (u64, Arc<Conn>) {
        let now = millis(self.epoch.elapsed());
        let conn = Arc::new(Conn {
            epoch: self.epoch,
            busy: AtomicUsize::new(0),
            last_activity: AtomicU64::new(now),
            idle_since: AtomicU64::new(now),
            close: Notify::new(),
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, conn.clone());
        (id, conn)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Asks the connection idle the longest (no request in progress) to
    /// close; `false` when every connection is answering a request.
    fn evict_oldest_idle(&self) -> bool {
        let conns = self.lock();
        let victim = conns
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|c| c.idle_since.load(Ordering::Relaxed));
        match victim {
            Some(conn) => {
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A socket that notes each time a byte moves.
struct Tracked {
    io: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accepts connections on `listener` and answers them with `router` until
/// `shutdown` resolves; open connections then finish their request.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let table = Arc::new(Table {
        epoch: Instant::now(),
        next: AtomicU64::new(0),
        conns: Mutex::new(HashMap::new()),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "status endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = make_room(&slots, &table) => permit,
        };
        let Some(permit) = permit else { break };
        tokio::spawn(connection(
            stream,
            permit,
            table.clone(),
            router.clone(),
            limits,
            stop_rx.clone(),
        ));
    }
    let _ = stop_tx.send(true);
}

/// A connection slot: free, or made free by closing the connection idle the
/// longest; when every connection is answering a request, the next to
/// finish. `None` once the semaphore is closed.
async fn make_room(slots: &Arc<Semaphore>, table: &Table) -> Option<OwnedSemaphorePermit> {
    loop {
        match slots.clone().try_acquire_owned() {
            Ok(permit) => return Some(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return None,
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        table.evict_oldest_idle();
        tokio::select! {
            permit = slots.clone().acquire_owned() => return permit.ok(),
            // A busy connection may turn idle meanwhile: look again.
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

async fn connection(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    table: Arc<Table>,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let (id, conn) = table.add();
    let tracked = Tracked {
        io: stream,
        conn: conn.clone(),
    };
    let for_requests = conn.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let busy = Busy::new(for_requests.clone());
        let answer = router.clone().oneshot(request);
        async move {
            let response = answer.await;
            drop(busy);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let served = builder.serve_connection(TokioIo::new(tracked), service);
    tokio::pin!(served);
    let mut stopping = false;
    loop {
        let quiet_until = conn.epoch
            + Duration::from_millis(conn.last_activity.load(Ordering::Relaxed))
            + limits.idle_timeout;
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "status connection ended");
                }
                break;
            }
            () = conn.close.notified() => {
                tracing::debug!("status endpoint at its connection cap: closed the connection idle the longest");
                break;
            }
            () = tokio::time::sleep_until(quiet_until) => {
                let last = conn.last_activity.load(Ordering::Relaxed);
                if conn.now().saturating_sub(last) >= millis(limits.idle_timeout) {
                    tracing::debug!("status connection inactive too long: closed");
                    break;
                }
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }
    table.remove(id);
    drop(permit);
}
