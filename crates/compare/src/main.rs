//! `dvk-compare`: DVK Ledger beside what a user would pick instead, measured in the
//! same run on the same machine. `cargo xtask bench compare` starts PostgreSQL (fsync
//! and synchronous commit on) and passes its URL in `DVK_COMPARE_PG`, and the test
//! broker's binary in `DVK_TANSU`.
//!
//! - `commands`: RegisterModel and SubmitReport from 64 concurrent writers, durable on
//!   commit, through our services (in-process, over gRPC) and through cqrs-es 0.5 with
//!   postgres-es on PostgreSQL;
//! - `rollups`: the 1,000,000-event aggregation log (`services/aggregation/benches/
//!   workload.rs`): our incremental roll-ups (GetRollup, freshness) beside the same
//!   facts in PostgreSQL with a `GROUP BY ROLLUP` analytics table rebuilt in batch;
//! - `replay`: our projection rebuild on that log beside a raw sled iteration of the
//!   same directory and a raw Kafka consume of the same events.
//!
//! Every figure is the median of `DVK_BENCH_RUNS` runs (default 5). The parts run are
//! the arguments, or `DVK_COMPARE_PARTS` (comma-separated), or all three. The Markdown
//! tables are printed and, with `DVK_COMPARE_OUT`, written to that file (the xtask puts
//! them into BENCHMARKS.md).

#![forbid(unsafe_code)]

mod commands;
mod front;
mod replay;
mod rollups;

#[path = "../../bus/tests/support.rs"]
#[allow(unreachable_pub)]
mod support;
#[path = "../../../services/aggregation/benches/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use dvk_runtime::auth::{Claims, mint_hs256, now_secs};
use dvk_runtime::settings::{AuthSettings, ServerSettings};

/// As the service binaries (see `dvk_runtime::Allocator`).
#[global_allocator]
static ALLOCATOR: dvk_runtime::Allocator = dvk_runtime::Allocator;

const SECRET: &[u8] = b"dvk-compare-secret-0123456789abcdef";

/// A token for `role` acting for the nation.
fn token(role: &str) -> String {
    let claims = Claims { sub: "bench".into(), role: role.into(), unit: String::new(), exp: now_secs() + 7200 };
    mint_hs256(SECRET, &claims).expect("a token")
}

/// A service's settings with its data in `dir/name`, tokens signed with `SECRET`.
fn settings(dir: &Path, name: &str) -> ServerSettings {
    let secret = dir.join("secret");
    // Written once: a service may be reading it while the next one is configured.
    if !secret.exists() {
        std::fs::write(&secret, SECRET).expect("secret file");
    }
    ServerSettings {
        data_dir: dir.join(name),
        metrics_listen: None,
        shutdown_timeout: Duration::from_secs(5),
        max_message_bytes: 16 << 20,
        tls: Default::default(),
        health_listen: None,
        max_calls_per_caller: 256,
        auth: AuthSettings { jwt_hs256_secret_file: Some(secret), jwt_public_key_file: None },
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Throughput and latency of one run.
#[derive(Debug, Clone, Copy)]
struct Run {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Run {
    fn from(latencies: &mut [Duration], elapsed: Duration) -> Run {
        latencies.sort_unstable();
        let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        Run { per_sec: latencies.len() as f64 / elapsed.as_secs_f64(), p50_ms: p(0.5), p99_ms: p(0.99) }
    }
}

/// The medians of several runs, and the runs' throughputs and p99s.
#[derive(Debug, Clone)]
struct Summary {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    runs: Vec<f64>,
    p99_runs: Vec<f64>,
}

impl Summary {
    fn of(runs: &[Run]) -> Summary {
        Summary {
            per_sec: median(runs.iter().map(|r| r.per_sec).collect()),
            p50_ms: median(runs.iter().map(|r| r.p50_ms).collect()),
            p99_ms: median(runs.iter().map(|r| r.p99_ms).collect()),
            runs: runs.iter().map(|r| r.per_sec).collect(),
            p99_runs: runs.iter().map(|r| r.p99_ms).collect(),
        }
    }

    fn runs_text(&self) -> String {
        self.runs.iter().map(|r| thousands(*r)).collect::<Vec<_>>().join(" · ")
    }

    fn p99_runs_text(&self) -> String {
        self.p99_runs.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" · ")
    }
}

fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `x` runs joined with " · " in the given format.
fn joined(xs: &[f64], f: impl Fn(f64) -> String) -> String {
    xs.iter().map(|x| f(*x)).collect::<Vec<_>>().join(" · ")
}

/// A ratio, with "(we lose)" below 1.
fn ratio(x: f64) -> String {
    if x < 1.0 { format!("{x:.2}× (we lose)") } else { format!("{x:.1}×") }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The PostgreSQL server's version and durability settings, as it reports them.
async fn pg_settings(pool: &sqlx::PgPool) -> anyhow::Result<String> {
    let mut seen = Vec::new();
    for setting in ["server_version", "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes"] {
        let (value,): (String,) = sqlx::query_as(&format!("SHOW {setting}")).fetch_one(pool).await?;
        seen.push(format!("{setting}={value}"));
    }
    Ok(seen.join(", "))
}

fn main() -> anyhow::Result<()> {
    let mut parts: Vec<String> = std::env::args().skip(1).collect();
    if parts.is_empty()
        && let Ok(p) = std::env::var("DVK_COMPARE_PARTS")
    {
        parts = p.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    }
    for p in &parts {
        anyhow::ensure!(["commands", "rollups", "replay"].contains(&p.as_str()), "unknown part {p:?}");
    }
    let want = |name: &str| parts.is_empty() || parts.iter().any(|a| a == name);
    let runs = env_usize("DVK_BENCH_RUNS", 5);
    let pg = std::env::var("DVK_COMPARE_PG").map_err(|_| {
        anyhow::anyhow!("DVK_COMPARE_PG (a PostgreSQL URL) is required: run `cargo xtask bench compare`")
    })?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("cores: {cores}");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let pg_seen = rt.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&pg).await?;
        let seen = pg_settings(&pool).await;
        pool.close().await;
        seen
    })?;
    println!("postgresql: {pg_seen}");

    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| dvk_domain::Date::from_unix_days((d.as_secs() / 86_400) as i64))
        .map_or_else(String::new, |d| d.to_string());
    let mut md = String::new();
    writeln!(
        md,
        "Last run: {today} (UTC), on {cores} cores (`std::thread::available_parallelism`), {runs} runs per figure \
         (median, runs listed). PostgreSQL as seen by the benchmark: {pg_seen}. Command: \
         `cargo xtask bench compare` (all parts); one part: `DVK_COMPARE_PARTS=<part> cargo xtask bench compare`.\n",
    )?;
    if want("commands") {
        md.push_str(&rt.block_on(commands::compare(&pg, runs))?);
    }
    if want("rollups") || want("replay") {
        let dir = tempfile::tempdir()?;
        let t = std::time::Instant::now();
        let log = workload::prepare_log(dir.path(), &rt);
        println!("prepared a log of {} events in {:.1} s", log.head(), t.elapsed().as_secs_f64());
        log.close()?;
        drop(log);
        let log_dir = dir.path().join("aggregation");
        // Replay first (on the log as prepared), but its table after part 2's.
        let replay_md = if want("replay") { replay::compare(&log_dir, runs, &rt)? } else { String::new() };
        if want("rollups") {
            md.push_str(&rollups::compare(&pg, dir.path(), runs, &rt)?);
        }
        md.push_str(&replay_md);
    }
    println!("\n{md}");
    if let Some(out) = std::env::var_os("DVK_COMPARE_OUT") {
        std::fs::write(out, &md)?;
    }
    Ok(())
}
