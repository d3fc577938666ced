//! The `idle` load: C authenticated customer connections that only stay
//! open, and the server's resident memory per connection (`VmRSS` before
//! and after, read from `/proc/<pid>/status`).

use std::time::Duration;

use anyhow::{bail, Context};
use chat_domain::{CustomerId, StaffUserId, TenantId};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client;
use crate::target::Target;

/// What the idle load measured.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    /// Connections asked for.
    pub connections: usize,
    /// Connections open at the second memory reading.
    pub open: usize,
    /// Connections the server closed while idle.
    pub closed_early: usize,
    /// Seconds to open them all.
    pub connect_s: f64,
    /// The load generator's open-file limit after raising it.
    pub nofile_limit: u64,
    /// Server `VmRSS` before, KiB.
    pub rss_before_kib: Option<u64>,
    /// Server `VmRSS` with every connection open, KiB.
    pub rss_after_kib: Option<u64>,
    /// `(after - before) / open`, KiB.
    pub per_connection_kib: Option<f64>,
    /// Whether the server shares this process (then the figure includes
    /// the client side too and is not the server's).
    pub in_process: bool,
}

/// Tenants the idle customers are spread over.
const TENANTS: usize = 100;

/// Opens `connections` idle customer sockets, holds them for `hold`, and
/// reads the server's memory before and after.
///
/// # Errors
/// When tokens cannot be issued or too many sockets fail to open.
pub async fn run(
    target: &Target,
    connections: usize,
    hold: Duration,
) -> anyhow::Result<IdleResult> {
    let nofile_limit = crate::raise_open_file_limit();
    let tenants: Vec<String> = (0..TENANTS.min(connections.max(1)))
        .map(|_| target.staff_token(TenantId::new_v4(), StaffUserId::new_v4(), "pharmacist"))
        .collect::<anyhow::Result<_>>()?;
    let tokens: Vec<String> = futures::stream::iter(0..connections)
        .map(|i| {
            let staff = &tenants[i % tenants.len()];
            async move { target.customer_token(staff, CustomerId::new_v4()).await }
        })
        .buffered(32)
        .try_collect()
        .await
        .context("issuing customer tokens")?;
    // Let the token requests' buffers go back before the first reading.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kib = target.rss_kib();

    let started = Instant::now();
    let stop = CancellationToken::new();
    let readers: Vec<_> = futures::stream::iter(tokens.into_iter().enumerate())
        .map(|(i, token)| {
            let url = target.ws_url(i, &token);
            let stop = stop.clone();
            async move {
                let socket = client::connect(&url).await?;
                // `true` when the server closed the socket first.
                anyhow::Ok(tokio::spawn(async move {
                    let (_sink, mut stream) = socket.split();
                    let closed = client::read_until(&mut stream, &stop).await;
                    (closed, stream)
                }))
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await
        .context("opening the idle connections (is the open-file limit high enough?)")?;
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(hold).await;
    let rss_after_kib = target.rss_kib();
    stop.cancel();
    let mut closed_early = 0;
    let mut streams = Vec::with_capacity(readers.len());
    for reader in readers {
        match reader.await {
            Ok((closed, stream)) => {
                if closed {
                    closed_early += 1;
                }
                streams.push(stream);
            }
            Err(_) => closed_early += 1,
        }
    }
    let open = connections.saturating_sub(closed_early);
    drop(streams);
    if open == 0 && connections > 0 {
        bail!("every idle connection was closed by the server");
    }
    let per_connection_kib = match (rss_before_kib, rss_after_kib) {
        (Some(before), Some(after)) if open > 0 => {
            Some(after.saturating_sub(before) as f64 / open as f64)
        }
        _ => None,
    };
    Ok(IdleResult {
        connections,
        open,
        closed_early,
        connect_s,
        nofile_limit,
        rss_before_kib,
        rss_after_kib,
        per_connection_kib,
        in_process: target.in_process,
    })
}
