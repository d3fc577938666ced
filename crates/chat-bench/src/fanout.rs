//! The `fanout` load: one tenant, one sender, N listening staff sockets:
//! either a customer writing to the tenant's shared inbox heard by N staff
//! members (`fanout`), or a staff member writing in a channel of N other
//! members (`channel`). The sender sends on an open-loop schedule; a message
//! counts as delivered when the last listening socket has it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_domain::{CustomerId, StaffUserId, TenantId};
use futures::{SinkExt, StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Socket};
use crate::stats::{Latencies, Summary};
use crate::target::Target;

/// What one fan-out size measured.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutResult {
    /// Who listens: `shared inbox` or `channel`.
    pub audience: &'static str,
    /// Staff sockets.
    pub staff_sockets: usize,
    /// Messages the customer sent.
    pub messages: u64,
    /// Deliveries expected (`messages x staff_sockets`).
    pub expected: u64,
    /// Deliveries seen.
    pub delivered: u64,
    /// Errors: missing or duplicate deliveries, closed sockets, error frames.
    pub errors: u64,
    /// Seconds to connect every staff socket and for the presence
    /// announcements of their arrival to pass.
    pub connect_s: f64,
    /// Scheduled send to the first staff socket having the message.
    pub first_delivery: Summary,
    /// Scheduled send to the last staff socket having the message.
    pub last_delivery: Summary,
}

/// What one staff socket saw: for each message index, when it arrived.
struct Seen {
    arrivals: Vec<Option<Instant>>,
    errors: u64,
}

/// When any staff socket last received a frame, in microseconds since a
/// shared start: the set-up waits for the presence announcements of the
/// connection storm to be over before it measures.
#[derive(Clone)]
struct Quiet {
    start: Instant,
    last_frame_us: Arc<AtomicU64>,
}

impl Quiet {
    fn heard(&self) {
        let now = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_frame_us.fetch_max(now, Ordering::Relaxed);
    }

    /// Waits until no frame arrived for `silence` (at most `limit`).
    async fn wait(&self, silence: Duration, limit: Duration) {
        let give_up = Instant::now() + limit;
        loop {
            tokio::time::sleep(silence / 4).await;
            let last = Duration::from_micros(self.last_frame_us.load(Ordering::Relaxed));
            if self.start.elapsed().saturating_sub(last) >= silence || Instant::now() > give_up {
                return;
            }
        }
    }
}

/// Reads one staff socket until it has every message (or `stop`), then
/// reports to `done` and keeps the socket open until `stop`: a socket that
/// closed as soon as it was served would announce its user offline to every
/// other staff socket (N frames each) while the slowest ones still wait for
/// the last message, and measure that storm instead of the fan-out.
async fn read_staff(
    socket: Socket,
    messages: usize,
    stop: CancellationToken,
    quiet: Quiet,
    done: mpsc::UnboundedSender<()>,
) -> Seen {
    let mut seen = Seen {
        arrivals: vec![None; messages],
        errors: 0,
    };
    let (_sink, mut stream) = socket.split();
    let mut got = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            frame = stream.next() => {
                let now = Instant::now();
                quiet.heard();
                let Some(Ok(message)) = frame else {
                    seen.errors += 1;
                    break;
                };
                let Ok(Some(incoming)) = client::parse(&message) else {
                    continue;
                };
                if incoming.kind != "new_message" {
                    continue;
                }
                let index = incoming
                    .message
                    .and_then(|m| m.client_msg_id)
                    .and_then(|key| key.strip_prefix('f').and_then(|k| k.parse::<usize>().ok()));
                match index.and_then(|k| seen.arrivals.get_mut(k)) {
                    Some(slot @ None) => {
                        *slot = Some(now);
                        got += 1;
                        if got == messages {
                            break;
                        }
                    }
                    Some(Some(_)) => seen.errors += 1,
                    None => {}
                }
            }
        }
    }
    let _ = done.send(());
    // Still read (and answer pings) while the others finish.
    client::read_until(&mut stream, &stop).await;
    seen
}

/// Who sends, where, and who listens.
struct Setup {
    audience: &'static str,
    conversation: String,
    sender_token: String,
    listener_tokens: Vec<String>,
}

/// Connects `staff` staff sockets and one customer socket, then the
/// customer sends `messages` messages `interval` apart into the shared
/// inbox.
///
/// # Errors
/// When the conversation, tokens or sockets cannot be had.
pub async fn run(
    target: &Target,
    staff: usize,
    messages: usize,
    interval: Duration,
) -> anyhow::Result<FanoutResult> {
    let tenant = TenantId::new_v4();
    let customer = CustomerId::new_v4();
    let first_staff = target.staff_token(tenant, StaffUserId::new_v4(), "pharmacist")?;
    let conversation = target
        .open_conversation(&first_staff, customer, None)
        .await?;
    let sender_token = target.customer_token(&first_staff, customer).await?;
    let listener_tokens = (0..staff)
        .map(|_| target.staff_token(tenant, StaffUserId::new_v4(), "pharmacist"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let setup = Setup {
        audience: "shared inbox",
        conversation,
        sender_token,
        listener_tokens,
    };
    measure(target, setup, messages, interval).await
}

/// A private channel of `members` staff members and its owner; the owner
/// sends `messages` messages `interval` apart, every other member listens.
/// The members are added before any socket opens, so that their notices
/// are not part of the measurement.
///
/// # Errors
/// When the channel, tokens or sockets cannot be had.
pub async fn run_channel(
    target: &Target,
    members: usize,
    messages: usize,
    interval: Duration,
) -> anyhow::Result<FanoutResult> {
    let tenant = TenantId::new_v4();
    let owner = target.staff_token(tenant, StaffUserId::new_v4(), "pharmacist")?;
    let users: Vec<StaffUserId> = (0..members).map(|_| StaffUserId::new_v4()).collect();
    let conversation = target.create_channel(&owner, "fanout", &[]).await?;
    for chunk in users.chunks(100) {
        target.add_members(&owner, &conversation, chunk).await?;
    }
    let listener_tokens = users
        .iter()
        .map(|user| target.staff_token(tenant, *user, "pharmacist"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let setup = Setup {
        audience: "channel",
        conversation,
        sender_token: owner,
        listener_tokens,
    };
    measure(target, setup, messages, interval).await
}

/// Connects the listeners and the sender of `setup`, then sends
/// `messages` messages `interval` apart.
async fn measure(
    target: &Target,
    setup: Setup,
    messages: usize,
    interval: Duration,
) -> anyhow::Result<FanoutResult> {
    let Setup {
        audience,
        conversation,
        sender_token: customer_token,
        listener_tokens,
    } = setup;
    let staff = listener_tokens.len();
    let connect_started = Instant::now();
    let stop = CancellationToken::new();
    let quiet = Quiet {
        start: connect_started,
        last_frame_us: Arc::default(),
    };
    let urls: Vec<String> = listener_tokens
        .iter()
        .enumerate()
        .map(|(i, token)| target.ws_url(i, token))
        .collect();
    // Each socket is read from the moment it opens: every staff member's
    // arrival is announced to the others (presence), and an unread socket
    // would be closed as too slow.
    let (done, mut finished) = mpsc::unbounded_channel();
    let readers: Vec<_> = futures::stream::iter(urls)
        .map(|url| {
            let stop = stop.clone();
            let quiet = quiet.clone();
            let done = done.clone();
            async move {
                let socket = client::connect(&url).await?;
                anyhow::Ok(tokio::spawn(read_staff(
                    socket, messages, stop, quiet, done,
                )))
            }
        })
        .buffered(32)
        .try_collect()
        .await
        .context("connecting the staff sockets")?;
    let customer_socket = client::connect(&target.ws_url(0, &customer_token)).await?;
    // Every staff member's arrival is announced to all the others: let
    // that storm (N x N presence frames) pass before measuring.
    quiet
        .wait(Duration::from_millis(500), Duration::from_secs(120))
        .await;
    let connect_s = connect_started.elapsed().as_secs_f64();

    // Acks and echoes on the customer socket are not what is measured;
    // they are read so that the socket stays healthy.
    let (mut sink, mut stream) = customer_socket.split();
    let customer_reader = {
        let stop = stop.clone();
        tokio::spawn(async move {
            client::read_until(&mut stream, &stop).await;
            stream
        })
    };
    let t0 = Instant::now() + Duration::from_millis(100);
    let mut errors = 0u64;
    for k in 0..messages {
        tokio::time::sleep_until(t0 + interval.mul_f64(k as f64)).await;
        let frame = client::send_frame(&conversation, &format!("f{k}"));
        if sink.send(frame).await.is_err() {
            errors += 1;
            break;
        }
    }
    // Whatever has not arrived 10 s after the last send is lost. Every
    // socket stays open until all have everything (or that time is up).
    drop(done);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        for _ in 0..readers.len() {
            if finished.recv().await.is_none() {
                break;
            }
        }
    })
    .await;
    stop.cancel();
    let mut seen = Vec::with_capacity(readers.len());
    for reader in readers {
        match reader.await {
            Ok(s) => seen.push(s),
            Err(_) => errors += 1,
        }
    }
    if let Ok(stream) = customer_reader.await {
        if let Ok(socket) = sink.reunite(stream) {
            client::close(socket).await;
        }
    }

    let mut first = Latencies::new();
    let mut last = Latencies::new();
    let mut delivered = 0u64;
    for k in 0..messages {
        let scheduled = t0 + interval.mul_f64(k as f64);
        let arrivals: Vec<Instant> = seen.iter().filter_map(|s| s.arrivals[k]).collect();
        delivered += arrivals.len() as u64;
        if let (Some(min), Some(max)) = (arrivals.iter().min(), arrivals.iter().max()) {
            first.record(min.saturating_duration_since(scheduled));
            // The last socket's delivery; a missing one is counted below
            // as an error.
            last.record(max.saturating_duration_since(scheduled));
        }
    }
    errors += seen.iter().map(|s| s.errors).sum::<u64>();
    let expected = (messages * staff) as u64;
    errors += expected.saturating_sub(delivered);
    Ok(FanoutResult {
        audience,
        staff_sockets: staff,
        messages: messages as u64,
        expected,
        delivered,
        errors,
        connect_s,
        first_delivery: first.summary(),
        last_delivery: last.summary(),
    })
}
