//! Container images: references, resolution at the registry, the source commit they were built
//! from, and the identities evidence must name.

mod reference;

pub use reference::{Digest, ImageReference, ReferenceError, DEFAULT_REGISTRY};
