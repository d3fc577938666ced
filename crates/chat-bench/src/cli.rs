//! The command line of `chat-bench`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::target::{Database, Launch};
use crate::{Options, Scenario};

/// Usage text.
pub const USAGE: &str = "\
usage: chat-bench [SCENARIO...] [OPTIONS]

scenarios (default: pairs): pairs, max, fanout, channel, idle, history, baseline, all

server:
  --db sqlite|postgres        store of the server the tool starts (default sqlite)
  --server-bin PATH           chat-server binary to start (default: next to chat-bench)
  --in-process                run the server inside the tool (smoke runs; no memory figure)
  --url URL                   a running server instead (repeat for several nodes)
  --jwt-secret S              its CHAT_JWT_SECRET (HS256), to mint staff tokens
  --database-url URL          its database (history seeding)
  --server-pid PID            its process (idle memory)
  --postgres-url URL          PostgreSQL for fresh databases (default: CHAT_BENCH_POSTGRES_URL, else
                              CHAT_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres)
  --pool N                    CHAT_DB_MAX_CONNECTIONS of the server and the baseline pool (default 10)

load:
  --pairs N                   conversations of pairs/max (default 100)
  --rate R                    pairs: offered msgs/s (default 1000)
  --duration S                pairs run / max step length, seconds (default 20)
  --warmup S                  unmeasured load first, seconds (default 3)
  --drain S                   wait for late acks and deliveries, seconds (default 5)
  --rates R,R,...             max: offered rates in order
  --max-p99-ms MS             max: p99 send->delivered limit of a step (default 50)
  --staff N,N,...             fanout: staff sockets (default 500,1000,2000)
  --fanout-messages N         fanout: messages (default 300)
  --fanout-interval-ms MS     fanout: time between messages (default 100)
  --channel-members N,N,...   channel: members of each fan-out (default 1000; messages and
                              interval as fanout's)
  --churn-members N           channel: members added then removed during the stream (default 100)
  --churn-rate R              channel: msgs/s of the churned channel (default 200)
  --churn-duration S          channel: length of the churned stream, seconds (default 20)
  --connections N,N,...       idle: connections (default 10000)
  --hold S                    idle: seconds to hold before reading memory (default 3)
  --messages N                history: messages (default 1000000)
  --conversations N           history: conversations they are spread over (default 1000)
  --list-conversations N      history: conversations of the listing tenant (default 10000)
  --samples N                 history: requests per measurement (default 2000)
  --baseline-duration S       baseline length, seconds (default 10)
  --no-baseline               skip the baseline
  --tiny                      smoke sizes (seconds in a debug build)

output:
  --json PATH                 JSON report (default target/chat-bench/<db>.json)
  --charts DIR                SVG charts (default target/chat-bench)";

fn list<T: std::str::FromStr>(flag: &str, raw: &str) -> anyhow::Result<Vec<T>> {
    raw.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag}: {v:?} is not a number"))
        })
        .collect()
}

fn number<T: std::str::FromStr>(flag: &str, raw: &str) -> anyhow::Result<T> {
    raw.parse()
        .map_err(|_| anyhow::anyhow!("{flag}: {raw:?} is not a number"))
}

fn seconds(flag: &str, raw: &str) -> anyhow::Result<Duration> {
    let value: f64 = number(flag, raw)?;
    Duration::try_from_secs_f64(value).with_context(|| format!("{flag}: {raw:?}"))
}

/// The `chat-server` binary beside this executable (both land in
/// `target/release/`).
fn default_server_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("chat-server")))
        .unwrap_or_else(|| PathBuf::from("chat-server"))
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the benchmarks.
    Run(Box<Options>),
    /// Print the usage.
    Help,
}

/// Parses the arguments after the program name.
///
/// # Errors
/// On an unknown option or a bad value.
pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Command> {
    let args: Vec<String> = args.into_iter().collect();
    let value_of = |flag: &str| -> Option<&str> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let database = match value_of("--db") {
        None | Some("sqlite") => Database::Sqlite,
        Some("postgres" | "postgresql") => Database::Postgres,
        Some(other) => bail!("--db {other:?}: sqlite or postgres"),
    };
    let mut options = Options::new(database, Launch::Process(default_server_bin()));
    if args.iter().any(|a| a == "--tiny") {
        options = options.tiny();
    }
    let mut scenarios = Vec::new();
    let mut urls = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let flag = arg.as_str();
        if !flag.starts_with("--") {
            if flag == "all" {
                scenarios.extend(Scenario::ALL);
            } else {
                scenarios.push(Scenario::parse(flag)?);
            }
            continue;
        }
        match flag {
            "--help" | "-h" => return Ok(Command::Help),
            "--in-process" => options.target.launch = Launch::InProcess,
            "--no-baseline" => options.baseline = false,
            "--tiny" => {}
            _ => {
                let value = args
                    .next()
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
                let v = value.as_str();
                match flag {
                    "--db" => {}
                    "--server-bin" => options.target.launch = Launch::Process(PathBuf::from(v)),
                    "--url" => urls.push(v.to_owned()),
                    "--jwt-secret" => options.target.jwt_secret = v.to_owned(),
                    "--database-url" => options.target.database_url = Some(v.to_owned()),
                    "--server-pid" => options.target.server_pid = Some(number(flag, v)?),
                    "--postgres-url" => options.target.postgres_admin_url = v.to_owned(),
                    "--pool" => options.target.pool_size = number(flag, v)?,
                    "--pairs" => options.pairs = number(flag, v)?,
                    "--rate" => options.rate = number(flag, v)?,
                    "--duration" => options.duration = seconds(flag, v)?,
                    "--warmup" => options.warmup = seconds(flag, v)?,
                    "--drain" => options.drain = seconds(flag, v)?,
                    "--rates" => options.rates = list(flag, v)?,
                    "--max-p99-ms" => options.max_p99_ms = number(flag, v)?,
                    "--staff" => options.fanout_staff = list(flag, v)?,
                    "--fanout-messages" => options.fanout_messages = number(flag, v)?,
                    "--fanout-interval-ms" => {
                        options.fanout_interval = Duration::from_millis(number(flag, v)?);
                    }
                    "--channel-members" => options.channel_members = list(flag, v)?,
                    "--churn-members" => options.churn.churned = number(flag, v)?,
                    "--churn-rate" => options.churn.rate = number(flag, v)?,
                    "--churn-duration" => options.churn.duration = seconds(flag, v)?,
                    "--connections" => options.idle_connections = list(flag, v)?,
                    "--hold" => options.idle_hold = seconds(flag, v)?,
                    "--messages" => options.history.messages = number(flag, v)?,
                    "--conversations" => options.history.conversations = number(flag, v)?,
                    "--list-conversations" => {
                        options.history.list_conversations = number(flag, v)?;
                    }
                    "--samples" => options.history.samples = number(flag, v)?,
                    "--baseline-duration" => options.baseline_duration = seconds(flag, v)?,
                    "--json" => options.json = PathBuf::from(v),
                    "--charts" => options.charts = PathBuf::from(v),
                    other => bail!("unknown option {other}\n{USAGE}"),
                }
            }
        }
    }
    if !urls.is_empty() {
        options.target.launch = Launch::Running(urls);
    }
    if !scenarios.is_empty() {
        options.scenarios = scenarios;
    }
    if options.pairs == 0
        || options.rate <= 0.0
        || options.rates.iter().any(|r| *r <= 0.0)
        || options.churn.rate <= 0.0
    {
        bail!("--pairs, --rate, --rates and --churn-rate must be above 0");
    }
    if options.history.conversations == 0 || options.history.messages == 0 {
        bail!("--messages and --conversations must be above 0");
    }
    Ok(Command::Run(Box::new(options)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn scenarios_and_options_are_read() {
        let Command::Run(options) = parse(args(&[
            "max",
            "fanout",
            "--db",
            "postgres",
            "--rates",
            "100,200",
            "--staff",
            "5",
            "--url",
            "http://a:1",
            "--url",
            "http://b:2",
        ]))
        .unwrap() else {
            panic!("not a run");
        };
        assert_eq!(options.scenarios, vec![Scenario::Max, Scenario::Fanout]);
        assert_eq!(options.target.database, Database::Postgres);
        assert_eq!(options.rates, vec![100.0, 200.0]);
        assert_eq!(options.fanout_staff, vec![5]);
        assert!(matches!(&options.target.launch, Launch::Running(urls) if urls.len() == 2));
    }

    #[test]
    fn all_means_every_scenario() {
        let Command::Run(options) = parse(args(&["all", "--tiny"])).unwrap() else {
            panic!("not a run");
        };
        assert_eq!(options.scenarios, Scenario::ALL.to_vec());
        assert_eq!(options.pairs, 4);
    }

    #[test]
    fn bad_arguments_are_explained() {
        for bad in [
            &["launch"][..],
            &["--db", "mysql"],
            &["--rate"],
            &["--rate", "x"],
            &["--nope", "1"],
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?}");
        }
    }
}
