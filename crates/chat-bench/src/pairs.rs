//! The `pairs` load: P customer conversations, each with one customer
//! socket and one staff socket, both sending on a fixed open-loop schedule.
//!
//! Every send has a scheduled instant; its `client_msg_id` carries the step,
//! its index and that instant, so the ack (on the sender's socket) and the
//! delivery (on the other socket) are measured from the schedule, not from
//! when the send happened to go out: a stall anywhere, in the server or in
//! this tool, shows in the latencies instead of silently lowering the rate.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_domain::{CustomerId, StaffUserId, TenantId};
use futures::{SinkExt, StreamExt, TryStreamExt};
use rand::Rng;
use serde::Serialize;
use tokio::time::Instant;

use crate::client::{self, Socket};
use crate::stats::{Latencies, Summary};
use crate::target::Target;

/// The two ends of one customer conversation.
pub struct Pair {
    conversation: Arc<str>,
    customer: Option<Socket>,
    staff: Option<Socket>,
}

/// Which side of a pair a socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Customer,
    Staff,
}

impl Side {
    fn kind(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Staff => "staff",
        }
    }
}

/// Opens `count` conversations, each in its own tenant (a pharmacy with one
/// customer chatting with one pharmacist), and connects both sockets. With
/// several nodes, the two sockets of a pair land on different nodes.
///
/// # Errors
/// When a conversation, token or socket cannot be had.
pub async fn open(target: &Target, count: usize) -> anyhow::Result<Vec<Pair>> {
    futures::stream::iter(0..count)
        .map(|i| async move {
            let tenant = TenantId::new_v4();
            let staff = StaffUserId::new_v4();
            let customer = CustomerId::new_v4();
            let staff_token = target.staff_token(tenant, staff, "pharmacist")?;
            let conversation = target
                .open_conversation(&staff_token, customer, None)
                .await?;
            let customer_token = target.customer_token(&staff_token, customer).await?;
            let customer_socket = client::connect(&target.ws_url(i, &customer_token)).await?;
            let staff_socket = client::connect(&target.ws_url(i + 1, &staff_token)).await?;
            anyhow::Ok(Pair {
                conversation: Arc::from(conversation),
                customer: Some(customer_socket),
                staff: Some(staff_socket),
            })
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .context("opening the conversations and sockets of the pairs")
}

/// Closes every socket of `pairs`.
pub async fn close(pairs: Vec<Pair>) {
    let sockets = pairs
        .into_iter()
        .flat_map(|pair| [pair.customer, pair.staff])
        .flatten();
    futures::future::join_all(sockets.map(client::close)).await;
}

/// One step of load: a rate held for a duration.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Step number (part of every `client_msg_id`, so late frames of an
    /// earlier step are never mistaken for this one's).
    pub number: u32,
    /// Offered rate over all sockets, messages per second.
    pub rate: f64,
    /// How long the schedule runs.
    pub duration: Duration,
    /// How long after the last scheduled send acks and deliveries are
    /// still waited for; whatever has not arrived by then is lost.
    pub drain: Duration,
}

/// What one step measured.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// Conversations.
    pub pairs: usize,
    /// Offered rate, messages per second.
    pub offered_rate: f64,
    /// Scheduled duration, seconds.
    pub duration_s: f64,
    /// Sends issued.
    pub sent: u64,
    /// Acks received.
    pub acked: u64,
    /// Messages received by the other side of their conversation.
    pub delivered: u64,
    /// Sends never delivered to the other side (`sent - delivered`).
    pub lost: u64,
    /// `error` frames, duplicate acks or deliveries, closed sockets.
    pub errors: u64,
    /// A few of the error causes.
    pub error_samples: Vec<String>,
    /// Deliveries per second from the first scheduled send to the last
    /// delivery: what the server actually sustained.
    pub achieved_rate: f64,
    /// Scheduled send to ack on the sender's socket.
    pub ack: Summary,
    /// Scheduled send to arrival on the other side's socket.
    pub delivered_latency: Summary,
}

impl StepResult {
    /// No loss, no error.
    pub fn clean(&self) -> bool {
        self.errors == 0 && self.lost == 0 && self.sent == self.acked
    }
}

#[derive(Default)]
struct SideStats {
    sent: u64,
    acked: u64,
    delivered: u64,
    errors: u64,
    error_samples: Vec<String>,
    last_delivery: Option<Instant>,
    ack: Latencies,
    delivery: Latencies,
}

impl SideStats {
    fn error(&mut self, cause: impl Into<String>) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(cause.into());
        }
    }
}

/// The schedule of one socket in one step.
#[derive(Clone, Copy)]
struct Schedule {
    step: u32,
    t0: Instant,
    phase: Duration,
    interval: Duration,
    count: u64,
    deadline: Instant,
}

impl Schedule {
    fn offset(&self, k: u64) -> Duration {
        self.phase + self.interval.mul_f64(k as f64)
    }
}

/// `step.k.offset_us`: parsed back into (step, k, scheduled offset).
fn key(step: u32, k: u64, offset: Duration) -> String {
    format!("{step}.{k}.{}", offset.as_micros())
}

fn parse_key(key: &str) -> Option<(u32, u64, Duration)> {
    let mut parts = key.split('.');
    let step = parts.next()?.parse().ok()?;
    let k = parts.next()?.parse().ok()?;
    let micros = parts.next()?.parse().ok()?;
    Some((step, k, Duration::from_micros(micros)))
}

/// Marks `k` seen; `false` if it was already (a duplicate).
fn first_time(seen: &mut [bool], k: u64) -> bool {
    match usize::try_from(k).ok().and_then(|k| seen.get_mut(k)) {
        Some(slot) if !*slot => {
            *slot = true;
            true
        }
        _ => false,
    }
}

/// Sends this socket's schedule and reads its acks and the other side's
/// messages until everything arrived or the deadline passed.
async fn drive(
    socket: Socket,
    side: Side,
    conversation: Arc<str>,
    plan: Schedule,
) -> (Option<Socket>, SideStats) {
    let mut stats = SideStats::default();
    let (mut sink, mut stream) = socket.split();
    let count = usize::try_from(plan.count).unwrap_or(usize::MAX);
    let mut acked = vec![false; count];
    let mut delivered = vec![false; count];
    let mut k = 0u64;
    let mut healthy = true;
    loop {
        if k >= plan.count && stats.acked >= plan.count && stats.delivered >= plan.count {
            break;
        }
        let next_at = plan.t0 + plan.offset(k);
        tokio::select! {
            () = tokio::time::sleep_until(next_at), if k < plan.count => {
                let frame = client::send_frame(&conversation, &key(plan.step, k, plan.offset(k)));
                if let Err(err) = sink.send(frame).await {
                    stats.error(format!("send failed: {err}"));
                    healthy = false;
                    break;
                }
                k += 1;
                stats.sent += 1;
            }
            frame = stream.next() => {
                let now = Instant::now();
                let message = match frame {
                    Some(Ok(message)) => message,
                    Some(Err(err)) => {
                        stats.error(format!("socket failed: {err}"));
                        healthy = false;
                        break;
                    }
                    None => {
                        stats.error("socket closed by the server");
                        healthy = false;
                        break;
                    }
                };
                let incoming = match client::parse(&message) {
                    Ok(Some(incoming)) => incoming,
                    Ok(None) => continue,
                    Err(err) => {
                        stats.error(format!("{err:#}"));
                        healthy = false;
                        break;
                    }
                };
                let parsed = incoming
                    .message
                    .as_ref()
                    .and_then(|m| m.client_msg_id.as_deref())
                    .and_then(parse_key)
                    .filter(|(step, _, _)| *step == plan.step);
                match (incoming.kind.as_str(), parsed) {
                    ("ack", Some((_, k, offset))) => {
                        if first_time(&mut acked, k) {
                            stats.acked += 1;
                            stats.ack.record(now.saturating_duration_since(plan.t0 + offset));
                        } else {
                            stats.error(format!("duplicate ack of {k}"));
                        }
                    }
                    ("new_message", Some((_, k, offset))) => {
                        let from_peer = incoming
                            .message
                            .as_ref()
                            .is_some_and(|m| m.sender.kind != side.kind());
                        if from_peer {
                            if first_time(&mut delivered, k) {
                                stats.delivered += 1;
                                stats.last_delivery = Some(now);
                                stats
                                    .delivery
                                    .record(now.saturating_duration_since(plan.t0 + offset));
                            } else {
                                stats.error(format!("duplicate delivery of {k}"));
                            }
                        }
                    }
                    ("error", _) => stats.error(format!(
                        "error frame {} for {:?}",
                        incoming.code.unwrap_or_default(),
                        incoming.request_id
                    )),
                    _ => {}
                }
            }
            () = tokio::time::sleep_until(plan.deadline) => break,
        }
    }
    let socket = if healthy {
        sink.reunite(stream).ok()
    } else {
        None
    };
    (socket, stats)
}

/// Runs an unmeasured step 0 at `rate` for `duration` (none when zero) and
/// gives the sockets back.
pub async fn warm_up(
    pairs: Vec<Pair>,
    rate: f64,
    duration: Duration,
    drain: Duration,
) -> Vec<Pair> {
    if duration.is_zero() {
        return pairs;
    }
    let step = Step {
        number: 0,
        rate,
        duration,
        drain,
    };
    run_step(pairs, step).await.0
}

/// Runs one step over `pairs` and gives the sockets back (pairs whose
/// sockets failed are dropped).
pub async fn run_step(pairs: Vec<Pair>, step: Step) -> (Vec<Pair>, StepResult) {
    let sockets = pairs.len() * 2;
    let per_socket = step.rate / sockets.max(1) as f64;
    let interval = Duration::from_secs_f64(1.0 / per_socket.max(1e-6));
    let count = ((step.duration.as_secs_f64() * per_socket).round() as u64).max(1);
    // Room to start every task before the first send is due.
    let t0 = Instant::now() + Duration::from_millis(200);
    let deadline = t0 + interval.mul_f64(count as f64) + step.drain;
    let mut rng = rand::thread_rng();
    let mut tasks = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let conversation = pair.conversation.clone();
        let mut drive_side = |socket: Option<Socket>, side: Side| {
            let plan = Schedule {
                step: step.number,
                t0,
                phase: interval.mul_f64(rng.gen::<f64>()),
                interval,
                count,
                deadline,
            };
            let conversation = conversation.clone();
            socket.map(|socket| tokio::spawn(drive(socket, side, conversation, plan)))
        };
        let customer = drive_side(pair.customer, Side::Customer);
        let staff = drive_side(pair.staff, Side::Staff);
        tasks.push((pair.conversation, customer, staff));
    }
    let mut total = SideStats::default();
    let mut kept = Vec::with_capacity(tasks.len());
    let mut last_delivery: Option<Instant> = None;
    for (conversation, customer, staff) in tasks {
        let mut sockets = [None, None];
        for (slot, task) in sockets.iter_mut().zip([customer, staff]) {
            let Some(task) = task else {
                total.error("a socket of this pair was already broken");
                continue;
            };
            match task.await {
                Ok((socket, stats)) => {
                    *slot = socket;
                    total.sent += stats.sent;
                    total.acked += stats.acked;
                    total.delivered += stats.delivered;
                    total.errors += stats.errors;
                    for sample in stats.error_samples {
                        if total.error_samples.len() < 5 {
                            total.error_samples.push(sample);
                        }
                    }
                    total.ack.merge(&stats.ack);
                    total.delivery.merge(&stats.delivery);
                    last_delivery = last_delivery.max(stats.last_delivery);
                }
                Err(err) => total.error(format!("socket task failed: {err}")),
            }
        }
        let [customer, staff] = sockets;
        if customer.is_some() && staff.is_some() {
            kept.push(Pair {
                conversation,
                customer,
                staff,
            });
        } else {
            close(vec![Pair {
                conversation,
                customer,
                staff,
            }])
            .await;
        }
    }
    let span = last_delivery
        .map_or(step.duration, |last| last.saturating_duration_since(t0))
        .max(step.duration);
    let result = StepResult {
        pairs: sockets / 2,
        offered_rate: step.rate,
        duration_s: step.duration.as_secs_f64(),
        sent: total.sent,
        acked: total.acked,
        delivered: total.delivered,
        lost: total.sent.saturating_sub(total.delivered),
        errors: total.errors,
        error_samples: total.error_samples,
        achieved_rate: total.delivered as f64 / span.as_secs_f64(),
        ack: total.ack.summary(),
        delivered_latency: total.delivery.summary(),
    };
    (kept, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_step_index_and_schedule() {
        let offset = Duration::from_micros(1_234_567);
        assert_eq!(parse_key(&key(3, 42, offset)), Some((3, 42, offset)));
        assert_eq!(parse_key("nope"), None);
    }

    #[test]
    fn a_second_sighting_is_a_duplicate() {
        let mut seen = vec![false; 2];
        assert!(first_time(&mut seen, 1));
        assert!(!first_time(&mut seen, 1));
        assert!(!first_time(&mut seen, 7), "out of range is never new");
    }
}
