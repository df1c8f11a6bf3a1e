//! A message over the size limit (`DVK_MAX_MESSAGE_BYTES`) is RESOURCE_EXHAUSTED, as
//! gRPC clients expect (gRPC's own implementations answer so); tonic answers
//! OUT_OF_RANGE, in the response's headers when a request is too large to decode and
//! in its trailers when a response is too large to encode. This layer rewrites those
//! two answers, and only those, for every service in one place.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status};

#[derive(Debug, Clone, Copy, Default)]
pub struct OversizeLayer;

impl<S> tower_layer::Layer<S> for OversizeLayer {
    type Service = Oversize<S>;

    fn layer(&self, inner: S) -> Oversize<S> {
        Oversize { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Oversize<S> {
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for Oversize<S>
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
        let call = self.inner.call(request);
        Box::pin(async move {
            let mut response = call.await?;
            rewrite(response.headers_mut());
            Ok(response.map(|inner| tonic::body::Body::new(OversizeBody { inner })))
        })
    }
}

/// Turns tonic's OUT_OF_RANGE for a message over the limit, if `headers` carry it, into
/// RESOURCE_EXHAUSTED with the same message.
fn rewrite(headers: &mut HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else { return };
    if !oversized(&status) {
        return;
    }
    let exhausted = Status::resource_exhausted(status.message());
    if let Err(e) = exhausted.add_header(headers) {
        tracing::warn!(error = %e, "cannot rewrite the status of an oversized message");
    }
}

/// Whether `status` is tonic's answer to a message over the limit, in either direction:
/// "Error, decoded (encoded) message length too large: found N bytes, the limit is: M
/// bytes".
fn oversized(status: &Status) -> bool {
    status.code() == Code::OutOfRange && status.message().contains("message length too large")
}

/// The code a client receives for `status`, answered by a service behind this layer.
pub(crate) fn code_sent(status: &Status) -> Code {
    if oversized(status) { Code::ResourceExhausted } else { status.code() }
}

/// A response body whose trailers go through [`rewrite`].
struct OversizeBody {
    inner: tonic::body::Body,
}

impl Body for OversizeBody {
    type Data = <tonic::body::Body as Body>::Data;
    type Error = <tonic::body::Body as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx).map(|frame| {
            frame.map(|f| {
                f.map(|mut frame| {
                    if let Some(trailers) = frame.trailers_mut() {
                        rewrite(trailers);
                    }
                    frame
                })
            })
        })
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

    fn status_of(headers: &HeaderMap) -> Status {
        Status::from_header_map(headers).expect("a status")
    }

    #[test]
    fn a_message_over_the_limit_is_resource_exhausted() {
        for direction in ["decoded", "encoded"] {
            let message = format!(
                "Error, {direction} message length too large: found 17825792 bytes, the limit is: 16777216 bytes"
            );
            let mut headers = HeaderMap::new();
            Status::out_of_range(message.clone()).add_header(&mut headers).unwrap();
            rewrite(&mut headers);
            let status = status_of(&headers);
            assert_eq!(status.code(), Code::ResourceExhausted);
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn other_statuses_are_left_alone() {
        for status in [Status::out_of_range("page 12 is past the end"), Status::internal("message length too large")] {
            let mut headers = HeaderMap::new();
            status.add_header(&mut headers).unwrap();
            let before = headers.clone();
            rewrite(&mut headers);
            assert_eq!(headers, before);
        }
        let mut empty = HeaderMap::new();
        rewrite(&mut empty);
        assert!(empty.is_empty());
    }
}
