//! `attestgate audit --config FILE [--policy [NAME=]FILE ...] [--namespace NS | --all-namespaces]
//! [--kubeconfig PATH] [--output table|json]`: the workloads running in the cluster, their images
//! by spec and by what runs, and the decision each would get now under the config, or under
//! candidate policies before they are rolled out.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{printable, EXIT_FAILED, EXIT_PASSED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::cluster::audit::{audit, AuditRecord};
use crate::cluster::inventory::{list_pods, Scope};
use crate::cluster::{connect, ApiSource, PullSecrets};
use crate::config::Config;
use crate::decision::{Decider, Outcome};

/// How long one image's decision may take (the verification budget of the decider).
const PER_IMAGE: Duration = Duration::from_secs(60);
/// The widest REASON shown in the table; `--output json` has it whole.
const REASON_CHARS: usize = 72;
/// Hex digits of a digest shown in the table.
const DIGEST_HEX: usize = 12;

/// Flags of `attestgate audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The webhook's config file (policies, trust, exceptions, registry access).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// A candidate policy to judge with before it is rolled out: NAME=FILE replaces the policy
    /// file of the config's policy NAME (verified with that policy's trust); a bare FILE
    /// replaces the only policy's. Repeatable.
    #[arg(long = "policy", value_name = "[NAME=]FILE")]
    policies: Vec<String>,
    /// Only this namespace (default: the namespaces labelled attestgate.dev/mode).
    #[arg(short, long, value_name = "NS", conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Every namespace, labelled or not.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// The kubeconfig (default: as kubectl: KUBECONFIG, ~/.kube/config, then the in-cluster
    /// service account).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// A table for a person, or a JSON list of records.
    #[arg(short, long, value_enum, default_value = "table")]
    output: AuditOutput,
}

/// Output format of `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuditOutput {
    /// NAMESPACE, WORKLOAD, IMAGE, DIGEST, DECISION, REASON.
    Table,
    /// A list of records.
    Json,
}

/// Runs the command: exit 0 when everything would be admitted, 1 when something would be
/// denied (a violation or a verification error), 2 for bad flags, a config or candidate that
/// does not load, or an unusable kubeconfig, 3 when the API server cannot be used.
pub(super) fn run(args: AuditArgs) -> u8 {
    if let Some(namespace) = args
        .namespace
        .as_deref()
        .filter(|n| !crate::cluster::is_namespace_name(n))
    {
        eprintln!(
            "attestgate: --namespace {:?} is not a namespace name",
            printable(namespace)
        );
        return EXIT_USAGE;
    }
    let candidates: Vec<(Option<String>, PathBuf)> =
        args.policies.iter().map(|p| candidate(p)).collect();
    let config = match Config::load_with_candidates(&args.config, &candidates) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("attestgate: {}", printable(&crate::display_chain(&e)));
            return EXIT_USAGE;
        }
    };
    let runtime = match super::decision_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let scope = match (&args.namespace, args.all_namespaces) {
        (Some(namespace), _) => Scope::Namespace(namespace.clone()),
        (None, true) => Scope::All,
        (None, false) => Scope::Labelled,
    };
    let source = args
        .kubeconfig
        .clone()
        .map_or(ApiSource::Infer, ApiSource::Kubeconfig);
    let records = runtime.block_on(async {
        let timeout = config.kubernetes.request_timeout;
        let client = connect(&source, timeout)
            .await
            .map_err(|e| (EXIT_USAGE, e))?;
        let pods = list_pods(&client, &scope, timeout).await.map_err(|e| {
            let code = if e.is_unreachable() {
                EXIT_UNREACHABLE
            } else {
                EXIT_USAGE
            };
            (code, e)
        })?;
        let pull_secrets = config
            .pull_secrets
            .map(|settings| PullSecrets::with_client(client, settings, timeout));
        let decider = Decider::new(config.clone());
        Ok(audit(&decider, pull_secrets.as_ref(), &pods, PER_IMAGE).await)
    });
    let records = match records {
        Ok(records) => records,
        Err((code, e)) => {
            eprintln!("attestgate: {}", printable(&e.text()));
            return code;
        }
    };
    for r in records.iter().filter(|r| r.detail.is_some()) {
        tracing::info!(
            namespace = %r.namespace,
            workload = %r.workload,
            image = %r.judged,
            detail = r.detail.as_deref().unwrap_or(""),
            "verification failed"
        );
    }
    match args.output {
        AuditOutput::Json => match serde_json::to_string_pretty(&records) {
            Ok(text) => out!("{text}"),
            Err(e) => {
                eprintln!("attestgate: cannot encode the records: {e}");
                return EXIT_USAGE;
            }
        },
        AuditOutput::Table => out!("{}", table(&records).trim_end_matches('\n')),
    }
    if records.iter().any(AuditRecord::denied) {
        EXIT_FAILED
    } else {
        EXIT_PASSED
    }
}

/// `NAME=FILE` (a policy name is lowercase letters, digits and '-') or a bare `FILE`.
fn candidate(text: &str) -> (Option<String>, PathBuf) {
    match text.split_once('=') {
        Some((name, file))
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            (Some(name.to_string()), PathBuf::from(file))
        }
        _ => (None, PathBuf::from(text)),
    }
}

/// The records as aligned columns, with a header.
fn table(records: &[AuditRecord]) -> String {
    let header = [
        "NAMESPACE",
        "WORKLOAD",
        "IMAGE",
        "DIGEST",
        "DECISION",
        "REASON",
    ]
    .map(String::from);
    let rows: Vec<[String; 6]> = records
        .iter()
        .map(|r| {
            let (decision, reason) = match &r.outcome {
                Outcome::Admitted => ("ADMIT", String::new()),
                Outcome::Excepted(why) => ("EXCEPTED", why.clone()),
                Outcome::Violation(why) => ("DENY", why.clone()),
                Outcome::Error(why) => ("ERROR", why.clone()),
            };
            [
                printable(&r.namespace),
                printable(&r.workload.to_string()),
                printable(&r.image),
                r.digest.as_deref().map(short_digest).unwrap_or_default(),
                decision.to_string(),
                printable(&shorten(&reason, REASON_CHARS)),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `sha256:` and the first hex digits.
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => {
            format!(
                "{algorithm}:{}",
                hex.get(..DIGEST_HEX.min(hex.len())).unwrap_or(hex)
            )
        }
        None => printable(digest),
    }
}

/// `text` cut to `chars` characters, ending in `…` when cut.
fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_named_or_bare() {
        assert_eq!(
            candidate("build=new/policy.json"),
            (Some("build".into()), PathBuf::from("new/policy.json"))
        );
        assert_eq!(
            candidate("policy.json"),
            (None, PathBuf::from("policy.json"))
        );
        assert_eq!(
            candidate("./a=b/policy.json"),
            (None, PathBuf::from("./a=b/policy.json"))
        );
    }

    #[test]
    fn long_reasons_and_digests_are_cut() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
        assert_eq!(
            short_digest("sha256:4a371bebf2ddabab2785e7fc04a643798bdd8bf7c8365a4a51de646298b3c689"),
            "sha256:4a371bebf2dd"
        );
    }
}
