//! Container images: references, resolution at the registry, the source commit they were built
//! from, and the identities evidence must name.

pub mod binding;
mod reference;
mod registry;
mod resolved;
mod revision;

pub use reference::{Digest, ImageReference, ReferenceError, DEFAULT_REGISTRY};
pub use registry::{
    Registry, RegistryConfig, RegistryCredentials, RegistryError,
    DEFAULT_MAX_CONCURRENT_PER_REGISTRY, DEFAULT_MAX_CONFIG_BYTES, DEFAULT_MAX_INDEX_ENTRIES,
    DEFAULT_MAX_MANIFEST_BYTES, DEFAULT_MAX_NESTING, DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_BACKOFF,
};
pub use resolved::{IdentityKind, ImageIdentity, NestedIndex, PlatformImage, ResolvedImage};
pub use revision::{Place, RevisionError, SourceInfo, REVISION_KEY, SOURCE_KEY};
