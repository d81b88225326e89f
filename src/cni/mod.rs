//! The CNI side of natra: environment, configuration, verbs and result.
pub mod config;
pub mod env;
pub mod result;
pub mod verbs;

pub use verbs::run;
