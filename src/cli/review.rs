//! `attestgate review --config FILE [--mode MODE] [REQUEST.json|-]`: judges one AdmissionReview
//! through the same code as the server and prints the answer.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::{printable, EXIT_FAILED, EXIT_PASSED, EXIT_USAGE};
use crate::admission::{Mode, MAX_REVIEW_BYTES};
use crate::server::{Metrics, Reply};
use crate::webhook::{judge_review, Webhook};

/// Flags of `attestgate review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The config file, as `serve` reads it.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The mode to judge in (the server's path decides it: /validate/<mode>).
    #[arg(long, value_enum, default_value = "enforce")]
    mode: ModeArg,
    /// The AdmissionReview JSON file; `-` or nothing reads standard input.
    request: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    Enforce,
    Warn,
    Audit,
}

/// Runs the command: prints the AdmissionReview answer; exit 0 when allowed, 1 when denied,
/// 2 when the request or config cannot be read.
pub(super) fn run(args: ReviewArgs) -> u8 {
    let body = match read_request(args.request.as_deref()) {
        Ok(b) => b,
        Err(message) => {
            eprintln!("attestgate: {}", printable(&message));
            return EXIT_USAGE;
        }
    };
    let metrics = Arc::new(Metrics::new());
    let webhook = Webhook::new(&args.config, metrics.clone());
    let Some(decider) = webhook.decider() else {
        eprintln!(
            "attestgate: {}",
            printable(&webhook.problem().unwrap_or_default())
        );
        return EXIT_USAGE;
    };
    let mode = match args.mode {
        ModeArg::Enforce => Mode::Enforce,
        ModeArg::Warn => Mode::Warn,
        ModeArg::Audit => Mode::Audit,
    };
    let runtime = match super::decision_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let reply =
        runtime.block_on(async { judge_review(Some(&decider), None, mode, &body, &metrics).await });
    match reply {
        Reply::Review(bytes) => {
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            match serde_json::to_string_pretty(&value) {
                Ok(text) => out!("{text}"),
                Err(e) => eprintln!("attestgate: {e}"),
            }
            let allowed = value
                .pointer("/response/allowed")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            if allowed {
                EXIT_PASSED
            } else {
                EXIT_FAILED
            }
        }
        Reply::BadRequest(message) => {
            eprintln!(
                "attestgate: the server would answer 400: {}",
                printable(&message)
            );
            EXIT_USAGE
        }
    }
}

fn read_request(path: Option<&std::path::Path>) -> Result<Vec<u8>, String> {
    let limit = u64::try_from(MAX_REVIEW_BYTES).unwrap_or(u64::MAX);
    match path {
        Some(p) if p.as_os_str() != "-" => super::read_file(p, limit),
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            if bytes.len() as u64 > limit {
                return Err(format!("the request is larger than {limit} bytes"));
            }
            Ok(bytes)
        }
    }
}
