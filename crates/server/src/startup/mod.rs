//! Building and running the server: adapters chosen by configuration, the
//! router with tracing and timeouts, graceful shutdown on SIGINT/SIGTERM.
//!
//! [`Application::build`] only assembles; each kind of adapter is chosen in
//! its own module: `store` (SQLite or PostgreSQL), `realtime` (Redis or
//! in-process bus and presence) and `attachments` (file store, scanner,
//! sweeper).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::Router;
use chat_app::{ChatService, PresenceService, SystemClock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{Authenticator, CustomerTokens, StaffVerifier};
use crate::config::Settings;
use crate::state::AppState;
use crate::store_health::StoreHealth;
use crate::ws::{Hub, Realtime};

pub mod attachments;
mod realtime;
mod store;

use realtime::{announce_expired_presence, realtime_adapters, send_limiter, RealtimeAdapters};
use store::Store;

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
        let RealtimeAdapters {
            bus,
            presence: presence_store,
            events,
            publish_stats,
        } = realtime_adapters(&settings).await?;
        let store = Store::open(&settings.database, events.clone()).await?;
        let ports = store.ports;
        let auth = Authenticator {
            staff: StaffVerifier::new(&settings.staff_jwt)?,
            customers: CustomerTokens::new(&settings.customer_token_secret),
        };
        // One service for every transport (it is a set of shared ports).
        let service = ChatService::new(ports.clone());
        let shutdown = CancellationToken::new();
        let hub = Hub::new(
            ports.messages.clone(),
            ports.conversations.clone(),
            ports.members.clone(),
            ports.policy.clone(),
        );
        tokio::spawn(hub.clone().run(bus.subscribe(), shutdown.clone()));
        let store_health = Arc::new(StoreHealth::new(store.readiness));
        store_health.clone().spawn_probe(shutdown.clone());
        let realtime = Arc::new(Realtime {
            store_health: store_health.clone(),
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
            attachments::service(&settings.attachments, store.attachments, service.clone()).await?;
        attachments::spawn_orphan_sweeper(
            attachments.clone(),
            &settings.attachments,
            realtime.shutdown.clone(),
        );
        let metrics = Arc::new(crate::metrics::Metrics::new().with_faults(
            crate::metrics::FaultSources {
                publish: publish_stats,
                hub: realtime.hub.clone(),
                store: store_health.clone(),
            },
        ));
        let state = AppState {
            service,
            auth: Arc::new(auth),
            store_health,
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
