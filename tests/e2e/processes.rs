//! Services as separate processes on loopback ports, and calls that retry until the
//! service answers: shared by the scenarios that kill or cut off processes.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dvk_client::import;
use dvk_proto::common::v1::{Date, Field, UnitCode};
use dvk_proto::events::v1::{ModelDetails, RunnerKind, Sponsor, Timeline};
use dvk_proto::registration::v1 as pr;
use tonic::transport::Channel;

pub(crate) fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

pub(crate) struct Process {
    pub(crate) name: &'static str,
    pub(crate) addr: SocketAddr,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) child: Option<Child>,
}

impl Process {
    pub(crate) fn start(&mut self) {
        let child = Command::new(dvk_tests::service_binary(self.name))
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", if std::env::var_os("TEST_LOG").is_some() { "info" } else { "error" })
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub(crate) fn req<T>(m: T, token: &str) -> tonic::Request<T> {
    let mut r = import::authorized(m, token).unwrap();
    r.set_timeout(Duration::from_secs(5));
    r
}

pub(crate) async fn channel(addr: SocketAddr) -> Option<Channel> {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .ok()
}

/// Calls until the service answers (it may be down, restarting or replaying).
macro_rules! until_ok {
    ($addr:expr, $client:ident, $call:expr) => {{
        loop {
            if let Some(ch) = channel($addr).await {
                let $client = ch;
                match $call.await {
                    Ok(r) => break r.into_inner(),
                    Err(e)
                        if matches!(
                            e.code(),
                            tonic::Code::InvalidArgument
                                | tonic::Code::PermissionDenied
                                | tonic::Code::AlreadyExists
                                | tonic::Code::FailedPrecondition
                        ) =>
                    {
                        panic!("refused: {e:?}")
                    }
                    Err(e) => {
                        if std::env::var_os("TEST_LOG").is_some() {
                            eprintln!("retry after {e:?}");
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }};
}

pub(crate) fn model(request_id: String, unit: &str) -> pr::RegisterModelRequest {
    let on = Some(Date { year: 2024, month: 4, day: 2 });
    pr::RegisterModelRequest {
        request_id,
        unit: Some(UnitCode { code: unit.into() }),
        registered_on: on,
        details: Some(ModelDetails {
            name: "Mô hình dân vận khéo".into(),
            field: Field::Economy as i32,
            runner_kind: RunnerKind::Collective as i32,
            runner_name: "Chi hội".into(),
            sponsor: Sponsor::FarmersUnion as i32,
            sponsor_name: "Hội Nông dân".into(),
            objectives: "Đường làng".into(),
            timeline: Some(Timeline { start: on, end: None }),
            ..Default::default()
        }),
    }
}

pub(crate) use until_ok;
