//! `attestgate verify`: witness's verify command, with the same flag names.

use std::path::PathBuf;

use clap::Args;
use time::OffsetDateTime;

use super::{printable, Output, EXIT_FAILED, EXIT_PASSED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::crypto::{Certificate, PublicKey};
use crate::evidence::EvidenceRef;
use crate::evidence::{ArchivistaConfig, ArchivistaSource, FileSource, Sources};
use crate::policy::{
    parse_subject, verify, PolicyOptions, PolicySignerIdentity, PolicyTrust, Reason, Rejected,
    SignedPolicy, Verification, VerifyOptions,
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
    /// Certificate policy signers: CA roots, identity constraints, timestamp authorities.
    #[command(flatten)]
    policy_signer: Box<PolicySignerArgs>,
    /// An evidence envelope (repeatable, or comma-separated).
    #[arg(short = 'a', long = "attestations", value_delimiter = ',')]
    attestations: Vec<PathBuf>,
    /// A folder of evidence envelopes (`*.json`, searched recursively; repeatable).
    #[arg(long, value_name = "DIR")]
    attestations_dir: Vec<PathBuf>,
    /// A subject digest, `alg:hex` or hex (repeatable, or comma-separated).
    #[arg(short = 's', long = "subjects", value_delimiter = ',')]
    subjects: Vec<String>,
    /// A file whose SHA-256 is a subject.
    #[arg(short = 'f', long = "artifactfile")]
    artifactfile: Option<PathBuf>,
    /// Verify as of this RFC 3339 time instead of now (audits of the past): policy expiry, and
    /// certificate chains that no timestamp authority dates.
    #[arg(long)]
    now: Option<String>,
    /// The public key of a KMS key reference the policy names, as `URI=PEMFILE` (repeatable).
    #[arg(long = "kms-key", value_name = "URI=PEMFILE")]
    kms_keys: Vec<String>,
    /// Let certificate signers without a trusted timestamp count when no timestamp authority is
    /// trusted, checking their chain at the verification time (witness's behaviour). Off by
    /// default: without a trusted time nothing says when the signature was made.
    #[arg(long)]
    allow_untimestamped_certificates: bool,
    /// Also search an Archivista server for evidence (needs --archivista-server).
    #[arg(long)]
    enable_archivista: bool,
    /// The Archivista server to search, e.g. https://archivista.example.com (no default).
    #[arg(long, value_name = "URL")]
    archivista_server: Option<String>,
    /// An extra header for Archivista requests, "Name: value" (repeatable).
    #[arg(long, value_name = "HEADER")]
    archivista_headers: Vec<String>,
    /// A CA certificate (PEM file) to trust for the Archivista server (repeatable).
    #[arg(long, value_name = "PEMFILE")]
    archivista_ca: Vec<PathBuf>,
    /// Require attestation types to match exactly, without the witness.dev/aflock.ai aliases.
    #[arg(long)]
    exact_types: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Flags that trust certificate policy signers, as `witness verify` names them.
#[derive(Debug, Args)]
struct PolicySignerArgs {
    /// CA certificate (PEM file) trusted to issue policy signer certificates; it need not be
    /// self-signed (repeatable). A certificate signer is accepted only when at least one
    /// --policy-commonname/-dns-names/-emails/-organizations/-uris flag is given (go-witness
    /// v0.12).
    #[arg(long = "policy-ca-roots", alias = "policy-ca", value_name = "PEMFILE")]
    policy_ca_roots: Vec<PathBuf>,
    /// Untrusted intermediate certificate (PEM file) for policy signer chains (repeatable).
    #[arg(long = "policy-ca-intermediates", value_name = "PEMFILE")]
    policy_ca_intermediates: Vec<PathBuf>,
    /// Common name the policy signer certificate must have [default: *, once any identity flag
    /// is given]. `*` allows any; an empty value requires no common name.
    #[arg(long = "policy-commonname")]
    policy_commonname: Option<String>,
    /// DNS SANs the policy signer certificate must have, exactly (comma-separated) [default: *,
    /// once any identity flag is given]. A sole `*` allows any; '' requires none.
    #[arg(long = "policy-dns-names", value_delimiter = ',')]
    policy_dns_names: Vec<String>,
    /// E-mail SANs the policy signer certificate must have, exactly (comma-separated) [default:
    /// *, once any identity flag is given]. A sole `*` allows any; '' requires none.
    #[arg(long = "policy-emails", value_delimiter = ',')]
    policy_emails: Vec<String>,
    /// Organizations the policy signer certificate must have, exactly (comma-separated)
    /// [default: *, once any identity flag is given]. A sole `*` allows any; '' requires none.
    #[arg(long = "policy-organizations", value_delimiter = ',')]
    policy_organizations: Vec<String>,
    /// URI SANs the policy signer certificate must have, exactly (comma-separated) [default: *,
    /// once any identity flag is given]. A sole `*` allows any; '' requires none.
    #[arg(long = "policy-uris", value_delimiter = ',')]
    policy_uris: Vec<String>,
    /// Certificate (PEM file) of a timestamp authority for the policy signature (repeatable).
    /// With one given, a certificate policy signer needs a valid RFC 3161 timestamp from it and
    /// its chain is checked at the timestamp's time instead of now.
    #[arg(long = "policy-timestamp-servers", value_name = "PEMFILE")]
    policy_timestamp_servers: Vec<PathBuf>,
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
            out!("{body}");
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

    let trust = policy_trust(args, now)?;

    let mut options = PolicyOptions {
        type_aliases: !args.exact_types,
        untimestamped_certificates: args.allow_untimestamped_certificates,
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
    let policy_bytes =
        super::read_file(&args.policy, super::MAX_POLICY_BYTES).map_err(Failure::Usage)?;
    let signed = SignedPolicy::load(&policy_bytes, &trust, options).map_err(|e| {
        let message = format!("{}: {}", args.policy.display(), crate::display_chain(&e));
        if e.is_untrusted() {
            Failure::Untrusted(message)
        } else {
            Failure::Usage(message)
        }
    })?;

    let mut files = FileSource::from_paths(&args.attestations)
        .map_err(|e| Failure::Usage(crate::display_chain(&e)))?;
    for dir in &args.attestations_dir {
        let found = FileSource::from_directory(dir)
            .map_err(|e| Failure::Usage(crate::display_chain(&e)))?;
        files.merge(found);
    }
    let source = Sources::new(files, archivista(args)?);

    let ignored: Vec<Rejected> = source
        .first()
        .ignored()
        .iter()
        .map(|(path, reason)| Rejected {
            reference: EvidenceRef::File(path.clone()),
            reasons: vec![Reason::Statement {
                detail: reason.clone(),
            }],
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the runtime: {e}")))?;
    // Only the time is set here; every other knob keeps its default.
    #[allow(clippy::field_reassign_with_default)]
    let options = {
        let mut options = VerifyOptions::default();
        options.now = now;
        options
    };
    let mut verification = runtime
        .block_on(verify(&signed, &source, &seeds, &options))
        .map_err(|e| Failure::Unreachable(crate::display_chain(&e)))?;
    verification.ignored_evidence = ignored;
    Ok(verification)
}

/// The Archivista source, when `--enable-archivista` is given. There is no default server.
fn archivista(args: &VerifyArgs) -> Result<Option<ArchivistaSource>, Failure> {
    if !args.enable_archivista {
        if args.archivista_server.is_some() {
            return Err(Failure::Usage(
                "--archivista-server is given but --enable-archivista is not".into(),
            ));
        }
        return Ok(None);
    }
    let Some(url) = &args.archivista_server else {
        return Err(Failure::Usage(
            "--enable-archivista needs --archivista-server URL (there is no default server)".into(),
        ));
    };
    let mut config = ArchivistaConfig::new(url.clone());
    for header in &args.archivista_headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            Failure::Usage(format!(
                "--archivista-headers {header:?} is not \"Name: value\""
            ))
        })?;
        config.headers.push((name.to_string(), value.to_string()));
    }
    for path in &args.archivista_ca {
        config.ca_pem.push(read(path)?);
    }
    ArchivistaSource::new(config)
        .map(Some)
        .map_err(|e| Failure::Usage(crate::display_chain(&e)))
}

/// The operator's trust in the policy signer: keys, CA roots with identity constraints, and
/// timestamp authorities.
fn policy_trust(args: &VerifyArgs, now: OffsetDateTime) -> Result<PolicyTrust, Failure> {
    let mut trust = PolicyTrust::default();
    trust.allow_untimestamped_certificates(args.allow_untimestamped_certificates);
    trust.set_verification_time(now);
    for path in &args.publickey {
        let pem = read(path)?;
        let key = PublicKey::from_pem(&pem).map_err(|e| {
            Failure::Usage(format!("{}: {}", path.display(), crate::display_chain(&e)))
        })?;
        trust.add_key(key);
    }
    let signer = &args.policy_signer;
    for path in &signer.policy_ca_roots {
        trust.add_ca_root(certificate(path)?);
    }
    for path in &signer.policy_ca_intermediates {
        trust.add_ca_intermediate(certificate(path)?);
    }
    for path in &signer.policy_timestamp_servers {
        trust.add_timestamp_authority(path.display().to_string(), certificate(path)?);
    }
    if trust.is_empty() {
        return Err(Failure::Usage(
            "no policy signer given: use -k/--publickey or --policy-ca-roots".into(),
        ));
    }

    // go-witness v0.12 trusts a certificate policy signer only under explicit identity
    // constraints; the flags left out then default to witness's `*`.
    let explicit = signer.policy_commonname.is_some()
        || !signer.policy_dns_names.is_empty()
        || !signer.policy_emails.is_empty()
        || !signer.policy_organizations.is_empty()
        || !signer.policy_uris.is_empty();
    if explicit {
        trust.set_signer_identity(PolicySignerIdentity::with_defaults(
            signer.policy_commonname.clone(),
            &signer.policy_dns_names,
            &signer.policy_emails,
            &signer.policy_organizations,
            &signer.policy_uris,
        ));
    }
    Ok(trust)
}

fn certificate(path: &std::path::Path) -> Result<Certificate, Failure> {
    Certificate::from_pem(&read(path)?)
        .map_err(|e| Failure::Usage(format!("{}: {}", path.display(), crate::display_chain(&e))))
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    super::read_file(path, super::MAX_SMALL_FILE_BYTES).map_err(Failure::Usage)
}

/// SHA-256 of a regular file, streamed (artifacts can be large).
fn hash_file(path: &PathBuf) -> Result<String, Failure> {
    use sha2::Digest as _;
    let fail = |e: std::io::Error| Failure::Usage(format!("cannot read {}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(fail)?;
    if !meta.is_file() {
        return Err(Failure::Usage(format!(
            "cannot read {}: not a regular file",
            path.display()
        )));
    }
    use std::io::Read as _;
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).map_err(fail)?;
        if n == 0 {
            break;
        }
        hasher.update(buffer.get(..n).unwrap_or_default());
    }
    Ok(crate::encoding::hex(&hasher.finalize()))
}

fn seeds(args: &VerifyArgs) -> Result<Vec<String>, Failure> {
    let mut seeds = Vec::new();
    for subject in args.subjects.iter().filter(|s| !s.trim().is_empty()) {
        seeds.push(parse_subject(subject).map_err(Failure::Usage)?);
    }
    if let Some(path) = &args.artifactfile {
        seeds.push(hash_file(path)?);
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
            Ok(json) => out!("{json}"),
            Err(e) => eprintln!("attestgate: {e}"),
        }
        return;
    }
    let verdict = if verification.passed {
        "PASSED"
    } else {
        "FAILED"
    };
    out!("{verdict}  policy sha256:{}", verification.policy_digest);
    if let Some(failure) = &verification.policy_failure {
        out!("  policy: {failure}");
    }
    for step in &verification.steps {
        if step.passed {
            let refs: Vec<String> = step
                .passed_collections
                .iter()
                .map(|c| match &c.signed_at {
                    Some(at) => format!("{}, signed {at}", c.reference),
                    None => c.reference.to_string(),
                })
                .collect();
            out!(
                "  step {}: passed ({})",
                step.step,
                printable(&refs.join(", "))
            );
            continue;
        }
        if step.rejected.is_empty() {
            out!(
                "  step {}: FAILED: no collection for this step carries the subjects or their back-references",
                step.step
            );
        }
        for rejected in &step.rejected {
            for reason in &rejected.reasons {
                let line = format!("{}: {reason}", rejected.reference);
                out!("  step {}: FAILED: {}", step.step, printable(&line));
            }
        }
    }
    for ignored in &verification.ignored_evidence {
        for reason in &ignored.reasons {
            let line = format!("{}: {reason}", ignored.reference);
            out!("  ignored evidence {}", printable(&line));
        }
    }
}
