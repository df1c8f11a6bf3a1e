//! Settings shared by the services, from flags or `DVK_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where and how a service serves.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerSettings {
    /// Directory of the service's sled event log.
    #[arg(long, env = "DVK_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the Prometheus `/metrics` endpoint; unset: no metrics endpoint.
    #[arg(long, env = "DVK_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Address of a plain-text listener that serves only `grpc.health.v1.Health`, for
    /// probes that cannot speak TLS; unset: none (health is on the service port).
    #[arg(long, env = "DVK_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// How long a shutdown waits for in-flight requests before giving up.
    #[arg(long, env = "DVK_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "DVK_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Most calls one caller (one bearer token) may have in flight; more are refused
    /// with RESOURCE_EXHAUSTED.
    #[arg(long, env = "DVK_MAX_CALLS_PER_CALLER", default_value_t = 256)]
    pub max_calls_per_caller: usize,
    #[command(flatten)]
    pub auth: AuthSettings,
    #[command(flatten)]
    pub tls: TlsSettings,
}

/// TLS on the gRPC listener: with a certificate and key configured the service serves
/// TLS only (plain-text connections fail their handshake); with a client CA too, it
/// requires client certificates signed by it (mutual TLS).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsSettings {
    /// PEM certificate chain of the service.
    #[arg(long, env = "DVK_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, env = "DVK_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificate that client certificates must be signed by.
    #[arg(long, env = "DVK_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,
}

/// How callers' JWTs are verified. At least one key is required.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthSettings {
    /// File holding an HS256 secret (development only; production uses public keys).
    #[arg(long, env = "DVK_JWT_HS256_SECRET_FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// PEM file with an Ed25519 (EdDSA) or RSA (RS256) public key.
    #[arg(long, env = "DVK_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
}

/// Parses `250ms`, `20s`, `5m` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 250ms, 20s or 5m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?} is not a duration like 250ms, 20s or 5m")),
    }
}

/// Exit code for invalid settings (EX_USAGE).
pub const EXIT_BAD_SETTINGS: i32 = 64;
