//! The `channel` scenario's membership churn: a private channel carries an
//! open-loop stream of messages while staff members are added to it and
//! removed from it one after another, each with a socket open throughout.
//! The channel's own history (read back over REST once the stream ends)
//! says where each member's time in the channel began (their
//! `member_added` notice) and ended (their `member_removed` notice); the
//! tool then counts, for every member, the messages of that span their
//! socket missed (lost), the messages outside it that reached them
//! (leaked), and the ones that came twice.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context;
use chat_domain::{StaffUserId, TenantId};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Socket};
use crate::target::Target;

/// The sizes of a churn run.
#[derive(Debug, Clone, Copy)]
pub struct ChurnOptions {
    /// Members who stay throughout, each with a socket.
    pub steady: usize,
    /// Members added and then removed during the stream.
    pub churned: usize,
    /// Messages per second the owner sends.
    pub rate: f64,
    /// How long the stream runs.
    pub duration: Duration,
}

/// What a churn run counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChurnResult {
    /// Messages the owner sent (acked).
    pub sent: u64,
    /// Offered rate, messages per second.
    pub rate: f64,
    /// Members added, then removed, during the stream.
    pub churned: usize,
    /// Members there throughout.
    pub steady: usize,
    /// Deliveries expected in all (each member's span).
    pub expected: u64,
    /// Messages of a member's span their socket never got.
    pub lost: u64,
    /// Messages outside a member's span that reached them.
    pub leaked: u64,
    /// Messages that reached a socket twice.
    pub duplicated: u64,
    /// Failed requests, sends or sockets.
    pub errors: u64,
}

impl ChurnResult {
    /// Nothing lost, leaked, duplicated or failed.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.leaked == 0 && self.duplicated == 0 && self.errors == 0
    }
}

/// Reads one member's socket until `stop`: the `seq` of every message of
/// `channel` it got, in order of arrival.
async fn read_seqs(socket: Socket, channel: String, stop: CancellationToken) -> (Vec<u64>, u64) {
    let (_sink, mut stream) = socket.split();
    let mut seqs = Vec::new();
    let mut errors = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else {
                    errors += 1;
                    break;
                };
                let Ok(Some(incoming)) = client::parse(&frame) else {
                    continue;
                };
                if incoming.kind != "new_message" {
                    continue;
                }
                if let Some(message) = incoming.message {
                    if message.conversation_id.as_deref() == Some(channel.as_str()) {
                        seqs.extend(message.seq);
                    }
                }
            }
        }
    }
    (seqs, errors)
}

/// The channel's history: every `seq`, and where each member's span
/// begins and ends (`seq`s of their notices).
struct History {
    last_seq: u64,
    added: HashMap<String, u64>,
    removed: HashMap<String, u64>,
}

async fn history(target: &Target, token: &str, channel: &str) -> anyhow::Result<History> {
    let mut history = History {
        last_seq: 0,
        added: HashMap::new(),
        removed: HashMap::new(),
    };
    loop {
        let page = target
            .get(
                &format!(
                    "/conversations/{channel}/messages?after={}&limit=200",
                    history.last_seq
                ),
                token,
            )
            .await?;
        let messages = page["messages"].as_array().context("a page of messages")?;
        for message in messages {
            history.last_seq = message["seq"].as_u64().context("a seq")?;
            let user = message["system"]["user"]["id"].as_str().map(str::to_owned);
            match (message["system"]["event"].as_str(), user) {
                (Some("member_added"), Some(user)) => {
                    history.added.insert(user, history.last_seq);
                }
                (Some("member_removed" | "member_left"), Some(user)) => {
                    history.removed.insert(user, history.last_seq);
                }
                _ => {}
            }
        }
        if page["has_more"] != Value::Bool(true) {
            return Ok(history);
        }
    }
}

/// Runs the churn (see the module docs).
///
/// # Errors
/// When the channel, tokens or sockets cannot be had.
pub async fn run(target: &Target, options: ChurnOptions) -> anyhow::Result<ChurnResult> {
    let tenant = TenantId::new_v4();
    let owner = target.staff_token(tenant, StaffUserId::new_v4(), "pharmacist")?;
    let steady: Vec<StaffUserId> = (0..options.steady).map(|_| StaffUserId::new_v4()).collect();
    let churned: Vec<StaffUserId> = (0..options.churned)
        .map(|_| StaffUserId::new_v4())
        .collect();
    let channel = target.create_channel(&owner, "churn", &steady).await?;

    let stop = CancellationToken::new();
    let mut readers = Vec::new();
    for (i, user) in steady.iter().chain(&churned).enumerate() {
        let token = target.staff_token(tenant, *user, "pharmacist")?;
        let socket = client::connect(&target.ws_url(i, &token)).await?;
        readers.push((
            *user,
            tokio::spawn(read_seqs(socket, channel.clone(), stop.clone())),
        ));
    }
    let sender = client::connect(&target.ws_url(0, &owner)).await?;
    let (mut sink, mut stream) = sender.split();
    let acks = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acked = 0u64;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    frame = stream.next() => {
                        let Some(Ok(frame)) = frame else { break };
                        if let Ok(Some(incoming)) = client::parse(&frame) {
                            acked += u64::from(incoming.kind == "ack");
                        }
                    }
                }
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Each churned member is added in the first half of the stream and
    // removed in the second, one change at a time, while the owner sends.
    let started = Instant::now() + Duration::from_millis(100);
    let span = options.duration;
    let changes = async {
        let mut errors = 0u64;
        let step = span.div_f64(2.0 * churned.len().max(1) as f64);
        for (i, user) in churned.iter().enumerate() {
            tokio::time::sleep_until(started + step.mul_f64(i as f64)).await;
            errors += u64::from(
                target
                    .add_members(&owner, &channel, &[*user])
                    .await
                    .is_err(),
            );
        }
        for (i, user) in churned.iter().enumerate() {
            tokio::time::sleep_until(started + span / 2 + step.mul_f64(i as f64)).await;
            errors += u64::from(target.remove_member(&owner, &channel, *user).await.is_err());
        }
        errors
    };
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let sends = async {
        let mut errors = 0u64;
        let mut k = 0u64;
        while interval.mul_f64(k as f64) < span {
            tokio::time::sleep_until(started + interval.mul_f64(k as f64)).await;
            if sink
                .send(client::send_frame(&channel, &format!("c{k}")))
                .await
                .is_err()
            {
                errors += 1;
                break;
            }
            k += 1;
        }
        (k, errors)
    };
    let (change_errors, (k, send_errors)) = tokio::join!(changes, sends);
    let mut errors = change_errors + send_errors;
    // Late deliveries.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let sent = acks.await.unwrap_or_default();
    errors += k.saturating_sub(sent);

    let history = history(target, &owner, &channel).await?;
    let mut result = ChurnResult {
        sent,
        rate: options.rate,
        churned: churned.len(),
        steady: steady.len(),
        errors,
        ..ChurnResult::default()
    };
    for (user, reader) in readers {
        let Ok((seqs, socket_errors)) = reader.await else {
            result.errors += 1;
            continue;
        };
        result.errors += socket_errors;
        let key = user.to_string();
        // A steady member's span is everything after the notices of the
        // channel's creation (posted before any socket opened); a churned
        // one's, from their adding to (not including) their removal.
        let from = history
            .added
            .get(&key)
            .copied()
            .filter(|_| !steady.contains(&user))
            .unwrap_or(steady.len() as u64 + 1);
        let until = history
            .removed
            .get(&key)
            .copied()
            .unwrap_or(history.last_seq + 1);
        let got: BTreeSet<u64> = seqs.iter().copied().collect();
        result.duplicated += (seqs.len() - got.len()) as u64;
        let expected: BTreeSet<u64> = (from..until).collect();
        result.expected += expected.len() as u64;
        result.lost += expected.difference(&got).count() as u64;
        result.leaked += got.difference(&expected).count() as u64;
    }
    Ok(result)
}
