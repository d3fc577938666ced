//! Smoke run of every scenario at a tiny size against an in-process server,
//! so the tool never rots. Figures are not checked (CI machines are noisy);
//! lost messages, failed requests and broken reports are.

use chat_bench::report::Outcome;
use chat_bench::target::{Database, Launch};
use chat_bench::{Options, Scenario};

async fn smoke(database: Database) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = Options::new(database, Launch::InProcess).tiny();
    options.scenarios = Scenario::ALL.to_vec();
    options.json = dir.path().join("report.json");
    options.charts = dir.path().to_path_buf();
    let report = chat_bench::run(&options)
        .await
        .expect("every scenario runs");

    assert!(report.failures().is_empty(), "{:?}", report.failures());
    let kinds: Vec<&str> = report
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Baseline(_) => "baseline",
            Outcome::Pairs(_) => "pairs",
            Outcome::Max(_) => "max",
            Outcome::Fanout { result, .. } if result.audience == "channel" => "channel",
            Outcome::Fanout { .. } => "fanout",
            Outcome::Churn { .. } => "churn",
            Outcome::Idle { .. } => "idle",
            Outcome::History { .. } => "history",
        })
        .collect();
    assert_eq!(
        kinds,
        ["baseline", "pairs", "max", "fanout", "channel", "churn", "idle", "history"]
    );
    let baseline = report.baseline.as_ref().expect("a baseline");
    assert!(baseline.transactions > 0);
    for outcome in &report.outcomes {
        match outcome {
            Outcome::Pairs(p) => {
                assert!(p.result.sent > 0 && p.result.delivered == p.result.sent);
                assert!(p.baseline_ratio.is_some());
            }
            Outcome::Max(m) => assert!(!m.steps.is_empty()),
            Outcome::History { result, .. } => {
                assert!(result.page.count > 0 && result.list.count > 0);
            }
            Outcome::Churn { result, .. } => {
                assert!(result.sent > 0 && result.expected > 0, "{result:?}");
            }
            _ => {}
        }
    }
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&options.json).expect("the JSON report is written"),
    )
    .expect("the report is JSON");
    assert_eq!(json["outcomes"].as_array().map(Vec::len), Some(8));
    let chart = dir
        .path()
        .join(format!("latency-vs-rate-{}.svg", database.name()));
    let svg = std::fs::read_to_string(chart).expect("the chart is drawn");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_at_a_tiny_size_on_sqlite() {
    smoke(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_at_a_tiny_size_on_postgres() {
    smoke(Database::Postgres).await;
}
