//! A policy document checked and prepared for verification: keys parsed and their ids checked,
//! Rego compiled, expiry parsed, cilock-only features refused.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::document::{Functionary, PolicyDocument, Root};
use super::glob::{Glob, GlobError};
use super::rego::{RegoError, RegoModules, DEFAULT_REGO_TIME_LIMIT};
use crate::crypto::{
    Certificate, EnvelopeTrust, FulcioField, KeyError, KeyId, PublicKey, TimestampAuthority,
    X509Error,
};
use crate::encoding::decode_base64;

/// KMS URI schemes whose key ids are the URI itself rather than a key hash.
const KMS_SCHEMES: &[&str] = &["awskms://", "gcpkms://", "azurekms://", "hashivault://"];

/// Why a policy document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Top-level keys that differ from a field only in case, which witness would read.
    #[error("policy has keys that witness would read as fields (it ignores case): {}", .0.join(", "))]
    CaseVariant(Vec<String>),
    /// A key was supplied for a KMS reference that the policy does not name.
    #[error("a key was supplied for {0:?}, which no policy key names")]
    UnusedKmsKey(String),
    /// The document has no steps (go-witness v0.12 fails such a policy).
    #[error("policy has no steps")]
    NoSteps,
    /// A step's key and its `name` differ; witness would skip its collections silently.
    #[error("step {key:?} has name {name:?}; the key and the name must be equal")]
    StepName {
        /// The key in `steps`.
        key: String,
        /// The `name` field.
        name: String,
    },
    /// `expires` is not an RFC 3339 time.
    #[error("policy expires value {0:?} is not an RFC 3339 time")]
    Expires(String),
    /// A `publickeys` entry's key is not base64 of a PEM public key.
    #[error("policy public key {keyid:?} cannot be loaded")]
    PublicKey {
        /// The entry's key id.
        keyid: String,
        /// The cause.
        #[source]
        source: KeyError,
    },
    /// A `publickeys` entry's key id is not the hash of its key.
    #[error("policy public key id {declared:?} does not match its key, whose id is {computed:?}")]
    KeyIdMismatch {
        /// The declared id.
        declared: String,
        /// The computed id.
        computed: String,
    },
    /// The policy uses a key that only cilock implements; ignoring it would weaken the policy.
    #[error("policy uses cilock-only keys that attestgate does not implement: {}", .0.join(", "))]
    CilockOnly(Vec<String>),
    /// A step requires no attestation (go-witness v0.12 fails every collection for it).
    #[error("step {0:?} requires no attestation")]
    NoAttestations(String),
    /// A step lists an `artifactsFrom` step that is not in the policy.
    #[error("step {step:?} takes artifacts from {from:?}, which is not a step of the policy")]
    UnknownArtifactsFrom {
        /// The downstream step.
        step: String,
        /// The missing upstream step.
        from: String,
    },
    /// A KMS key reference with no embedded key and no operator-supplied key.
    #[error("policy key {0:?} is a KMS reference without an embedded key; supply its public key")]
    UnresolvedKms(String),
    /// The key embedded for a KMS reference differs from the one the operator supplied.
    #[error("policy key {0:?} embeds a different key than the one supplied for it")]
    KmsKeyMismatch(String),
    /// `certConstraint.extensions` names an extension that Fulcio does not define.
    #[error("step {step:?} constrains unknown certificate extension {name:?}")]
    UnknownExtension {
        /// The step.
        step: String,
        /// The key as written.
        name: String,
    },
    /// Two `certConstraint.extensions` keys name the same Fulcio field (`Issuer` and `issuer`);
    /// Go would keep one of them silently.
    #[error(
        "step {step:?} constrains certificate extension {field} twice ({first:?} and {second:?})"
    )]
    DuplicateExtension {
        /// The step.
        step: String,
        /// The Fulcio field.
        field: &'static str,
        /// One key as written.
        first: String,
        /// The other key as written.
        second: String,
    },
    /// A `certConstraint.extensions` value is not a valid glob (upstream panics on it).
    #[error("step {step:?} constrains certificate extension {name:?} with an invalid pattern")]
    ExtensionPattern {
        /// The step.
        step: String,
        /// The key as written.
        name: String,
        /// Why the pattern is invalid.
        #[source]
        source: GlobError,
    },
    /// A `roots` entry's certificate or intermediate cannot be read.
    #[error("policy root {id:?} cannot be loaded")]
    Root {
        /// The root's id.
        id: String,
        /// The cause.
        #[source]
        source: X509Error,
    },
    /// A `timestampauthorities` entry's certificate or intermediate cannot be read.
    #[error("policy timestamp authority {id:?} cannot be loaded")]
    TimestampAuthority {
        /// The authority's id.
        id: String,
        /// The cause.
        #[source]
        source: X509Error,
    },
}

/// Knobs of how a policy is prepared and applied.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// Accept an attestation type's witness.dev / aflock.ai twin (cilock behaviour).
    pub type_aliases: bool,
    /// Time limit for one Rego evaluation.
    pub rego_time_limit: Duration,
    /// Public keys of KMS key references, supplied by the operator for offline verification
    /// (a policy may name a KMS key by URI without embedding its public half).
    pub kms_keys: BTreeMap<String, PublicKey>,
    /// Let certificate-signed evidence count when the policy trusts no timestamp authority, its
    /// chain checked at the verification time (witness's behaviour; off by default).
    pub untimestamped_certificates: bool,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            type_aliases: true,
            rego_time_limit: DEFAULT_REGO_TIME_LIMIT,
            kms_keys: BTreeMap::new(),
            untimestamped_certificates: false,
        }
    }
}

/// One required attestation, with its Rego compiled (or the compile error, which fails every
/// collection of the step with that reason, as witness would).
#[derive(Debug, Clone)]
pub struct CompiledAttestation {
    /// The attestor type URI.
    pub kind: String,
    /// The compiled modules; `Ok(None)` when there are none.
    pub rego: Result<Option<RegoModules>, RegoError>,
}

/// One step, ready for verification.
#[derive(Debug, Clone)]
pub struct CompiledStep {
    /// The step name (equal to its key).
    pub name: String,
    /// Who may sign.
    pub functionaries: Vec<Functionary>,
    /// What must be present.
    pub attestations: Vec<CompiledAttestation>,
    /// Upstream steps for `artifactsFrom`.
    pub artifacts_from: Vec<String>,
}

/// A verified, validated, compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The document as written.
    pub document: PolicyDocument,
    /// When the policy stops being valid; `None` means it was never valid (missing `expires`).
    pub expires: Option<OffsetDateTime>,
    /// Steps by name.
    pub steps: BTreeMap<String, CompiledStep>,
    /// The trust evidence envelopes are checked with: every policy key, every root with the
    /// intermediates of all roots, and every timestamp authority.
    pub evidence_trust: EnvelopeTrust,
    /// How the policy is applied.
    pub options: PolicyOptions,
}

impl Policy {
    /// Validates and prepares a document.
    ///
    /// # Errors
    /// See [`PolicyError`]; each variant is a policy that cannot be applied as written.
    pub fn compile(document: PolicyDocument, options: PolicyOptions) -> Result<Self, PolicyError> {
        let variants = document.case_variant_keys();
        if !variants.is_empty() {
            return Err(PolicyError::CaseVariant(variants));
        }
        if let Some(unused) = options
            .kms_keys
            .keys()
            .find(|uri| !document.publickeys.values().any(|k| &k.keyid == *uri))
        {
            return Err(PolicyError::UnusedKmsKey(unused.clone()));
        }
        let cilock = document.cilock_only_keys();
        if !cilock.is_empty() {
            return Err(PolicyError::CilockOnly(cilock));
        }
        if document.steps.is_empty() {
            return Err(PolicyError::NoSteps);
        }

        let expires = match &document.expires {
            None => None,
            Some(text) => Some(parse_time(text).ok_or_else(|| PolicyError::Expires(text.clone()))?),
        };
        let mut evidence_trust = load_keys(&document, &options.kms_keys)?;
        load_roots(&document, &mut evidence_trust)?;
        evidence_trust.allow_untimestamped_certificates(options.untimestamped_certificates);

        let mut steps = BTreeMap::new();
        for (key, step) in &document.steps {
            if *key != step.name {
                return Err(PolicyError::StepName {
                    key: key.clone(),
                    name: step.name.clone(),
                });
            }
            if step.attestations.is_empty() {
                return Err(PolicyError::NoAttestations(key.clone()));
            }
            check_extension_constraints(key, &step.functionaries)?;
            if let Some(from) = step
                .artifacts_from
                .iter()
                .find(|f| !document.steps.contains_key(*f))
            {
                return Err(PolicyError::UnknownArtifactsFrom {
                    step: key.clone(),
                    from: from.clone(),
                });
            }
            let attestations = step
                .attestations
                .iter()
                .map(|a| CompiledAttestation {
                    kind: a.kind.clone(),
                    rego: RegoModules::compile(&a.regopolicies, options.rego_time_limit),
                })
                .collect();
            steps.insert(
                key.clone(),
                CompiledStep {
                    name: key.clone(),
                    functionaries: step.functionaries.clone(),
                    attestations,
                    artifacts_from: step.artifacts_from.clone(),
                },
            );
        }

        Ok(Self {
            document,
            expires,
            steps,
            evidence_trust,
            options,
        })
    }

    /// Whether the policy is expired at `now` (expired strictly after `expires`).
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires.is_none_or(|e| now > e)
    }
}

/// Parses the policy's public keys and checks each declared key id.
fn load_keys(
    document: &PolicyDocument,
    kms_keys: &BTreeMap<String, PublicKey>,
) -> Result<EnvelopeTrust, PolicyError> {
    let mut trust = EnvelopeTrust::default();
    for entry in document.publickeys.values() {
        let is_kms = KMS_SCHEMES.iter().any(|s| entry.keyid.starts_with(s));
        let embedded = if entry.key.is_empty() && is_kms {
            None
        } else {
            Some(embedded_key(&entry.keyid, &entry.key)?)
        };
        let key = match (is_kms, embedded, kms_keys.get(&entry.keyid)) {
            // A KMS key id is the KMS URI; the key that verifies is the operator's copy of its
            // public half or, failing that, the one embedded in the policy.
            (true, Some(embedded), Some(supplied)) => {
                if embedded.spki_der() != supplied.spki_der() {
                    return Err(PolicyError::KmsKeyMismatch(entry.keyid.clone()));
                }
                embedded
            }
            (true, Some(embedded), None) => embedded,
            (true, None, Some(supplied)) => supplied.clone(),
            (true, None, None) => return Err(PolicyError::UnresolvedKms(entry.keyid.clone())),
            (false, Some(embedded), _) => {
                let computed = embedded.keyid();
                if computed.0 != entry.keyid {
                    return Err(PolicyError::KeyIdMismatch {
                        declared: entry.keyid.clone(),
                        computed: computed.0,
                    });
                }
                embedded
            }
            (false, None, _) => return Err(PolicyError::UnresolvedKms(entry.keyid.clone())),
        };
        trust.add_key(KeyId(entry.keyid.clone()), key);
    }
    Ok(trust)
}

/// Parses `roots` and `timestampauthorities` into `trust`; any unreadable certificate is a hard
/// error, as in witness.
fn load_roots(document: &PolicyDocument, trust: &mut EnvelopeTrust) -> Result<(), PolicyError> {
    for (id, root) in &document.roots {
        let (certificate, intermediates) =
            root_certificates(root).map_err(|source| PolicyError::Root {
                id: id.clone(),
                source,
            })?;
        trust.add_root(id.clone(), certificate, intermediates);
    }
    for (id, authority) in &document.timestampauthorities {
        let (certificate, mut anchors) =
            root_certificates(authority).map_err(|source| PolicyError::TimestampAuthority {
                id: id.clone(),
                source,
            })?;
        // The authority's certificate and its intermediates are all anchors.
        anchors.insert(0, certificate);
        trust.add_timestamp_authority(TimestampAuthority::new(id.clone(), anchors));
    }
    Ok(())
}

fn root_certificates(root: &Root) -> Result<(Certificate, Vec<Certificate>), X509Error> {
    let certificate = Certificate::from_base64_pem(&root.certificate)?;
    let intermediates = root
        .intermediates
        .iter()
        .map(|i| Certificate::from_base64_pem(i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((certificate, intermediates))
}

/// Every `certConstraint.extensions` key must name a Fulcio field (Go field name in any case,
/// or snake_case), at most once, with a valid glob.
fn check_extension_constraints(
    step: &str,
    functionaries: &[Functionary],
) -> Result<(), PolicyError> {
    for constraint in functionaries
        .iter()
        .filter_map(|f| f.cert_constraint.as_ref())
    {
        let mut seen: BTreeMap<FulcioField, &String> = BTreeMap::new();
        for (name, pattern) in &constraint.extensions {
            let field =
                FulcioField::from_key(name).ok_or_else(|| PolicyError::UnknownExtension {
                    step: step.to_string(),
                    name: name.clone(),
                })?;
            if let Some(first) = seen.insert(field, name) {
                return Err(PolicyError::DuplicateExtension {
                    step: step.to_string(),
                    field: field.name(),
                    first: first.clone(),
                    second: name.clone(),
                });
            }
            Glob::new(pattern).map_err(|source| PolicyError::ExtensionPattern {
                step: step.to_string(),
                name: name.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

fn embedded_key(keyid: &str, key: &str) -> Result<PublicKey, PolicyError> {
    let key_error = |source| PolicyError::PublicKey {
        keyid: keyid.to_string(),
        source,
    };
    let pem = decode_base64(key).map_err(|_| key_error(KeyError::NoPem))?;
    PublicKey::from_pem(&pem).map_err(key_error)
}

/// Parses an RFC 3339 time; `None` when it is not one.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    // RFC 3339 allows a lower-case `t`/`z` and a space separator; Go's layout (which witness
    // uses) does not, so neither do we.
    if text.contains(['t', 'z', ' ']) {
        return None;
    }
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSA_ROOT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vectors/_material/tsa/dev-tsa-root.pem"
    );

    fn compile(
        extra: serde_json::Value,
        extensions: serde_json::Value,
    ) -> Result<Policy, PolicyError> {
        let mut doc = serde_json::json!({
            "expires": "2030-01-01T00:00:00Z",
            "steps": {"build": {
                "name": "build",
                "functionaries": [{"type": "root", "certConstraint": {
                    "commonname": "*", "roots": ["*"], "extensions": extensions
                }}],
                "attestations": [{"type": "https://witness.dev/attestations/product/v0.1"}]
            }}
        });
        if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
            doc.extend(extra.clone());
        }
        let document = PolicyDocument::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap();
        Policy::compile(document, PolicyOptions::default())
    }

    fn no_extra() -> serde_json::Value {
        serde_json::json!({})
    }

    #[test]
    fn extension_keys_accept_go_and_snake_spellings_once() {
        let both =
            serde_json::json!({"issuer": "x", "SourceRepositoryURI": "y", "build_config_uri": "*"});
        assert!(compile(no_extra(), both).is_ok());

        let unknown = compile(no_extra(), serde_json::json!({"Repository": "x"}));
        assert!(
            matches!(&unknown, Err(PolicyError::UnknownExtension { name, .. }) if name == "Repository"),
            "{unknown:?}"
        );
        let twice = compile(
            no_extra(),
            serde_json::json!({"Issuer": "a", "issuer": "b"}),
        );
        assert!(
            matches!(
                twice,
                Err(PolicyError::DuplicateExtension {
                    field: "Issuer",
                    ..
                })
            ),
            "{twice:?}"
        );
        let invalid = compile(no_extra(), serde_json::json!({"Issuer": "{a,b"}));
        assert!(
            matches!(invalid, Err(PolicyError::ExtensionPattern { .. })),
            "{invalid:?}"
        );
    }

    #[test]
    fn roots_and_timestamp_authorities_must_parse() {
        let pem = crate::encoding::encode_base64(&std::fs::read(TSA_ROOT).unwrap());
        let good = serde_json::json!({"timestampauthorities": {"tsa": {"certificate": pem}}});
        assert!(compile(good, no_extra()).is_ok());

        let bad_tsa = serde_json::json!({"timestampauthorities": {"tsa": {"certificate": pem, "intermediates": ["AAAA"]}}});
        let err = compile(bad_tsa, no_extra());
        assert!(
            matches!(&err, Err(PolicyError::TimestampAuthority { id, .. }) if id == "tsa"),
            "{err:?}"
        );

        let empty_root = serde_json::json!({"roots": {"r": {"certificate": ""}}});
        let err = compile(empty_root, no_extra());
        assert!(
            matches!(&err, Err(PolicyError::Root { id, .. }) if id == "r"),
            "{err:?}"
        );
    }
}
