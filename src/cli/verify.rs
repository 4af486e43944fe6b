//! `attestgate verify`: witness's verify command, with the same flag names.

use std::path::PathBuf;

use clap::Args;
use time::OffsetDateTime;

use super::{Output, EXIT_FAILED, EXIT_PASSED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::crypto::PublicKey;
use crate::encoding::sha256_hex;
use crate::evidence::FileSource;
use crate::policy::{
    parse_subject, verify, PolicyOptions, PolicyTrust, SignedPolicy, Verification, VerifyOptions,
};

/// Flags of `attestgate verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signed policy (a DSSE envelope).
    #[arg(short = 'p', long = "policy")]
    policy: PathBuf,
    /// Public key that signs the policy.
    #[arg(short = 'k', long = "publickey")]
    publickey: Vec<PathBuf>,
    /// An evidence envelope (repeatable).
    #[arg(short = 'a', long = "attestations")]
    attestations: Vec<PathBuf>,
    /// A subject digest, `alg:hex` or hex (repeatable, or comma-separated).
    #[arg(short = 's', long = "subjects", value_delimiter = ',')]
    subjects: Vec<String>,
    /// A file whose SHA-256 is a subject.
    #[arg(short = 'f', long = "artifactfile")]
    artifactfile: Option<PathBuf>,
    /// Judge expiry at this RFC 3339 time instead of now (audits of the past).
    #[arg(long)]
    now: Option<String>,
    /// The public key of a KMS key reference the policy names, as `URI=PEMFILE` (repeatable).
    #[arg(long = "kms-key", value_name = "URI=PEMFILE")]
    kms_keys: Vec<String>,
    /// Require attestation types to match exactly, without the witness.dev/aflock.ai aliases.
    #[arg(long)]
    exact_types: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs the command and returns its exit code.
pub(super) fn run(args: VerifyArgs) -> u8 {
    match execute(&args) {
        Ok(verification) => {
            print_verification(&verification, args.output);
            if verification.passed {
                EXIT_PASSED
            } else {
                EXIT_FAILED
            }
        }
        Err(failure) => failure.report(args.output),
    }
}

/// What ended the command early.
enum Failure {
    Usage(String),
    Untrusted(String),
    Unreachable(String),
}

impl Failure {
    fn report(self, output: Output) -> u8 {
        let (code, message) = match self {
            Self::Usage(m) => (EXIT_USAGE, m),
            Self::Untrusted(m) => (EXIT_FAILED, m),
            Self::Unreachable(m) => (EXIT_UNREACHABLE, m),
        };
        if output == Output::Json {
            let body = serde_json::json!({"passed": false, "error": message, "exit_code": code});
            println!("{body}");
        }
        eprintln!("attestgate: {message}");
        code
    }
}

fn execute(args: &VerifyArgs) -> Result<Verification, Failure> {
    let now = match &args.now {
        Some(text) => crate::policy::parse_rfc3339(text)
            .ok_or_else(|| Failure::Usage(format!("--now {text:?} is not an RFC 3339 time")))?,
        None => OffsetDateTime::now_utc(),
    };
    let seeds = seeds(args)?;

    let mut trust = PolicyTrust::default();
    for path in &args.publickey {
        let pem = read(path)?;
        let key = PublicKey::from_pem(&pem).map_err(|e| {
            Failure::Usage(format!("{}: {}", path.display(), crate::display_chain(&e)))
        })?;
        trust.add_key(key);
    }
    if trust.is_empty() {
        return Err(Failure::Usage(
            "no policy signer given: use -k/--publickey".into(),
        ));
    }

    let mut options = PolicyOptions {
        type_aliases: !args.exact_types,
        ..PolicyOptions::default()
    };
    for spec in &args.kms_keys {
        let (uri, path) = spec
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("--kms-key {spec:?} is not URI=PEMFILE")))?;
        let path = PathBuf::from(path);
        let key = PublicKey::from_pem(&read(&path)?).map_err(|e| {
            Failure::Usage(format!("{}: {}", path.display(), crate::display_chain(&e)))
        })?;
        options.kms_keys.insert(uri.to_string(), key);
    }
    let policy_bytes = read(&args.policy)?;
    let signed = SignedPolicy::load(&policy_bytes, &trust, options).map_err(|e| {
        let message = format!("{}: {}", args.policy.display(), crate::display_chain(&e));
        if e.is_untrusted() {
            Failure::Untrusted(message)
        } else {
            Failure::Usage(message)
        }
    })?;

    let source = FileSource::from_paths(&args.attestations)
        .map_err(|e| Failure::Usage(crate::display_chain(&e)))?;
    for (path, reason) in source.ignored() {
        tracing::warn!(path = %path.display(), reason, "evidence file is not a collection");
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the runtime: {e}")))?;
    runtime
        .block_on(verify(&signed, &source, &seeds, &VerifyOptions { now }))
        .map_err(|e| Failure::Unreachable(crate::display_chain(&e)))
}

fn read(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
}

fn seeds(args: &VerifyArgs) -> Result<Vec<String>, Failure> {
    let mut seeds = Vec::new();
    for subject in args.subjects.iter().filter(|s| !s.trim().is_empty()) {
        seeds.push(parse_subject(subject).map_err(Failure::Usage)?);
    }
    if let Some(path) = &args.artifactfile {
        seeds.push(sha256_hex(&read(path)?));
    }
    if seeds.is_empty() {
        return Err(Failure::Usage(
            "no subject given: use -s/--subjects or -f/--artifactfile".into(),
        ));
    }
    Ok(seeds)
}

fn print_verification(verification: &Verification, output: Output) {
    if output == Output::Json {
        match serde_json::to_string_pretty(verification) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("attestgate: {e}"),
        }
        return;
    }
    let verdict = if verification.passed {
        "PASSED"
    } else {
        "FAILED"
    };
    println!("{verdict}  policy sha256:{}", verification.policy_digest);
    if let Some(failure) = &verification.policy_failure {
        println!("  policy: {failure}");
    }
    for step in &verification.steps {
        if step.passed {
            let refs: Vec<String> = step
                .passed_collections
                .iter()
                .map(|c| c.reference.to_string())
                .collect();
            println!("  step {}: passed ({})", step.step, refs.join(", "));
            continue;
        }
        if step.rejected.is_empty() {
            println!(
                "  step {}: FAILED: no collection for this step carries the subjects or their back-references",
                step.step
            );
        }
        for rejected in &step.rejected {
            for reason in &rejected.reasons {
                println!(
                    "  step {}: FAILED: {}: {reason}",
                    step.step, rejected.reference
                );
            }
        }
    }
}
