//! What every DVK service shares: settings, telemetry, authentication and
//! authorization, the mapping of errors to gRPC statuses, health and reflection,
//! Prometheus metrics and graceful shutdown.

#![forbid(unsafe_code)]

pub mod auth;
pub mod host;
pub mod limit;
pub mod metrics;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod status;
pub mod telemetry;

pub use auth::{Authenticator, Caller, Role};
pub use settings::{AuthSettings, ServerSettings};
