//! Test support (feature `testing`): a fresh, empty database per test, so
//! tests run in parallel without seeing each other's rows.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use adapters_postgres::testing::{admin_url, fresh_database};
//! use adapters_postgres::PostgresStore;
//!
//! let url = fresh_database(&admin_url()).await?;
//! let store = PostgresStore::connect(&url, 10).await?;
//! # Ok(()) }
//! ```

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _, PgConnection};
use uuid::Uuid;

/// The environment variable naming the server that tests create databases
/// on; it must name a database the user may connect to and a user allowed to
/// create databases.
pub const ADMIN_URL_VAR: &str = "CHAT_TEST_DATABASE_URL";

/// The admin URL when [`ADMIN_URL_VAR`] is not set: the local server, trust
/// authentication.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin URL: [`ADMIN_URL_VAR`], or [`DEFAULT_ADMIN_URL`].
pub fn admin_url() -> String {
    std::env::var(ADMIN_URL_VAR).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// Creates an empty database `chat_test_<uuid>` on the server of
/// `admin_url` and returns its URL (same server, user and options). The
/// schema is not applied: [`crate::PostgresStore::connect`] does that.
///
/// The databases are left behind for inspection after a failure; the UUID is
/// a v7, so their names sort by creation time.
///
/// # Errors
/// When the server cannot be reached or refuses to create the database.
pub async fn fresh_database(admin_url: &str) -> anyhow::Result<String> {
    let name = create_database(admin_url, "chat_test").await?;
    Ok(with_database(admin_url, &name))
}

/// Creates an empty database `<prefix>_<uuid v7>` on the server of
/// `admin_url` and returns its name.
///
/// # Errors
/// When the server cannot be reached or refuses to create the database.
pub async fn create_database(admin_url: &str, prefix: &str) -> anyhow::Result<String> {
    let name = format!("{prefix}_{}", Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connecting to the admin database")?;
    // The name is ours (a fixed prefix and hex digits), never input: quoting
    // it is enough.
    admin
        .execute(format!(r#"create database "{name}""#).as_str())
        .await
        .with_context(|| format!("creating database {name}"))?;
    admin
        .close()
        .await
        .context("closing the admin connection")?;
    Ok(name)
}

/// Drops database `name` on the server of `admin_url` (best effort, for
/// clean-up).
pub async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(mut admin) = PgConnection::connect(admin_url).await {
        let _ = admin
            .execute(format!(r#"drop database if exists "{name}" with (force)"#).as_str())
            .await;
        let _ = admin.close().await;
    }
}

/// `url` with its database (path) replaced by `database`, keeping the
/// scheme, credentials, host and query options.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, options) = match url.split_once('?') {
        Some((base, options)) => (base, Some(options)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{database}", &base[..path]);
    if let Some(options) = options {
        out.push('?');
        out.push_str(options);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/t",
            ),
            ("postgres://u:p@db:5432", "postgres://u:p@db:5432/t"),
            ("postgres://u@db/", "postgres://u@db/t"),
            (
                "postgres://u@db/x?sslmode=disable",
                "postgres://u@db/t?sslmode=disable",
            ),
            (
                "postgresql://db?application_name=a",
                "postgresql://db/t?application_name=a",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(with_database(url, "t"), expected, "{url}");
        }
    }
}
