//! The command line: one file per command, each turning flags into library calls and results
//! into text or JSON, and errors into the documented exit codes.

/// `println!` that gives up quietly when standard output is gone (a closed pipe: `| head`):
/// the report is lost either way, and the exit code must stay the documented one rather than a
/// panic's 101.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod audit;
mod policy_check;
mod resolve;
mod review;
mod serve;
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
    /// Serve the admission webhook over HTTPS (one path per mode: /validate/enforce,
    /// /validate/warn, /validate/audit; health and metrics on a plain-HTTP port).
    Serve(serve::ServeArgs),
    /// Judge one AdmissionReview through the webhook's code and print the answer.
    Review(review::ReviewArgs),
    /// List the workloads running in the cluster with their images (by spec and by what runs)
    /// and the decision each would get now, or under candidate policies.
    Audit(audit::AuditArgs),
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
        Command::Serve(args) => serve::run(args),
        Command::Review(args) => review::run(args),
        Command::Audit(args) => audit::run(args),
    };
    ExitCode::from(code)
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

impl Cli {
    /// The server logs at info in JSON by default; the other commands log warnings as text.
    fn log_defaults(&self) -> (&'static str, LogFormat) {
        let level = |base: &'static str| match self.verbose {
            0 => base,
            1 => "debug",
            _ => "trace",
        };
        match &self.command {
            Command::Serve(args) => (level("info"), args.log_format),
            _ => (level("warn"), LogFormat::Text),
        }
    }
}

/// Sends logs to stderr; `RUST_LOG` overrides the level chosen by `-v`.
pub fn init_tracing(cli: &Cli) {
    let (default, format) = cli.log_defaults();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal as _;
    if format == LogFormat::Json {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_current_span(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .try_init();
}

/// The runtime of the commands that decide as the webhook does (`review`, `resolve --config`,
/// `audit`): multi-threaded, since verification runs on the blocking pool.
fn decision_runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("attestgate: cannot start the runtime: {e}");
            EXIT_USAGE
        })
}

/// Cap on a policy file.
pub(crate) const MAX_POLICY_BYTES: u64 = 16 * 1024 * 1024;
/// Cap on a key, certificate or workflow file.
pub(crate) const MAX_SMALL_FILE_BYTES: u64 = 4 * 1024 * 1024;

pub(crate) use crate::file::read_file;

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
