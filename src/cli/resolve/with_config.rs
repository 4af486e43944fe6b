//! `attestgate resolve IMAGE --config FILE`: the webhook's decision for one image, and under
//! each policy that covers it, what was resolved and which evidence was seen.

use std::path::Path;
use std::sync::Arc;

use super::super::{printable, Output, EXIT_FAILED, EXIT_PASSED, EXIT_UNREACHABLE, EXIT_USAGE};
use super::{print, ResolveArgs};
use crate::config::Config;
use crate::decision::{Decider, ImageDecision, Outcome};
use crate::image::ImageReference;
use crate::resolve::{resolve, Resolution};

/// Runs `resolve --config` and returns the exit code.
pub(super) fn run(args: &ResolveArgs, path: &Path) -> u8 {
    if let Some(flag) = conflicting_flag(args) {
        eprintln!(
            "attestgate: {flag} cannot be combined with --config: the config file says how \
             images are resolved and judged"
        );
        return EXIT_USAGE;
    }
    let config = match Config::load(path) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("attestgate: {}", printable(&crate::display_chain(&e)));
            return EXIT_USAGE;
        }
    };
    let runtime = match super::super::decision_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (decision, details) = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + config.deadline;
        let decision = Decider::new(config.clone())
            .decide(&args.image, deadline)
            .await;
        let details = details(&config, &args.image).await;
        (decision, details)
    });
    report(&decision, &details, args.output);
    match &decision.outcome {
        Outcome::Admitted | Outcome::Excepted(_) => EXIT_PASSED,
        Outcome::Violation(_) => EXIT_FAILED,
        Outcome::Error(_) => EXIT_UNREACHABLE,
    }
}

/// The flags that the config replaces.
fn conflicting_flag(args: &ResolveArgs) -> Option<&'static str> {
    [
        (args.policy.is_some(), "--policy"),
        (!args.publickey.is_empty(), "--publickey"),
        (args.binding.is_some(), "--binding"),
        (args.expected_source.is_some(), "--expected-source"),
        (
            args.trust_registry_push_rights,
            "--trust-registry-push-rights",
        ),
        (!args.insecure_registry.is_empty(), "--insecure-registry"),
        (!args.registry_ca.is_empty(), "--registry-ca"),
        (!args.docker_config.is_empty(), "--docker-config"),
        (
            args.credential_provider_config.is_some(),
            "--credential-provider-config",
        ),
        (
            args.credential_provider_bin_dir.is_some(),
            "--credential-provider-bin-dir",
        ),
        (args.enable_archivista, "--enable-archivista"),
        (args.archivista_server.is_some(), "--archivista-server"),
        (!args.archivista_ca.is_empty(), "--archivista-ca"),
        (!args.attestations.is_empty(), "--attestations"),
        (!args.attestations_dir.is_empty(), "--attestations-dir"),
        (args.mirrors_dir.is_some(), "--mirrors-dir"),
    ]
    .into_iter()
    .find_map(|(set, flag)| set.then_some(flag))
}

/// Per covering policy, the resolution (or why there is none).
async fn details(config: &Config, image: &str) -> Vec<(String, Result<Resolution, String>)> {
    let Ok(reference) = ImageReference::parse(image) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in config.policies_for(&reference) {
        let deadline = tokio::time::Instant::now() + config.deadline;
        let resolution = async {
            let credentials = config
                .credentials_for(&reference)
                .await
                .map_err(|e| crate::display_chain(&e))?;
            resolve(
                &reference,
                &config.registry,
                &credentials,
                &entry.binding,
                Some(&entry.policy),
                &*entry.source,
                deadline,
            )
            .await
            .map_err(|e| crate::display_chain(&e))
        }
        .await;
        out.push((entry.name.clone(), resolution));
    }
    out
}

fn report(
    decision: &ImageDecision,
    details: &[(String, Result<Resolution, String>)],
    output: Output,
) {
    if output == Output::Json {
        let policies: Vec<serde_json::Value> = details
            .iter()
            .map(|(name, r)| match r {
                Ok(resolution) => serde_json::json!({"name": name, "resolution": resolution}),
                Err(error) => serde_json::json!({"name": name, "error": error}),
            })
            .collect();
        let body = serde_json::json!({"decision": decision, "policies": policies});
        match serde_json::to_string_pretty(&body) {
            Ok(text) => out!("{text}"),
            Err(e) => eprintln!("attestgate: {e}"),
        }
        return;
    }
    let headline = match &decision.outcome {
        Outcome::Admitted => "ADMIT".to_string(),
        Outcome::Excepted(why) => format!("ADMIT (exception {})", printable(why)),
        Outcome::Violation(why) => format!("DENY: {}", printable(why)),
        Outcome::Error(why) => format!("DENY (verification error): {}", printable(why)),
    };
    out!("{headline}");
    out!(
        "  image    {}{}",
        printable(&decision.image),
        decision
            .digest
            .as_deref()
            .map(|d| format!(" -> {d}"))
            .unwrap_or_default()
    );
    if !decision.policies.is_empty() {
        out!("  policies {}", decision.policies.join(", "));
    }
    for (name, resolution) in details {
        out!();
        out!("policy {}:", printable(name));
        match resolution {
            Ok(resolution) => print(resolution, Output::Text),
            Err(error) => out!("  error: {}", printable(error)),
        }
    }
}
