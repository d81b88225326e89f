//! The CNI side of natra: environment, configuration, verbs and result.
pub mod config;
pub mod env;
mod fuzz;
pub mod gc;
pub mod gojson;
pub mod lock;
pub mod options;
pub mod policy;
pub mod quantity;
pub mod result;
pub mod sources;
pub mod status;
pub mod verbs;

pub use verbs::run;
