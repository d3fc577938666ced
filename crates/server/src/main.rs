//! `chat-server`: runs the server, or mints a staff token for trying it out.

use chat_server::cli::{run, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Command::parse(std::env::args().skip(1))?;
    run(command).await
}
