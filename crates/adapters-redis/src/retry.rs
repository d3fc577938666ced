//! One more attempt for a command whose connection Redis had closed.
//!
//! Redis closes a connection that stays idle longer than its `timeout`, or
//! on `CLIENT KILL`; the next command sent on it fails ("broken pipe"), and
//! the connection manager then opens a new one. Without a second attempt
//! every command sent after a quiet spell would be lost, each time.

use std::future::Future;

use redis::aio::ConnectionManager;
use redis::RedisResult;

/// Runs `command` on `connection`, and once more, on the connection the
/// manager opens instead, when the first attempt found it closed. Only for
/// commands that may run twice: a closed connection fails before sending,
/// but a reply lost after a command ran would run it again.
pub(crate) async fn once_more_if_closed<T, F, Fut>(
    connection: &ConnectionManager,
    command: F,
) -> RedisResult<T>
where
    F: Fn(ConnectionManager) -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    match command(connection.clone()).await {
        Err(err) if err.is_connection_dropped() || err.is_unrecoverable_error() => {
            tracing::debug!(error = %err, "a Redis connection was closed: sending again on a new one");
            command(connection.clone()).await
        }
        answer => answer,
    }
}

/// The Redis client id (`CLIENT LIST`, `CLIENT KILL ID`) of the connection
/// `connection` manages now.
pub(crate) async fn client_id(connection: &ConnectionManager) -> RedisResult<i64> {
    let mut connection = connection.clone();
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut connection)
        .await
}
