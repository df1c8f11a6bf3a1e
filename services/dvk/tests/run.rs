//! The run command a new user types: `dvk` starts, says where its data is, and stops
//! cleanly on SIGTERM with its logs intact. With `--demo`, an analyst reads the demo
//! through `dvkctl` (a child process too): a roll-up, a ranking, completeness and a
//! chart, each matching what the demo says it wrote; a restart shows the same numbers.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the process if the test fails before stopping it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data_dir: &std::path::Path) -> (Running, Vec<String>) {
    start_with(data_dir, &[])
}

fn start_with(data_dir: &std::path::Path, extra: &[&str]) -> (Running, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvk"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .args(["--registration-listen", "127.0.0.1:0", "--reporting-listen", "127.0.0.1:0"])
        .args(["--aggregation-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dvk starts");
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let mut line = String::new();
        if out.read_line(&mut line).expect("read") == 0 {
            break;
        }
        let done = line.contains("Stop with Ctrl-C");
        lines.push(line.trim_end().to_owned());
        if done {
            break;
        }
    }
    // Keep reading in the background so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    (Running(child), lines)
}

fn terminate(Running(child): &mut Running) -> std::process::ExitStatus {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(Instant::now() < deadline, "dvk did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dvk_opens_one_log_per_service_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = start(dir.path());
    let text = lines.join("\n");
    for service in ["registration", "reporting", "aggregation"] {
        assert!(text.contains(service), "{text}");
        assert!(dir.path().join(service).join("db").exists(), "{service} log directory");
    }
    assert!(text.contains("registration  gRPC on 127.0.0.1:"), "{text}");
    assert!(text.contains("reporting     gRPC on 127.0.0.1:"), "{text}");
    // A development secret is created and the printed commands use it.
    let secret = dir.path().join("dev-jwt-secret");
    assert_eq!(std::fs::read(&secret).unwrap().len(), 64);
    assert!(text.contains(&format!("token --secret-file {}", secret.display())), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    let status = terminate(&mut child);
    assert!(status.success(), "{status}");

    // A second start opens the same logs (the directory locks were released).
    let (mut child, lines) = start(dir.path());
    assert!(lines.iter().any(|l| l.contains("aggregation   gRPC on 127.0.0.1:")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("reporting     gRPC on")), "{lines:?}");
    assert!(terminate(&mut child).success());
}

#[test]
fn a_data_dir_that_cannot_be_created_is_an_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dvk")).arg("--data-dir").arg(file.path()).output().expect("dvk runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot create the data directory"), "{err}");
}

/// The dvkctl binary built beside dvk (`cargo test --workspace` builds it; alone, this
/// test builds it).
fn dvkctl() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_dvk")).parent().unwrap().to_owned();
    let path = dir.join("dvkctl");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "dvk-cli", "--bin", "dvkctl"])
            .status()
            .expect("cargo builds dvkctl");
        assert!(status.success());
    }
    path
}

/// The address a service listens on, from dvk's first lines.
fn addr(lines: &[String], service: &str) -> String {
    let line = lines.iter().find(|l| l.trim_start().starts_with(service) && l.contains("gRPC on")).unwrap();
    format!("http://{}", line.rsplit(' ').next().unwrap())
}

fn run_dvkctl(lines: &[String], token: &str, args: &[&str]) -> String {
    let out = Command::new(dvkctl())
        .args(args)
        .env("DVK_REGISTRATION_URL", addr(lines, "registration"))
        .env("DVK_REPORTING_URL", addr(lines, "reporting"))
        .env("DVK_AGGREGATION_URL", addr(lines, "aggregation"))
        .env("DVK_TOKEN", token)
        .output()
        .expect("dvkctl runs");
    assert!(out.status.success(), "dvkctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn an_analyst_reads_the_demo_through_dvkctl_and_a_restart_shows_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_with(dir.path(), &["--demo"]);
    let text = lines.join("\n");
    assert!(text.contains("10810 units added") && text.contains("3355 units added"), "{text}");
    assert!(text.contains("dvkctl rollup"), "{text}");
    let demo = json(&std::fs::read_to_string(dir.path().join("demo.json")).unwrap());
    let secret = dir.path().join("dev-jwt-secret").display().to_string();
    let token = run_dvkctl(&lines, "", &["token", "--secret-file", &secret, "--role", "analyst"]).trim().to_owned();

    // The nation's roll-up for 2024 and for its first half.
    let year = json(&run_dvkctl(&lines, &token, &["--json", "rollup", "--tree", "pre2025", "--period", "2024"]));
    assert_eq!(year["models_registered"], demo["models_registered"]);
    // Every unit also files its year review (tổng kết năm): the year's roll-up counts
    // those reports, not zeros.
    let want_year = &demo["periods"]["2024"];
    assert_eq!(year["reports_counted"], want_year["approved"]);
    assert_eq!(year["funds_mobilized_vnd"], want_year["approved_figures"]["funds_mobilized_vnd"]);
    assert!(year["funds_mobilized_vnd"].as_i64().unwrap() > 0, "{year}");
    let h1 = json(&run_dvkctl(&lines, &token, &["--json", "rollup", "--tree", "pre2025", "--period", "2024-H1"]));
    let want = &demo["periods"]["2024-H1"];
    assert_eq!(h1["reports_counted"], want["approved"]);
    assert_eq!(h1["funds_mobilized_vnd"], want["approved_figures"]["funds_mobilized_vnd"]);
    assert_eq!(h1["petitions_resolved"], want["approved_figures"]["petitions_resolved"]);
    // The table form shows the same figure, grouped.
    let table = run_dvkctl(&lines, &token, &["rollup", "--tree", "pre2025", "--period", "2024-H1"]);
    let funds = want["approved_figures"]["funds_mobilized_vnd"].as_i64().unwrap();
    assert!(table.contains(&dvk_cli::output::group(funds)), "{table}");
    assert!(table.contains("Việt Nam"), "{table}");

    // The provinces ranked by models registered: the three demo provinces first.
    let ranking = json(&run_dvkctl(
        &lines,
        &token,
        &["--json", "children", "--tree", "pre2025", "--period", "2024", "--sort", "models-registered", "--limit", "3"],
    ));
    let mut by_province: Vec<(String, i64)> =
        demo["models_by_province"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap())).collect();
    by_province.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let got: Vec<(String, i64)> = ranking
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["unit"].as_str().unwrap().to_owned(), r["models_registered"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, by_province);

    // Completeness, summed over the demo provinces.
    let (mut expected, mut submitted) = (0, 0);
    for p in demo["provinces"].as_array().unwrap() {
        let c = json(&run_dvkctl(
            &lines,
            &token,
            &["--json", "completeness", "--tree", "pre2025", "--period", "2024-H2", "--unit", p.as_str().unwrap()],
        ));
        assert!(c[0]["name"].as_str().unwrap().starts_with("Tỉnh "), "the unit names itself: {c}");
        expected += c[0]["expected"].as_i64().unwrap();
        submitted += c[0]["submitted"].as_i64().unwrap();
    }
    assert_eq!(
        (expected, submitted),
        (
            demo["periods"]["2024-H2"]["expected"].as_i64().unwrap(),
            demo["periods"]["2024-H2"]["submitted"].as_i64().unwrap()
        )
    );

    // The projection's status names each source's head, read from its log in this
    // process: the demo is counted up to it.
    let status = json(&run_dvkctl(&lines, &token, &["--json", "status"]));
    for src in status.as_array().unwrap() {
        let (head, projected) = (src["head"].as_i64().unwrap(), src["projected"].as_i64().unwrap());
        assert!(head > 0 && head == projected && src["lag"].as_i64() == Some(0), "{src}");
    }

    // A chart of the ranking.
    let svg = dir.path().join("provinces.svg");
    run_dvkctl(
        &lines,
        &token,
        &["chart", "ranking", "--tree", "pre2025", "--period", "2024", "--limit", "3", "--out", svg.to_str().unwrap()],
    );
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.starts_with("<svg") && drawn.contains("Tỉnh Quảng Ninh"), "{drawn}");
    // Titled in words (figure, unit, period), never with an internal name.
    assert!(drawn.contains("Số mô hình đăng ký — Việt Nam, năm 2024"), "{drawn}");
    assert!(!drawn.contains("ModelsRegistered"), "{drawn}");
    // A period without reports says so instead of drawing empty axes.
    let empty = dir.path().join("empty.svg");
    let args = ["chart", "ranking", "--tree", "pre2025", "--period", "2023", "--sort", "funds"];
    run_dvkctl(&lines, &token, &[&args[..], &["--lang", "en", "--out", empty.to_str().unwrap()]].concat());
    let drawn = std::fs::read_to_string(&empty).unwrap();
    assert!(drawn.contains("No data for this period") && drawn.contains("Viet Nam, 2023"), "{drawn}");

    // SIGTERM: stopped within 10 s; a restart (no demo again) shows the same numbers.
    let started = Instant::now();
    assert!(terminate(&mut child).success());
    assert!(started.elapsed() < Duration::from_secs(10), "stopped in {:?}", started.elapsed());
    let (mut child, lines) = start(dir.path());
    assert!(!lines.join("\n").contains("Loading the demo"), "{lines:?}");
    let again = json(&run_dvkctl(&lines, &token, &["--json", "rollup", "--tree", "pre2025", "--period", "2024-H1"]));
    assert_eq!(again, h1);
    assert!(terminate(&mut child).success());
}

/// Starts dvk and returns as soon as it has said where the three services listen (a
/// first start then goes on loading); the rest of its output is read in the background.
fn start_answering(data_dir: &std::path::Path, extra: &[&str]) -> (Running, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvk"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .args(["--registration-listen", "127.0.0.1:0", "--reporting-listen", "127.0.0.1:0"])
        .args(["--aggregation-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dvk starts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.trim_start().starts_with("aggregation") && l.contains("gRPC on")) {
        let mut line = String::new();
        assert!(out.read_line(&mut line).expect("read") > 0, "dvk stopped before it listened: {lines:?}");
        lines.push(line.trim_end().to_owned());
    }
    std::thread::spawn(move || for _ in out.lines() {});
    (Running(child), lines)
}

#[test]
fn health_says_serving_only_once_the_first_start_has_loaded_the_trees() {
    use dvk_proto::common::v1 as pc;
    use dvk_proto::events::v1 as pe;
    use dvk_proto::{aggregation::v1 as pa, registration::v1 as pr, reporting::v1 as pp};
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

    let dir = tempfile::tempdir().unwrap();
    // Every half-year open for reports, whatever today is.
    let schedule = dir.path().join("schedule.toml");
    std::fs::write(
        &schedule,
        "[half_year]\nopens_before_end = 36500\ndue_after_end = 36500\nlocks_after_end = 36500\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let (mut child, lines) = start_answering(&data, &["--schedule-file", schedule.to_str().unwrap()]);
    let secret = std::fs::read(data.join("dev-jwt-secret")).unwrap();
    let claims = dvk_runtime::auth::Claims {
        sub: "test".into(),
        role: "admin".into(),
        unit: String::new(),
        exp: dvk_runtime::auth::now_secs() + 3600,
    };
    let token = dvk_runtime::auth::mint_hs256(secret.trim_ascii(), &claims).unwrap();
    fn authorized<T>(m: T, token: &str) -> tonic::Request<T> {
        dvk_client::import::authorized(m, token).unwrap()
    }
    let token = token.as_str();
    let date = |year, month, day| Some(pc::Date { year, month, day });
    let model = |unit: &str, year| pr::RegisterModelRequest {
        request_id: format!("model-{unit}"),
        unit: Some(pc::UnitCode { code: unit.into() }),
        registered_on: date(year, 3, 1),
        details: Some(pe::ModelDetails {
            name: "Dân vận khéo".into(),
            field: pc::Field::Economy as i32,
            runner_kind: pe::RunnerKind::Collective as i32,
            runner_name: "Chi hội Phụ nữ thôn 3".into(),
            sponsor: pe::Sponsor::WomensUnion as i32,
            objectives: "Đường làng sáng, xanh, sạch".into(),
            timeline: Some(pe::Timeline { start: date(year, 3, 1), end: None }),
            ..Default::default()
        }),
    };
    // Xã Đất Mũi (32248, Cà Mau) is the 2025 list's last commune; the mapping is loaded
    // after it.
    let (unit, period) =
        (|| Some(pc::UnitCode { code: "32248".into() }), || Some(pc::Period { code: "2025-H2".into() }));

    // Polls a service's health from the moment it listens; once it says SERVING, a
    // request that needs the whole trees goes to it at once.
    let serving = |service: &str| {
        let url = addr(&lines, service);
        async move {
            let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
            let mut health = HealthClient::new(channel.clone());
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut held = 0;
            loop {
                let status = health.check(HealthCheckRequest::default()).await.unwrap().into_inner().status;
                if status == ServingStatus::Serving as i32 {
                    return (channel, held);
                }
                held += 1;
                assert!(Instant::now() < deadline, "never SERVING");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let held = runtime.block_on(async {
        let registration = async {
            let (channel, held) = serving("registration").await;
            let mut client = pr::registration_service_client::RegistrationServiceClient::new(channel);
            let pre2025 = client.register_model(authorized(model("04138", 2024), token)).await;
            assert!(pre2025.is_ok(), "a commune of the pre-2025 list once SERVING: {pre2025:?}");
            let y2025 = client.register_model(authorized(model("32248", 2025), token)).await;
            assert!(y2025.is_ok(), "a commune of the 2025 list once SERVING: {y2025:?}");
            let u = client
                .get_unit(authorized(pr::GetUnitRequest { tree: pc::Tree::Tree2025 as i32, code: unit() }, token))
                .await
                .unwrap()
                .into_inner();
            assert!(!u.predecessors.is_empty(), "the mapping once SERVING: {u:?}");
            held
        };
        let reporting = async {
            let (channel, held) = serving("reporting").await;
            let mut client = pp::reporting_service_client::ReportingServiceClient::new(channel);
            let submitted = client
                .submit_report(authorized(
                    pp::SubmitReportRequest {
                        request_id: "report".into(),
                        unit: unit(),
                        period: period(),
                        figures: Some(pc::Figures::default()),
                        summary: String::new(),
                    },
                    token,
                ))
                .await;
            assert!(submitted.is_ok(), "a report of a 2025 commune once SERVING: {submitted:?}");
            held
        };
        let aggregation = async {
            let (channel, held) = serving("aggregation").await;
            let mut client = pa::aggregation_service_client::AggregationServiceClient::new(channel);
            let rollup = client
                .get_rollup(authorized(
                    pa::GetRollupRequest {
                        tree: pc::Tree::Tree2025 as i32,
                        unit: unit(),
                        period: period(),
                        ..Default::default()
                    },
                    token,
                ))
                .await;
            assert!(rollup.is_ok(), "a roll-up of a 2025 commune once SERVING: {rollup:?}");
            held
        };
        tokio::join!(registration, reporting, aggregation)
    });
    // The loading takes a while: health said NOT_SERVING meanwhile.
    assert!(held.0 > 0 && held.1 > 0 && held.2 > 0, "{held:?}");
    assert!(terminate(&mut child).success());
}
