//! Prometheus metrics: per-RPC counts and latencies, log and projection positions,
//! served as text on `GET /metrics`.

use std::future::Future;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

/// A service's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RpcLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    /// Highest durable position of the service's own log.
    pub log_head: Gauge,
    /// Highest position applied to the service's read models.
    pub projected: Gauge,
    /// Events replayed at start.
    pub replayed: Counter,
    /// Events in the log not yet on the service's Kafka topic (log head − relay cursor).
    pub relay_lag: Gauge,
    /// Payload bytes the relay has handed to the producer and not yet seen delivered.
    pub relay_in_flight_bytes: Gauge,
    /// Bytes in librdkafka's producer queues (its `msg_size` statistic).
    pub relay_producer_queue_bytes: Gauge,
    consumer_lag: Family<PartitionLabels, Gauge>,
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "dvk",
            [(std::borrow::Cow::Borrowed("service"), std::borrow::Cow::Owned(service.to_owned()))].into_iter(),
        );
        let requests = Family::<RpcLabels, Counter>::default();
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        let log_head = Gauge::default();
        let projected = Gauge::default();
        let replayed = Counter::default();
        let relay_lag = Gauge::default();
        let relay_in_flight_bytes = Gauge::default();
        let relay_producer_queue_bytes = Gauge::default();
        let consumer_lag = Family::<PartitionLabels, Gauge>::default();
        registry.register("rpc_requests", "gRPC requests by method and status code", requests.clone());
        registry.register("rpc_latency_seconds", "gRPC request latency", latency.clone());
        registry.register("log_head_position", "Highest durable position of the service's log", log_head.clone());
        registry.register("projected_position", "Highest position applied to the read models", projected.clone());
        registry.register("replayed_events", "Events replayed from the log at start", replayed.clone());
        registry.register("relay_lag_events", "Log head minus the relay's delivered cursor", relay_lag.clone());
        registry.register(
            "relay_in_flight_bytes",
            "Payload bytes handed to the Kafka producer and not yet delivered (bounded by the relay's window)",
            relay_in_flight_bytes.clone(),
        );
        registry.register(
            "relay_producer_queue_bytes",
            "Bytes of the messages in librdkafka's producer queues (its msg_size statistic)",
            relay_producer_queue_bytes.clone(),
        );
        registry.register(
            "consumer_lag_messages",
            "Messages not yet consumed, per topic partition",
            consumer_lag.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            log_head,
            projected,
            replayed,
            relay_lag,
            relay_in_flight_bytes,
            relay_producer_queue_bytes,
            consumer_lag,
        }
    }

    /// Counts one RPC under its status code, with its latency (the guard calls this for
    /// every call; see [`crate::guard`]).
    pub fn record(&self, method: &'static str, code: tonic::Code, latency: std::time::Duration) {
        self.requests.get_or_create(&RpcLabels { method, code: code_name(code) }).inc();
        self.latency.get_or_create(&MethodLabels { method }).observe(latency.as_secs_f64());
    }

    /// Records a consumer's lag per partition of `topic` (e.g. from `KafkaSource::lag`).
    pub fn set_consumer_lag(&self, topic: &str, lag: &std::collections::BTreeMap<i32, i64>) {
        for (partition, value) in lag {
            self.consumer_lag
                .get_or_create(&PartitionLabels { topic: topic.to_owned(), partition: *partition })
                .set(*value);
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// A status code's name, as the `code` label shows it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "Ok",
        C::Cancelled => "Cancelled",
        C::Unknown => "Unknown",
        C::InvalidArgument => "InvalidArgument",
        C::DeadlineExceeded => "DeadlineExceeded",
        C::NotFound => "NotFound",
        C::AlreadyExists => "AlreadyExists",
        C::PermissionDenied => "PermissionDenied",
        C::ResourceExhausted => "ResourceExhausted",
        C::FailedPrecondition => "FailedPrecondition",
        C::Aborted => "Aborted",
        C::OutOfRange => "OutOfRange",
        C::Unimplemented => "Unimplemented",
        C::Internal => "Internal",
        C::Unavailable => "Unavailable",
        C::DataLoss => "DataLoss",
        C::Unauthenticated => "Unauthenticated",
    }
}

/// Serves `GET /metrics` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render()) }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_lag_is_exported_per_partition() {
        let m = Metrics::new("aggregation");
        m.set_consumer_lag("dvk.registration.v1", &[(0, 0), (3, 42)].into_iter().collect());
        let text = m.render();
        assert!(
            text.contains(
                "dvk_consumer_lag_messages{service=\"aggregation\",topic=\"dvk.registration.v1\",partition=\"3\"} 42"
            ),
            "{text}"
        );
    }
}
