//! The lab domain's settings, for the tests that need it: one implementation
//! for every crate's lab tests, in `testkit::lab` (which also says why a lab
//! test without a lab fails unless told to skip).

pub use testkit::lab::lab_env;
