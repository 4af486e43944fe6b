//! `attestgate policy check`: verifies (when trust is given) and lints a policy.

use std::path::PathBuf;

use clap::Args;
use time::OffsetDateTime;

use super::{Output, EXIT_FAILED, EXIT_PASSED, EXIT_USAGE};
use crate::crypto::PublicKey;
use crate::dsse::DecodedEnvelope;
use crate::policy::lint::{lint, Finding, Severity, Workflow};
use crate::policy::{PolicyOptions, PolicyTrust, SignedPolicy, SignedPolicyError};

/// Flags of `attestgate policy check`.
#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The policy: a signed envelope, or the bare policy JSON (linted, signature not checked).
    #[arg(short = 'p', long = "policy")]
    policy: PathBuf,
    /// Public key that signs the policy; without it the signature is not checked.
    #[arg(short = 'k', long = "publickey")]
    publickey: Vec<PathBuf>,
    /// A GitHub Actions workflow whose cilock/witness runs produce the evidence.
    #[arg(long)]
    workflow: Option<PathBuf>,
    /// Judge expiry at this RFC 3339 time instead of now.
    #[arg(long)]
    now: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs the command: exit 0 without error findings, 1 with, 2 when the input cannot be read.
pub(super) fn run(args: PolicyCheckArgs) -> u8 {
    match execute(&args) {
        Ok(findings) => {
            print(&findings, args.output);
            if findings.iter().any(|f| f.severity == Severity::Error) {
                EXIT_FAILED
            } else {
                EXIT_PASSED
            }
        }
        Err(message) => {
            if args.output == Output::Json {
                out!(
                    "{}",
                    serde_json::json!({"error": message, "exit_code": EXIT_USAGE})
                );
            }
            eprintln!("attestgate: {message}");
            EXIT_USAGE
        }
    }
}

fn execute(args: &PolicyCheckArgs) -> Result<Vec<Finding>, String> {
    let read = |p: &PathBuf| super::read_file(p, super::MAX_SMALL_FILE_BYTES);
    let now = match &args.now {
        Some(t) => {
            crate::policy::parse_rfc3339(t).ok_or(format!("--now {t:?} is not an RFC 3339 time"))?
        }
        None => OffsetDateTime::now_utc(),
    };
    let workflow = match &args.workflow {
        Some(path) => {
            let text = String::from_utf8_lossy(&read(path)?).into_owned();
            let w = Workflow::from_yaml(&text)
                .map_err(|e| format!("{}: {}", path.display(), crate::display_chain(&e)))?;
            Some(w)
        }
        None => None,
    };

    let bytes = super::read_file(&args.policy, super::MAX_POLICY_BYTES)?;
    let mut findings = Vec::new();
    let payload = match DecodedEnvelope::from_json(&bytes) {
        Ok(envelope) => {
            findings.extend(check_signature(args, &bytes, &read)?);
            envelope.payload.into_vec()
        }
        Err(_) => {
            // With -k the caller asked for a signed policy; a bare document is not one.
            let severity = if args.publickey.is_empty() {
                Severity::Info
            } else {
                Severity::Error
            };
            findings.push(Finding {
                severity,
                location: String::new(),
                message: "not a DSSE envelope: linted as an unsigned policy document".into(),
            });
            bytes
        }
    };
    findings.extend(lint(&payload, now, workflow.as_ref()));
    Ok(findings)
}

fn check_signature(
    args: &PolicyCheckArgs,
    bytes: &[u8],
    read: &dyn Fn(&PathBuf) -> Result<Vec<u8>, String>,
) -> Result<Vec<Finding>, String> {
    if args.publickey.is_empty() {
        return Ok(vec![Finding {
            severity: Severity::Warning,
            location: String::new(),
            message: "signature not checked: give -k/--publickey".into(),
        }]);
    }
    let mut trust = PolicyTrust::default();
    for path in &args.publickey {
        let key = PublicKey::from_pem(&read(path)?)
            .map_err(|e| format!("{}: {}", path.display(), crate::display_chain(&e)))?;
        trust.add_key(key);
    }
    Ok(
        match SignedPolicy::load(bytes, &trust, PolicyOptions::default()) {
            Ok(signed) => vec![Finding {
                severity: Severity::Info,
                location: String::new(),
                message: format!("signature verified (sha256:{})", signed.digest),
            }],
            // What is wrong with the document itself is reported by the lint, in more detail.
            Err(SignedPolicyError::Document(_) | SignedPolicyError::Invalid(_)) => Vec::new(),
            Err(e) => vec![Finding {
                severity: Severity::Error,
                location: String::new(),
                message: crate::display_chain(&e),
            }],
        },
    )
}

fn print(findings: &[Finding], output: Output) {
    if output == Output::Json {
        out!("{}", serde_json::json!({ "findings": findings }));
        return;
    }
    for f in findings {
        let severity = match f.severity {
            Severity::Error => "error  ",
            Severity::Warning => "warning",
            Severity::Info => "info   ",
        };
        if f.location.is_empty() {
            out!("{severity}  {}", super::printable(&f.message));
        } else {
            let line = format!("{}: {}", f.location, f.message);
            out!("{severity}  {}", super::printable(&line));
        }
    }
    let count = |s| findings.iter().filter(|f| f.severity == s).count();
    out!(
        "{} errors, {} warnings",
        count(Severity::Error),
        count(Severity::Warning)
    );
}
