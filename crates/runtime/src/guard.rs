//! The guard in front of a service's RPCs, applied once as a tower layer: it finds the
//! call's rule in the service's policy table (a path without one is refused before
//! anything else, so no RPC can run unguarded), opens a span for the call, counts and
//! times it under its status code, authenticates the bearer token into a [`Caller`]
//! and checks its role. The handler finds the admitted caller and its rule, an
//! [`Access`], in the request's extensions. Health and reflection, served beside the
//! service, are not behind it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use tonic::server::NamedService;
use tonic::{Code, Status};
use tracing::Instrument;

use crate::auth::{Authenticator, Caller};
use crate::metrics::Metrics;
use crate::oversize::code_sent;
use crate::policy::{self, Access, Rule};

/// Wraps a service in its [`Guard`].
#[derive(Debug, Clone)]
pub struct GuardLayer {
    policy: &'static [Rule],
    auth: Authenticator,
    metrics: Arc<Metrics>,
}

impl GuardLayer {
    pub fn new(policy: &'static [Rule], auth: Authenticator, metrics: Arc<Metrics>) -> Self {
        Self { policy, auth, metrics }
    }
}

impl<S> tower_layer::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner, policy: self.policy, auth: self.auth.clone(), metrics: self.metrics.clone() }
    }
}

/// A gRPC service behind its policy table; see the module.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    policy: &'static [Rule],
    auth: Authenticator,
    metrics: Arc<Metrics>,
}

impl<S: NamedService> NamedService for Guard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService> Guard<S> {
    /// The rule of the RPC at `path` (`/dvk.reporting.v1.ReportingService/ApproveReport`).
    fn rule(&self, path: &str) -> Option<&'static Rule> {
        let method = path.strip_prefix('/')?.strip_prefix(S::NAME)?.strip_prefix('/')?;
        policy::rule(self.policy, method)
    }

    /// The caller of a request with these headers, if its token is valid and its role is
    /// one the rule names.
    fn admit(&self, rule: &'static Rule, headers: &http::HeaderMap) -> Result<Access, Status> {
        let caller: Caller = self.auth.authenticate(headers)?;
        tracing::Span::current().record("subject", caller.subject.as_str());
        rule.admit(caller)
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower_service::Service<http::Request<B>> for Guard<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + NamedService
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let Some(rule) = self.rule(path) else {
            tracing::warn!(path, "refused: no rule in the service's policy for this method");
            let status = Status::unimplemented(format!("{path} is not a method of {} with an access rule", S::NAME));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let started = Instant::now();
        let span = tracing::info_span!("rpc", method = rule.method, subject = tracing::field::Empty);
        let admitted = span.in_scope(|| self.admit(rule, request.headers()));
        let meter = Meter { metrics: self.metrics.clone(), method: rule.method, started };
        match admitted {
            Ok(access) => {
                request.extensions_mut().insert(access);
            }
            Err(status) => {
                meter.record(status.code());
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        }
        let call = self.inner.call(request).instrument(span);
        Box::pin(async move {
            let response = call.await?;
            // An error is answered in the headers (trailers-only); a message, in the body,
            // with the status in its trailers.
            if let Some(status) = Status::from_header_map(response.headers()) {
                meter.record(code_sent(&status));
                return Ok(response);
            }
            Ok(response.map(|inner| tonic::body::Body::new(MeteredBody { inner, meter: Some(meter) })))
        })
    }
}

/// Counts one call under its status code, once, with the time since it started.
struct Meter {
    metrics: Arc<Metrics>,
    method: &'static str,
    started: Instant,
}

impl Meter {
    fn record(self, code: Code) {
        self.metrics.record(self.method, code, self.started.elapsed());
    }
}

/// A response body that counts its call when the status arrives in its trailers (or,
/// dropped before, as CANCELLED: the client went away). The call's latency is thus the
/// time until its answer is complete.
struct MeteredBody {
    inner: tonic::body::Body,
    meter: Option<Meter>,
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if let Some(meter) = self.meter.take() {
            meter.record(Code::Cancelled);
        }
    }
}

impl Body for MeteredBody {
    type Data = <tonic::body::Body as Body>::Data;
    type Error = <tonic::body::Body as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                frame.trailers_ref().map(|t| Status::from_header_map(t).map_or(Code::Unknown, |s| code_sent(&s)))
            }
            Poll::Ready(Some(Err(_))) => Some(Code::Internal),
            // The end, with no status.
            Poll::Ready(None) => Some(Code::Unknown),
            Poll::Pending => None,
        };
        if let (Some(code), Some(meter)) = (code, self.meter.take()) {
            meter.record(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use crate::auth::{Claims, mint_hs256, now_secs};
    use crate::policy::{ANY_ROLE, Scope};
    use std::sync::Mutex;
    use tower_service::Service;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    const POLICY: &[Rule] = &[
        Rule { method: "GetModel", roles: ANY_ROLE, scope: Scope::Subtree },
        Rule { method: "ImportUnits", roles: &[Role::Admin], scope: Scope::Anywhere },
    ];

    /// A response body holding only trailers with the status `code`, as tonic ends a
    /// message.
    struct Trailers(Option<http::HeaderMap>);

    impl Body for Trailers {
        type Data = <tonic::body::Body as Body>::Data;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Ready(self.0.take().map(|t| Ok(Frame::trailers(t))))
        }
    }

    /// The service behind the guard: remembers who reached it, answers a message.
    #[derive(Clone, Default)]
    struct Inner(Arc<Mutex<Vec<Access>>>);

    impl NamedService for Inner {
        const NAME: &'static str = "dvk.registration.v1.RegistrationService";
    }

    impl tower_service::Service<http::Request<()>> for Inner {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<()>) -> Self::Future {
            self.0.lock().unwrap().extend(request.extensions().get::<Access>().cloned());
            let mut trailers = http::HeaderMap::new();
            Status::ok("").add_header(&mut trailers).unwrap();
            std::future::ready(Ok(http::Response::new(tonic::body::Body::new(Trailers(Some(trailers))))))
        }
    }

    fn request(method: &str, role: Option<&str>) -> http::Request<()> {
        let mut r = http::Request::builder().uri(format!("/{}/{method}", Inner::NAME)).body(()).unwrap();
        if let Some(role) = role {
            let claims = Claims { sub: "ubnd".into(), role: role.into(), unit: "001".into(), exp: now_secs() + 60 };
            let token = mint_hs256(SECRET, &claims).unwrap();
            r.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        r
    }

    /// Calls the guarded service and reads the answer to its end: the status code.
    async fn call(guard: &mut Guard<Inner>, request: http::Request<()>) -> Code {
        let mut response = guard.call(request).await.unwrap();
        if let Some(status) = Status::from_header_map(response.headers()) {
            return status.code();
        }
        let body = response.body_mut();
        let mut code = Code::Unknown;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
            if let Some(status) = frame.unwrap().trailers_ref().and_then(Status::from_header_map) {
                code = status.code();
            }
        }
        code
    }

    #[tokio::test]
    async fn only_a_caller_with_a_valid_token_and_a_role_of_the_rule_reaches_the_service() {
        let metrics = Arc::new(Metrics::new("registration"));
        let inner = Inner::default();
        let layer = GuardLayer::new(POLICY, Authenticator::hs256(SECRET), metrics.clone());
        let mut guard = tower_layer::Layer::layer(&layer, inner.clone());

        assert_eq!(call(&mut guard, request("GetModel", None)).await, Code::Unauthenticated);
        assert_eq!(call(&mut guard, request("ImportUnits", Some("reporter"))).await, Code::PermissionDenied);
        // A method without a rule is refused before its token is even looked at.
        assert_eq!(call(&mut guard, request("DeleteModel", Some("admin"))).await, Code::Unimplemented);
        assert!(inner.0.lock().unwrap().is_empty(), "no refused call reached the service");

        assert_eq!(call(&mut guard, request("ImportUnits", Some("admin"))).await, Code::Ok);
        assert_eq!(call(&mut guard, request("GetModel", Some("analyst"))).await, Code::Ok);
        let reached: Vec<(&str, Role, Option<String>)> = inner
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|a| (a.method(), a.caller.role, a.caller.unit.as_ref().map(|u| u.as_str().to_owned())))
            .collect();
        let unit = Some("001".to_owned());
        assert_eq!(reached, [("ImportUnits", Role::Admin, unit.clone()), ("GetModel", Role::Analyst, unit)]);

        // Every call that had a rule is counted under the code its client received.
        let text = metrics.render();
        for (method, code) in [
            ("GetModel", "Unauthenticated"),
            ("ImportUnits", "PermissionDenied"),
            ("ImportUnits", "Ok"),
            ("GetModel", "Ok"),
        ] {
            let series =
                format!("dvk_rpc_requests_total{{service=\"registration\",method=\"{method}\",code=\"{code}\"}} 1");
            assert!(text.contains(&series), "{series} in\n{text}");
        }
        assert!(!text.contains("DeleteModel"), "{text}");
    }
}
