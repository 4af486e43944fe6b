//! Container images: references, resolution at the registry, the source commit they were built
//! from, and the identities evidence must name.

pub mod binding;
mod credentials;
mod mirrors;
mod reference;
mod registry;
mod resolved;
mod revision;

pub use credentials::{
    CredentialError, CredentialProviders, Credentials, DockerConfig, DockerConfigError, Keyring,
    ResponseError, DEFAULT_MAX_PLUGIN_OUTPUT_BYTES, DEFAULT_PLUGIN_TIMEOUT,
};
pub use mirrors::{Capabilities, ClientCertificate, Endpoint, Mirrors, MirrorsError};
pub use reference::{Digest, ImageReference, ReferenceError, DEFAULT_REGISTRY};
pub use registry::{
    Registry, RegistryConfig, RegistryCredentials, RegistryError,
    DEFAULT_MAX_CONCURRENT_PER_REGISTRY, DEFAULT_MAX_CONFIG_BYTES, DEFAULT_MAX_INDEX_ENTRIES,
    DEFAULT_MAX_MANIFEST_BYTES, DEFAULT_MAX_NESTING, DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_BACKOFF, IDENTITY_TOKEN_USERNAME,
};
pub use resolved::{IdentityKind, ImageIdentity, NestedIndex, PlatformImage, ResolvedImage};
pub use revision::{Place, RevisionError, SourceInfo, REVISION_KEY, SOURCE_KEY};
