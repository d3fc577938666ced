//! The command line: `chat-server` serves; `chat-server mint-token` prints a
//! staff token signed with the configured HS256 secret, so the API can be
//! tried in a minute.

use std::time::Duration;

use anyhow::{bail, Context};
use chat_domain::{StaffUserId, TenantId};

use crate::auth::mint_staff_token;
use crate::config::Settings;
use crate::startup::Application;
use crate::telemetry;

const USAGE: &str = "\
usage:
  chat-server                      run the server (configuration from CHAT_* variables)
  chat-server mint-token [--tenant UUID] [--user UUID] [--role ROLE] [--ttl SECONDS]
                                   print a staff token signed with the configured secret
  chat-server --help               this text";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the server.
    Serve,
    /// Print a staff token.
    MintToken {
        /// Tenant claim; a new random one when not given.
        tenant: Option<TenantId>,
        /// `sub`; a new random one when not given.
        user: Option<StaffUserId>,
        /// `role` claim.
        role: String,
        /// Lifetime.
        ttl: Duration,
    },
    /// Print usage.
    Help,
}

impl Command {
    /// Parses the arguments after the program name.
    ///
    /// # Errors
    /// On an unknown command or option, or a bad value.
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut args = args.into_iter();
        match args.next().as_deref() {
            None | Some("serve") => Ok(Self::Serve),
            Some("-h" | "--help" | "help") => Ok(Self::Help),
            Some("mint-token") => {
                let mut tenant = None;
                let mut user = None;
                let mut role = "staff".to_owned();
                let mut ttl = Duration::from_secs(3600);
                while let Some(flag) = args.next() {
                    let value = args
                        .next()
                        .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
                    match flag.as_str() {
                        "--tenant" => tenant = Some(TenantId::parse(&value)?),
                        "--user" => user = Some(StaffUserId::parse(&value)?),
                        "--role" => role = value,
                        "--ttl" => {
                            ttl = Duration::from_secs(
                                value.parse().context("--ttl must be a number of seconds")?,
                            );
                        }
                        other => bail!("unknown option {other}\n{USAGE}"),
                    }
                }
                Ok(Self::MintToken {
                    tenant,
                    user,
                    role,
                    ttl,
                })
            }
            Some(other) => bail!("unknown command {other}\n{USAGE}"),
        }
    }
}

/// Raises this process's open-file limit to its hard limit and logs what it
/// got: every WebSocket holds a file descriptor, and the usual soft limit
/// (1024) would cap a node at about a thousand connections. Only the
/// binary does this; a host embedding [`Application`] sets its own process
/// limits.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit raised to the hard limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-file limit"),
    }
}

/// Runs `command`.
///
/// # Errors
/// Whatever stops the server from starting or the token from being minted.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Command::Serve => {
            // Logging first, so that what configuration loading reports
            // (generated development secrets) is seen.
            telemetry::init(crate::config::log_format(&crate::config::ProcessEnv)?);
            raise_open_file_limit();
            let settings = Settings::from_env()?;
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await
        }
        Command::MintToken {
            tenant,
            user,
            role,
            ttl,
        } => {
            let settings = Settings::from_env()?;
            let tenant = tenant.unwrap_or_else(TenantId::new_v4);
            let user = user.unwrap_or_else(StaffUserId::new_v4);
            let token = mint_staff_token(&settings.staff_jwt, tenant, user, &role, ttl)?;
            eprintln!(
                "tenant {tenant}, staff user {user}, role {role}, valid {}s",
                ttl.as_secs()
            );
            println!("{token}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn no_arguments_serve() {
        assert_eq!(Command::parse(args(&[])).unwrap(), Command::Serve);
    }

    #[test]
    fn mint_token_reads_its_options() {
        let tenant = TenantId::new_v4();
        let parsed = Command::parse(args(&[
            "mint-token",
            "--tenant",
            &tenant.to_string(),
            "--role",
            "admin",
            "--ttl",
            "60",
        ]))
        .unwrap();
        assert_eq!(
            parsed,
            Command::MintToken {
                tenant: Some(tenant),
                user: None,
                role: "admin".into(),
                ttl: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn bad_arguments_are_explained() {
        for bad in [
            &["launch"][..],
            &["mint-token", "--tenant", "x"],
            &["mint-token", "--ttl"],
            &["mint-token", "--nope", "1"],
        ] {
            assert!(Command::parse(args(bad)).is_err(), "{bad:?}");
        }
    }
}
