//! Whether a signer that verified is one of a step's functionaries, and go-witness's certificate
//! constraint check (evidence-format §5.7, §5.8).

use super::document::{CertConstraint, Functionary};
use super::glob::Glob;
use crate::crypto::{CertIdentity, FulcioField, VerifiedSigner};

/// The constraint value that allows anything, but only as the sole element of a list.
const ALLOW_ALL: &str = "*";

/// Whether `signer` satisfies `functionary`.
///
/// A functionary's `type` is decorative, as in witness: a matching `publickeyid` accepts the
/// signer (for certificate signers too, by their leaf key id); otherwise only a certificate
/// signer can match, through a certificate constraint that names at least one root.
pub(crate) fn accepts(functionary: &Functionary, signer: &VerifiedSigner) -> bool {
    if !functionary.publickeyid.is_empty() && functionary.publickeyid == signer.keyid().0 {
        return true;
    }
    match signer {
        VerifiedSigner::Key { .. } => false,
        VerifiedSigner::Certificate {
            identity, roots, ..
        } => match &functionary.cert_constraint {
            Some(constraint) if !constraint.roots.is_empty() => {
                let failures = constraint_failures(constraint, identity, roots);
                if !failures.is_empty() {
                    tracing::debug!(
                        failures = %failures.join("; "),
                        "certificate signer does not meet a functionary's constraint"
                    );
                }
                failures.is_empty()
            }
            _ => false,
        },
    }
}

/// Why `signer` does not satisfy `functionary`, for the rejection reason; `None` when it does.
pub(crate) fn mismatch(functionary: &Functionary, signer: &VerifiedSigner) -> Option<String> {
    if accepts(functionary, signer) {
        return None;
    }
    let wanted = if functionary.publickeyid.is_empty() {
        "a certificate constraint".to_string()
    } else {
        format!("key {}", functionary.publickeyid)
    };
    Some(match (signer, &functionary.cert_constraint) {
        (
            VerifiedSigner::Certificate {
                identity, roots, ..
            },
            Some(constraint),
        ) if !constraint.roots.is_empty() => {
            constraint_failures(constraint, identity, roots).join("; ")
        }
        _ => format!("{} is not {wanted}", signer.keyid()),
    })
}

/// Every way a certificate signer fails `constraint`; empty when it meets it.
///
/// `chained_roots` are the ids of the roots the signer's leaf chains to at its trusted time.
pub(crate) fn constraint_failures(
    constraint: &CertConstraint,
    identity: &CertIdentity,
    chained_roots: &[String],
) -> Vec<String> {
    let mut failures = Vec::new();
    let lists: [(&str, &[String], &[String]); 5] = [
        (
            "common name",
            std::slice::from_ref(&constraint.commonname),
            std::slice::from_ref(&identity.common_name),
        ),
        ("dns name", &constraint.dnsnames, &identity.dns_names),
        ("email", &constraint.emails, &identity.emails),
        (
            "organization",
            &constraint.organizations,
            &identity.organizations,
        ),
        ("uri", &constraint.uris, &identity.uris),
    ];
    for (attribute, constraints, values) in lists {
        if let Err(failure) = check_list(attribute, constraints, values) {
            failures.push(failure);
        }
    }

    let roots_met = if is_allow_all(&constraint.roots) {
        !chained_roots.is_empty()
    } else {
        constraint.roots.iter().any(|id| chained_roots.contains(id))
    };
    if !roots_met {
        failures.push(format!(
            "certificate does not chain to any root named by the constraint {:?}",
            constraint.roots
        ));
    }

    failures.extend(extension_failures(constraint, identity));
    failures
}

/// go-witness's list rule: a sole `*` allows anything; `[""]` means empty on either side; an
/// empty constraint forbids any value; otherwise the values must equal the constraints as a set
/// (exact, case-sensitive), each value used once.
fn check_list(attribute: &str, constraints: &[String], values: &[String]) -> Result<(), String> {
    if is_allow_all(constraints) {
        return Ok(());
    }
    let constraints = if constraints == [""] {
        &[][..]
    } else {
        constraints
    };
    let values = if values == [""] { &[][..] } else { values };
    if constraints.is_empty() && !values.is_empty() {
        return Err(format!(
            "no {attribute} is allowed, but the certificate has {values:?}"
        ));
    }
    let mut unmet: Vec<&String> = constraints.iter().collect();
    unmet.sort();
    unmet.dedup();
    for value in values {
        match unmet.iter().position(|c| *c == value) {
            Some(at) => {
                unmet.remove(at);
            }
            None => {
                return Err(format!(
                    "certificate {attribute} {value:?} is not allowed by {constraints:?}"
                ))
            }
        }
    }
    if !unmet.is_empty() {
        return Err(format!(
            "certificate {attribute}s {values:?} do not meet every constraint of {constraints:?}"
        ));
    }
    Ok(())
}

fn is_allow_all(list: &[String]) -> bool {
    matches!(list, [only] if only == ALLOW_ALL)
}

/// Fulcio extension constraints: each non-empty pattern must match the leaf's value as a glob.
/// A malformed extension in the leaf fails the check even without constraints, as upstream; an
/// unknown key or invalid pattern (refused when the policy is compiled) fails closed.
fn extension_failures(constraint: &CertConstraint, identity: &CertIdentity) -> Vec<String> {
    if let Some(field) = &identity.malformed_extension {
        return vec![format!(
            "certificate extension {field} is not a well-formed DER string"
        )];
    }
    let mut failures = Vec::new();
    for (key, pattern) in &constraint.extensions {
        if pattern.is_empty() {
            continue;
        }
        let Some(field) = FulcioField::from_key(key) else {
            failures.push(format!("unknown certificate extension {key:?}"));
            continue;
        };
        let value = identity.extension(field);
        match Glob::new(pattern) {
            Ok(glob) if glob.matches(value) => {}
            Ok(_) => failures.push(format!(
                "certificate extension {} {value:?} does not match {pattern:?}",
                field.name()
            )),
            Err(e) => failures.push(format!("extension pattern {pattern:?} is invalid: {e}")),
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyId;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    fn identity() -> CertIdentity {
        CertIdentity {
            common_name: "widget-ci".into(),
            organizations: strings(&["Acme Corp"]),
            dns_names: Vec::new(),
            emails: strings(&["ci@acme.test"]),
            uris: strings(&[
                "https://github.com/acme/widget/.github/workflows/ci.yml@refs/heads/main",
            ]),
            extensions: [
                ("Issuer", "https://token.actions.githubusercontent.com"),
                ("SourceRepositoryRef", "refs/heads/main"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            malformed_extension: None,
        }
    }

    fn constraint() -> CertConstraint {
        CertConstraint {
            commonname: "widget-ci".into(),
            dnsnames: Vec::new(),
            emails: strings(&["ci@acme.test"]),
            organizations: strings(&["Acme Corp"]),
            uris: strings(&["*"]),
            roots: strings(&["acme"]),
            ..CertConstraint::default()
        }
    }

    fn signer() -> VerifiedSigner {
        VerifiedSigner::Certificate {
            keyid: KeyId("leaf".into()),
            identity: Box::new(identity()),
            trusted_time: time::OffsetDateTime::UNIX_EPOCH,
            timestamp_authority: None,
            roots: strings(&["acme"]),
            valid_until: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn functionary(constraint: Option<CertConstraint>) -> Functionary {
        Functionary {
            kind: "root".into(),
            publickeyid: String::new(),
            cert_constraint: constraint,
        }
    }

    #[test]
    fn key_functionary_matches_by_key_id_only() {
        let f = Functionary {
            kind: "root".into(),
            publickeyid: "abc".into(),
            cert_constraint: None,
        };
        assert!(accepts(
            &f,
            &VerifiedSigner::Key {
                keyid: KeyId("abc".into())
            }
        ));
        assert!(!accepts(
            &f,
            &VerifiedSigner::Key {
                keyid: KeyId("abd".into())
            }
        ));
        let empty = Functionary {
            publickeyid: String::new(),
            ..f
        };
        assert!(!accepts(
            &empty,
            &VerifiedSigner::Key {
                keyid: KeyId(String::new())
            }
        ));
    }

    #[test]
    fn a_certificate_signer_matches_a_publickeyid_of_its_leaf_key() {
        let f = Functionary {
            publickeyid: "leaf".into(),
            ..functionary(None)
        };
        assert!(accepts(&f, &signer()));
    }

    #[test]
    fn a_constraint_that_holds_accepts_and_empty_roots_never_do() {
        assert!(accepts(&functionary(Some(constraint())), &signer()));
        let no_roots = CertConstraint {
            roots: Vec::new(),
            ..constraint()
        };
        assert!(!accepts(&functionary(Some(no_roots)), &signer()));
        assert!(!accepts(&functionary(None), &signer()));
    }

    #[test]
    fn roots_are_ids_or_a_sole_star() {
        let id = identity();
        let star = CertConstraint {
            roots: strings(&["*"]),
            ..constraint()
        };
        assert!(constraint_failures(&star, &id, &strings(&["other"])).is_empty());
        assert!(!constraint_failures(&star, &id, &[]).is_empty());
        let unknown = CertConstraint {
            roots: strings(&["nope", "*"]),
            ..constraint()
        };
        assert!(!constraint_failures(&unknown, &id, &strings(&["acme"])).is_empty());
        let listed = CertConstraint {
            roots: strings(&["nope", "acme"]),
            ..constraint()
        };
        assert!(constraint_failures(&listed, &id, &strings(&["acme"])).is_empty());
    }

    #[test]
    fn list_rule_follows_go_witness() {
        let ok = |c: &[&str], v: &[&str]| check_list("x", &strings(c), &strings(v)).is_ok();
        assert!(ok(&["*"], &["anything", "else"]));
        assert!(!ok(&["*", "a"], &["a", "b"]), "* inside a list is literal");
        assert!(ok(&["*", "a"], &["a", "*"]));
        assert!(ok(&[], &[]));
        assert!(ok(&[""], &[""]));
        assert!(ok(&[""], &[]));
        assert!(!ok(&[], &["a"]));
        assert!(!ok(&[""], &["a"]));
        assert!(ok(&["a", "b"], &["b", "a"]));
        assert!(!ok(&["a", "b"], &["a"]), "every constraint must be met");
        assert!(!ok(&["a"], &["a", "a"]), "a repeated value fails");
        assert!(ok(&["a", "a"], &["a"]));
        assert!(!ok(&["A"], &["a"]), "case-sensitive");
        assert!(!ok(&["https://x/*"], &["https://x/y"]), "no globbing");
    }

    #[test]
    fn an_empty_common_name_constraint_requires_an_empty_common_name() {
        let c = CertConstraint {
            commonname: String::new(),
            ..constraint()
        };
        let failures = constraint_failures(&c, &identity(), &strings(&["acme"]));
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("common name"), "{failures:?}");
        let nameless = CertIdentity {
            common_name: String::new(),
            ..identity()
        };
        assert!(constraint_failures(&c, &nameless, &strings(&["acme"])).is_empty());
    }

    #[test]
    fn extension_constraints_are_globs_by_go_or_snake_name() {
        let with = |pairs: &[(&str, &str)]| CertConstraint {
            extensions: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..constraint()
        };
        let roots = strings(&["acme"]);
        let id = identity();
        assert!(
            constraint_failures(&with(&[("Issuer", "https://token.actions.*")]), &id, &roots)
                .is_empty()
        );
        assert!(constraint_failures(
            &with(&[("source_repository_ref", "refs/heads/{main,release}")]),
            &id,
            &roots
        )
        .is_empty());
        assert!(constraint_failures(&with(&[("BuildTrigger", "")]), &id, &roots).is_empty());
        let miss = constraint_failures(
            &with(&[("SourceRepositoryRef", "refs/tags/*")]),
            &id,
            &roots,
        );
        assert_eq!(miss.len(), 1, "{miss:?}");
        // A constrained extension the leaf lacks is matched as the empty string.
        assert!(!constraint_failures(&with(&[("BuildTrigger", "push")]), &id, &roots).is_empty());
        assert!(constraint_failures(&with(&[("BuildTrigger", "*")]), &id, &roots).is_empty());
        // Fail closed on what compile refuses.
        assert!(!constraint_failures(&with(&[("Repository", "*")]), &id, &roots).is_empty());
        assert!(!constraint_failures(&with(&[("Issuer", "[")]), &id, &roots).is_empty());
    }

    #[test]
    fn a_malformed_extension_fails_even_without_extension_constraints() {
        let id = CertIdentity {
            malformed_extension: Some("Issuer".into()),
            extensions: Default::default(),
            ..identity()
        };
        let failures = constraint_failures(&constraint(), &id, &strings(&["acme"]));
        assert_eq!(failures.len(), 1, "{failures:?}");
    }
}
