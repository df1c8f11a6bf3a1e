//! A client from another language: the Python example in `tests/interop/` generates
//! its stubs from `proto/` with grpcio-tools, mints its own JWT, registers a model,
//! submits a report and reads the roll-up with its write tokens, against the three
//! services running for real.

use std::path::PathBuf;
use std::time::Duration;

use dvk_client::import;
use dvk_domain::schedule::{Deadline, Schedule};
use dvk_gso as gso;
use dvk_proto::reporting::v1 as pp;
use dvk_runtime::host::Upstream;
use dvk_tests::{SECRET, Service, admin_units, token};

/// The Python with grpcio-tools: `DVK_PYTHON`, or where `cargo xtask test` installs it.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("DVK_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let p = home.join(".cache/dvk-ledger/tools/python-grpcio-tools-1.85.1/bin/python");
    assert!(p.exists(), "grpcio-tools is not installed: run `cargo xtask test` (it installs it from PyPI)");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_registers_reports_and_reads_the_rollup() {
    let dir = tempfile::tempdir().unwrap();
    let registration = Service::registration(&dir.path().join("registration")).await;
    {
        let mut client = registration.client().await;
        let name = "gso-communes-2025-01-04.csv";
        let file = gso::read(std::fs::File::open(admin_units(name)).unwrap()).unwrap();
        import::import(&mut client, &token("admin", ""), &file, name, |_| {}).await.unwrap();
    }
    let end = dvk_domain::Period::parse("p", "2024-H1").unwrap().end();
    let days = (dvk_runtime::host::today().to_unix_days() - end.to_unix_days()) as u32 + 365;
    let open = Deadline { opens_before_end: 15, due_after_end: days, locks_after_end: days };
    let schedule = Schedule { half_year: open, ..Schedule::default() };
    let links = dvk_reporting::Links { relay: None, registration: Some(Upstream::Local(registration.log.clone())) };
    let reporting = Service::reporting(&dir.path().join("reporting"), schedule, links).await;
    let links = dvk_aggregation::Links {
        registration: Some(Upstream::Local(registration.log.clone())),
        reporting: Some(Upstream::Local(reporting.log.clone())),
    };
    let aggregation = Service::aggregation(&dir.path().join("aggregation"), links).await;
    let mut rep = reporting.reporting_client().await;
    for _ in 0..600 {
        let r = rep
            .list_reports(
                import::authorized(
                    pp::ListReportsRequest {
                        unit: Some(dvk_proto::common::v1::UnitCode { code: "07192".into() }),
                        period: Some(dvk_proto::common::v1::Period { code: "2024-H1".into() }),
                        ..Default::default()
                    },
                    &token("analyst", ""),
                )
                .unwrap(),
            )
            .await;
        if r.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let script = dvk_tests::package_dir().join("interop/client.py");
    let mut command = tokio::process::Command::new(python());
    command
        .arg(&script)
        .env("DVK_REGISTRATION", registration.addr.to_string())
        .env("DVK_REPORTING", reporting.addr.to_string())
        .env("DVK_AGGREGATION", aggregation.addr.to_string())
        .env("DVK_JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
        .env("DVK_UNIT", "07192")
        .env("DVK_PERIOD", "2024-H1")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), command.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let read: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(read["report_id"], "report-07192-2024-H1");
    assert_eq!(read["unit_name"], "Thị trấn Cô Tô");
    assert_eq!(read["models_registered"], 1);
    assert_eq!(read["reports_counted"], 1);
    assert_eq!(read["funds_mobilized_vnd"], 81_000_000_000i64);
    assert!(read["refused"].as_str().unwrap().contains("figures.petitions_resolved"), "{read}");
    assert!(read["positions"]["reporting"].as_u64().unwrap() >= 1);

    aggregation.stop().await;
    reporting.stop().await;
    registration.stop().await;
}
