//! [`ClamdScanner`]: ClamAV's daemon, spoken to over its `INSTREAM`
//! protocol: `zINSTREAM\0`, then chunks each prefixed by their length as a
//! 4-byte big-endian number, then a zero length; the daemon answers
//! `stream: OK` or `stream: <signature> FOUND`.

use std::time::Duration;

use anyhow::{bail, Context as _};
use async_trait::async_trait;
use chat_app::{ByteStream, ScanVerdict, Scanner};
use futures::StreamExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The longest chunk sent at once (clamd's default `StreamMaxLength` is far
/// larger; chunks only bound our own writes).
const MAX_CHUNK: usize = 64 * 1024;

/// The longest answer read back.
const MAX_REPLY: usize = 4096;

/// A clamd reachable over TCP (`host:port`) or a Unix socket (`unix:/path`).
#[derive(Debug, Clone)]
pub struct ClamdScanner {
    address: String,
    timeout: Duration,
}

impl ClamdScanner {
    /// A scanner of the clamd at `address`, giving up on a scan after
    /// `timeout`.
    pub fn new(address: impl Into<String>, timeout: Duration) -> Self {
        Self {
            address: address.into(),
            timeout,
        }
    }

    /// Checks that clamd answers `PING`.
    ///
    /// # Errors
    /// When it cannot be reached or answers something else.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let reply = tokio::time::timeout(self.timeout, async {
            match self.address.strip_prefix("unix:") {
                #[cfg(unix)]
                Some(path) => {
                    let mut socket = tokio::net::UnixStream::connect(path).await?;
                    command(&mut socket, b"zPING\0").await
                }
                #[cfg(not(unix))]
                Some(_) => bail!("unix sockets are not available here"),
                None => {
                    let mut socket = tokio::net::TcpStream::connect(&self.address).await?;
                    command(&mut socket, b"zPING\0").await
                }
            }
        })
        .await
        .context("clamd did not answer PING in time")??;
        if reply != "PONG" {
            bail!("clamd answered {reply:?} to PING");
        }
        Ok(())
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    command: &[u8],
) -> anyhow::Result<String> {
    socket.write_all(command).await?;
    read_reply(socket).await
}

async fn read_reply<S: AsyncRead + Unpin>(socket: &mut S) -> anyhow::Result<String> {
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = socket
            .read(&mut byte)
            .await
            .context("reading clamd's answer")?;
        if n == 0 || byte[0] == 0 {
            break;
        }
        reply.push(byte[0]);
        if reply.len() > MAX_REPLY {
            bail!("clamd's answer is too long");
        }
    }
    Ok(String::from_utf8_lossy(&reply).trim().to_owned())
}

/// Streams `content` to clamd and reads its verdict.
async fn instream<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    mut content: ByteStream,
) -> anyhow::Result<ScanVerdict> {
    socket
        .write_all(b"zINSTREAM\0")
        .await
        .context("starting INSTREAM")?;
    while let Some(chunk) = content.next().await {
        let chunk = chunk.context("reading the content to scan")?;
        for piece in chunk.chunks(MAX_CHUNK) {
            let len = u32::try_from(piece.len()).context("chunk length")?;
            socket.write_all(&len.to_be_bytes()).await?;
            socket
                .write_all(piece)
                .await
                .context("sending content to clamd")?;
        }
    }
    socket.write_all(&0u32.to_be_bytes()).await?;
    socket.flush().await?;
    let reply = read_reply(socket).await?;
    parse_verdict(&reply)
}

/// `stream: OK`, `stream: <name> FOUND`, or an error such as
/// `INSTREAM size limit exceeded. ERROR`.
fn parse_verdict(reply: &str) -> anyhow::Result<ScanVerdict> {
    let body = reply.strip_prefix("stream:").map_or(reply, str::trim);
    if body == "OK" {
        Ok(ScanVerdict::Clean)
    } else if let Some(signature) = body.strip_suffix(" FOUND") {
        Ok(ScanVerdict::Infected(signature.trim().to_owned()))
    } else {
        bail!("clamd could not scan: {reply:?}")
    }
}

#[async_trait]
impl Scanner for ClamdScanner {
    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn scan(&self, content: ByteStream) -> anyhow::Result<ScanVerdict> {
        tokio::time::timeout(self.timeout, async {
            match self.address.strip_prefix("unix:") {
                #[cfg(unix)]
                Some(path) => {
                    let mut socket = tokio::net::UnixStream::connect(path)
                        .await
                        .with_context(|| format!("connecting to clamd at {path}"))?;
                    instream(&mut socket, content).await
                }
                #[cfg(not(unix))]
                Some(_) => bail!("unix sockets are not available here"),
                None => {
                    let mut socket = tokio::net::TcpStream::connect(&self.address)
                        .await
                        .with_context(|| format!("connecting to clamd at {}", self.address))?;
                    instream(&mut socket, content).await
                }
            }
        })
        .await
        .context("clamd did not finish the scan in time")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_parsed() {
        assert_eq!(parse_verdict("stream: OK").unwrap(), ScanVerdict::Clean);
        assert_eq!(
            parse_verdict("stream: Eicar-Test-Signature FOUND").unwrap(),
            ScanVerdict::Infected("Eicar-Test-Signature".into())
        );
        assert!(parse_verdict("INSTREAM size limit exceeded. ERROR").is_err());
        assert!(parse_verdict("").is_err());
    }
}
