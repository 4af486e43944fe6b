//! Running one plugin: the request on stdin, the response from stdout (capped), the first line
//! of stderr for errors, everything within a timeout after which the plugin is killed.
//!
//! Limitation: only the plugin process itself is killed on a timeout or an oversized output.
//! Processes it started and left running (a plugin that backgrounds a helper) are not, since
//! killing a process group needs a system call this crate does not make; their pipes to us are
//! closed, and the kubelet has the same behaviour.

use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::CredentialError;

/// Bytes of stderr kept for the error message (the rest is read and dropped).
const STDERR_KEPT_BYTES: u64 = 4096;
/// Characters of stderr's first line quoted in an error.
const STDERR_QUOTED_CHARS: usize = 200;
/// How long to wait for a killed plugin to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(1);

/// One plugin run.
pub(super) struct Invocation<'a> {
    pub(super) plugin: &'a str,
    pub(super) path: &'a Path,
    pub(super) args: &'a [String],
    pub(super) env: &'a [(String, String)],
    pub(super) request: &'a [u8],
    pub(super) timeout: Duration,
    pub(super) max_output_bytes: usize,
}

/// How the exchange with the plugin ended early.
enum Cut {
    TooLarge,
    Io(io::Error),
}

impl From<io::Error> for Cut {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// Runs the plugin and returns its stdout when it exits with success.
pub(super) async fn run(call: Invocation<'_>) -> Result<Vec<u8>, CredentialError> {
    let plugin = || call.plugin.to_string();
    let mut child = Command::new(call.path)
        .args(call.args)
        .envs(call.env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CredentialError::Spawn {
            plugin: plugin(),
            path: call.path.to_path_buf(),
            source,
        })?;

    let outcome = tokio::time::timeout(call.timeout, exchange(&mut child, &call)).await;
    let (status, stdout, stderr) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(cut)) => {
            kill(&mut child).await;
            return Err(match cut {
                Cut::TooLarge => CredentialError::OutputTooLarge {
                    plugin: plugin(),
                    limit: call.max_output_bytes,
                },
                Cut::Io(source) => CredentialError::Io {
                    plugin: plugin(),
                    source,
                },
            });
        }
        Err(_elapsed) => {
            kill(&mut child).await;
            return Err(CredentialError::Timeout {
                plugin: plugin(),
                timeout: call.timeout,
            });
        }
    };

    if !status.success() {
        return Err(CredentialError::Failed {
            plugin: plugin(),
            status,
            stderr: first_line(&stderr),
        });
    }
    Ok(stdout)
}

/// Feeds the request, drains stdout (capped) and stderr, and waits for the exit.
async fn exchange(
    child: &mut Child,
    call: &Invocation<'_>,
) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), Cut> {
    let missing = || Cut::Io(io::Error::other("plugin pipe was not opened"));
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;

    let (_, stdout, stderr) = tokio::try_join!(
        write_request(stdin, call.request),
        read_capped(stdout, call.max_output_bytes),
        read_head(stderr),
    )?;
    let status = child.wait().await?;
    Ok((status, stdout, stderr))
}

/// Writes the request and closes stdin. A plugin that exits without reading it is not an
/// error here (its exit status decides).
async fn write_request(mut stdin: impl AsyncWrite + Unpin, request: &[u8]) -> Result<(), Cut> {
    match stdin.write_all(request).await {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(Cut::Io(err)),
        Ok(()) => Ok(stdin.shutdown().await.or_else(ignore_broken_pipe)?),
    }
}

fn ignore_broken_pipe(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(err)
    }
}

/// Reads everything, failing as soon as more than `limit` bytes arrive.
async fn read_capped(reader: impl AsyncRead + Unpin, limit: usize) -> Result<Vec<u8>, Cut> {
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut bytes).await?;
    if bytes.len() > limit {
        return Err(Cut::TooLarge);
    }
    Ok(bytes)
}

/// Keeps the first bytes and drains the rest, so a chatty plugin never blocks on a full pipe.
async fn read_head(mut reader: impl AsyncRead + Unpin) -> Result<Vec<u8>, Cut> {
    let mut head = Vec::new();
    (&mut reader)
        .take(STDERR_KEPT_BYTES)
        .read_to_end(&mut head)
        .await?;
    tokio::io::copy(&mut reader, &mut tokio::io::sink()).await?;
    Ok(head)
}

async fn kill(child: &mut Child) {
    // Errors mean the plugin has already exited, which is the goal.
    let _ = child.start_kill();
    let _ = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
}

/// The first non-empty line of stderr, shortened.
fn first_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("")
        .chars()
        .take(STDERR_QUOTED_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_the_first_non_empty_line_shortened() {
        assert_eq!(
            first_line(b"\n  boom: no metadata  \nsecond"),
            "boom: no metadata"
        );
        assert_eq!(first_line(b""), "");
        assert_eq!(first_line(&[b'x'; 1000]).len(), STDERR_QUOTED_CHARS);
        assert_eq!(first_line(b"caf\xc3\xa9 \xff"), "caf\u{e9} \u{fffd}");
    }
}
