//! The HTTP listener: accepts TCP connections and serves each with hyper,
//! under limits that keep idle, slow or numerous connections from taking
//! the server down.
//!
//! - A connection has [`ListenerSettings::header_timeout`] to deliver a
//!   request's head once its first byte arrived, and a new connection must
//!   start its first request within that time too (slowloris: a head sent a
//!   byte at a time, or nothing at all).
//! - A kept-alive connection waiting for its next request is closed after
//!   [`ListenerSettings::idle_timeout`] without traffic.
//! - At most [`ListenerSettings::max_connections`] connections are open (a
//!   bound below the open-file limit, so the process never runs out of
//!   descriptors), and at most [`ListenerSettings::max_connections_per_ip`]
//!   from one address. Accepting never stops: at the global limit the
//!   oldest connection that is not serving a request (the cheapest to
//!   lose, and what a flood of silent connections is made of) makes room
//!   for the new one, so `/health` keeps answering; with nothing to evict,
//!   or past the per-address limit, the newcomer gets a short `503` /
//!   `429` and is closed.
//!
//! WebSocket connections count against the limits for as long as they are
//! open, but are never evicted, and their own heartbeat governs them once
//! upgraded.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::metrics::Metrics;
use crate::throttle::LogThrottle;

/// Limits of the HTTP listener (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Time a request's head may take to arrive, from its first byte (and
    /// a new connection's first request, from the accept).
    pub header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Most connections open at once; `None` derives it from the open-file
    /// limit (see [`ListenerSettings::effective_max_connections`]).
    pub max_connections: Option<usize>,
    /// Most connections open at once from one client address; 0 for no
    /// limit.
    pub max_connections_per_ip: usize,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: None,
            max_connections_per_ip: 1_000,
        }
    }
}

impl ListenerSettings {
    /// The connection limit in force: the configured one, or the process's
    /// open-file limit less a tenth (at least 256) of headroom for the
    /// database pool, files being served and log files.
    pub fn effective_max_connections(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let files = rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024);
            let files = usize::try_from(files).unwrap_or(usize::MAX);
            let headroom = (files / 10).max(256);
            files.saturating_sub(headroom).max(64)
        })
    }
}

/// Milliseconds since the registry started: a cheap clock for atomics.
fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What one open connection is doing, shared by its IO, its service and
/// the registry.
#[derive(Debug)]
struct ConnState {
    /// Requests being served.
    in_flight: AtomicUsize,
    /// Requests served or being served.
    requests: AtomicU64,
    /// Switched to another protocol (WebSocket): out of hyper's hands.
    upgraded: AtomicBool,
    /// When the first byte of the next request's head arrived (ms since
    /// the epoch, plus one; 0 while none has).
    head_started: AtomicU64,
    /// Last byte read or written, or request finished (ms since the epoch).
    last_activity: AtomicU64,
    /// Cancelled to close the connection at once.
    evict: CancellationToken,
}

impl ConnState {
    fn new(now: u64) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            head_started: AtomicU64::new(0),
            last_activity: AtomicU64::new(now),
            evict: CancellationToken::new(),
        }
    }

    fn is_serving(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0 || self.upgraded.load(Ordering::Acquire)
    }
}

/// Why a connection is refused or closed by the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nothing to do before `at` (ms since the epoch).
    RecheckAt(u64),
    /// A request head is taking too long, or a new connection stays silent.
    SlowHead,
    /// A kept-alive connection waited too long for its next request.
    Idle,
}

impl ConnState {
    fn verdict(&self, now: u64, settings: &ListenerSettings) -> Verdict {
        let header = u64::try_from(settings.header_timeout.as_millis()).unwrap_or(u64::MAX);
        let idle = u64::try_from(settings.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        if self.is_serving() {
            return Verdict::RecheckAt(now.saturating_add(idle.min(header)));
        }
        let head_started = self.head_started.load(Ordering::Acquire);
        let last = self.last_activity.load(Ordering::Acquire);
        let (deadline, verdict) = if head_started > 0 {
            ((head_started - 1).saturating_add(header), Verdict::SlowHead)
        } else if self.requests.load(Ordering::Acquire) == 0 {
            (last.saturating_add(header), Verdict::SlowHead)
        } else {
            (last.saturating_add(idle), Verdict::Idle)
        };
        if now >= deadline {
            verdict
        } else {
            Verdict::RecheckAt(deadline)
        }
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections still spoken by hyper, oldest first: the candidates for
    /// eviction.
    http: BTreeMap<u64, Arc<ConnState>>,
}

/// Every open connection, for the limits.
struct Registry {
    settings: ListenerSettings,
    max_connections: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<Open>,
    metrics: Arc<Metrics>,
    refusals: LogThrottle,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Too many from this address.
    PerAddress,
    /// Too many in all, and none could make room.
    Full,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::PerAddress => "per_address",
            Self::Full => "full",
        }
    }

    /// A complete, tiny HTTP response that closes the connection.
    fn response(self) -> &'static [u8] {
        match self {
            Self::PerAddress => b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 5\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: 102\r\n\r\n{\"error\":{\"code\":\"rate_limited\",\"message\":\"too many connections from this address: close some first\"}}",
            Self::Full => b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: 91\r\n\r\n{\"error\":{\"code\":\"unavailable\",\"message\":\"the server has too many connections: retry shortly\"}}",
        }
    }
}

/// Holds a connection's place in the [`Registry`] until dropped.
struct Admission {
    registry: Arc<Registry>,
    id: u64,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self
            .registry
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
        open.http.remove(&self.id);
        self.registry.metrics.connection_closed();
    }
}

impl Registry {
    fn now(&self) -> u64 {
        millis_since(self.epoch)
    }

    /// Admits a connection from `ip`, evicting the oldest idle one when
    /// full.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<(Admission, Arc<ConnState>), Refusal> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let per_ip = self.settings.max_connections_per_ip;
        if per_ip > 0 && open.per_ip.get(&ip).copied().unwrap_or(0) >= per_ip {
            return Err(Refusal::PerAddress);
        }
        if open.total >= self.max_connections {
            let victim = open
                .http
                .iter()
                .find(|(_, state)| !state.is_serving())
                .map(|(id, _)| *id);
            let Some(victim) = victim.and_then(|id| open.http.remove(&id)) else {
                return Err(Refusal::Full);
            };
            // Its task closes it; its admission leaves the count then.
            victim.evict.cancel();
            self.metrics.connection_refused("evicted");
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::new(self.now()));
        open.total += 1;
        *open.per_ip.entry(ip).or_insert(0) += 1;
        open.http.insert(id, state.clone());
        drop(open);
        self.metrics.connection_opened();
        Ok((
            Admission {
                registry: self.clone(),
                id,
                ip,
            },
            state,
        ))
    }

    /// The connection stopped speaking HTTP: never a candidate for eviction
    /// any more.
    fn upgraded(&self, id: u64, state: &ConnState) {
        state.upgraded.store(true, Ordering::Release);
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .http
            .remove(&id);
    }
}

/// A TCP stream that reports its traffic to its [`ConnState`] and keeps
/// the connection's [`Admission`] for as long as it lives (also inside an
/// upgraded WebSocket).
struct Tracked {
    stream: TcpStream,
    state: Arc<ConnState>,
    epoch: Instant,
    _admission: Admission,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let now = millis_since(self.epoch);
            let state = &self.state;
            state.last_activity.store(now, Ordering::Release);
            if state.in_flight.load(Ordering::Acquire) == 0 {
                // The first byte of a request head (a no-op after it).
                let _ = state.head_started.compare_exchange(
                    0,
                    now.saturating_add(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            let now = millis_since(self.epoch);
            self.state.last_activity.store(now, Ordering::Release);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            let now = millis_since(self.epoch);
            self.state.last_activity.store(now, Ordering::Release);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<ConnState>, Instant);

impl InFlight {
    fn start(state: Arc<ConnState>, epoch: Instant) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.requests.fetch_add(1, Ordering::AcqRel);
        state.head_started.store(0, Ordering::Release);
        Self(state, epoch)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .last_activity
            .store(millis_since(self.1), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish (kept-alive connections close after their
/// current response).
///
/// # Errors
/// None today: accept failures are logged and retried.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ListenerSettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let max_connections = settings.effective_max_connections();
    tracing::info!(
        max_connections,
        max_connections_per_ip = settings.max_connections_per_ip,
        header_timeout = ?settings.header_timeout,
        idle_timeout = ?settings.idle_timeout,
        "connection limits"
    );
    let registry = Arc::new(Registry {
        settings,
        max_connections,
        epoch: Instant::now(),
        next_id: AtomicU64::new(0),
        open: Mutex::default(),
        metrics,
        refusals: LogThrottle::new(Duration::from_secs(10)),
    });
    let stopping = CancellationToken::new();
    let tasks = TaskTracker::new();
    let accept_errors = LogThrottle::new(Duration::from_secs(10));
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors (or a connection reset before it was
                    // taken): wait a little rather than spin.
                    if let Some(suppressed) = accept_errors.allow() {
                        tracing::warn!(error = %err, suppressed, "cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small frames (acks, events) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        match registry.admit(peer.ip()) {
            Ok((admission, state)) => {
                let tracked = Tracked {
                    stream,
                    state: state.clone(),
                    epoch: registry.epoch,
                    _admission: admission,
                };
                tasks.spawn(connection(
                    registry.clone(),
                    tracked,
                    state,
                    peer,
                    router.clone(),
                    stopping.clone(),
                ));
            }
            Err(refusal) => {
                registry.metrics.connection_refused(refusal.label());
                if let Some(suppressed) = registry.refusals.allow() {
                    tracing::warn!(
                        reason = refusal.label(),
                        suppressed,
                        "connection refused by the connection limits"
                    );
                }
                // A fresh socket's send buffer takes these few bytes at
                // once; nothing waits for a client that does not read.
                let _ = stream.try_write(refusal.response());
            }
        }
    }
    drop(listener);
    stopping.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Serves one connection: hyper's HTTP/1.1 with upgrades, watched by the
/// limits.
async fn connection(
    registry: Arc<Registry>,
    io: Tracked,
    state: Arc<ConnState>,
    peer: SocketAddr,
    router: Router,
    stopping: CancellationToken,
) {
    let id = io._admission.id;
    let epoch = registry.epoch;
    let service_state = state.clone();
    let upgrade_registry = registry.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_flight = InFlight::start(service_state.clone(), epoch);
        let router = router.clone();
        let registry = upgrade_registry.clone();
        let state = service_state.clone();
        async move {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = router
                .oneshot(request)
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                registry.upgraded(id, &state);
            }
            drop(in_flight);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The limits below replace hyper's own header timer, which would also
    // close kept-alive connections after the (much shorter) header timeout.
    builder.header_read_timeout(None);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = pin!(conn);
    let mut closing = false;
    loop {
        let wake = match state.verdict(registry.now(), &registry.settings) {
            Verdict::RecheckAt(at) => at,
            Verdict::SlowHead => {
                tracing::debug!(%peer, "request head too slow: connection closed");
                registry.metrics.connection_refused("header_timeout");
                return;
            }
            Verdict::Idle if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                registry.now().saturating_add(1_000)
            }
            // Asked to close a second ago and still not done: drop it.
            Verdict::Idle => return,
        };
        let sleep = tokio::time::sleep_until(epoch + Duration::from_millis(wake));
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            () = state.evict.cancelled() => {
                tracing::debug!(%peer, "idle connection evicted to make room");
                return;
            }
            () = stopping.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = sleep => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ListenerSettings {
        ListenerSettings {
            header_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(1_000),
            max_connections: Some(2),
            max_connections_per_ip: 0,
        }
    }

    #[test]
    fn connections_are_judged_by_what_they_are_doing() {
        let s = settings();
        // (what the connection did, ms since it opened, verdict)
        let fresh = ConnState::new(0);
        let started = ConnState::new(0);
        started.head_started.store(50 + 1, Ordering::Release);
        let kept_alive = ConnState::new(0);
        kept_alive.requests.store(1, Ordering::Release);
        kept_alive.last_activity.store(200, Ordering::Release);
        let busy = ConnState::new(0);
        busy.in_flight.store(1, Ordering::Release);
        let upgraded = ConnState::new(0);
        upgraded.upgraded.store(true, Ordering::Release);
        let table: [(&str, &ConnState, u64, Verdict); 9] = [
            ("silent, young", &fresh, 50, Verdict::RecheckAt(100)),
            (
                "silent past the header timeout",
                &fresh,
                100,
                Verdict::SlowHead,
            ),
            (
                "head started, in time",
                &started,
                120,
                Verdict::RecheckAt(150),
            ),
            ("head started, too slow", &started, 150, Verdict::SlowHead),
            (
                "kept alive, waiting",
                &kept_alive,
                1_000,
                Verdict::RecheckAt(1_200),
            ),
            (
                "kept alive, idle too long",
                &kept_alive,
                1_200,
                Verdict::Idle,
            ),
            (
                "serving a request",
                &busy,
                10_000,
                Verdict::RecheckAt(10_100),
            ),
            ("upgraded", &upgraded, 10_000, Verdict::RecheckAt(10_100)),
            ("silent, at once", &fresh, 0, Verdict::RecheckAt(100)),
        ];
        for (what, state, now, expected) in table {
            assert_eq!(state.verdict(now, &s), expected, "{what}");
        }
    }

    fn registry(settings: ListenerSettings) -> Arc<Registry> {
        Arc::new(Registry {
            max_connections: settings.effective_max_connections(),
            settings,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::default(),
            metrics: Arc::new(Metrics::new()),
            refusals: LogThrottle::new(Duration::from_secs(10)),
        })
    }

    #[test]
    fn at_the_limit_the_oldest_idle_connection_makes_room() {
        let registry = registry(settings());
        let ip: IpAddr = [10, 0, 0, 1].into();
        let (first, first_state) = registry.admit(ip).unwrap();
        let (_second, second_state) = registry.admit(ip).unwrap();
        // Full: the oldest idle connection is evicted for the newcomer.
        let (_third, _) = registry.admit(ip).unwrap();
        assert!(first_state.evict.is_cancelled());
        assert!(!second_state.evict.is_cancelled());
        drop(first);
        // Serving connections are never evicted: with both busy, refused.
        second_state.in_flight.store(1, Ordering::Release);
        let (_fourth, fourth_state) = registry.admit(ip).unwrap_or_else(|r| panic!("{r:?}"));
        assert!(!fourth_state.evict.is_cancelled());
        fourth_state.upgraded.store(true, Ordering::Release);
        let _ = registry.admit(ip).map(|_| ()).unwrap_err();
    }

    #[test]
    fn one_address_cannot_take_every_connection() {
        let registry = registry(ListenerSettings {
            max_connections: Some(100),
            max_connections_per_ip: 2,
            ..settings()
        });
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let first = registry.admit(a).unwrap();
        let _second = registry.admit(a).unwrap();
        assert_eq!(
            registry.admit(a).map(|_| ()).unwrap_err(),
            Refusal::PerAddress
        );
        assert!(
            registry.admit(b).is_ok(),
            "other addresses are not affected"
        );
        drop(first);
        assert!(
            registry.admit(a).is_ok(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn the_default_limit_leaves_headroom_below_the_file_limit() {
        let derived = ListenerSettings::default().effective_max_connections();
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        let soft = usize::try_from(soft).unwrap();
        assert!(derived < soft || soft < 64, "{derived} of {soft}");
        assert!(derived >= 64);
    }
}
