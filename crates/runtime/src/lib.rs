//! What every DVK service shares: settings, telemetry, authentication and
//! authorization, the mapping of errors to gRPC statuses, health and reflection,
//! Prometheus metrics and graceful shutdown.

#![forbid(unsafe_code)]

pub mod auth;
pub mod guard;
pub mod host;
pub mod limit;
pub mod metrics;
pub mod oversize;
pub mod policy;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod status;
pub mod telemetry;

pub use auth::{Authenticator, Caller, Role};
pub use policy::{Access, Rule, Scope, Target};

/// The memory allocator every service binary (and every benchmark of one) installs:
/// `#[global_allocator] static ALLOCATOR: dvk_runtime::Allocator = dvk_runtime::Allocator;`.
/// The write path allocates and frees many small buffers per request on several
/// threads (the handlers, the log's writer and flusher, sled's I/O threads); with
/// glibc's allocator about a tenth of its CPU time went to `malloc` and `free`.
pub use mimalloc::MiMalloc as Allocator;
pub use settings::{AuthSettings, ServerSettings};
