//! `chat-bench`: the load generator and benchmark suite of the chat server.
//!
//! It drives a real server (one it starts itself, with a fresh SQLite file
//! or PostgreSQL database and known secrets, or running ones given by URL)
//! with real tokens and real WebSocket connections, on open-loop schedules
//! measured from the scheduled instant (no coordinated omission), records
//! latencies in HdrHistograms, and holds every throughput figure against a
//! baseline: the same send transaction issued straight to the database.
//!
//! Scenarios: `pairs`, `max`, `fanout`, `channel`, `idle`, `history` (see
//! `docs/BENCHMARKS.md`). [`run`] runs a list of them and returns a
//! [`report::Report`]; the binary prints it as tables and writes it as
//! JSON, with an SVG chart of latency against offered rate.

pub mod baseline;
pub mod chart;
pub mod churn;
pub mod cli;
pub mod client;
pub mod fanout;
pub mod history;
pub mod idle;
pub mod pairs;
pub mod report;
pub mod stats;
pub mod target;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::history::HistoryOptions;
use crate::report::{Outcome, Report};
use crate::target::{Database, Launch, Target, TargetOptions};

/// A benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The database's own limit, alone.
    Baseline,
    /// Customer/staff pairs at a fixed rate.
    Pairs,
    /// Rate ramp until p99 delivery passes the limit or errors appear.
    Max,
    /// One customer message to N staff sockets.
    Fanout,
    /// Idle connections and server memory.
    Idle,
    /// History pages and conversation lists over seeded data.
    History,
    /// One staff member's messages to a channel of N members, and members
    /// added and removed while a channel carries a stream.
    Channel,
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Self; 6] = [
        Self::Pairs,
        Self::Max,
        Self::Fanout,
        Self::Channel,
        Self::Idle,
        Self::History,
    ];

    /// Parses a scenario name.
    ///
    /// # Errors
    /// For an unknown name.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        Ok(match name {
            "baseline" => Self::Baseline,
            "pairs" => Self::Pairs,
            "max" => Self::Max,
            "fanout" => Self::Fanout,
            "idle" => Self::Idle,
            "history" => Self::History,
            "channel" => Self::Channel,
            other => anyhow::bail!(
                "unknown scenario {other:?}: pairs, max, fanout, channel, idle, history, baseline or all"
            ),
        })
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// What to run, in order.
    pub scenarios: Vec<Scenario>,
    /// The server.
    pub target: TargetOptions,
    /// Conversations of `pairs` and `max`.
    pub pairs: usize,
    /// Offered rate of `pairs`, messages per second.
    pub rate: f64,
    /// Length of a `pairs` run and of each `max` step.
    pub duration: Duration,
    /// Unmeasured load before `pairs` and `max`.
    pub warmup: Duration,
    /// Wait for late acks and deliveries after a schedule ends.
    pub drain: Duration,
    /// Offered rates of the `max` ramp, in order.
    pub rates: Vec<f64>,
    /// p99 send->delivered limit of a `max` step, ms.
    pub max_p99_ms: f64,
    /// Staff sockets of each `fanout` run.
    pub fanout_staff: Vec<usize>,
    /// Messages per `fanout` run.
    pub fanout_messages: usize,
    /// Time between two `fanout` messages.
    pub fanout_interval: Duration,
    /// Members of each `channel` fan-out (besides its sender).
    pub channel_members: Vec<usize>,
    /// The membership churn of `channel`.
    pub churn: churn::ChurnOptions,
    /// Connections of each `idle` run.
    pub idle_connections: Vec<usize>,
    /// How long idle connections are held before memory is read.
    pub idle_hold: Duration,
    /// Sizes of `history`.
    pub history: HistoryOptions,
    /// Measure the baseline before `pairs` / `max`.
    pub baseline: bool,
    /// Length of the baseline measurement.
    pub baseline_duration: Duration,
    /// Where the JSON report goes.
    pub json: PathBuf,
    /// Where the SVG charts go.
    pub charts: PathBuf,
}

impl Options {
    /// The full-size defaults of `docs/BENCHMARKS.md`.
    pub fn new(database: Database, launch: Launch) -> Self {
        Self {
            scenarios: vec![Scenario::Pairs],
            target: TargetOptions {
                launch,
                database,
                database_url: None,
                // The tests' server when the test script named one.
                postgres_admin_url: std::env::var("CHAT_BENCH_POSTGRES_URL")
                    .unwrap_or_else(|_| adapters_postgres::testing::admin_url()),
                pool_size: 10,
                jwt_secret: target::BENCH_JWT_SECRET.to_owned(),
                server_pid: None,
            },
            pairs: 100,
            rate: 1000.0,
            duration: Duration::from_secs(20),
            warmup: Duration::from_secs(3),
            drain: Duration::from_secs(5),
            rates: vec![
                500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 4000.0, 5000.0, 6000.0, 8000.0,
                10000.0, 12000.0, 16000.0, 20000.0,
            ],
            max_p99_ms: 50.0,
            fanout_staff: vec![500, 1000, 2000],
            fanout_messages: 300,
            fanout_interval: Duration::from_millis(100),
            channel_members: vec![1000],
            churn: churn::ChurnOptions {
                steady: 20,
                churned: 100,
                rate: 200.0,
                duration: Duration::from_secs(20),
            },
            idle_connections: vec![10_000],
            idle_hold: Duration::from_secs(3),
            history: HistoryOptions {
                messages: 1_000_000,
                conversations: 1_000,
                list_conversations: 10_000,
                samples: 2_000,
            },
            baseline: true,
            baseline_duration: Duration::from_secs(10),
            json: PathBuf::from(format!("target/chat-bench/{}.json", database.name())),
            charts: PathBuf::from("target/chat-bench"),
        }
    }

    /// Sizes small enough for a smoke run in CI (seconds, debug build).
    #[must_use]
    pub fn tiny(mut self) -> Self {
        self.pairs = 4;
        self.rate = 40.0;
        self.duration = Duration::from_secs(1);
        self.warmup = Duration::from_millis(200);
        self.drain = Duration::from_secs(5);
        self.rates = vec![20.0, 40.0];
        self.fanout_staff = vec![5];
        self.fanout_messages = 5;
        self.fanout_interval = Duration::from_millis(20);
        self.channel_members = vec![5];
        self.churn = churn::ChurnOptions {
            steady: 2,
            churned: 4,
            rate: 40.0,
            duration: Duration::from_secs(1),
        };
        self.idle_connections = vec![20];
        self.idle_hold = Duration::from_millis(200);
        self.history = HistoryOptions {
            messages: 2_000,
            conversations: 20,
            list_conversations: 120,
            samples: 30,
        };
        self.baseline_duration = Duration::from_millis(500);
        self
    }
}

/// Raises this process's open-file limit to its hard limit (a server
/// started by the tool inherits it) and returns the limit in force.
pub fn raise_open_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .unwrap_or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft))
}

/// Starts (or reaches) the server of `options`, runs `f` against it and
/// stops the server whatever `f` returned.
async fn with_target<T>(
    options: &TargetOptions,
    f: impl AsyncFnOnce(&Target) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let target = Target::start(options).await?;
    let result = f(&target).await;
    target.stop().await;
    result
}

/// Runs every scenario of `options` in order, each against a fresh server
/// when the tool starts it, printing each table as it completes, and
/// returns the report (also written to `options.json`).
///
/// # Errors
/// When a server cannot be started or a scenario cannot be set up. Lost
/// messages and failed requests are not errors here: they are in the
/// report (see [`Report::failures`]).
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    raise_open_file_limit();
    let database = options.target.database;
    let mut report = Report {
        started_at: chrono::Utc::now().to_rfc3339(),
        machine: report::Machine::detect(),
        database,
        server: match options.target.launch {
            Launch::Process(_) => "process",
            Launch::InProcess => "in-process",
            Launch::Running(_) => "running",
        }
        .to_owned(),
        baseline: None,
        outcomes: Vec::new(),
    };
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let wants_baseline = options.scenarios.contains(&Scenario::Baseline)
        || (options.baseline
            && options
                .scenarios
                .iter()
                .any(|s| matches!(s, Scenario::Pairs | Scenario::Max)));
    if wants_baseline {
        let baseline = baseline::run(
            database,
            &options.target.postgres_admin_url,
            scratch.path(),
            options.pairs,
            options.target.pool_size,
            options.baseline_duration,
        )
        .await
        .context("measuring the baseline")?;
        report.add(Outcome::Baseline(baseline.clone()));
        report.baseline = Some(baseline);
    }
    let baseline_rate = report.baseline.as_ref().map(|b| b.tx_per_s);
    for scenario in &options.scenarios {
        match scenario {
            Scenario::Baseline => {}
            Scenario::Pairs => report.add(run_pairs(options, baseline_rate).await?),
            Scenario::Max => report.add(run_max(options, baseline_rate).await?),
            Scenario::Fanout => {
                for &staff in &options.fanout_staff {
                    let result = with_target(&options.target, async |target| {
                        fanout::run(
                            target,
                            staff,
                            options.fanout_messages,
                            options.fanout_interval,
                        )
                        .await
                        .with_context(|| format!("fanout to {staff}"))
                    })
                    .await?;
                    report.add(Outcome::Fanout {
                        checks: report::fanout_checks(&result),
                        result,
                    });
                }
            }
            Scenario::Channel => {
                for &members in &options.channel_members {
                    let result = with_target(&options.target, async |target| {
                        fanout::run_channel(
                            target,
                            members,
                            options.fanout_messages,
                            options.fanout_interval,
                        )
                        .await
                        .with_context(|| format!("channel fanout to {members}"))
                    })
                    .await?;
                    report.add(Outcome::Fanout {
                        checks: report::fanout_checks(&result),
                        result,
                    });
                }
                let result = with_target(&options.target, async |target| {
                    churn::run(target, options.churn)
                        .await
                        .context("membership churn")
                })
                .await?;
                report.add(Outcome::Churn {
                    checks: report::churn_checks(&result),
                    result,
                });
            }
            Scenario::Idle => {
                for &connections in &options.idle_connections {
                    let result = with_target(&options.target, async |target| {
                        idle::run(target, connections, options.idle_hold)
                            .await
                            .with_context(|| format!("idle with {connections}"))
                    })
                    .await?;
                    report.add(Outcome::Idle {
                        checks: report::idle_checks(&result),
                        result,
                    });
                }
            }
            Scenario::History => {
                let result = with_target(&options.target, async |target| {
                    history::run(target, options.history)
                        .await
                        .context("history")
                })
                .await?;
                report.add(Outcome::History {
                    checks: report::history_checks(&result),
                    result,
                });
            }
        }
    }
    if let Some(parent) = options.json.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(
        &options.json,
        serde_json::to_string_pretty(&report).context("serialising the report")?,
    )
    .with_context(|| format!("writing {}", options.json.display()))?;
    Ok(report)
}

async fn run_pairs(options: &Options, baseline: Option<f64>) -> anyhow::Result<Outcome> {
    let result = with_target(&options.target, async |target| {
        let open = pairs::open(target, options.pairs).await.context("pairs")?;
        let open = pairs::warm_up(open, options.rate, options.warmup, options.drain).await;
        let (open, result) = pairs::run_step(
            open,
            pairs::Step {
                number: 1,
                rate: options.rate,
                duration: options.duration,
                drain: options.drain,
            },
        )
        .await;
        pairs::close(open).await;
        anyhow::Ok(result)
    })
    .await?;
    Ok(Outcome::Pairs(report::PairsOutcome {
        checks: report::pairs_checks(options.target.database, &result),
        baseline_ratio: baseline.map(|b| result.achieved_rate / b),
        result,
    }))
}

async fn run_max(options: &Options, baseline: Option<f64>) -> anyhow::Result<Outcome> {
    let (steps, best, stopped_because) = with_target(&options.target, async |target| {
        let open = pairs::open(target, options.pairs).await.context("max")?;
        let warmup_rate = options.rates.first().copied().unwrap_or(options.rate);
        let mut open = pairs::warm_up(open, warmup_rate, options.warmup, options.drain).await;
        let mut steps = Vec::new();
        let mut best: Option<(f64, f64)> = None;
        let mut stopped_because = "every step passed: extend --rates".to_owned();
        for (i, &rate) in options.rates.iter().enumerate() {
            let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let result;
            (open, result) = pairs::run_step(
                open,
                pairs::Step {
                    number,
                    rate,
                    duration: options.duration,
                    drain: options.drain,
                },
            )
            .await;
            let p99 = result.delivered_latency.p99_ms;
            let clean = result.clean();
            steps.push(result.clone());
            if !clean {
                stopped_because = format!(
                    "{rate:.0} msgs/s: {} lost, {} errors",
                    result.lost, result.errors
                );
                break;
            }
            if p99 > options.max_p99_ms {
                stopped_because = format!("{rate:.0} msgs/s: p99 send->delivered {p99:.1} ms");
                break;
            }
            best = Some((rate, result.achieved_rate));
            if open.is_empty() {
                stopped_because = "every pair broke".into();
                break;
            }
        }
        pairs::close(open).await;
        anyhow::Ok((steps, best, stopped_because))
    })
    .await?;
    let ratio = match (best, baseline) {
        (Some((_, achieved)), Some(b)) => Some(achieved / b),
        _ => None,
    };
    let database = options.target.database;
    if !steps.is_empty() {
        let path = options
            .charts
            .join(format!("latency-vs-rate-{}.svg", database.name()));
        chart::latency_vs_rate(
            &path,
            &format!(
                "chat-server on {}: send -> delivered latency vs offered rate ({} conversations)",
                database.name(),
                options.pairs
            ),
            &steps,
            options.max_p99_ms,
        )?;
        println!("chart: {}", path.display());
    }
    Ok(Outcome::Max(report::MaxOutcome {
        checks: report::max_checks(database, best.map(|b| b.0), ratio),
        p99_limit_ms: options.max_p99_ms,
        best_offered_rate: best.map(|b| b.0),
        best_achieved_rate: best.map(|b| b.1),
        baseline_ratio: ratio,
        stopped_because,
        steps,
    }))
}
