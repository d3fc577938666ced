//! Prometheus metrics: request counts and latencies by route, and messages
//! sent, served at `GET /metrics` in the text exposition format.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chat_app::PublishStats;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store_health::StoreHealth;
use crate::ws::Hub;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_5, 2.0, 15))
}

/// The server's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    messages_sent: Counter,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chat");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, matched route and status",
            requests.clone(),
        );
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and matched route",
            latency.clone(),
        );
        let messages_sent = Counter::default();
        registry.register(
            "messages_sent",
            "Messages stored (replays not counted)",
            messages_sent.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "TCP connections open (HTTP and WebSocket)",
            connections_open.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections refused or closed by the connection limits, by reason \
             (per_address, full, evicted, header_timeout)",
            connections_refused.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            messages_sent,
            connections_open,
            connections_refused,
        }
    }

    /// Also reports, at each scrape, what faults did: the event queue in
    /// front of the bus (`chat_events_pending`,
    /// `chat_events_dropped_total`, `chat_event_publish_failures_total`),
    /// the resyncs asked of every connection (`chat_resyncs_total`) and
    /// whether the store answers (`chat_store_up`).
    #[must_use]
    pub fn with_faults(mut self, faults: FaultSources) -> Self {
        self.registry.register_collector(Box::new(faults));
        self
    }

    /// Counts an accepted connection.
    pub(crate) fn connection_opened(&self) {
        self.connections_open.inc();
    }

    /// Counts a closed connection.
    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    /// Counts a connection refused or closed by a limit.
    pub(crate) fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts one stored message.
    pub fn message_sent(&self) {
        self.messages_sent.inc();
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// The text exposition.
    ///
    /// # Errors
    /// When encoding fails (writing to a `String` does not).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Middleware recording every request under its matched route (never the
/// raw path, which would explode the label set).
pub(crate) async fn track(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub(crate) async fn serve(State(state): State<AppState>) -> Result<Response, ApiError> {
    let body = state
        .metrics
        .render()
        .map_err(|e| ApiError::internal(anyhow::anyhow!("encoding metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// Where the fault metrics are read at each scrape.
pub struct FaultSources {
    /// The event queue in front of the bus (zero in-process).
    pub publish: Arc<PublishStats>,
    /// The hub, which counts the resyncs it asked.
    pub hub: Arc<Hub>,
    /// The store's reachability.
    pub store: Arc<StoreHealth>,
}

impl std::fmt::Debug for FaultSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultSources")
    }
}

/// Encodes one metric of a collector.
fn encode_one(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for FaultSources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = |n: u64| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
        encode_one(
            &mut encoder,
            "events_pending",
            "Events waiting to be published to the event bus",
            &gauge(self.publish.pending()),
        )?;
        encode_one(
            &mut encoder,
            "events_dropped",
            "Events dropped because the queue to the event bus was full \
             (announced, so that their readers resume)",
            &ConstCounter::new(self.publish.dropped()),
        )?;
        encode_one(
            &mut encoder,
            "event_publish_failures",
            "Publish tries the event bus refused (each is tried again)",
            &ConstCounter::new(self.publish.failures()),
        )?;
        encode_one(
            &mut encoder,
            "resyncs",
            "Times this node asked every connection to reconnect and resume",
            &ConstCounter::new(self.hub.resyncs()),
        )?;
        encode_one(
            &mut encoder,
            "store_up",
            "1 when the last check reached the store, 0 while requests are refused",
            &gauge(u64::from(!self.store.is_down())),
        )
    }
}
