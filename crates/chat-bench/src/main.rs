//! `chat-bench`: runs the benchmark scenarios, prints their tables, writes
//! the JSON report and charts, and exits non-zero when a message was lost
//! or a request failed.

use chat_bench::cli::{parse, Command, USAGE};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = match parse(std::env::args().skip(1))? {
        Command::Help => {
            println!("{USAGE}");
            return Ok(());
        }
        Command::Run(options) => options,
    };
    let report = chat_bench::run(&options).await?;
    println!("report: {}", options.json.display());
    let failures = report.failures();
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("ERROR: {failure}");
        }
        anyhow::bail!(
            "{} scenario(s) lost messages or failed requests",
            failures.len()
        );
    }
    Ok(())
}
