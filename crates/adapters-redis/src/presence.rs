//! Presence shared by every node, in Redis.
//!
//! Per user (keys scoped by prefix and tenant, the user in a hash tag so
//! both keys of a user share a cluster slot):
//!
//! - `<prefix>:presence:{<tenant>:<kind>:<id>}:conns`, a sorted set of the
//!   user's open connection ids scored by the time (Redis clock, ms) they
//!   expire. `connected` and `refresh` push a connection's expiry to now +
//!   TTL; a connection whose node crashed stops being refreshed and stops
//!   counting once its score passes. The key itself expires with its
//!   latest member.
//! - `<prefix>:presence:{<tenant>:<kind>:<id>}:state`, a hash: `status`
//!   (the chosen status, absent for `online`), `last_seen` (µs since the
//!   epoch, when the last connection closed) and `beat` (ms, the last
//!   connect or refresh, present only while the user has connections: once
//!   they all expired, it is when the user was last seen). Kept 30 days
//!   after the last change.
//! - `<prefix>:presence:expiring`, one sorted set for all tenants: every
//!   user whose going offline has not been announced yet, scored by the
//!   expiry of their latest connection. A user leaves it when a disconnect
//!   reports them offline, or when [`PresenceStore::take_expired`] finds
//!   their connections all expired and takes them (once, whichever node
//!   asks first).
//!
//! Every operation is one Lua script, so nodes racing to connect and
//! disconnect the same user see a consistent count, and the status shown
//! before and after (hence `changed`) is exact. Expiry is judged by the
//! Redis clock only, so nodes' clocks may disagree.

use std::time::Duration;

use async_trait::async_trait;
use chat_app::{ConnectionId, PresenceChange, PresenceStore, RepoError};
use chat_domain::{Presence, PresenceStatus, Sender, TenantId};
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use redis::Script;

use crate::retry::{client_id, once_more_if_closed};
use crate::{ConnectError, RedisSettings};

/// How long a user's status and last-seen time are kept after they last
/// changed.
const STATE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Helpers shared by every script. `KEYS[1]` is the connection set,
/// `KEYS[2]` the state hash (pairs of them for `get`).
const PRELUDE: &str = r"
local function fmt(n) return string.format('%.0f', n) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live(conns, now)
  return redis.call('ZCOUNT', conns, '(' .. fmt(now), '+inf')
end
local function shown(state, n)
  if n == 0 then return 'offline' end
  return redis.call('HGET', state, 'status') or 'online'
end
local function last_seen(state)
  local beat = redis.call('HGET', state, 'beat')
  if beat then return fmt(tonumber(beat) * 1000) end
  return redis.call('HGET', state, 'last_seen') or ''
end
-- KEYS[3] is the index of users whose going offline is still to be
-- announced, ARGV[1] the user's member in it. A reply that reports the
-- user going offline announces it: they leave the index.
local function reply(conns, state, now, before)
  local n = live(conns, now)
  local seen = ''
  if n == 0 then seen = last_seen(state) end
  local after = shown(state, n)
  if after == 'offline' and before ~= 'offline' then
    redis.call('ZREM', KEYS[3], ARGV[1])
  end
  return {before, after, seen}
end
-- Drops expired connections; when none is left but a heartbeat is, the
-- last ones expired without closing: the user left at that heartbeat, and
-- their chosen status goes with them.
local function settle(conns, state, now)
  redis.call('ZREMRANGEBYSCORE', conns, '-inf', fmt(now))
  if redis.call('ZCARD', conns) == 0 then
    local beat = redis.call('HGET', state, 'beat')
    if beat then
      redis.call('HSET', state, 'last_seen', fmt(tonumber(beat) * 1000))
      redis.call('HDEL', state, 'status', 'beat')
    end
  end
end
";

/// `ARGV`: member, connection id, TTL (ms), state TTL (ms), limit (`0`:
/// none). Also serves `refresh`: both make the connection count for
/// another TTL. A new connection beyond the limit is refused with an empty
/// reply, and nothing changes.
const CONNECT: &str = r"
local now = now_ms()
local before = shown(KEYS[2], live(KEYS[1], now))
settle(KEYS[1], KEYS[2], now)
local limit = tonumber(ARGV[5])
if limit > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[2])
    and redis.call('ZCARD', KEYS[1]) >= limit then
  return {}
end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], fmt(now + ttl), ARGV[2])
local top = math.ceil(tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]))
redis.call('PEXPIREAT', KEYS[1], fmt(top))
redis.call('ZADD', KEYS[3], fmt(top), ARGV[1])
redis.call('HSET', KEYS[2], 'beat', fmt(now))
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return reply(KEYS[1], KEYS[2], now, before)
";

/// `ARGV`: member, connection id, now (µs), state TTL (ms).
const DISCONNECT: &str = r"
local now = now_ms()
local before = shown(KEYS[2], live(KEYS[1], now))
local removed = redis.call('ZREM', KEYS[1], ARGV[2])
if removed == 1 and live(KEYS[1], now) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'last_seen', ARGV[3])
  redis.call('HDEL', KEYS[2], 'status', 'beat')
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
else
  settle(KEYS[1], KEYS[2], now)
end
return reply(KEYS[1], KEYS[2], now, before)
";

/// `ARGV`: member, status, state TTL (ms).
const SET_STATUS: &str = r"
local now = now_ms()
local before = shown(KEYS[2], live(KEYS[1], now))
settle(KEYS[1], KEYS[2], now)
if ARGV[2] == 'online' then
  redis.call('HDEL', KEYS[2], 'status')
else
  redis.call('HSET', KEYS[2], 'status', ARGV[2])
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return reply(KEYS[1], KEYS[2], now, before)
";

/// `KEYS[1]`: the index. `ARGV`: key prefix (`<prefix>:presence:`), limit.
/// Returns (member, last seen) pairs of the users taken. The users' own
/// keys are derived from their members, so this one script is not
/// cluster-safe (standalone and Sentinel Redis are fine).
const TAKE_EXPIRED: &str = r"
local now = now_ms()
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', fmt(now), 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local base = ARGV[1] .. '{' .. member .. '}'
  local conns, state = base .. ':conns', base .. ':state'
  if live(conns, now) == 0 then
    settle(conns, state, now)
    redis.call('ZREM', KEYS[1], member)
    out[#out + 1] = member
    out[#out + 1] = last_seen(state)
  else
    local top = redis.call('ZRANGE', conns, -1, -1, 'WITHSCORES')
    redis.call('ZADD', KEYS[1], fmt(math.ceil(tonumber(top[2]))), member)
  end
end
return out
";

/// `KEYS`: pairs of (connections, state). Read-only.
const GET: &str = r"
local now = now_ms()
local out = {}
for i = 1, #KEYS, 2 do
  local n = live(KEYS[i], now)
  out[#out + 1] = shown(KEYS[i + 1], n)
  if n == 0 then out[#out + 1] = last_seen(KEYS[i + 1]) else out[#out + 1] = '' end
end
return out
";

/// The [`PresenceStore`] shared by every node, in Redis. Semantics are
/// those of [`chat_app::InMemoryPresence`], plus expiry: a connection not
/// refreshed within the TTL no longer counts, and a user whose connections
/// all expired shows offline, last seen at their last refresh.
///
/// Times are kept to the microsecond, as the databases do.
#[derive(Clone)]
pub struct RedisPresence {
    connection: ConnectionManager,
    prefix: String,
    ttl_ms: u64,
    connect: Script,
    disconnect: Script,
    set_status: Script,
    get: Script,
    take_expired: Script,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("prefix", &self.prefix)
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn unexpected(err: redis::RedisError, doing: &'static str) -> RepoError {
    RepoError::Unexpected(anyhow::Error::new(err).context(doing))
}

fn status(raw: &str) -> Result<PresenceStatus, RepoError> {
    raw.parse().map_err(|_| {
        RepoError::Unexpected(anyhow::anyhow!(
            "presence store holds an unknown status {raw:?}"
        ))
    })
}

fn last_seen(raw: &str) -> Result<Option<DateTime<Utc>>, RepoError> {
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .map(Some)
        .ok_or_else(|| {
            RepoError::Unexpected(anyhow::anyhow!(
                "presence store holds an invalid last-seen time {raw:?}"
            ))
        })
}

fn presence(user: Sender, status_raw: &str, seen_raw: &str) -> Result<Presence, RepoError> {
    let status = status(status_raw)?;
    Ok(Presence {
        user,
        status,
        last_seen_at: if status == PresenceStatus::Offline {
            last_seen(seen_raw)?
        } else {
            None
        },
    })
}

impl RedisPresence {
    /// Connects to Redis; connections count for `settings.presence_ttl`
    /// after each connect or refresh.
    ///
    /// # Errors
    /// [`ConnectError`] when Redis is unreachable or the URL is invalid.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, ConnectError> {
        let connection = settings.connection_manager().await?;
        Ok(Self {
            connection,
            prefix: settings.prefix.clone(),
            ttl_ms: millis(settings.presence_ttl),
            connect: script(CONNECT),
            disconnect: script(DISCONNECT),
            set_status: script(SET_STATUS),
            get: script(GET),
            take_expired: script(TAKE_EXPIRED),
        })
    }

    /// The Redis client id of the connection presence is kept over (it
    /// changes when the connection is replaced).
    ///
    /// # Errors
    /// When Redis does not answer.
    pub async fn client_id(&self) -> redis::RedisResult<i64> {
        client_id(&self.connection).await
    }

    /// `<tenant>:<kind>:<id>` (`-` for the system's id): the user's name in
    /// the index and, in braces, in their keys.
    fn member(tenant: TenantId, user: Sender) -> String {
        let id = user
            .id()
            .map_or_else(|| "-".to_owned(), |id| id.to_string());
        format!("{tenant}:{}:{id}", user.kind())
    }

    fn parse_member(member: &str) -> Option<(TenantId, Sender)> {
        let mut parts = member.split(':');
        let (tenant, kind, id) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let tenant = TenantId::parse(tenant).ok()?;
        let id = match id {
            "-" => None,
            id => Some(uuid::Uuid::parse_str(id).ok()?),
        };
        Some((tenant, Sender::from_parts(kind, id)?))
    }

    fn keys(&self, tenant: TenantId, user: Sender) -> [String; 2] {
        let base = format!(
            "{}:presence:{{{}}}",
            self.prefix,
            Self::member(tenant, user)
        );
        [format!("{base}:conns"), format!("{base}:state")]
    }

    fn index(&self) -> String {
        format!("{}:presence:expiring", self.prefix)
    }

    async fn change(
        &self,
        script: &Script,
        tenant: TenantId,
        user: Sender,
        args: &[String],
        doing: &'static str,
    ) -> Result<PresenceChange, RepoError> {
        self.change_within(script, tenant, user, args, doing)
            .await?
            .ok_or_else(|| {
                RepoError::Unexpected(anyhow::anyhow!("presence store refused: {doing}"))
            })
    }

    /// Runs a script answering (before, after, last seen), or nothing when
    /// it refused the change.
    async fn change_within(
        &self,
        script: &Script,
        tenant: TenantId,
        user: Sender,
        args: &[String],
        doing: &'static str,
    ) -> Result<Option<PresenceChange>, RepoError> {
        let [conns, state] = self.keys(tenant, user);
        let mut invocation = script.key(conns);
        invocation
            .key(state)
            .key(self.index())
            .arg(Self::member(tenant, user));
        for arg in args {
            invocation.arg(arg);
        }
        // Recording, refreshing or ending a connection and setting a status
        // may run twice: each leaves the same state.
        let reply: Vec<String> = once_more_if_closed(&self.connection, |mut connection| {
            let invocation = &invocation;
            async move { invocation.invoke_async(&mut connection).await }
        })
        .await
        .map_err(|err| unexpected(err, doing))?;
        let [before, after, seen] = match <[String; 3]>::try_from(reply) {
            Ok(parts) => parts,
            Err(reply) if reply.is_empty() => return Ok(None),
            Err(reply) => {
                return Err(RepoError::Unexpected(anyhow::anyhow!(
                    "presence store answered {} values: {doing}",
                    reply.len()
                )))
            }
        };
        let presence = presence(user, &after, &seen)?;
        Ok(Some(PresenceChange {
            changed: status(&before)? != presence.status,
            presence,
        }))
    }

    fn state_ttl() -> String {
        millis(STATE_TTL).to_string()
    }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn connect_within(
        &self,
        tenant: TenantId,
        user: Sender,
        connection: ConnectionId,
        limit: Option<usize>,
        _now: DateTime<Utc>,
    ) -> Result<Option<PresenceChange>, RepoError> {
        let args = [
            connection.to_string(),
            self.ttl_ms.to_string(),
            Self::state_ttl(),
            limit.unwrap_or(0).to_string(),
        ];
        self.change_within(
            &self.connect,
            tenant,
            user,
            &args,
            "recording a connection in Redis",
        )
        .await
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn disconnected(
        &self,
        tenant: TenantId,
        user: Sender,
        connection: ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<PresenceChange, RepoError> {
        let args = [
            connection.to_string(),
            now.timestamp_micros().to_string(),
            Self::state_ttl(),
        ];
        self.change(
            &self.disconnect,
            tenant,
            user,
            &args,
            "recording a closed connection in Redis",
        )
        .await
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn refresh(
        &self,
        tenant: TenantId,
        user: Sender,
        connection: ConnectionId,
        _now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let args = [
            connection.to_string(),
            self.ttl_ms.to_string(),
            Self::state_ttl(),
            "0".to_owned(),
        ];
        self.change(
            &self.connect,
            tenant,
            user,
            &args,
            "refreshing a connection in Redis",
        )
        .await
        .map(|_| ())
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn set_status(
        &self,
        tenant: TenantId,
        user: Sender,
        status: PresenceStatus,
        _now: DateTime<Utc>,
    ) -> Result<PresenceChange, RepoError> {
        if status == PresenceStatus::Offline {
            // Not a choice (as in memory): report the unchanged presence.
            let current = self.get(tenant, &[user]).await?;
            let presence = current.into_iter().next().ok_or_else(|| {
                RepoError::Unexpected(anyhow::anyhow!("presence store answered nothing"))
            })?;
            return Ok(PresenceChange {
                presence,
                changed: false,
            });
        }
        let args = [status.as_str().to_owned(), Self::state_ttl()];
        self.change(
            &self.set_status,
            tenant,
            user,
            &args,
            "setting a presence status in Redis",
        )
        .await
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn get(&self, tenant: TenantId, users: &[Sender]) -> Result<Vec<Presence>, RepoError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.get.prepare_invoke();
        for user in users {
            for key in self.keys(tenant, *user) {
                invocation.key(key);
            }
        }
        let flat: Vec<String> = once_more_if_closed(&self.connection, |mut connection| {
            let invocation = &invocation;
            async move { invocation.invoke_async(&mut connection).await }
        })
        .await
        .map_err(|err| unexpected(err, "reading presence from Redis"))?;
        if flat.len() != users.len() * 2 {
            return Err(RepoError::Unexpected(anyhow::anyhow!(
                "presence store answered {} values for {} users",
                flat.len(),
                users.len()
            )));
        }
        users
            .iter()
            .zip(flat.chunks_exact(2))
            .map(|(user, pair)| presence(*user, &pair[0], &pair[1]))
            .collect()
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn take_expired(&self, limit: usize) -> Result<Vec<(TenantId, Presence)>, RepoError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let flat: Vec<String> = self
            .take_expired
            .key(self.index())
            .arg(format!("{}:presence:", self.prefix))
            .arg(limit)
            .invoke_async(&mut connection)
            .await
            .map_err(|err| unexpected(err, "taking expired connections from Redis"))?;
        let mut taken = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            // An entry this store did not write left the index all the
            // same: skip it rather than fail the others.
            let Some((tenant, user)) = Self::parse_member(&pair[0]) else {
                tracing::warn!(member = %pair[0], "skipping an unreadable presence index entry");
                continue;
            };
            taken.push((tenant, presence(user, "offline", &pair[1])?));
        }
        Ok(taken)
    }
}
