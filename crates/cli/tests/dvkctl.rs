//! dvkctl as an operator runs it: a token from the development secret, the real GSO
//! lists imported with their counts printed, a second import that changes nothing, a
//! malformed file reported with its line, and the exit codes. A district imports its
//! communes' reports from a spreadsheet: good rows accepted, bad rows listed by row;
//! the same sheet from another district is refused row by row, never "accepted".

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use dvk_runtime::settings::{AuthSettings, ServerSettings};

const SECRET: &str = "dvkctl-test-secret-0123456789abcdef";

fn gso(name: &str) -> String {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../gso/data/admin-units")
        .join(name)
        .display()
        .to_string()
}

async fn dvkctl(args: Vec<String>, token: Option<String>, url: String) -> Output {
    dvkctl_at(args, token, vec![("DVK_REGISTRATION_URL", url)]).await
}

async fn dvkctl_at(args: Vec<String>, token: Option<String>, urls: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dvkctl"));
        c.args(&args).envs(urls).env_remove("DVK_TOKEN");
        if let Some(t) = token {
            c.env("DVK_TOKEN", t);
        }
        c.output().expect("dvkctl runs")
    })
    .await
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_imports_the_gso_lists_with_dvkctl() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let settings = ServerSettings {
        data_dir: dir.path().join("registration"),
        metrics_listen: None,
        shutdown_timeout: Duration::from_secs(5),
        max_message_bytes: 16 << 20,
        tls: Default::default(),
        health_listen: None,
        max_calls_per_caller: 256,
        auth: AuthSettings { jwt_hs256_secret_file: Some(secret.clone()), jwt_public_key_file: None },
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let log = dvk_registration::open_log(&settings).unwrap();
    let server = tokio::spawn(dvk_registration::serve(
        listener,
        settings,
        log,
        None,
        async move {
            let _ = stopped.await;
        },
        move || {
            let _ = ready_tx.send(());
        },
    ));
    ready_rx.await.unwrap();

    let secret_arg = secret.display().to_string();
    let token_args =
        |role: &str| vec!["token".into(), "--secret-file".into(), secret_arg.clone(), "--role".into(), role.into()];
    let out = dvkctl(token_args("admin"), None, url.clone()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let admin = text(&out.stdout).trim().to_owned();
    assert_eq!(admin.split('.').count(), 3, "a JWT");

    let import = |file: &str| vec!["units".to_owned(), "import".into(), gso(file), "--quiet".into()];
    let out = dvkctl(import("gso-communes-2025-01-04.csv"), Some(admin.clone()), url.clone()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("10810 units received, 10810 added, 0 already present"),
        "{}",
        text(&out.stdout)
    );
    let out = dvkctl(import("gso-reorganization-2025-07-01.csv"), Some(admin.clone()), url.clone()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("3355 units received, 3355 added"), "{stdout}");
    assert!(stdout.contains("mapping links received"), "{stdout}");
    // Rows that are not units are named, with their line, and skipped.
    assert!(text(&out.stderr).contains("skipped"), "{}", text(&out.stderr));
    // The reconciliation with the pre-2025 list: counts, then a CSV list.
    assert!(stdout.contains("Reconciliation with the pre-2025 list:"), "{stdout}");
    assert!(stdout.contains("corrections applied: 4 of 4"), "{stdout}");
    assert!(stdout.contains("pre-2025 communes recoded (linked, link inferred): 7"), "{stdout}");
    assert!(stdout.contains("pre-2025 communes unassigned on the 2025 tree: 19"), "{stdout}");
    assert!(stdout.lines().any(|l| l == dvk_gso::reconciliation::HEADER), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("unassigned,pre2025,03988,Xã Tân Hợp,123,,,")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("correction,table,01651,,,,912,")), "{stdout}");

    // An operator adds a missing link from a small CSV: marked supplementary.
    let links = dir.path().join("links.csv");
    std::fs::write(&links, "old_code,new_code,note\n04075,04075,Nhập toàn bộ\n").unwrap();
    let link = vec!["units".to_owned(), "link".into(), links.display().to_string()];
    let out = dvkctl(link.clone(), Some(admin.clone()), url.clone()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 supplementary links received, 1 added"), "{}", text(&out.stdout));
    let get = vec![
        "call".to_owned(),
        "RegistrationService/GetUnit".into(),
        r#"{"tree": "TREE_PRE2025", "code": {"code": "04075"}}"#.into(),
    ];
    let out = dvkctl(get, Some(admin.clone()), url.clone()).await;
    assert!(text(&out.stdout).contains("MAPPING_STATUS_SUPPLEMENTARY"), "{}{}", text(&out.stdout), text(&out.stderr));
    // A link from a code the pre-2025 list lacks is refused, naming the field.
    std::fs::write(&links, "old_code,new_code\n99999,04075\n").unwrap();
    let out = dvkctl(link.clone(), Some(admin.clone()), url.clone()).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("99999 is not a unit of the pre-2025 tree"), "{}", text(&out.stderr));
    // A malformed links file names its line and sends nothing.
    std::fs::write(&links, "old_code,new_code\n04075,0407\n").unwrap();
    let out = dvkctl(link, Some(admin.clone()), url.clone()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("line 2"), "{}", text(&out.stderr));

    // The same file again changes nothing.
    let out = dvkctl(import("gso-communes-2025-01-04.csv"), Some(admin.clone()), url.clone()).await;
    assert!(
        text(&out.stdout).contains("10810 units received, 0 added, 10810 already present"),
        "{}",
        text(&out.stdout)
    );

    // A malformed file: the line is named, exit code 2, nothing sent.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "Tỉnh Thành Phố,Mã TP,Quận Huyện,Mã QH,Phường Xã,Mã PX,Cấp,Tên Tiếng Anh\n\
         Tỉnh Mới,99,Huyện Mới,999,Xã Một,99990,Xã,\n\
         Tỉnh Mới,99,Huyện Mới,999,Xã Hai,9999,Xã,\n",
    )
    .unwrap();
    let out =
        dvkctl(vec!["units".into(), "import".into(), bad.display().to_string()], Some(admin.clone()), url.clone())
            .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("line 3"), "{}", text(&out.stderr));

    // No token: usage error; a reporter's token: denied (exit 4).
    let out = dvkctl(import("gso-communes-2025-01-04.csv"), None, url.clone()).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let reporter = text(&dvkctl(token_args("reporter"), None, url.clone()).await.stdout).trim().to_owned();
    let out = dvkctl(import("gso-communes-2025-01-04.csv"), Some(reporter), url.clone()).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    // An unknown role is a usage error.
    let out = dvkctl(token_args("mayor"), None, url.clone()).await;
    assert_eq!(out.status.code(), Some(2));

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Starts registration (with the pre-2025 tree) and reporting linked to it in this
/// process; returns their URLs and a stop handle.
async fn reporting_stack(dir: &Path, secret: &Path) -> (String, String, dvk_eventlog::EventLog, impl FnOnce()) {
    let settings = |name: &str| ServerSettings {
        data_dir: dir.join(name),
        metrics_listen: None,
        shutdown_timeout: Duration::from_secs(5),
        max_message_bytes: 16 << 20,
        tls: Default::default(),
        health_listen: None,
        max_calls_per_caller: 256,
        auth: AuthSettings { jwt_hs256_secret_file: Some(secret.to_owned()), jwt_public_key_file: None },
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let registration_log = dvk_registration::open_log(&settings("registration")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registration_url = format!("http://{}", listener.local_addr().unwrap());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(dvk_registration::serve(
        listener,
        settings("registration"),
        registration_log.clone(),
        None,
        until(stopped.clone()),
        move || {
            let _ = ready_tx.send(());
        },
    ));
    ready_rx.await.unwrap();

    // H1 2025 reports are open today.
    let end = dvk_domain::Period::parse("p", "2025-H1").unwrap().end();
    let days = (dvk_runtime::host::today().to_unix_days() - end.to_unix_days()) as u32;
    let schedule = dvk_domain::schedule::Schedule {
        half_year: dvk_domain::schedule::Deadline {
            opens_before_end: 15,
            due_after_end: days + 30,
            locks_after_end: days + 60,
        },
        ..Default::default()
    };
    let reporting_settings = settings("reporting");
    let reporting_log = dvk_reporting::open_log(&reporting_settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reporting_url = format!("http://{}", listener.local_addr().unwrap());
    let links =
        dvk_reporting::Links { relay: None, registration: Some(dvk_runtime::host::Upstream::Local(registration_log)) };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(dvk_reporting::serve(
        listener,
        reporting_settings,
        schedule,
        reporting_log.clone(),
        links,
        until(stopped),
        move || {
            let _ = ready_tx.send(());
        },
    ));
    ready_rx.await.unwrap();
    (registration_url, reporting_url, reporting_log, move || {
        let _ = stop.send(true);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_district_imports_its_communes_reports_from_a_spreadsheet() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let (registration, reporting, reporting_log, stop) = reporting_stack(dir.path(), &secret).await;
    let urls = || vec![("DVK_REGISTRATION_URL", registration.clone()), ("DVK_REPORTING_URL", reporting.clone())];
    let mint = |role: &str, unit: &str| {
        let claims = dvk_client::token::Claims {
            sub: format!("{role}-{unit}"),
            role: role.into(),
            unit: unit.into(),
            exp: dvk_client::token::now_secs() + 600,
        };
        dvk_client::token::mint_hs256(SECRET.as_bytes(), &claims).unwrap()
    };
    let import = vec!["units".into(), "import".into(), gso("gso-communes-2025-01-04.csv"), "--quiet".into()];
    let out = dvkctl_at(import, Some(mint("admin", "")), urls()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Wait until the reporting service has received the tree (its district and communes).
    let mut client = dvk_proto::reporting::v1::reporting_service_client::ReportingServiceClient::new(
        tonic::transport::Channel::from_shared(reporting.clone()).unwrap().connect().await.unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let request = dvk_proto::reporting::v1::ListReportsRequest {
            unit: Some(dvk_proto::common::v1::UnitCode { code: "207".into() }),
            period: Some(dvk_proto::common::v1::Period { code: "2025-H1".into() }),
            ..Default::default()
        };
        let r = client.list_reports(dvk_client::import::authorized(request, &mint("analyst", "")).unwrap()).await;
        if r.is_ok_and(|r| r.into_inner().completeness.is_some_and(|c| c.expected == 4)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the reporting service never received the tree");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tree_head = reporting_log.head();

    // The template, in both formats, carries every column.
    let template = dir.path().join("mau.xlsx");
    let out = dvkctl_at(vec!["reports".into(), "template".into(), template.display().to_string()], None, urls()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv_template = dir.path().join("mau.csv");
    let out =
        dvkctl_at(vec!["reports".into(), "template".into(), csv_template.display().to_string()], None, urls()).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let header = std::fs::read_to_string(&csv_template).unwrap();
    assert!(header.starts_with("unit_code,period,models_registered,"), "{header}");
    assert!(header.trim_end().ends_with(",summary"), "{header}");
    for figure in dvk_domain::report::Figure::ALL {
        assert!(header.split(',').any(|c| c == figure.name()), "{figure} has no column: {header}");
    }

    // A district's sheet: three good rows, four bad ones.
    let sheet = dir.path().join("bao-cao-2025-H1.xlsx");
    {
        use rust_xlsxwriter::Workbook;
        let mut book = Workbook::new();
        let ws = book.add_worksheet();
        let columns = dvk_client::reports::columns();
        for (i, (c, _)) in columns.iter().enumerate() {
            ws.write_string(0, i as u16, *c).unwrap();
        }
        // unit, period, registered, recognised, funds, workdays, ..., received, resolved
        let rows: [(&str, &str, [f64; 11]); 7] = [
            ("07192", "2025-H1", [12.0, 5.0, 81_000_000.0, 120.0, 300.0, 4.0, 12.0, 11.0, 1.0, 2.0, 3.0]),
            ("07195", "2025-H1", [8.0, 8.0, 5_000_000.0, 60.0, 150.0, 2.0, 3.0, 3.0, 1.0, 0.0, 1.0]),
            ("07198", "2025-H1", [3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
            ("207", "2025-H1", [23.0, 13.0, 86_000_000.0, 180.0, 450.0, 6.0, 15.0, 15.0, 2.0, 2.0, 4.0]),
            ("00001", "2025-H1", [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
            ("07192", "2025-H3", [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
            ("22", "2025-H1", [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ];
        for (r, (unit, period, figures)) in rows.iter().enumerate() {
            let r = r as u32 + 1;
            ws.write_string(r, 0, *unit).unwrap();
            ws.write_string(r, 1, *period).unwrap();
            for (i, f) in figures.iter().enumerate() {
                ws.write_number(r, i as u16 + 2, *f).unwrap();
            }
            ws.write_string(r, columns.len() as u16 - 1, "Sơ kết 6 tháng đầu năm").unwrap();
        }
        // A code typed as a number has lost its leading zero.
        ws.write_number(8, 0, 7192.0).unwrap();
        ws.write_string(8, 1, "2025-H1").unwrap();
        book.save(&sheet).unwrap();
    }
    let district = mint("reporter", "207");
    let import = |file: &Path| vec!["reports".into(), "import".into(), file.display().to_string(), "--quiet".into()];
    let out = dvkctl_at(import(&sheet), Some(district.clone()), urls()).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    for line in [
        "row 2: accepted report-07192-2025-H1 (version 1)",
        "row 3: accepted report-07195-2025-H1 (version 1)",
        "row 5: accepted report-207-2025-H1 (version 1)",
    ] {
        assert!(stdout.contains(line), "{line}\n{stdout}");
    }
    let refused: Vec<&str> = stdout.lines().filter(|l| l.contains(": refused")).collect();
    assert_eq!(refused.len(), 5, "{stdout}");
    let row = |n: usize| refused.iter().find(|l| l.starts_with(&format!("row {n}:"))).copied().unwrap_or("");
    assert!(row(4).contains("report-07198-2025-H1") && row(4).contains("figures.models_recognized"), "{stdout}");
    assert!(row(6).contains("PermissionDenied") && row(6).contains("00001"), "{stdout}");
    assert!(row(7).contains("InvalidArgument") && row(7).contains("period"), "{stdout}");
    assert!(row(8).contains("PermissionDenied"), "{stdout}");
    assert!(row(9).contains("leading zeros"), "{stdout}");
    assert!(stdout.contains("3 rows accepted, 5 refused"), "{stdout}");
    assert_eq!(reporting_log.head(), tree_head + 3, "only the accepted rows are written");

    // The same rows again, from a CSV: the accepted ones answer as before and nothing
    // new is written.
    let csv = dir.path().join("bao-cao.csv");
    let mut body = header.trim_end().to_owned();
    body.push_str("\n07192,2025-H1,12,5,81.000.000,120,300,4,12,11,1,2,3,Sơ kết 6 tháng đầu năm\n");
    std::fs::write(&csv, body).unwrap();
    let before = reporting_log.head();
    let out = dvkctl_at(import(&csv), Some(district), urls()).await;
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("row 2: accepted report-07192-2025-H1 (version 1)"), "{}", text(&out.stdout));
    assert_eq!(reporting_log.head(), before, "a re-import writes nothing");

    // The same sheet imported by another district's reporter (Hạ Long, 193): the row's
    // request id is the same (it derives from the content), but the row is not its
    // to report, so it is refused, not shown as accepted.
    let out = dvkctl_at(import(&csv), Some(mint("reporter", "193")), urls()).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("accepted report"), "{stdout}");
    assert!(stdout.contains("row 2: refused report-07192-2025-H1 — PermissionDenied"), "{stdout}");
    assert!(stdout.contains("0 rows accepted, 1 refused"), "{stdout}");
    // The province's reporter (Quảng Ninh, 22) may report for the commune: it gets
    // the first answer.
    let out = dvkctl_at(import(&csv), Some(mint("reporter", "22")), urls()).await;
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("row 2: accepted report-07192-2025-H1 (version 1)"), "{}", text(&out.stdout));
    assert_eq!(reporting_log.head(), before, "neither import wrote anything");
    stop();
}
