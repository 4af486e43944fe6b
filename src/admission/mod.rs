//! AdmissionReview in and out: which images a request asks to run, and the answer per mode.
//!
//! Pure: no I/O. The webhook's glue (`crate::webhook`) hands the images to the decision engine
//! and the verdicts back here.

mod mode;

pub use mode::{Mode, ModeError};
