//! What DVK Ledger's tests and benchmarks share, so that each does not keep a copy:
//! the HS256 secret the test services trust, tokens minted with it, the settings of a
//! service over a temporary directory, and the summary of measured latencies.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dvk_client::token::{Claims, mint_hs256, now_secs};
use dvk_runtime::settings::{AuthSettings, ServerSettings};

/// The HS256 secret every test and benchmark service trusts.
pub const SECRET: &[u8] = b"dvk-test-secret-0123456789abcdef";

/// A token for `role` acting for `unit` ("" for the nation), valid for an hour.
pub fn token(role: &str, unit: &str) -> String {
    let claims =
        Claims { sub: format!("test-{role}-{unit}"), role: role.into(), unit: unit.into(), exp: now_secs() + 3600 };
    mint_hs256(SECRET, &claims).expect("a token")
}

/// The settings of a service over `data_dir` that trusts [`SECRET`] (written beside
/// the directory), with 16 MiB messages and a 5 s shutdown.
pub fn settings(data_dir: &Path, metrics: Option<SocketAddr>) -> ServerSettings {
    let secret_file = data_dir.with_extension("secret");
    std::fs::write(&secret_file, SECRET).expect("the secret file");
    ServerSettings {
        data_dir: data_dir.to_owned(),
        metrics_listen: metrics,
        shutdown_timeout: Duration::from_secs(5),
        max_message_bytes: 16 << 20,
        tls: Default::default(),
        health_listen: None,
        max_calls_per_caller: 256,
        auth: AuthSettings { jwt_hs256_secret_file: Some(secret_file), jwt_public_key_file: None },
    }
}

/// The `q` quantile (0 to 1) of sorted latencies, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3
}

/// The median of `values` (0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_medians_of_measurements() {
        let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&lat, 0.5), 50.0);
        assert_eq!(percentile_ms(&lat, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(token("analyst", "22").split('.').count(), 3);
    }
}
