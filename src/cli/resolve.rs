//! `attestgate resolve IMAGE`: what the webhook will use for one image — its digest and
//! identities, its commit and source, the subjects evidence is searched with, and (with a
//! policy) the evidence found and whether it passed and is bound to this image.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

mod with_config;

use super::{printable, Output, EXIT_FAILED, EXIT_PASSED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::crypto::PublicKey;
use crate::evidence::{ArchivistaConfig, ArchivistaSource, FileSource, Sources};
use crate::image::binding::Binding;
use crate::image::{
    CredentialProviders, DockerConfig, ImageReference, Keyring, Mirrors, Registry, RegistryConfig,
    RegistryCredentials,
};
use crate::policy::{PolicyOptions, PolicyTrust, SignedPolicy};
use crate::resolve::{resolve, Resolution};

/// How evidence is tied to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum BindingMode {
    /// A passing collection must name the image's digest (or every platform's) as produced.
    Digest,
    /// Evidence is found by the revision label; needs --expected-source and
    /// --trust-registry-push-rights.
    Commit,
}

/// Flags of `attestgate resolve`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The image reference, e.g. 127.0.0.1:5000/team/app:v1 or ...@sha256:<hex>.
    image: String,
    /// The webhook's config file: the image is resolved and judged exactly as the webhook
    /// would, under every policy that covers it, with the config's registry settings and
    /// evidence sources (replaces the policy, registry and evidence flags).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A signed policy (DSSE envelope) to verify the image's evidence against (needs -k).
    #[arg(short = 'p', long = "policy")]
    policy: Option<PathBuf>,
    /// Public key that signs the policy (repeatable).
    #[arg(short = 'k', long = "publickey")]
    publickey: Vec<PathBuf>,
    /// How evidence is tied to the image (default: digest).
    #[arg(long, value_enum)]
    binding: Option<BindingMode>,
    /// The repository the image must be built from (commit binding): the image's
    /// org.opencontainers.image.source label and the passing evidence must both name it.
    #[arg(long, value_name = "URL")]
    expected_source: Option<String>,
    /// Required by --binding commit: say that registry push rights are trusted. The revision
    /// and source labels are written by whoever pushes the image, so anyone who can push can
    /// label another build's image with a good commit (and the right repository) and have it
    /// admitted on that commit's evidence. Digest binding does not trust labels.
    #[arg(long)]
    trust_registry_push_rights: bool,
    /// A registry `host:port` reached over plain HTTP (repeatable); every other is HTTPS only.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registry: Vec<String>,
    /// A CA certificate (PEM file) to trust for registries (repeatable).
    #[arg(long = "registry-ca", value_name = "PEMFILE")]
    registry_ca: Vec<PathBuf>,
    /// A docker config.json / .dockerconfigjson with registry credentials (repeatable; searched
    /// in the order given, as the kubelet searches a pod's pull secrets then its service
    /// account's). The most specific match is used.
    #[arg(long = "docker-config", value_name = "FILE")]
    docker_config: Vec<PathBuf>,
    /// The kubelet's credential provider config (CredentialProviderConfig), asked when no
    /// docker config matches (needs --credential-provider-bin-dir).
    #[arg(long, value_name = "FILE")]
    credential_provider_config: Option<PathBuf>,
    /// Where the credential provider plugins live (the kubelet's
    /// --image-credential-provider-bin-dir).
    #[arg(long, value_name = "DIR")]
    credential_provider_bin_dir: Option<PathBuf>,
    /// Also search an Archivista server for evidence (needs --archivista-server).
    #[arg(long)]
    enable_archivista: bool,
    /// The Archivista server to search (no default).
    #[arg(long, value_name = "URL")]
    archivista_server: Option<String>,
    /// A CA certificate (PEM file) to trust for the Archivista server (repeatable).
    #[arg(long, value_name = "PEMFILE")]
    archivista_ca: Vec<PathBuf>,
    /// An evidence envelope (repeatable, or comma-separated).
    #[arg(short = 'a', long = "attestations", value_delimiter = ',')]
    attestations: Vec<PathBuf>,
    /// A folder of evidence envelopes (`*.json`, searched recursively; repeatable).
    #[arg(long, value_name = "DIR")]
    attestations_dir: Vec<PathBuf>,
    /// A containerd-style registry configuration folder (`<dir>/<host>/hosts.toml`): mirrors
    /// are tried first, in file order, then the registry itself.
    #[arg(long, value_name = "DIR")]
    mirrors_dir: Option<PathBuf>,
    /// Seconds the whole resolution (registry and evidence) may take (1 to 86400).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs the command and returns its exit code.
pub(super) fn run(args: ResolveArgs) -> u8 {
    if let Some(config) = &args.config {
        return with_config::run(&args, config);
    }
    match execute(&args) {
        Ok(resolution) => {
            print(&resolution, args.output);
            if resolution.admitted() {
                EXIT_PASSED
            } else {
                EXIT_FAILED
            }
        }
        Err((code, message)) => {
            if args.output == Output::Json {
                let body = serde_json::json!({"error": message, "exit_code": code});
                out!("{body}");
            }
            eprintln!("attestgate: {}", printable(&message));
            code
        }
    }
}

type Failure = (u8, String);

fn usage(message: impl Into<String>) -> Failure {
    (EXIT_USAGE, message.into())
}

fn execute(args: &ResolveArgs) -> Result<Resolution, Failure> {
    let image = ImageReference::parse(&args.image)
        .map_err(|e| usage(format!("{}: {}", args.image, crate::display_chain(&e))))?;
    let binding = match args.binding.unwrap_or(BindingMode::Digest) {
        BindingMode::Digest => {
            if args.expected_source.is_some() || args.trust_registry_push_rights {
                return Err(usage(
                    "--expected-source and --trust-registry-push-rights belong to --binding commit",
                ));
            }
            Binding::Digest
        }
        BindingMode::Commit => {
            let Some(source) = &args.expected_source else {
                return Err(usage("--binding commit needs --expected-source URL"));
            };
            if !args.trust_registry_push_rights {
                return Err(usage(
                    "--binding commit needs --trust-registry-push-rights: anyone who can push can \
                     label another build's image with a good commit",
                ));
            }
            Binding::Commit {
                source: source.clone(),
            }
        }
    };

    let mirrors = match &args.mirrors_dir {
        Some(dir) => Some(Mirrors::from_dir(dir).map_err(|e| usage(crate::display_chain(&e)))?),
        None => None,
    };
    let mut config = RegistryConfig {
        insecure_hosts: args.insecure_registry.clone(),
        mirrors,
        ..RegistryConfig::default()
    };
    for path in &args.registry_ca {
        config.extra_ca_pem.push(read(path)?);
    }
    let registry = Registry::new(config).map_err(|e| usage(crate::display_chain(&e)))?;
    let keyring = keyring(&args.docker_config)?;
    let providers = providers(args)?;

    let policy = match &args.policy {
        Some(path) => Some(load_policy(path, &args.publickey)?),
        None => {
            if !args.publickey.is_empty() {
                return Err(usage("-k/--publickey is given but --policy is not"));
            }
            None
        }
    };
    let mut files =
        FileSource::from_paths(&args.attestations).map_err(|e| usage(crate::display_chain(&e)))?;
    for dir in &args.attestations_dir {
        files.merge(FileSource::from_directory(dir).map_err(|e| usage(crate::display_chain(&e)))?);
    }
    let source = Sources::new(files, archivista(args)?);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
        let found = tokio::time::timeout_at(deadline, keyring.select(providers.as_ref(), &image))
            .await
            .map_err(|_| {
                (
                    EXIT_UNREACHABLE,
                    "the credential providers did not answer within --timeout".to_string(),
                )
            })?
            .map_err(|e| (EXIT_UNREACHABLE, crate::display_chain(&e)))?;
        let credentials = RegistryCredentials::from_found(found);
        resolve(
            &image,
            &registry,
            &credentials,
            &binding,
            policy.as_ref(),
            &source,
            deadline,
        )
        .await
        .map_err(|e| {
            let code = if e.could_not_check() {
                EXIT_UNREACHABLE
            } else {
                EXIT_FAILED
            };
            (code, crate::display_chain(&e))
        })
    })
}

fn load_policy(path: &std::path::Path, keys: &[PathBuf]) -> Result<SignedPolicy, Failure> {
    if keys.is_empty() {
        return Err(usage(
            "--policy needs -k/--publickey (the key that signs it)",
        ));
    }
    let mut trust = PolicyTrust::default();
    for key in keys {
        let pem = read(key)?;
        let key = PublicKey::from_pem(&pem)
            .map_err(|e| usage(format!("{}: {}", key.display(), crate::display_chain(&e))))?;
        trust.add_key(key);
    }
    let bytes = super::read_file(path, super::MAX_POLICY_BYTES).map_err(usage)?;
    SignedPolicy::load(&bytes, &trust, PolicyOptions::default()).map_err(|e| {
        let message = format!("{}: {}", path.display(), crate::display_chain(&e));
        if e.is_untrusted() {
            (EXIT_FAILED, message)
        } else {
            usage(message)
        }
    })
}

fn archivista(args: &ResolveArgs) -> Result<Option<ArchivistaSource>, Failure> {
    match (args.enable_archivista, &args.archivista_server) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(usage(
            "--archivista-server is given but --enable-archivista is not",
        )),
        (true, None) => Err(usage(
            "--enable-archivista needs --archivista-server URL (there is no default server)",
        )),
        (true, Some(url)) => {
            let mut config = ArchivistaConfig::new(url.clone());
            for path in &args.archivista_ca {
                config.ca_pem.push(read(path)?);
            }
            ArchivistaSource::new(config)
                .map(Some)
                .map_err(|e| usage(crate::display_chain(&e)))
        }
    }
}

/// The docker configs, in the order given.
fn keyring(paths: &[PathBuf]) -> Result<Keyring, Failure> {
    paths
        .iter()
        .map(|path| {
            DockerConfig::from_json(&read(path)?)
                .map_err(|e| usage(format!("{}: {}", path.display(), crate::display_chain(&e))))
        })
        .collect()
}

fn providers(args: &ResolveArgs) -> Result<Option<CredentialProviders>, Failure> {
    match (
        &args.credential_provider_config,
        &args.credential_provider_bin_dir,
    ) {
        (None, None) => Ok(None),
        (Some(config), Some(bin_dir)) => CredentialProviders::from_file(config, bin_dir)
            .map(Some)
            .map_err(|e| {
                usage(format!(
                    "{}: {}",
                    config.display(),
                    crate::display_chain(&e)
                ))
            }),
        _ => Err(usage(
            "--credential-provider-config and --credential-provider-bin-dir go together",
        )),
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    super::read_file(path, super::MAX_SMALL_FILE_BYTES).map_err(usage)
}

pub(super) fn print(resolution: &Resolution, output: Output) {
    if output == Output::Json {
        match serde_json::to_string_pretty(resolution) {
            Ok(json) => out!("{json}"),
            Err(e) => eprintln!("attestgate: {e}"),
        }
        return;
    }
    let verdict = match &resolution.verdict {
        None => "RESOLVED".to_string(),
        Some(v) if v.passed && v.bound => "PASSED (bound)".to_string(),
        Some(v) => format!(
            "FAILED: {}",
            printable(v.reason.as_deref().unwrap_or("unknown"))
        ),
    };
    out!("{verdict}");
    out!(
        "  image    {} -> {}",
        printable(&resolution.reference),
        resolution.digest
    );
    for identity in resolution.identities.iter().skip(1) {
        out!(
            "  {:<8} {}{}",
            identity.kind.replace("platform_manifest", "platform"),
            identity.digest,
            identity
                .platform
                .as_deref()
                .map(|p| format!(" ({})", printable(p)))
                .unwrap_or_default()
        );
    }
    out!(
        "  commit   {}  source {}",
        resolution.commit.as_deref().map_or("-".into(), printable),
        resolution.source.as_deref().map_or("-".into(), printable)
    );
    if resolution.subjects.len() > 1 {
        out!("  subjects the {} digests above", resolution.subjects.len());
    } else {
        out!("  subjects {}", resolution.subjects.join(", "));
    }
    for item in &resolution.evidence {
        let at = match (&item.gitoid, &item.path) {
            (Some(g), _) => format!("gitoid:{g}"),
            (None, Some(p)) => p.display().to_string(),
            (None, None) => "-".into(),
        };
        let state = if item.passed { "passed" } else { "rejected" };
        out!(
            "  evidence step {} {state}: {}{}",
            printable(&item.step),
            printable(&at),
            if item.reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", printable(&item.reasons.join("; ")))
            }
        );
    }
}
