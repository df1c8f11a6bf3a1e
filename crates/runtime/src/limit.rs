//! A per-caller concurrency limit: at most `max` calls in flight per bearer token, so
//! that one client (or one stolen token) cannot take all of a service's capacity; a
//! call over the limit is refused at once with RESOURCE_EXHAUSTED. Health checks are
//! never limited (probes must get through).

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

type Counts = Arc<Mutex<HashMap<u64, usize>>>;

#[derive(Debug, Clone)]
pub struct CallerLimitLayer {
    max: usize,
    inflight: Counts,
}

impl CallerLimitLayer {
    pub fn new(max: usize) -> Self {
        Self { max: max.max(1), inflight: Counts::default() }
    }
}

impl<S> tower_layer::Layer<S> for CallerLimitLayer {
    type Service = CallerLimit<S>;

    fn layer(&self, inner: S) -> CallerLimit<S> {
        CallerLimit { inner, max: self.max, inflight: self.inflight.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct CallerLimit<S> {
    inner: S,
    max: usize,
    inflight: Counts,
}

/// Gives the caller's slot back when the call ends (or is dropped).
struct Slot {
    key: u64,
    inflight: Counts,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.inflight.lock().expect("lock");
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl<S, B> tower_service::Service<http::Request<B>> for CallerLimit<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path().starts_with("/grpc.health.v1.") {
            return Box::pin(self.inner.call(request));
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        request.headers().get("authorization").map(|v| v.as_bytes()).hash(&mut hasher);
        let key = hasher.finish();
        {
            let mut counts = self.inflight.lock().expect("lock");
            let n = counts.entry(key).or_insert(0);
            if *n >= self.max {
                tracing::warn!(limit = self.max, path = request.uri().path(), "a caller exceeded its concurrent calls");
                let status = tonic::Status::resource_exhausted(format!(
                    "more than {} calls in flight with this token; retry when earlier calls have returned",
                    self.max
                ));
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
            *n += 1;
        }
        let slot = Slot { key, inflight: self.inflight.clone() };
        let call = self.inner.call(request);
        Box::pin(async move {
            let _slot = slot;
            call.await
        })
    }
}
