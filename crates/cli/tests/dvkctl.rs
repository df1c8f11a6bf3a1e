//! dvkctl as an operator runs it: a token from the development secret, the real GSO
//! lists imported with their counts printed, a second import that changes nothing, a
//! malformed file reported with its line, and the exit codes.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use dvk_runtime::settings::{AuthSettings, ServerSettings};

const SECRET: &str = "dvkctl-test-secret-0123456789abcdef";

fn gso(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../domain/data/admin-units").join(name).display().to_string()
}

async fn dvkctl(args: Vec<String>, token: Option<String>, url: String) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dvkctl"));
        c.args(&args).env("DVK_REGISTRATION_URL", url).env_remove("DVK_TOKEN");
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
        auth: AuthSettings { jwt_hs256_secret_file: Some(secret.clone()), jwt_public_key_file: None },
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dvk_registration::run_notify(
        listener,
        settings,
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
