//! One caller cannot take all of a service: calls beyond its limit in flight are
//! refused at once with RESOURCE_EXHAUSTED, while other callers and health probes are
//! served.

use std::time::{Duration, Instant};

use dvk_proto::aggregation::v1 as pa;
use dvk_proto::common::v1::{Period, Position, Tree};
use dvk_runtime::auth::{Claims, mint_hs256, now_secs};
use dvk_tests::{SECRET, Service, health, settings, tonic_health_client};
use tonic::Code;

fn analyst(sub: &str) -> String {
    let claims = Claims { sub: sub.into(), role: "analyst".into(), unit: String::new(), exp: now_secs() + 600 };
    mint_hs256(SECRET, &claims).unwrap()
}

/// A roll-up that waits (up to `wait`) for a position that will not come.
fn waiting(token: &str, wait: Duration) -> tonic::Request<pa::GetRollupRequest> {
    let mut r = dvk_client::import::authorized(
        pa::GetRollupRequest {
            period: Some(Period { code: "2024".into() }),
            tree: Tree::Pre2025 as i32,
            min_positions: vec![Position { source: "reporting".into(), position: 1_000_000 }],
            ..Default::default()
        },
        token,
    )
    .unwrap();
    r.set_timeout(wait);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_limit_is_refused_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&dir.path().join("aggregation"), None);
    s.max_calls_per_caller = 2;
    let service = Service::aggregation_from(s, dvk_aggregation::Links::default()).await;
    let client = service.aggregation_client().await;
    let greedy = analyst("greedy");

    // Two calls hold the greedy caller's two slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = client.clone();
        let r = waiting(&greedy, Duration::from_secs(3));
        held.push(tokio::spawn(async move { c.get_rollup(r).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A third is refused at once.
    let started = Instant::now();
    let e = client.clone().get_rollup(waiting(&greedy, Duration::from_secs(3))).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(1));

    // Another caller, and a probe, are served meanwhile.
    let mut other = client.clone();
    let r = dvk_client::import::authorized(
        pa::GetRollupRequest {
            period: Some(Period { code: "2024".into() }),
            tree: Tree::Pre2025 as i32,
            ..Default::default()
        },
        &analyst("other"),
    )
    .unwrap();
    other.get_rollup(r).await.unwrap();
    let probe = tonic_health_client(service.channel().await)
        .check(health::HealthCheckRequest { service: dvk_aggregation::SERVICE_NAME.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.status, health::health_check_response::ServingStatus::Serving as i32);

    // Once the held calls end (their positions never came: DEADLINE_EXCEEDED), the
    // greedy caller is served again.
    for h in held {
        assert_eq!(h.await.unwrap().unwrap_err().code(), Code::DeadlineExceeded);
    }
    let r = dvk_client::import::authorized(
        pa::GetRollupRequest {
            period: Some(Period { code: "2024".into() }),
            tree: Tree::Pre2025 as i32,
            ..Default::default()
        },
        &greedy,
    )
    .unwrap();
    client.clone().get_rollup(r).await.unwrap();
    service.stop().await;
}
