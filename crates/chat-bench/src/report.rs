//! The report: every scenario's figures with the targets they are held
//! to, printed as tables and written as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::baseline::BaselineResult;
use crate::churn::ChurnResult;
use crate::fanout::FanoutResult;
use crate::history::HistoryResult;
use crate::idle::IdleResult;
use crate::pairs::StepResult;
use crate::stats::Summary;
use crate::target::Database;

/// One target and how the run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The target, in words.
    pub target: String,
    /// The measured value, in words.
    pub measured: String,
    /// Whether it was met.
    pub met: bool,
}

impl Check {
    fn new(target: impl Into<String>, measured: impl Into<String>, met: bool) -> Self {
        Self {
            target: target.into(),
            measured: measured.into(),
            met,
        }
    }
}

/// The `pairs` scenario.
#[derive(Debug, Clone, Serialize)]
pub struct PairsOutcome {
    /// The measured step.
    pub result: StepResult,
    /// `achieved_rate / baseline tx/s`.
    pub baseline_ratio: Option<f64>,
    /// Targets.
    pub checks: Vec<Check>,
}

/// The `max` scenario.
#[derive(Debug, Clone, Serialize)]
pub struct MaxOutcome {
    /// Every step, in order; the last one failed unless the list ran out.
    pub steps: Vec<StepResult>,
    /// The p99 delivery limit a step had to stay under, ms.
    pub p99_limit_ms: f64,
    /// The highest offered rate held with no error and p99 under the limit.
    pub best_offered_rate: Option<f64>,
    /// What the server actually delivered at that step, msgs/s.
    pub best_achieved_rate: Option<f64>,
    /// `best_achieved_rate / baseline tx/s`.
    pub baseline_ratio: Option<f64>,
    /// Why the ramp stopped.
    pub stopped_because: String,
    /// Targets.
    pub checks: Vec<Check>,
}

/// One scenario's outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "scenario", rename_all = "lowercase")]
pub enum Outcome {
    /// The database's own limit.
    Baseline(BaselineResult),
    /// Fixed rate over customer/staff pairs.
    Pairs(PairsOutcome),
    /// Rate ramp.
    Max(MaxOutcome),
    /// One message to many staff sockets.
    Fanout {
        /// Figures.
        #[serde(flatten)]
        result: FanoutResult,
        /// Targets.
        checks: Vec<Check>,
    },
    /// Members added and removed while a channel carries a stream.
    Churn {
        /// Figures.
        #[serde(flatten)]
        result: ChurnResult,
        /// Targets.
        checks: Vec<Check>,
    },
    /// Idle connections and memory.
    Idle {
        /// Figures.
        #[serde(flatten)]
        result: IdleResult,
        /// Targets.
        checks: Vec<Check>,
    },
    /// History pages and conversation lists over seeded data.
    History {
        /// Figures.
        #[serde(flatten)]
        result: HistoryResult,
        /// Targets.
        checks: Vec<Check>,
    },
}

/// The machine a run was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// 1-minute load average when the run started.
    pub load_at_start: f64,
}

impl Machine {
    /// Reads `/proc`.
    pub fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
                .unwrap_or_default(),
            memory_mib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_at_start: read("/proc/loadavg")
                .split_whitespace()
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or_default(),
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Where.
    pub machine: Machine,
    /// On which store.
    pub database: Database,
    /// How the server ran: `process`, `in-process` or `running`.
    pub server: String,
    /// The baseline, when one was measured.
    pub baseline: Option<BaselineResult>,
    /// Every scenario, in the order run.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// Prints `outcome`'s table and adds it to the report.
    pub fn add(&mut self, outcome: Outcome) {
        println!("{}", render(self.database, &outcome));
        self.outcomes.push(outcome);
    }

    /// Problems that must never happen at any load the server sustains:
    /// lost or duplicated messages, error frames, failed requests, idle
    /// sockets closed. (Steps of `max` beyond the sustained rate are not
    /// counted: that is where the ramp is meant to stop.)
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for outcome in &self.outcomes {
            match outcome {
                Outcome::Pairs(p) if !p.result.clean() => failures.push(format!(
                    "pairs: sent {} acked {} delivered {} lost {} errors {} {:?}",
                    p.result.sent,
                    p.result.acked,
                    p.result.delivered,
                    p.result.lost,
                    p.result.errors,
                    p.result.error_samples
                )),
                Outcome::Fanout { result, .. } if result.errors > 0 => failures.push(format!(
                    "fanout ({}) to {}: {} of {} deliveries, {} errors",
                    result.audience,
                    result.staff_sockets,
                    result.delivered,
                    result.expected,
                    result.errors
                )),
                Outcome::Churn { result, .. } if !result.clean() => failures.push(format!(
                    "channel churn: {} lost, {} leaked, {} duplicated, {} errors",
                    result.lost, result.leaked, result.duplicated, result.errors
                )),
                Outcome::Idle { result, .. } if result.closed_early > 0 => failures.push(format!(
                    "idle: {} of {} connections closed by the server",
                    result.closed_early, result.connections
                )),
                Outcome::History { result, .. } if result.errors > 0 => {
                    failures.push(format!("history: {} requests failed", result.errors));
                }
                _ => {}
            }
        }
        failures
    }
}

/// The checks of a `pairs` step.
pub fn pairs_checks(database: Database, result: &StepResult) -> Vec<Check> {
    let mut checks = vec![Check::new(
        "sent = acked = delivered (0 lost)",
        format!(
            "sent {} acked {} delivered {} errors {}",
            result.sent, result.acked, result.delivered, result.errors
        ),
        result.clean(),
    )];
    if database == Database::Postgres {
        checks.push(Check::new(
            format!(
                "p99 send->delivered <= 10 ms at {} msgs/s",
                result.offered_rate
            ),
            format!("{:.2} ms", result.delivered_latency.p99_ms),
            result.delivered_latency.p99_ms <= 10.0,
        ));
    }
    checks
}

/// The checks of a `max` ramp: `best` is the highest offered rate held
/// with nothing lost (what was delivered per second is a hair lower, as
/// the last deliveries land after the schedule ends), `ratio` what was
/// delivered against the baseline.
pub fn max_checks(database: Database, best: Option<f64>, ratio: Option<f64>) -> Vec<Check> {
    match database {
        Database::Postgres => vec![Check::new(
            "sustained rate >= 1.0x baseline transactions/s",
            ratio.map_or("no baseline".into(), |r| format!("{r:.2}x")),
            ratio.is_some_and(|r| r >= 1.0),
        )],
        Database::Sqlite => vec![Check::new(
            "sustained rate >= 2,000 msgs/s",
            best.map_or("no step passed".into(), |b| format!("{b:.0} msgs/s")),
            best.is_some_and(|b| b >= 2000.0),
        )],
    }
}

/// The checks of a fan-out size.
pub fn fanout_checks(result: &FanoutResult) -> Vec<Check> {
    vec![
        Check::new(
            "every staff socket gets every message",
            format!("{} of {}", result.delivered, result.expected),
            result.errors == 0,
        ),
        Check::new(
            "last delivery p99 <= 50 ms (target set at 1,000 staff sockets)",
            format!("{:.2} ms", result.last_delivery.p99_ms),
            result.last_delivery.p99_ms <= 50.0,
        ),
    ]
}

/// The checks of a membership churn.
pub fn churn_checks(result: &ChurnResult) -> Vec<Check> {
    vec![
        Check::new(
            "members added or removed mid-stream: nothing lost, leaked or duplicated",
            format!(
                "{} lost, {} leaked, {} duplicated of {} deliveries",
                result.lost, result.leaked, result.duplicated, result.expected
            ),
            result.lost == 0 && result.leaked == 0 && result.duplicated == 0,
        ),
        Check::new(
            "every send acked, every change applied",
            format!("{} acked, {} errors", result.sent, result.errors),
            result.errors == 0,
        ),
    ]
}

/// The checks of an idle run.
pub fn idle_checks(result: &IdleResult) -> Vec<Check> {
    vec![Check::new(
        "<= 20 KiB server memory per idle connection",
        result
            .per_connection_kib
            .map_or("unknown".into(), |k| format!("{k:.1} KiB")),
        result.per_connection_kib.is_some_and(|k| k <= 20.0) && !result.in_process,
    )]
}

/// The checks of a history run.
pub fn history_checks(result: &HistoryResult) -> Vec<Check> {
    vec![
        Check::new(
            format!("history page p99 <= 5 ms at {} messages", result.messages),
            format!("{:.2} ms", result.page.p99_ms),
            result.page.p99_ms <= 5.0,
        ),
        Check::new(
            format!(
                "conversation list p99 <= 20 ms at {} conversations",
                result.list_conversations
            ),
            format!("{:.2} ms", result.list.p99_ms),
            result.list.p99_ms <= 20.0,
        ),
    ]
}

fn latency_header(out: &mut String) {
    let _ = writeln!(
        out,
        "  {:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
    );
}

fn latency_row(out: &mut String, name: &str, s: &Summary) {
    let _ = writeln!(
        out,
        "  {:<22} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        name, s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
    );
}

fn checks(out: &mut String, checks: &[Check]) {
    for check in checks {
        let _ = writeln!(
            out,
            "  [{}] {}: {}",
            if check.met { "met" } else { "MISSED" },
            check.target,
            check.measured
        );
    }
}

fn step_lines(out: &mut String, step: &StepResult) {
    let _ = writeln!(
        out,
        "  sent {}  acked {}  delivered {}  lost {}  errors {}  achieved {:.0} msgs/s",
        step.sent, step.acked, step.delivered, step.lost, step.errors, step.achieved_rate
    );
    if step.lost > 0 || step.errors > 0 {
        let _ = writeln!(
            out,
            "  !!! {} MESSAGES LOST, {} ERRORS: {:?}",
            step.lost, step.errors, step.error_samples
        );
    }
    latency_header(out);
    latency_row(out, "send->ack", &step.ack);
    latency_row(out, "send->delivered", &step.delivered_latency);
}

fn ratio(ratio: Option<f64>) -> String {
    ratio.map_or_else(String::new, |r| format!(" = {r:.2}x baseline"))
}

/// The human-readable table of one outcome.
pub fn render(database: Database, outcome: &Outcome) -> String {
    let mut out = String::new();
    let db = database.name();
    match outcome {
        Outcome::Baseline(b) => {
            let _ = writeln!(
                out,
                "baseline ({db}: send transaction straight through sqlx, {} workers, pool {}, {:.0} s)",
                b.workers, b.pool, b.duration_s
            );
            let _ = writeln!(
                out,
                "  {} transactions, {:.0} tx/s",
                b.transactions, b.tx_per_s
            );
            latency_header(&mut out);
            latency_row(&mut out, "transaction", &b.latency);
        }
        Outcome::Pairs(p) => {
            let _ = writeln!(
                out,
                "pairs ({db}: {} conversations, {} msgs/s offered, {:.0} s, open loop)",
                p.result.pairs, p.result.offered_rate, p.result.duration_s
            );
            step_lines(&mut out, &p.result);
            let _ = writeln!(
                out,
                "  throughput {:.0} msgs/s{}",
                p.result.achieved_rate,
                ratio(p.baseline_ratio)
            );
            checks(&mut out, &p.checks);
        }
        Outcome::Max(m) => {
            let _ = writeln!(
                out,
                "max ({db}: rate ramp, a step passes with 0 errors and p99 send->delivered <= {} ms)",
                m.p99_limit_ms
            );
            let _ = writeln!(
                out,
                "  {:>9} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "offered", "achieved", "lost", "errors", "p50", "p90", "p99", "p99.9", "max"
            );
            for s in &m.steps {
                let l = &s.delivered_latency;
                let _ = writeln!(
                    out,
                    "  {:>9.0} {:>9.0} {:>7} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                    s.offered_rate,
                    s.achieved_rate,
                    s.lost,
                    s.errors,
                    l.p50_ms,
                    l.p90_ms,
                    l.p99_ms,
                    l.p999_ms,
                    l.max_ms
                );
            }
            let _ = writeln!(
                out,
                "  highest sustained: {} offered, {} achieved{} ({})",
                m.best_offered_rate
                    .map_or("none".into(), |r| format!("{r:.0} msgs/s")),
                m.best_achieved_rate
                    .map_or("none".into(), |r| format!("{r:.0} msgs/s")),
                ratio(m.baseline_ratio),
                m.stopped_because
            );
            checks(&mut out, &m.checks);
        }
        Outcome::Fanout { result, checks: c } => {
            let _ = writeln!(
                out,
                "fanout ({db}, {}: 1 sender -> {} staff sockets, {} messages; connect {:.1} s)",
                result.audience, result.staff_sockets, result.messages, result.connect_s
            );
            let _ = writeln!(
                out,
                "  deliveries {} of {}, errors {}",
                result.delivered, result.expected, result.errors
            );
            latency_header(&mut out);
            latency_row(&mut out, "send->first staff", &result.first_delivery);
            latency_row(&mut out, "send->last staff", &result.last_delivery);
            checks(&mut out, c);
        }
        Outcome::Churn { result, checks: c } => {
            let _ = writeln!(
                out,
                "channel churn ({db}: {} members steady, {} added then removed, {:.0} msgs/s, {} sent)",
                result.steady, result.churned, result.rate, result.sent
            );
            let _ = writeln!(
                out,
                "  deliveries expected {}, lost {}, leaked {}, duplicated {}, errors {}",
                result.expected, result.lost, result.leaked, result.duplicated, result.errors
            );
            checks(&mut out, c);
        }
        Outcome::Idle { result, checks: c } => {
            let _ = writeln!(
                out,
                "idle ({db}: {} customer connections, open-file limit {}{})",
                result.connections,
                result.nofile_limit,
                if result.in_process {
                    "; in-process: memory includes the clients"
                } else {
                    ""
                }
            );
            let _ = writeln!(
                out,
                "  open {}  closed early {}  connect {:.1} s  server RSS {} -> {} KiB  = {} KiB per connection",
                result.open,
                result.closed_early,
                result.connect_s,
                result.rss_before_kib.map_or("?".into(), |k| k.to_string()),
                result.rss_after_kib.map_or("?".into(), |k| k.to_string()),
                result
                    .per_connection_kib
                    .map_or("?".into(), |k| format!("{k:.1}"))
            );
            checks(&mut out, c);
        }
        Outcome::History { result, checks: c } => {
            let _ = writeln!(
                out,
                "history ({db}: {} messages over {} conversations, list of {} conversations; seeded in {:.0} s)",
                result.messages, result.conversations, result.list_conversations, result.seed_s
            );
            latency_header(&mut out);
            latency_row(&mut out, "page (limit 50, before)", &result.page);
            latency_row(&mut out, "conversation list", &result.list);
            if result.errors > 0 {
                let _ = writeln!(out, "  !!! {} REQUESTS FAILED", result.errors);
            }
            checks(&mut out, c);
        }
    }
    out
}
