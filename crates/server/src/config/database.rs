//! The database section: `CHAT_DATABASE_URL`, `CHAT_DB_MAX_CONNECTIONS`.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::{parse_var, Env, Secret};

/// Where conversations and messages are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSettings {
    /// An SQLite file (the embedded default).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL server.
    Postgres {
        /// Connection URL.
        url: Secret,
        /// Pool size.
        max_connections: u32,
    },
}

impl DatabaseSettings {
    /// Reads the database variables; without `CHAT_DATABASE_URL`, the
    /// SQLite file `<data_dir>/chat.db`.
    ///
    /// # Errors
    /// A message naming the variable that is invalid.
    pub fn from_source(env: &dyn Env, data_dir: &Path) -> anyhow::Result<Self> {
        let max_connections: u32 = parse_var(env, "CHAT_DB_MAX_CONNECTIONS", 10)?;
        if max_connections == 0 {
            bail!("CHAT_DB_MAX_CONNECTIONS must be at least 1");
        }
        let database = match env.var("CHAT_DATABASE_URL") {
            None => DatabaseSettings::Sqlite {
                path: data_dir.join("chat.db"),
            },
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                DatabaseSettings::Postgres {
                    url: Secret::new(url),
                    max_connections,
                }
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite:")
                    .trim_start_matches("//")
                    .split('?')
                    .next()
                    .unwrap_or_default();
                if path.is_empty() {
                    bail!("CHAT_DATABASE_URL: an sqlite URL needs a file path, e.g. sqlite://data/chat.db");
                }
                DatabaseSettings::Sqlite {
                    path: PathBuf::from(path),
                }
            }
            Some(_) => {
                bail!("CHAT_DATABASE_URL must start with postgres://, postgresql:// or sqlite://")
            }
        };
        Ok(database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_env as env;
    use crate::config::Settings;

    #[test]
    fn database_urls_pick_the_adapter() {
        let dir = tempfile::tempdir().unwrap();
        let pg = Settings::from_source(&env(
            &[("CHAT_DATABASE_URL", "postgres://u@h/db")],
            dir.path(),
        ))
        .unwrap();
        assert!(matches!(
            pg.database,
            DatabaseSettings::Postgres {
                max_connections: 10,
                ..
            }
        ));
        let lite = Settings::from_source(&env(
            &[("CHAT_DATABASE_URL", "sqlite://x/y.db")],
            dir.path(),
        ))
        .unwrap();
        assert_eq!(
            lite.database,
            DatabaseSettings::Sqlite {
                path: PathBuf::from("x/y.db")
            }
        );
    }
}
