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

/// How a service reaches Kafka. Unset bootstrap servers: the service runs unlinked
/// (no relay to its topic, no upstream topics), as in the all-in-one process.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaSettings {
    /// Kafka bootstrap servers (`host:port,...`).
    #[arg(long = "kafka-bootstrap-servers", env = "DVK_KAFKA_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Any other librdkafka setting, as `KEY=VALUE` (repeatable): `security.protocol=SASL_SSL`.
    /// The binaries also pass every other `DVK_KAFKA_*` variable this way
    /// (`DVK_KAFKA_SASL_MECHANISM` → `sasl.mechanism`).
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = parse_option)]
    pub options: Vec<(String, String)>,
}

impl KafkaSettings {
    /// The librdkafka configuration, if Kafka is configured.
    pub fn config(&self) -> Option<dvk_bus::kafka::KafkaConfig> {
        let servers = self.bootstrap_servers.as_deref().filter(|s| !s.trim().is_empty())?;
        let mut config = dvk_bus::kafka::KafkaConfig::new(servers);
        for (k, v) in &self.options {
            config = config.set(k, v);
        }
        Some(config)
    }

    /// Adds the `DVK_KAFKA_*` variables among `vars` (a binary's environment) as
    /// options, the key lower-cased with `_` → `.`; options already given win.
    pub fn with_env_options(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        for (k, v) in vars {
            let Some(key) = k.strip_prefix("DVK_KAFKA_") else { continue };
            let key = key.to_lowercase().replace('_', ".");
            if key != "bootstrap.servers" && !self.options.iter().any(|(o, _)| *o == key) {
                self.options.push((key, v));
            }
        }
        self
    }
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
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

#[cfg(test)]
mod kafka_tests {
    use super::*;

    #[test]
    fn kafka_settings_take_typed_servers_and_pass_other_variables_through() {
        let none = KafkaSettings::default().with_env_options([("DVK_KAFKA_SASL_MECHANISM".into(), "PLAIN".into())]);
        assert!(none.config().is_none(), "no bootstrap servers: unlinked");
        let k = KafkaSettings {
            bootstrap_servers: Some("127.0.0.1:9092".into()),
            options: vec![parse_option("linger.ms=1").unwrap()],
        }
        .with_env_options([
            ("DVK_KAFKA_SASL_MECHANISM".to_owned(), "SCRAM-SHA-512".to_owned()),
            ("DVK_KAFKA_LINGER_MS".to_owned(), "50".to_owned()),
            ("DVK_KAFKA_BOOTSTRAP_SERVERS".to_owned(), "elsewhere:9092".to_owned()),
            ("DVK_DATA_DIR".to_owned(), "/x".to_owned()),
        ]);
        let c = k.config().unwrap().settings;
        assert_eq!(c["bootstrap.servers"], "127.0.0.1:9092");
        assert_eq!(c["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(c["linger.ms"], "1", "a typed option wins over the environment");
        assert_eq!(c.len(), 3);
        assert!(parse_option("novalue").is_err());
    }
}
