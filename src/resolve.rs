//! What the webhook will use for one image: the image resolved at its registry, the subjects
//! evidence is searched with (its identities, or its commit), the evidence a policy saw, and
//! whether that evidence passed and is bound to this image.
//!
//! `attestgate resolve` prints a [`Resolution`]; the webhook decides on the same value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::time::Instant;

use time::OffsetDateTime;

use crate::crypto::VerifiedSigner;
use crate::dsse::DecodedEnvelope;
use crate::evidence::{Candidate, EvidenceRef, EvidenceSource, SourceError, StepQuery};
use crate::image::binding::{self, Binding, BindingError};
use crate::image::{
    IdentityKind, ImageReference, Registry, RegistryCredentials, RegistryError, ResolvedImage,
};
use crate::intoto::{Collection, Statement};
use crate::policy::{verify, SignedPolicy, Verification, VerifyOptions};

/// One image, resolved, with its evidence and (under a policy) its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The reference as written.
    pub reference: String,
    /// The digest it pins (`sha256:…`).
    pub digest: String,
    /// Every digest that denotes the image.
    pub identities: Vec<Identity>,
    /// The commit of the revision label, when the labels agree on one.
    pub commit: Option<String>,
    /// The source repository label, when the labels agree on one.
    pub source: Option<String>,
    /// The digest values the evidence search started from.
    pub subjects: Vec<String>,
    /// Every candidate the verification saw, passed and rejected (empty without a policy).
    pub evidence: Vec<EvidenceItem>,
    /// The verdict, under a policy.
    pub verdict: Option<Verdict>,
}

/// A digest that denotes the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// `pinned`, `platform_manifest` or `config`.
    pub kind: &'static str,
    /// `sha256:…`.
    pub digest: String,
    /// The platform, for manifests and configs.
    pub platform: Option<String>,
}

/// One candidate collection the verification saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceItem {
    /// The Archivista gitoid, for evidence from Archivista.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitoid: Option<String>,
    /// The file, for local evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The policy step it was a candidate for.
    pub step: String,
    /// The attestation types of its collection, when its payload could be read.
    pub types: Vec<String>,
    /// Whether it satisfied the step.
    pub passed: bool,
    /// Why it was rejected (empty when it passed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// Whether the evidence passed the policy and is bound to the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The policy passed.
    pub passed: bool,
    /// The passing evidence is bound to this image (false when the policy failed).
    pub bound: bool,
    /// Why not, when either is false.
    pub reason: Option<String>,
    /// Key ids of the functionaries that signed passing evidence.
    pub signers: Vec<String>,
    /// Until when the verdict holds (the policy's expiry, a certificate checked at the
    /// verification time); `None` without a bound.
    #[serde(skip)]
    pub valid_until: Option<OffsetDateTime>,
}

impl Resolution {
    /// Resolved, and under a policy passed and bound.
    pub fn admitted(&self) -> bool {
        self.verdict.as_ref().is_none_or(|v| v.passed && v.bound)
    }
}

/// Why an image could not be resolved at all.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The registry failed.
    #[error("cannot resolve the image")]
    Registry(#[source] RegistryError),
    /// Commit binding, and the image has no usable commit.
    #[error("commit binding needs the image's commit")]
    Commit(#[source] BindingError),
    /// The evidence source could not answer.
    #[error("cannot search evidence")]
    Source(#[source] SourceError),
    /// The deadline passed while searching evidence.
    #[error("the deadline passed while searching evidence")]
    Deadline,
}

impl ResolveError {
    /// Whether the image could not be checked (exit 3): the registry could not be reached,
    /// refused the credentials, or answered something unusable (too large, malformed, not the
    /// digest it named), or an evidence source failed. The webhook answers all of these as
    /// verification errors, not violations, and a soft-fail gate must be able to tell them
    /// apart. Only what the image itself says (its commit labels) fails it (exit 1).
    pub fn could_not_check(&self) -> bool {
        match self {
            Self::Registry(_) | Self::Source(_) | Self::Deadline => true,
            Self::Commit(_) => false,
        }
    }
}

/// Resolves `image`, computes its subjects under `binding`, and with a policy verifies the
/// evidence `source` holds for them and checks the binding when the policy passed.
///
/// # Errors
/// See [`ResolveError`]. A policy or binding that fails is a [`Verdict`], not an error.
pub async fn resolve(
    image: &ImageReference,
    registry: &Registry,
    credentials: &RegistryCredentials,
    binding: &Binding,
    policy: Option<&SignedPolicy>,
    source: &(impl EvidenceSource + Sync),
    deadline: Instant,
) -> Result<Resolution, ResolveError> {
    let resolved = registry
        .resolve(image, credentials, deadline)
        .await
        .map_err(ResolveError::Registry)?;
    let mut resolution = describe(image, &resolved, binding)?;
    if let Some(policy) = policy {
        judge(
            &mut resolution,
            &resolved,
            binding,
            policy,
            source,
            deadline,
        )
        .await?;
    }
    Ok(resolution)
}

/// The resolution of an image already resolved at its registry, without a verdict.
///
/// # Errors
/// [`ResolveError::Commit`] when commit binding finds no usable commit.
pub fn describe(
    image: &ImageReference,
    resolved: &ResolvedImage,
    binding: &Binding,
) -> Result<Resolution, ResolveError> {
    let (commit, label) = match resolved.source_info() {
        Ok(info) => (info.commit, info.source),
        Err(_) => (None, None),
    };
    Ok(Resolution {
        reference: image.to_string(),
        digest: resolved.digest.to_string(),
        identities: identities(resolved),
        commit,
        source: label,
        subjects: seeds(binding, resolved)?,
        evidence: Vec::new(),
        verdict: None,
    })
}

/// Verifies the evidence `source` holds for the resolution's subjects against `policy`, checks
/// the binding when it passed, and fills in the evidence and the verdict.
///
/// # Errors
/// The source failed, or the deadline passed.
pub async fn judge(
    resolution: &mut Resolution,
    resolved: &ResolvedImage,
    binding: &Binding,
    policy: &SignedPolicy,
    source: &(impl EvidenceSource + Sync),
    deadline: Instant,
) -> Result<(), ResolveError> {
    let recording = Recording {
        inner: source,
        seen: Mutex::default(),
    };
    let verification = tokio::time::timeout_at(
        deadline,
        verify(
            policy,
            &recording,
            &resolution.subjects,
            &VerifyOptions::default(),
        ),
    )
    .await
    .map_err(|_| ResolveError::Deadline)?
    .map_err(ResolveError::Source)?;
    let bytes = recording
        .seen
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    resolution.evidence = evidence(&verification, &bytes);
    let mut verdict = verdict(binding, resolved, &verification);
    verdict.valid_until = valid_until(policy, &verification);
    verdict.signers = signers(&verification);
    resolution.verdict = Some(verdict);
    Ok(())
}

/// Until when the verdict holds: the policy's expiry, and the `notAfter` of every certificate
/// that was checked at the verification time (one checked at a trusted timestamp stays valid).
fn valid_until(policy: &SignedPolicy, verification: &Verification) -> Option<OffsetDateTime> {
    let certificates = verification
        .steps
        .iter()
        .flat_map(|s| &s.passed_collections)
        .flat_map(|c| &c.functionaries)
        .filter_map(|signer| match signer {
            VerifiedSigner::Certificate {
                timestamp_authority: None,
                valid_until,
                ..
            } => Some(*valid_until),
            _ => None,
        });
    policy.policy.expires.into_iter().chain(certificates).min()
}

/// The key ids of the functionaries that signed passing evidence.
fn signers(verification: &Verification) -> Vec<String> {
    let keyids: BTreeSet<String> = verification
        .steps
        .iter()
        .flat_map(|s| &s.passed_collections)
        .flat_map(|c| &c.functionaries)
        .map(|signer| signer.keyid().0.clone())
        .collect();
    keyids.into_iter().collect()
}

/// The digest values to search with: every identity's hex, or the commit.
fn seeds(binding: &Binding, image: &ResolvedImage) -> Result<Vec<String>, ResolveError> {
    match binding {
        Binding::Digest => Ok(image
            .identities()
            .iter()
            .map(|i| i.digest.hex().to_ascii_lowercase())
            .collect()),
        Binding::Commit { .. } => Ok(vec![binding::commit_of(image)
            .map_err(ResolveError::Commit)?
            .to_ascii_lowercase()]),
    }
}

fn identities(image: &ResolvedImage) -> Vec<Identity> {
    image
        .identities()
        .into_iter()
        .map(|i| Identity {
            kind: match i.kind {
                IdentityKind::Pinned => "pinned",
                IdentityKind::PlatformManifest => "platform_manifest",
                IdentityKind::Config => "config",
            },
            digest: i.digest.to_string(),
            platform: i.platform,
        })
        .collect()
}

fn verdict(binding: &Binding, image: &ResolvedImage, verification: &Verification) -> Verdict {
    if !verification.passed {
        return Verdict {
            passed: false,
            bound: false,
            reason: Some(policy_failure(verification)),
            signers: Vec::new(),
            valid_until: None,
        };
    }
    match binding::check(binding, image, verification) {
        Ok(_) => Verdict {
            passed: true,
            bound: true,
            reason: None,
            signers: Vec::new(),
            valid_until: None,
        },
        Err(e) => Verdict {
            passed: true,
            bound: false,
            reason: Some(format!("not bound: {}", crate::display_chain(&e))),
            signers: Vec::new(),
            valid_until: None,
        },
    }
}

/// One line on why the policy failed: the policy itself, or each failing step.
fn policy_failure(verification: &Verification) -> String {
    if let Some(failure) = &verification.policy_failure {
        return format!("policy failed: {failure}");
    }
    let steps: Vec<String> = verification
        .steps
        .iter()
        .filter(|s| !s.passed)
        .map(|s| {
            if s.rejected.is_empty() {
                format!(
                    "step {}: no collection names this image's subjects ({})",
                    s.step,
                    if verification.seeds.len() == 1 {
                        "the commit"
                    } else {
                        "its digests"
                    }
                )
            } else {
                let reasons: Vec<String> = s
                    .rejected
                    .iter()
                    .flat_map(|r| {
                        r.reasons
                            .iter()
                            .map(move |x| format!("{}: {x}", r.reference))
                    })
                    .collect();
                format!("step {}: {}", s.step, reasons.join("; "))
            }
        })
        .collect();
    format!("policy failed: {}", steps.join("; "))
}

fn evidence(
    verification: &Verification,
    bytes: &BTreeMap<EvidenceRef, Arc<[u8]>>,
) -> Vec<EvidenceItem> {
    let item = |reference: &EvidenceRef,
                step: &str,
                collection: Option<&Collection>,
                reasons: Vec<String>| {
        let types = match collection {
            Some(c) => c.attestations.iter().map(|a| a.kind.clone()).collect(),
            None => bytes
                .get(reference)
                .map(|b| types_of(b))
                .unwrap_or_default(),
        };
        let (gitoid, path) = match reference {
            EvidenceRef::Gitoid(g) => (Some(g.clone()), None),
            EvidenceRef::File(p) => (None, Some(p.clone())),
        };
        EvidenceItem {
            gitoid,
            path,
            step: step.to_string(),
            types,
            passed: reasons.is_empty(),
            reasons,
        }
    };
    let mut out = Vec::new();
    for step in &verification.steps {
        for passed in &step.passed_collections {
            out.push(item(
                &passed.reference,
                &step.step,
                passed.collection.as_deref(),
                Vec::new(),
            ));
        }
        for rejected in &step.rejected {
            let mut reasons: Vec<String> = rejected.reasons.iter().map(|r| r.to_string()).collect();
            if reasons.is_empty() {
                reasons.push("rejected".into());
            }
            out.push(item(&rejected.reference, &step.step, None, reasons));
        }
    }
    out
}

/// The attestation types of an envelope's collection, read without trusting it (for the
/// report only); empty when the bytes are not a readable collection.
fn types_of(bytes: &[u8]) -> Vec<String> {
    let Ok(envelope) = DecodedEnvelope::from_json(bytes) else {
        return Vec::new();
    };
    let Ok(statement) = Statement::from_json(&envelope.payload) else {
        return Vec::new();
    };
    Collection::from_predicate_owned(statement.predicate)
        .map(|c| c.attestations.into_iter().map(|a| a.kind).collect())
        .unwrap_or_default()
}

/// A source that keeps the bytes of every candidate it hands out, so the report can name the
/// attestation types of rejected candidates too.
struct Recording<'a, S> {
    inner: &'a S,
    seen: Mutex<BTreeMap<EvidenceRef, Arc<[u8]>>>,
}

impl<S: EvidenceSource + Sync> EvidenceSource for Recording<'_, S> {
    async fn search(
        &self,
        queries: &[StepQuery],
        seen: &BTreeSet<EvidenceRef>,
    ) -> Result<Vec<Vec<Candidate>>, SourceError> {
        let answers = self.inner.search(queries, seen).await?;
        let mut kept = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for candidate in answers.iter().flatten() {
            kept.entry(candidate.reference.clone())
                .or_insert_with(|| candidate.bytes.clone());
        }
        Ok(answers)
    }
}
