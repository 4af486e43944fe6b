//! Verifying evidence against a policy: the search over subjects and back-references, the
//! per-candidate checks, and `artifactsFrom`.
//!
//! The search is a deterministic fixed point: every round asks the source for each step's
//! collections carrying any digest known so far, and the back-references of collections that
//! pass add digests for the next round, until a round adds nothing. witness instead runs three
//! rounds over the steps in random order, so a chain deeper than two hops may or may not be
//! found there; here it always is, and the verdict never depends on iteration order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::compiled::{CompiledStep, Policy};
use super::functionary;
use super::rego::{RegoBudget, RegoOutcome, DEFAULT_REGO_BUDGET};
use super::result::{PassedCollection, Reason, Rejected, StepResult, Verification};
use super::signed::SignedPolicy;
use crate::crypto::{format_time, verify_envelope, VerifiedSigner};
use crate::dsse::{DecodedEnvelope, INTOTO_PAYLOAD_TYPE};
use crate::evidence::{Candidate, EvidenceRef, EvidenceSource, SourceError, StepQuery};
use crate::intoto::{types, Artifacts, Collection, Statement};

/// Hard cap on search rounds; each round that continues has added at least one digest, so the
/// cap only matters for adversarial evidence sets.
const MAX_ROUNDS: usize = 64;

/// Inputs of one verification besides the policy and the evidence.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The verification time: the policy's expiry, and certificate chains that no trusted
    /// timestamp dates, are judged at it.
    pub now: OffsetDateTime,
    /// Total wall-clock time all the Rego evaluations of this verification may take together
    /// (each one is also bounded by the policy's per-evaluation limit); once it is spent,
    /// further evaluations fail. Default: [`DEFAULT_REGO_BUDGET`] (10 s).
    pub rego_budget: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            now: OffsetDateTime::now_utc(),
            rego_budget: DEFAULT_REGO_BUDGET,
        }
    }
}

/// Reads a subject as given on a command line: `alg:hex` or bare hex. The algorithm is dropped
/// (evidence is matched by digest value) and the value is lowercased.
///
/// # Errors
/// An empty value, or one that is not an even number of hex digits of at least 32.
pub fn parse_subject(text: &str) -> Result<String, String> {
    let value = text.rsplit_once(':').map_or(text, |(_, v)| v).trim();
    let valid = value.len() >= 32
        && value.len().is_multiple_of(2)
        && value.bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(format!(
            "subject {text:?} is not a digest (alg:hex or hex, at least 32 hex digits)"
        ))
    }
}

/// A collection that passed its step's checks, kept with what `artifactsFrom` needs (the same
/// collection the result holds, shared).
// Known shortcoming: an accepted collection's bodies are slices of its statement's payload, so
// the whole payload text stays in memory until the verification's result is dropped.
struct Accepted {
    result: PassedCollection,
    collection: Arc<Collection>,
}

#[derive(Default)]
struct StepState {
    accepted: Vec<Accepted>,
    rejected: Vec<Rejected>,
}

/// Verifies the evidence `source` holds for `seeds` against `signed`.
///
/// # Errors
/// Only when the source cannot answer; every property of the evidence itself is reported in
/// the returned [`Verification`].
pub async fn verify<S: EvidenceSource>(
    signed: &SignedPolicy,
    source: &S,
    seeds: &[String],
    options: &VerifyOptions,
) -> Result<Verification, SourceError> {
    let policy = &signed.policy;
    let mut verification = Verification {
        passed: false,
        policy_digest: signed.digest.clone(),
        policy_failure: None,
        seeds: seeds.to_vec(),
        steps: Vec::new(),
        ignored_evidence: Vec::new(),
    };
    if policy.is_expired(options.now) {
        verification.policy_failure = Some(match &policy.document.expires {
            Some(e) => format!("policy expired at {e}"),
            None => "policy has no expiry date, so it is treated as expired".into(),
        });
        return Ok(verification);
    }

    let mut states: BTreeMap<&str, StepState> = policy
        .steps
        .keys()
        .map(|k| (k.as_str(), StepState::default()))
        .collect();
    let budget = RegoBudget::new(options.rego_budget);
    search(policy, source, seeds, options.now, &budget, &mut states).await?;
    check_artifacts_from(policy, &mut states);

    verification.steps = states
        .into_iter()
        .map(|(name, state)| StepResult {
            step: name.to_string(),
            passed: !state.accepted.is_empty(),
            passed_collections: state.accepted.into_iter().map(|a| a.result).collect(),
            rejected: state.rejected,
        })
        .collect();
    verification.passed = verification.steps.iter().all(|s| s.passed);
    Ok(verification)
}

async fn search<S: EvidenceSource>(
    policy: &Policy,
    source: &S,
    seeds: &[String],
    now: OffsetDateTime,
    budget: &RegoBudget,
    states: &mut BTreeMap<&str, StepState>,
) -> Result<(), SourceError> {
    let mut digests: BTreeSet<String> = seeds.iter().cloned().collect();
    let mut seen: BTreeSet<EvidenceRef> = BTreeSet::new();
    if digests.is_empty() {
        return Ok(());
    }

    for _round in 0..MAX_ROUNDS {
        let queries: Vec<StepQuery> = policy
            .steps
            .values()
            .map(|step| StepQuery {
                step: step.name.clone(),
                digests: digests.clone(),
                types: step.attestations.iter().map(|a| a.kind.clone()).collect(),
                preferred_keyids: step
                    .functionaries
                    .iter()
                    .filter(|f| !f.publickeyid.is_empty())
                    .map(|f| f.publickeyid.clone())
                    .collect(),
            })
            .collect();
        let answers = source.search(&queries, &seen).await?;

        let before = digests.len();
        for (step, candidates) in policy.steps.values().zip(answers) {
            let Some(state) = states.get_mut(step.name.as_str()) else {
                continue;
            };
            for candidate in candidates {
                if !seen.insert(candidate.reference.clone()) {
                    continue;
                }
                match check_candidate(policy, step, &candidate, now, budget) {
                    Ok(accepted) => {
                        digests.extend(accepted.back_references);
                        state.accepted.push(accepted.accepted);
                    }
                    Err(reasons) => state.rejected.push(Rejected {
                        reference: candidate.reference,
                        reasons,
                    }),
                }
            }
        }
        if digests.len() == before {
            break;
        }
    }
    Ok(())
}

struct CheckedCandidate {
    accepted: Accepted,
    back_references: Vec<String>,
}

/// Every check of one candidate for one step, in witness's order; the first failing stage
/// ends the check, and all failures within a stage are reported together.
fn check_candidate(
    policy: &Policy,
    step: &CompiledStep,
    candidate: &Candidate,
    now: OffsetDateTime,
    budget: &RegoBudget,
) -> Result<CheckedCandidate, Vec<Reason>> {
    let one = |r: Reason| vec![r];

    // 1. The envelope and its signatures, against every key the policy trusts.
    if let Some(problem) = &candidate.fetch_error {
        return Err(one(Reason::Envelope {
            detail: problem.clone(),
        }));
    }
    let envelope = DecodedEnvelope::from_json(&candidate.bytes).map_err(|e| {
        one(Reason::Envelope {
            detail: e.to_string(),
        })
    })?;
    if envelope.envelope.payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(one(Reason::Envelope {
            detail: format!(
                "payload type {:?} is not {INTOTO_PAYLOAD_TYPE}",
                envelope.envelope.payload_type
            ),
        }));
    }
    let signatures = verify_envelope(&envelope, &policy.evidence_trust, now);
    if signatures.verified.is_empty() {
        return Err(one(Reason::Signature {
            failures: signatures.failures,
        }));
    }

    // 2. The statement and its collection. The payload moves into the statement, whose
    // attestation bodies stay slices of it: only the bodies a check reads are ever parsed.
    let payload = envelope.payload.into_vec();
    let mut statement = Statement::from_payload(payload).map_err(|e| {
        one(Reason::Statement {
            detail: crate::display_chain(&e),
        })
    })?;
    if !types::is_collection_predicate(&statement.predicate_type) {
        return Err(one(Reason::PredicateType {
            found: statement.predicate_type,
        }));
    }
    let predicate = std::mem::take(&mut statement.predicate);
    let collection = Collection::from_predicate_owned(predicate).map_err(|e| {
        one(Reason::Statement {
            detail: crate::display_chain(&e),
        })
    })?;
    if collection.name != step.name {
        return Err(one(Reason::StepName {
            found: collection.name,
        }));
    }

    // 3. A verified signer must be a functionary of this step.
    let functionaries: Vec<_> = signatures
        .verified
        .iter()
        .filter(|s| {
            step.functionaries
                .iter()
                .any(|f| functionary::accepts(f, s))
        })
        .cloned()
        .collect();
    if functionaries.is_empty() {
        let mut details: Vec<String> = signatures
            .verified
            .iter()
            .flat_map(|s| {
                step.functionaries
                    .iter()
                    .filter_map(|f| functionary::mismatch(f, s))
            })
            .collect();
        details.dedup();
        return Err(one(Reason::NotAFunctionary {
            signers: signatures
                .verified
                .iter()
                .map(|s| s.keyid().clone())
                .collect(),
            details,
        }));
    }

    // 4. Every required attestation present, and its Rego satisfied for each attestor of it.
    let reasons = check_attestations(policy, step, &collection, budget);
    if !reasons.is_empty() {
        return Err(reasons);
    }

    let back_references = collection.back_reference_values(&statement);
    let collection = Arc::new(collection);
    Ok(CheckedCandidate {
        accepted: Accepted {
            result: PassedCollection {
                reference: candidate.reference.clone(),
                signed_at: trusted_signing_time(&functionaries),
                functionaries,
                subjects: statement.subject,
                collection: Some(collection.clone()),
            },
            collection,
        },
        back_references,
    })
}

/// The earliest timestamp-authority time among the signers, as RFC 3339.
fn trusted_signing_time(signers: &[VerifiedSigner]) -> Option<String> {
    signers
        .iter()
        .filter_map(|s| match s {
            VerifiedSigner::Certificate {
                trusted_time,
                timestamp_authority: Some(_),
                ..
            } => Some(*trusted_time),
            _ => None,
        })
        .min()
        .map(format_time)
}

fn check_attestations(
    policy: &Policy,
    step: &CompiledStep,
    collection: &Collection,
    budget: &RegoBudget,
) -> Vec<Reason> {
    let mut reasons = Vec::new();
    for required in &step.attestations {
        let entries: Vec<_> = collection
            .entries_of(&required.kind, policy.options.type_aliases)
            .collect();
        if entries.is_empty() {
            reasons.push(Reason::MissingAttestation {
                kind: required.kind.clone(),
            });
            continue;
        }
        let modules = match &required.rego {
            Ok(Some(modules)) => modules,
            Ok(None) => continue,
            Err(e) => {
                reasons.push(Reason::RegoFailed {
                    kind: required.kind.clone(),
                    detail: e.to_string(),
                });
                continue;
            }
        };
        for entry in entries {
            match modules.evaluate_json(entry.attestation.as_str(), budget) {
                RegoOutcome::Allowed => {}
                RegoOutcome::Denied(messages) => reasons.push(Reason::RegoDenied {
                    kind: required.kind.clone(),
                    modules: modules.names().to_vec(),
                    messages,
                }),
                RegoOutcome::Failed(detail) => reasons.push(Reason::RegoFailed {
                    kind: required.kind.clone(),
                    detail,
                }),
            }
        }
    }
    reasons
}

/// Applies `artifactsFrom` until nothing changes: a collection whose materials do not match
/// any accepted collection of an upstream step is moved to the rejected list, which may in turn
/// break edges further downstream. Removal only ever shrinks the accepted sets, so the result
/// does not depend on the order steps are visited in.
fn check_artifacts_from(policy: &Policy, states: &mut BTreeMap<&str, StepState>) {
    loop {
        let mut failures: Vec<(String, usize, Vec<Reason>)> = Vec::new();
        for step in policy
            .steps
            .values()
            .filter(|s| !s.artifacts_from.is_empty())
        {
            let Some(state) = states.get(step.name.as_str()) else {
                continue;
            };
            for (index, accepted) in state.accepted.iter().enumerate() {
                let reasons = edge_failures(step, &accepted.collection, states);
                if !reasons.is_empty() {
                    failures.push((step.name.clone(), index, reasons));
                }
            }
        }
        if failures.is_empty() {
            return;
        }
        // Remove from the back so earlier indices stay valid.
        for (step, index, reasons) in failures.into_iter().rev() {
            let Some(state) = states.get_mut(step.as_str()) else {
                continue;
            };
            if index < state.accepted.len() {
                let removed = state.accepted.remove(index);
                state.rejected.push(Rejected {
                    reference: removed.result.reference,
                    reasons,
                });
            }
        }
    }
}

fn edge_failures(
    step: &CompiledStep,
    collection: &Collection,
    states: &BTreeMap<&str, StepState>,
) -> Vec<Reason> {
    let materials = match collection.materials() {
        Ok(m) => m,
        Err(e) => {
            return vec![Reason::ArtifactsFrom {
                from: step.artifacts_from.join(", "),
                detail: format!("materials unreadable: {e}"),
            }]
        }
    };
    let mut reasons = Vec::new();
    for from in &step.artifacts_from {
        let upstream = states
            .get(from.as_str())
            .map(|s| s.accepted.as_slice())
            .unwrap_or(&[]);
        if upstream.is_empty() {
            reasons.push(Reason::ArtifactsFrom {
                from: from.clone(),
                detail: "the upstream step has no passed collection".into(),
            });
            continue;
        }
        let mut details = Vec::new();
        let holds = upstream.iter().any(|u| match u.collection.artifacts() {
            Ok(artifacts) => match compare(&materials, &artifacts) {
                Ok(()) => true,
                Err(d) => {
                    details.push(format!("{}: {d}", u.result.reference));
                    false
                }
            },
            Err(e) => {
                details.push(format!("{}: artifacts unreadable: {e}", u.result.reference));
                false
            }
        });
        if !holds {
            reasons.push(Reason::ArtifactsFrom {
                from: from.clone(),
                detail: details.join("; "),
            });
        }
    }
    reasons
}

/// Every path both sides list must have matching digests, and at least one path must be shared.
fn compare(materials: &Artifacts, artifacts: &Artifacts) -> Result<(), String> {
    let mut shared = 0usize;
    for (path, digest) in materials {
        let Some(theirs) = artifacts.get(path) else {
            continue;
        };
        if !digest.matches(theirs) {
            return Err(format!("{path:?} differs"));
        }
        shared += 1;
    }
    if shared == 0 {
        return Err("no material of this step is an artifact of that step".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_accept_prefix_or_bare_hex() {
        let hex = "C5BABB1A4B29094923DE98C08110331A7AEFFB0218C8988DAB1B7DA36E3AE42E";
        assert_eq!(
            parse_subject(&format!("sha256:{hex}")).unwrap(),
            hex.to_lowercase()
        );
        assert_eq!(parse_subject(hex).unwrap(), hex.to_lowercase());
        assert!(parse_subject("sha256:").is_err());
        assert!(parse_subject("sha256:xyz").is_err());
        assert!(parse_subject("abc").is_err());
    }
}
