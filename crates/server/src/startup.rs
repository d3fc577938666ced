//! Building and running the server: adapters chosen by configuration, the
//! router with tracing and timeouts, graceful shutdown on SIGINT/SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use adapters_postgres::PostgresStore;
use adapters_redis::{RedisEventBus, RedisPresence, RedisSettings};
use adapters_sqlite::SqliteStore;
use anyhow::Context;
use async_trait::async_trait;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::Router;
use chat_app::{
    AttachmentRepository, BusPublisher, ChatService, EventBus, InMemoryPresence, InProcessBus,
    Ports, PresenceService, PresenceStore, SystemClock,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{Authenticator, CustomerTokens, StaffVerifier};
use crate::config::{DatabaseSettings, Settings};
use crate::state::{AppState, Readiness};
use crate::ws::{Hub, Realtime};

#[async_trait]
impl Readiness for SqliteStore {
    async fn check(&self) -> anyhow::Result<()> {
        self.ping().await
    }
}

#[async_trait]
impl Readiness for PostgresStore {
    async fn check(&self) -> anyhow::Result<()> {
        self.ping().await
    }
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    realtime: Arc<Realtime>,
    limits: crate::listener::ListenerSettings,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Application {
    /// Connects the store (running its migrations), binds the listener and
    /// assembles the router.
    ///
    /// # Errors
    /// When the store cannot be opened, a key cannot be read, or the
    /// address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let (bus, presence_store) = realtime_adapters(&settings).await?;
        let events = Arc::new(BusPublisher(bus.clone()));
        let (ports, readiness, attachment_records): (
            Ports,
            Arc<dyn Readiness>,
            Arc<dyn AttachmentRepository>,
        ) = match &settings.database {
            DatabaseSettings::Sqlite { path } => {
                let store = Arc::new(
                    SqliteStore::connect(path)
                        .await
                        .with_context(|| format!("opening SQLite database {}", path.display()))?,
                );
                tracing::info!(path = %path.display(), "using SQLite");
                (
                    Ports::from_store(store.clone(), events.clone()),
                    store.clone(),
                    store,
                )
            }
            DatabaseSettings::Postgres {
                url,
                max_connections,
            } => {
                let store = Arc::new(
                    PostgresStore::connect(url.expose(), *max_connections)
                        .await
                        .context("connecting to PostgreSQL (CHAT_DATABASE_URL)")?,
                );
                tracing::info!("using PostgreSQL");
                (
                    Ports::from_store(store.clone(), events.clone()),
                    store.clone(),
                    store,
                )
            }
        };
        let auth = Authenticator {
            staff: StaffVerifier::new(&settings.staff_jwt)?,
            customers: CustomerTokens::new(&settings.customer_token_secret),
        };
        // One service for every transport (it is a set of shared ports).
        let service = ChatService::new(ports.clone());
        let shutdown = CancellationToken::new();
        let hub = Hub::new(ports.messages.clone(), ports.policy.clone());
        tokio::spawn(hub.clone().run(bus.subscribe(), shutdown.clone()));
        let realtime = Arc::new(Realtime {
            hub,
            service: service.clone(),
            presence: PresenceService::new(presence_store, events, Arc::new(SystemClock)),
            settings: settings.realtime.clone(),
            shutdown,
            tasks: TaskTracker::new(),
            send_limiter: send_limiter(&settings),
        });
        if settings.realtime.redis_url.is_some() {
            // Connections of crashed nodes expire in Redis: announce their
            // users' going offline, within a quarter TTL of the expiry.
            tokio::spawn(announce_expired_presence(
                realtime.presence.clone(),
                settings.realtime.redis_presence_ttl / 4,
                realtime.shutdown.clone(),
            ));
        }
        let attachments =
            crate::attachments::service(&settings.attachments, attachment_records, service.clone())
                .await?;
        crate::attachments::spawn_orphan_sweeper(
            attachments.clone(),
            &settings.attachments,
            realtime.shutdown.clone(),
        );
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let state = AppState {
            service,
            auth: Arc::new(auth),
            readiness,
            customer_token_max_ttl: settings.customer_token_max_ttl,
            max_request_bytes: settings.max_request_bytes,
            metrics: metrics.clone(),
            realtime: realtime.clone(),
            attachments,
        };
        let router = crate::routes::router(state)
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                settings.request_timeout,
            ))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                TraceLayer::new_for_http().make_span_with(|request: &Request| {
                    // The matched route, never the raw URI: query strings may
                    // carry tokens.
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", MatchedPath::as_str);
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("http", method = %request.method(), route, request_id)
                }),
            )
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
        let router = crate::routes::with_browser_headers(router, &settings.browser)?;
        let listener = TcpListener::bind(settings.bind)
            .await
            .with_context(|| format!("binding {}", settings.bind))?;
        Ok(Self {
            listener,
            router,
            realtime,
            limits: settings.listener.clone(),
            metrics,
        })
    }

    /// The address actually bound (useful with port 0).
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("reading the bound address")
    }

    /// The WebSocket transport (hub, presence), for embedding hosts and
    /// tests.
    pub fn realtime(&self) -> Arc<Realtime> {
        self.realtime.clone()
    }

    /// Open WebSocket connections on this node.
    pub fn connection_count(&self) -> usize {
        self.realtime.hub.connection_count()
    }

    /// Serves until SIGINT or SIGTERM, then finishes in-flight requests.
    ///
    /// # Errors
    /// When serving fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    ///
    /// # Errors
    /// When serving fails.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr()?, "listening");
        let realtime = self.realtime.clone();
        let token = realtime.shutdown.clone();
        let signal = async move {
            shutdown.await;
            // Every socket closes with 1001 once its in-flight frame is done.
            token.cancel();
        };
        crate::listener::serve(
            self.listener,
            self.router,
            self.limits,
            self.metrics,
            signal,
        )
        .await
        .context("serving HTTP")?;
        realtime.shutdown.cancel();
        realtime.tasks.close();
        if tokio::time::timeout(std::time::Duration::from_secs(10), realtime.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some WebSocket connections did not close in time");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The event bus and presence store: Redis when configured (several
/// nodes), in-process otherwise.
async fn realtime_adapters(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn EventBus>, Arc<dyn PresenceStore>)> {
    match &settings.realtime.redis_url {
        None => Ok((
            Arc::new(InProcessBus::default()),
            Arc::new(InMemoryPresence::default()),
        )),
        Some(url) => {
            let realtime = &settings.realtime;
            let redis = RedisSettings {
                presence_ttl: realtime.redis_presence_ttl,
                ..RedisSettings::new(url.expose(), realtime.redis_prefix.as_str())
            };
            let bus = RedisEventBus::connect(&redis)
                .await
                .context("connecting the event bus to Redis (CHAT_REDIS_URL)")?;
            let presence = RedisPresence::connect(&redis)
                .await
                .context("connecting presence to Redis (CHAT_REDIS_URL)")?;
            tracing::info!(
                prefix = %realtime.redis_prefix,
                presence_ttl = ?realtime.redis_presence_ttl,
                "using Redis for cross-node events and presence"
            );
            Ok((Arc::new(bus), Arc::new(presence)))
        }
    }
}

/// The per-sender send limiter, with a background task that forgets idle
/// senders every minute so its memory stays bounded.
fn send_limiter(settings: &Settings) -> crate::limits::SendLimiter {
    let limiter =
        crate::limits::SendLimiter::new(settings.send_rate_per_minute, settings.send_burst);
    let sweeper = limiter.clone();
    tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            sweeper.forget_idle();
        }
    });
    limiter
}

/// Announces, every `every` until `shutdown`, the users whose connections
/// expired in the presence store. Every node runs it; the store hands each
/// user to one of them.
async fn announce_expired_presence(
    presence: PresenceService,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => match presence.announce_expired().await {
                Ok(0) => {}
                Ok(announced) => tracing::info!(announced, "users of lost connections announced offline"),
                Err(err) => tracing::warn!(error = ?err, "cannot announce expired presence"),
            },
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
