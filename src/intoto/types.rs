//! Attestation type URIs: the collection predicates, the attestors the engine interprets, and
//! the twin namespaces (`https://witness.dev/…` and `https://aflock.ai/…`).

/// witness's collection predicate type (the only one Archivista indexes as a collection).
pub const WITNESS_COLLECTION: &str = "https://witness.testifysec.com/attestation-collection/v0.1";
/// cilock's collection predicate type.
pub const AFLOCK_COLLECTION: &str = "https://aflock.ai/attestation-collection/v0.1";

const WITNESS_PREFIX: &str = "https://witness.dev/attestations/";
const AFLOCK_PREFIX: &str = "https://aflock.ai/attestations/";

/// Whether `predicate_type` is a collection predicate we accept.
pub fn is_collection_predicate(predicate_type: &str) -> bool {
    predicate_type == WITNESS_COLLECTION || predicate_type == AFLOCK_COLLECTION
}

/// The attestor name and version of a witness.dev or aflock.ai type URI
/// (`https://witness.dev/attestations/git/v0.1` → `("git", "v0.1")`).
pub fn attestor_name(kind: &str) -> Option<(&str, &str)> {
    let rest = kind
        .strip_prefix(WITNESS_PREFIX)
        .or_else(|| kind.strip_prefix(AFLOCK_PREFIX))?;
    let (name, version) = rest.split_once('/')?;
    if name.is_empty() || version.is_empty() || version.contains('/') {
        return None;
    }
    Some((name, version))
}

/// Normalises an attestor name so that cilock's legacy spellings meet (`commandrun` is the
/// name rookery's own policies use for `command-run`).
fn canonical_name(name: &str) -> &str {
    match name {
        "commandrun" => "command-run",
        other => other,
    }
}

/// Whether an attestation of type `found` satisfies a requirement for `wanted`.
///
/// Without aliases this is exact string equality, as in witness. With aliases (cilock), the
/// witness.dev and aflock.ai twins of the same attestor at the same version are equal.
pub fn same_type(found: &str, wanted: &str, aliases: bool) -> bool {
    if found == wanted {
        return true;
    }
    if !aliases {
        return false;
    }
    match (attestor_name(found), attestor_name(wanted)) {
        (Some((fname, fver)), Some((wname, wver))) => {
            fver == wver && canonical_name(fname) == canonical_name(wname)
        }
        _ => false,
    }
}

/// Whether a statement subject name is one witness follows as a back-reference.
pub fn is_back_reference_subject(subject_name: &str) -> bool {
    let Some((kind, local)) = subject_name.rsplit_once("/v0.1/") else {
        return false;
    };
    let attestor = kind
        .strip_prefix(WITNESS_PREFIX)
        .or_else(|| kind.strip_prefix(AFLOCK_PREFIX));
    match attestor {
        Some("git") => local.starts_with("commithash:"),
        Some("github" | "gitlab" | "jenkins") => local.starts_with("pipelineurl:"),
        Some("aws-codebuild") => true,
        _ => false,
    }
}

/// Material attestor types, in both namespaces.
pub fn is_material(kind: &str) -> bool {
    matches!(attestor_name(kind), Some(("material", _)))
}

/// Product attestor types, in both namespaces.
pub fn is_product(kind: &str) -> bool {
    matches!(attestor_name(kind), Some(("product", _)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_without_aliases() {
        let w = "https://witness.dev/attestations/git/v0.1";
        let a = "https://aflock.ai/attestations/git/v0.1";
        assert!(same_type(w, w, false));
        assert!(!same_type(a, w, false));
        assert!(same_type(a, w, true));
        assert!(!same_type(
            "https://aflock.ai/attestations/git/v0.2",
            w,
            true
        ));
        assert!(same_type(
            "https://aflock.ai/attestations/command-run/v0.1",
            "https://witness.dev/attestations/commandrun/v0.1",
            true
        ));
        assert!(!same_type("https://cyclonedx.org/bom", w, true));
    }

    #[test]
    fn back_reference_subjects() {
        assert!(is_back_reference_subject(
            "https://witness.dev/attestations/git/v0.1/commithash:abc"
        ));
        assert!(is_back_reference_subject(
            "https://aflock.ai/attestations/github/v0.1/pipelineurl:https://x/y"
        ));
        assert!(!is_back_reference_subject(
            "https://witness.dev/attestations/git/v0.1/authoremail:a@b"
        ));
        assert!(!is_back_reference_subject(
            "https://witness.dev/attestations/product/v0.1/file:x"
        ));
    }
}
