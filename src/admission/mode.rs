//! The three modes a namespace can be in, one webhook path each.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a failing image is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Admit silently; record what would have been denied.
    Audit,
    /// Admit, and return the failures as warnings (the cluster-side soft-fail).
    Warn,
    /// Deny (fail closed).
    Enforce,
}

impl Mode {
    /// Every mode, weakest first.
    pub const ALL: [Mode; 3] = [Mode::Audit, Mode::Warn, Mode::Enforce];

    /// The name used in paths, labels, metrics and the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audit => "audit",
            Self::Warn => "warn",
            Self::Enforce => "enforce",
        }
    }

    /// The webhook path that serves this mode.
    pub fn path(self) -> &'static str {
        match self {
            Self::Audit => "/validate/audit",
            Self::Warn => "/validate/warn",
            Self::Enforce => "/validate/enforce",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is not `enforce`, `warn` or `audit`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?} (expected enforce, warn or audit)")]
pub struct ModeError(pub String);

impl FromStr for Mode {
    type Err = ModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "audit" => Ok(Self::Audit),
            "warn" => Ok(Self::Warn),
            "enforce" => Ok(Self::Enforce),
            other => Err(ModeError(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_weakest_first() {
        for mode in Mode::ALL {
            assert_eq!(mode.as_str().parse::<Mode>().unwrap(), mode);
            assert!(mode.path().ends_with(mode.as_str()));
        }
        assert!(Mode::Audit < Mode::Warn && Mode::Warn < Mode::Enforce);
        assert!("Enforce".parse::<Mode>().is_err());
    }
}
