//! The command line: one file per command, each turning flags into library calls and results
//! into text or JSON, and errors into the documented exit codes.

mod policy_check;
mod resolve;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit code: the evidence verified.
pub const EXIT_PASSED: u8 = 0;
/// Exit code: something did not verify (step, signature, expiry, key).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad flags, or a file that cannot be read or parsed at all.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: an evidence source could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Admission control and CI gating on witness evidence.
#[derive(Debug, Parser)]
#[command(name = "attestgate", version, about)]
pub struct Cli {
    /// More log output on stderr (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify evidence against a signed witness policy, as `witness verify` does.
    Verify(verify::VerifyArgs),
    /// Work with policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Resolve an image as the webhook will: digest, identities, commit, subjects, evidence and,
    /// with a policy, whether it passed and is bound to the image.
    Resolve(resolve::ResolveArgs),
}

/// `attestgate policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Verify (with -k) and lint a policy: expiry, steps, Rego, unknown and cilock-only keys.
    Check(policy_check::PolicyCheckArgs),
}

/// Output format of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A few lines for a person.
    Text,
    /// The full structured result.
    Json,
}

/// Runs the parsed command and maps its outcome to an exit code.
pub fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Verify(args) => verify::run(args),
        Command::Policy(PolicyCommand::Check(args)) => policy_check::run(args),
        Command::Resolve(args) => resolve::run(args),
    };
    ExitCode::from(code)
}

/// Sends logs to stderr; `RUST_LOG` overrides the level chosen by `-v`.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Cap on a policy file.
pub(crate) const MAX_POLICY_BYTES: u64 = 16 * 1024 * 1024;
/// Cap on a key, certificate or workflow file.
pub(crate) const MAX_SMALL_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a regular file of at most `limit` bytes. Devices, FIFOs and directories are refused
/// before anything is read, and a file that grows past the limit while being read is refused
/// without being read whole.
pub(crate) fn read_file(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!(
            "cannot read {}: not a regular file",
            path.display()
        ));
    }
    if meta.len() > limit {
        return Err(format!("{} is larger than {limit} bytes", path.display()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(format!("{} is larger than {limit} bytes", path.display()));
    }
    Ok(bytes)
}

/// Replaces control characters (including ESC) in text that came from evidence or policies, so
/// a crafted message cannot forge lines or terminal effects in a report.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| -> Box<dyn Iterator<Item = char>> {
            if c.is_control() {
                Box::new(c.escape_default())
            } else {
                Box::new(std::iter::once(c))
            }
        })
        .collect()
}
