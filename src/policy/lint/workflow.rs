//! A GitHub Actions workflow read for the cilock / witness steps it runs, so `policy check` can
//! tell which attestation types each step's collection will contain.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{Findings, Severity};
use crate::intoto::types;
use crate::policy::document::PolicyDocument;

/// Action repositories whose steps run `cilock run` / `witness run`.
const RUN_ACTIONS: &[&str] = &["cilock-action", "witness-run-action"];

/// Attestors every run records whether or not they are listed.
const DEFAULT_ATTESTORS: &[&str] = &["material", "command-run", "product"];

/// The workflow could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a GitHub Actions workflow")]
pub struct WorkflowError(#[source] serde_norway::Error);

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    jobs: BTreeMap<String, Job>,
}

#[derive(Deserialize)]
struct Job {
    #[serde(default)]
    steps: Vec<JobStep>,
}

#[derive(Deserialize)]
struct JobStep {
    #[serde(default)]
    uses: Option<String>,
    #[serde(default)]
    with: BTreeMap<String, serde_norway::Value>,
}

/// The witness/cilock runs of a workflow: step name → attestor names.
#[derive(Debug, Clone, Default)]
pub struct Workflow {
    runs: BTreeMap<String, BTreeSet<String>>,
}

impl Workflow {
    /// Reads the runs out of a workflow file's text.
    ///
    /// # Errors
    /// Not YAML of the workflow shape.
    pub fn from_yaml(text: &str) -> Result<Self, WorkflowError> {
        let file: File = serde_norway::from_str(text).map_err(WorkflowError)?;
        let mut runs = BTreeMap::new();
        for step in file.jobs.values().flat_map(|j| &j.steps) {
            let is_run = step
                .uses
                .as_deref()
                .is_some_and(|u| RUN_ACTIONS.iter().any(|a| u.contains(a)));
            let Some(name) = step.with.get("step").and_then(|v| v.as_str()) else {
                continue;
            };
            if !is_run {
                continue;
            }
            let listed = step
                .with
                .get("attestations")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let attestors = listed
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .chain(DEFAULT_ATTESTORS.iter().copied())
                .map(str::to_string)
                .collect();
            runs.insert(name.to_string(), attestors);
        }
        Ok(Self { runs })
    }

    /// Reports policy steps the workflow does not run, and required types a step's run does not
    /// produce (naming the run that does, if any).
    pub(super) fn check(&self, document: &PolicyDocument, out: &mut Findings) {
        for (key, step) in &document.steps {
            let at = format!("steps.{key}");
            let Some(attestors) = self.runs.get(key) else {
                out.push(
                    Severity::Error,
                    &at,
                    format!("the workflow has no cilock/witness run for step {key:?}"),
                );
                continue;
            };
            for (i, attestation) in step.attestations.iter().enumerate() {
                if produces(attestors, &attestation.kind) {
                    continue;
                }
                let elsewhere: Vec<&str> = self
                    .runs
                    .iter()
                    .filter(|(_, a)| produces(a, &attestation.kind))
                    .map(|(n, _)| n.as_str())
                    .collect();
                let hint = if elsewhere.is_empty() {
                    "no run of the workflow produces it".to_string()
                } else {
                    format!("it is produced by the workflow's {} run, which the policy does not require", elsewhere.join(", "))
                };
                out.push(
                    Severity::Error,
                    format!("{at}.attestations[{i}]"),
                    format!(
                        "step {key:?} requires {} but its run records only {}: {hint}",
                        attestation.kind,
                        join(attestors)
                    ),
                );
            }
        }
    }
}

fn join(attestors: &BTreeSet<String>) -> String {
    attestors
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a run with `attestors` records an attestation of type `kind`.
fn produces(attestors: &BTreeSet<String>, kind: &str) -> bool {
    let name = match kind {
        "https://cyclonedx.org/bom" | "https://spdx.dev/Document" => "sbom",
        "https://slsa.dev/provenance/v1.0" => "slsa",
        "https://openvex.dev/ns" => "vex",
        "https://in-toto.io/attestation/link/v0.3" => "link",
        other => match types::attestor_name(other) {
            Some(("commandrun", _)) => "command-run",
            Some((name, _)) => name,
            None => return false,
        },
    };
    attestors.contains(name)
}
