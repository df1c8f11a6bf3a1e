//! The run command a new user types: `dvk` starts, says where its data is, and stops
//! cleanly on SIGTERM with its logs intact.

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvk"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--registration-listen", "127.0.0.1:0", "--reporting-listen", "127.0.0.1:0"])
        .args(["--aggregation-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dvk starts");
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let deadline = Instant::now() + Duration::from_secs(30);
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
