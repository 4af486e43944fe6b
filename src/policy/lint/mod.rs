//! `policy check`: everything worth knowing about a policy before it is rolled out, as a list
//! of findings rather than the first error. A finding of severity `error` means the policy
//! cannot be applied as written or will never pass; `warning` means it works but is weaker or
//! more fragile than it looks; `info` describes it.

mod workflow;

use serde::Serialize;
use time::OffsetDateTime;

use super::compiled::{Policy, PolicyError, PolicyOptions};
use super::document::{PolicyDocument, Root, Step};
use super::rego::{RegoBudget, RegoModules, RegoOutcome};
use crate::encoding::decode_base64;
use crate::intoto::types;

pub use workflow::{Workflow, WorkflowError};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Describes the policy.
    Info,
    /// Works, but weaker or more fragile than it looks.
    Warning,
    /// Cannot be applied as written, or can never pass.
    Error,
}

/// One finding about a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// Where in the policy (a JSON path such as `steps.build.attestations[3]`).
    pub location: String,
    /// What was found, and what to do about it.
    pub message: String,
}

/// Attestor names witness and cilock define, for spotting mistyped type URIs.
const KNOWN_ATTESTORS: &[&str] = &[
    "material",
    "product",
    "command-run",
    "commandrun",
    "git",
    "github",
    "gitlab",
    "jenkins",
    "aws-codebuild",
    "aws",
    "gcp-iit",
    "environment",
    "jwt",
    "oci",
    "docker",
    "sbom",
    "k8smanifest",
    "lockfiles",
    "maven",
    "omnitrail",
    "sarif",
    "secretscan",
    "system-packages",
    "network-trace",
    "policyverify",
    "slsa",
    "link",
    "vex",
    "vsa",
];

/// Type URIs outside the witness.dev / aflock.ai namespaces that appear in collections.
const EXTERNAL_TYPES: &[&str] = &[
    "https://cyclonedx.org/bom",
    "https://spdx.dev/Document",
    "https://slsa.dev/provenance/v1.0",
    "https://slsa.dev/verification_summary/v1",
    "https://openvex.dev/ns",
    "https://in-toto.io/attestation/link/v0.3",
];

/// Lints a policy document (the payload, not the envelope).
pub fn lint(payload: &[u8], now: OffsetDateTime, workflow: Option<&Workflow>) -> Vec<Finding> {
    let mut out = Findings::default();
    let document = match PolicyDocument::from_json(payload) {
        Ok(d) => d,
        Err(e) => {
            out.push(
                Severity::Error,
                "",
                format!("not a valid witness policy: {e}"),
            );
            return out.0;
        }
    };

    check_top_level(&document, now, &mut out);
    for (key, step) in &document.steps {
        check_step(&document, key, step, &mut out);
    }
    check_loads(&document, &mut out);
    if let Some(workflow) = workflow {
        workflow.check(&document, &mut out);
    } else {
        out.push(
            Severity::Info,
            "steps",
            "give --workflow to check that each step's run produces the types required of it",
        );
    }
    out.0
}

#[derive(Default)]
pub(super) struct Findings(Vec<Finding>);

impl Findings {
    pub(super) fn push(
        &mut self,
        severity: Severity,
        location: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(Finding {
            severity,
            location: location.into(),
            message: message.into(),
        });
    }
}

fn check_top_level(document: &PolicyDocument, now: OffsetDateTime, out: &mut Findings) {
    for key in document.case_variant_keys() {
        out.push(
            Severity::Error,
            key.clone(),
            "differs from a policy field only in case: witness reads it as that field, attestgate refuses the policy",
        );
    }
    for (id, root) in document.roots.iter().chain(&document.timestampauthorities) {
        for key in root.other.keys() {
            out.push(
                Severity::Warning,
                format!("{id}.{key}"),
                "unknown key is ignored",
            );
        }
    }
    for (id, key) in &document.publickeys {
        for other in key.other.keys() {
            out.push(
                Severity::Warning,
                format!("publickeys.{id}.{other}"),
                "unknown key is ignored",
            );
        }
    }
    for key in document
        .other
        .keys()
        .filter(|k| !document.case_variant_keys().contains(k))
    {
        out.push(
            Severity::Warning,
            key.clone(),
            format!("unknown top-level key {key:?} is ignored by witness and by attestgate"),
        );
    }
    for path in document.cilock_only_keys() {
        out.push(
            Severity::Error,
            path,
            "cilock-only key: attestgate does not implement it and refuses the policy rather than ignore it",
        );
    }

    match &document.expires {
        None => out.push(
            Severity::Error,
            "expires",
            "no expiry: witness treats the policy as expired",
        ),
        Some(text) => match super::compiled::parse_time(text) {
            None => out.push(
                Severity::Error,
                "expires",
                format!("{text:?} is not an RFC 3339 time"),
            ),
            Some(expires) => {
                let days = (expires - now).whole_days();
                if expires < now {
                    out.push(
                        Severity::Error,
                        "expires",
                        format!("expired {} days ago ({text})", -days),
                    );
                } else if days < 30 {
                    out.push(
                        Severity::Warning,
                        "expires",
                        format!("expires in {days} days ({text})"),
                    );
                } else {
                    out.push(
                        Severity::Info,
                        "expires",
                        format!("expires {text} ({days} days left)"),
                    );
                }
            }
        },
    }

    if document.steps.is_empty() {
        out.push(
            Severity::Error,
            "steps",
            "no steps: the policy can never pass",
        );
    }
    for (id, root) in &document.roots {
        check_certificate(&format!("roots.{id}"), root, out);
    }
    for (id, root) in &document.timestampauthorities {
        check_certificate(&format!("timestampauthorities.{id}"), root, out);
    }
}

/// A root must be base64 of PEM certificate text; placeholders are caught here.
fn check_certificate(location: &str, root: &Root, out: &mut Findings) {
    let entries = std::iter::once((location.to_string() + ".certificate", &root.certificate))
        .chain(
            root.intermediates
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{location}.intermediates[{i}]"), c)),
        );
    for (where_, value) in entries {
        let is_pem = decode_base64(value)
            .ok()
            .is_some_and(|pem| pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
        if !is_pem {
            out.push(
                Severity::Error,
                where_,
                "not base64 of a PEM certificate (a placeholder?): the policy cannot load",
            );
        }
    }
}

fn check_step(document: &PolicyDocument, key: &str, step: &Step, out: &mut Findings) {
    let at = format!("steps.{key}");
    if step.name != key {
        out.push(
            Severity::Error,
            &at,
            format!("step key {key:?} differs from its name {:?}; witness would skip its collections silently", step.name),
        );
    }
    let kinds: Vec<&str> = step.attestations.iter().map(|a| a.kind.as_str()).collect();
    out.push(
        Severity::Info,
        &at,
        format!(
            "requires {}",
            if kinds.is_empty() {
                "nothing".into()
            } else {
                kinds.join(", ")
            }
        ),
    );
    if step.attestations.is_empty() {
        out.push(
            Severity::Error,
            &at,
            "requires no attestation: go-witness v0.12 fails every collection",
        );
    }
    if step.functionaries.is_empty() {
        out.push(
            Severity::Error,
            &at,
            "has no functionaries: nobody can sign it",
        );
    }
    for from in &step.artifacts_from {
        if !document.steps.contains_key(from) {
            out.push(
                Severity::Error,
                format!("{at}.artifactsFrom"),
                format!("{from:?} is not a step of the policy"),
            );
        }
    }

    for (i, f) in step.functionaries.iter().enumerate() {
        let fat = format!("{at}.functionaries[{i}]");
        if !f.publickeyid.is_empty()
            && !document
                .publickeys
                .values()
                .any(|k| k.keyid == f.publickeyid)
        {
            out.push(
                Severity::Warning,
                &fat,
                format!("key id {} is not in publickeys: only a certificate signer with that leaf key can match", f.publickeyid),
            );
        }
        let Some(c) = &f.cert_constraint else {
            continue;
        };
        if document.timestampauthorities.is_empty() && !c.roots.is_empty() {
            out.push(
                Severity::Warning,
                &fat,
                "certificate functionary without a timestamp authority: certificates are checked at verification time, so short-lived (Fulcio) certificates stop verifying minutes after signing",
            );
        }
        for root in c.roots.iter().filter(|r| *r != "*") {
            if !document.roots.contains_key(root) {
                out.push(
                    Severity::Warning,
                    &fat,
                    format!("root id {root:?} is not in roots and is ignored"),
                );
            }
        }
        if c.roots.is_empty() && f.publickeyid.is_empty() {
            out.push(
                Severity::Error,
                &fat,
                "certificate constraint without roots never matches",
            );
        }
    }

    for (i, attestation) in step.attestations.iter().enumerate() {
        let aat = format!("{at}.attestations[{i}]");
        let known = EXTERNAL_TYPES.contains(&attestation.kind.as_str())
            || types::attestor_name(&attestation.kind)
                .is_some_and(|(n, _)| KNOWN_ATTESTORS.contains(&n));
        if !known {
            out.push(
                Severity::Warning,
                &aat,
                format!("{:?} is not a known attestor type", attestation.kind),
            );
        }
        check_rego(&aat, &attestation.kind, &attestation.regopolicies, out);
    }
}

/// Compiles the modules and probes them with an empty attestation: a module that allows it
/// passes whenever the fields it reads are missing, which is rarely what its author meant, and
/// one that calls a function the engine lacks (`http.send`, `opa.runtime`) fails wherever the
/// call is reached. The probe gets the Rego time budget of one verification.
fn check_rego(at: &str, kind: &str, policies: &[super::document::RegoPolicy], out: &mut Findings) {
    let modules = match RegoModules::compile(policies, super::rego::DEFAULT_REGO_TIME_LIMIT) {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            out.push(
                Severity::Error,
                format!("{at}.regopolicies"),
                format!("{e}: every collection will fail"),
            );
            return;
        }
    };
    let names = modules.names().join(", ");
    let budget = RegoBudget::new(super::rego::DEFAULT_REGO_BUDGET);
    let outcome = modules.evaluate(&serde_json::json!({}), &budget);
    let missing = outcome.missing_functions();
    match outcome {
        RegoOutcome::Allowed => {
            let fields = input_paths(policies);
            let detail = if fields.is_empty() {
                String::new()
            } else {
                format!(" (it reads {})", fields.join(", "))
            };
            out.push(
                Severity::Warning,
                format!("{at}.regopolicies"),
                format!("rego {names:?} allows a {kind} attestation whose fields are missing{detail}: add a deny rule for the missing case"),
            );
        }
        RegoOutcome::Failed(detail) if !missing.is_empty() => out.push(
            Severity::Error,
            format!("{at}.regopolicies"),
            format!(
                "rego {names:?} uses a builtin attestgate does not provide: {} (or a function no module defines); every evaluation that reaches the call fails, as on an empty attestation ({detail})",
                missing.join(", ")
            ),
        ),
        RegoOutcome::Failed(detail) => out.push(
            Severity::Warning,
            format!("{at}.regopolicies"),
            format!("rego {names:?} fails on an empty attestation ({detail}); check it handles missing fields"),
        ),
        RegoOutcome::Denied(_) => {}
    }
}

/// The `input.a.b.c` paths a set of modules reads, for messages.
fn input_paths(policies: &[super::document::RegoPolicy]) -> Vec<String> {
    let mut paths = Vec::new();
    for policy in policies {
        let Some(source) = decode_base64(&policy.module)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        else {
            continue;
        };
        let mut rest = source.as_str();
        while let Some(pos) = rest.find("input.") {
            let tail = rest.get(pos..).unwrap_or_default();
            let path: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            let path = path.trim_end_matches('.').to_string();
            if !paths.contains(&path) {
                paths.push(path);
            }
            rest = tail.get(6..).unwrap_or_default();
        }
    }
    // Keep the most specific paths: `input.jwt.claims.ref` makes `input.jwt.claims` redundant.
    let all = paths.clone();
    paths.retain(|p| {
        !all.iter()
            .any(|q| q.len() > p.len() && q.starts_with(&format!("{p}.")))
    });
    paths
}

/// Loads the policy as verification would, for what the checks above do not cover (keys and
/// their ids, certificates).
fn check_loads(document: &PolicyDocument, out: &mut Findings) {
    match Policy::compile(document.clone(), PolicyOptions::default()) {
        Ok(_) => {}
        // Already reported above, with more detail.
        Err(
            PolicyError::NoSteps
            | PolicyError::StepName { .. }
            | PolicyError::Expires(_)
            | PolicyError::CilockOnly(_)
            | PolicyError::NoAttestations(_)
            | PolicyError::UnknownArtifactsFrom { .. }
            | PolicyError::CaseVariant(_),
        ) => {}
        Err(e) => out.push(
            Severity::Error,
            "",
            format!("policy does not load: {}", crate::display_chain(&e)),
        ),
    }
}

#[cfg(test)]
mod rego_tests {
    use super::*;
    use crate::encoding::encode_base64;

    fn rego_findings(source: &str) -> Vec<Finding> {
        let policies = [super::super::document::RegoPolicy {
            name: "m".into(),
            module: encode_base64(source.as_bytes()),
        }];
        let mut out = Findings::default();
        check_rego("steps.s.attestations[0]", "kind", &policies, &mut out);
        out.0
    }

    #[test]
    fn builtins_the_engine_lacks_are_errors() {
        for (call, name) in [
            (
                "http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"})",
                "http.send",
            ),
            ("opa.runtime()", "opa.runtime"),
        ] {
            let found = rego_findings(&format!(
                "package p\ndeny[m] {{ r := {call}; m := \"x\" }}\n"
            ));
            assert_eq!(found.len(), 1, "{found:#?}");
            assert_eq!(found[0].severity, Severity::Error, "{found:#?}");
            assert!(
                found[0].message.contains(&format!(
                    "uses a builtin attestgate does not provide: {name}"
                )),
                "{found:#?}"
            );
        }
    }

    #[test]
    fn other_probe_failures_stay_warnings_and_recursion_is_an_error() {
        let found = rego_findings("package p\ndeny[m] { x := 1 / 0; m := \"x\" }\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].severity, Severity::Warning, "{found:#?}");
        assert!(found[0].message.contains("divide by zero"), "{found:#?}");

        let found =
            rego_findings("package p\nf(x) = y { y := f(x) }\ndeny[m] { f(1); m := \"x\" }\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].severity, Severity::Error, "{found:#?}");
        assert!(
            found[0].message.contains("data.p.f -> data.p.f"),
            "{found:#?}"
        );
    }
}
