//! Everything that talks to the Kubernetes API: the client ([`connect`]), the pods' image pull
//! secrets ([`PullSecrets`]), and the inventory of running workloads that `attestgate audit`
//! judges ([`inventory`], [`audit`]), the self-managed serving certificates
//! ([`certificates`]), and the count of namespaces by mode label behind the
//! `attestgate_namespaces` metric ([`namespaces`]).
//!
//! Reading secrets is the webhook's largest privilege; it is opt-in (`registry.pullSecrets`)
//! and reads only the secrets a pod names (`get`, never `list`), and its service account.
//! Nothing here logs or returns a secret's content.

pub mod audit;
pub mod certificates;
mod client;
pub mod inventory;
pub mod namespaces;
mod pull_secrets;

pub use client::{connect, ApiSource, ClusterError};
pub use pull_secrets::{PodPullSecrets, PullSecrets, MAX_SECRETS_PER_POD};

/// The namespace label whose value names a namespace's mode (`enforce`, `warn`, `audit`).
pub const MODE_LABEL: &str = "attestgate.dev/mode";

/// Whether `name` can name a namespace (an RFC 1123 label). Names go into request paths
/// unescaped, so anything else must never reach the client.
pub fn is_namespace_name(name: &str) -> bool {
    name.len() <= 63 && is_subdomain(name) && !name.contains('.')
}

/// Whether `name` can name a secret or a service account (an RFC 1123 subdomain).
pub fn is_object_name(name: &str) -> bool {
    name.len() <= 253 && is_subdomain(name)
}

fn is_subdomain(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    name.split('.').all(|part| {
        let bytes = part.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(&first), Some(&last)) => {
                alnum(first) && alnum(last) && bytes.iter().all(|&b| alnum(b) || b == b'-')
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_their_path_are_refused() {
        for good in ["regcred", "team-a", "a", "my.registry-creds"] {
            assert!(is_object_name(good), "{good}");
        }
        assert!(is_namespace_name("team-a"));
        for bad in [
            "",
            "../team-p/secrets/regcred",
            "regcred/../x",
            "RegCred",
            "-x",
            "x-",
            "a..b",
            "a%2fb",
            "a b",
            "a?watch=1",
        ] {
            assert!(!is_object_name(bad), "{bad:?}");
            assert!(!is_namespace_name(bad), "{bad:?}");
        }
        assert!(!is_namespace_name("a.b"));
        assert!(!is_namespace_name(&"a".repeat(64)));
        assert!(is_object_name(&"a".repeat(253)));
        assert!(!is_object_name(&"a".repeat(254)));
    }
}
