//! Any unary RPC of the three services, with the request and the answer in the
//! protobuf JSON mapping: the descriptors built into dvkctl say how to encode them.

use bytes::{Buf, BufMut};
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Status(#[from] tonic::Status),
}

/// The descriptors of every DVK service.
pub fn pool() -> DescriptorPool {
    DescriptorPool::decode(dvk_proto::FILE_DESCRIPTOR_SET).expect("the built-in descriptors decode")
}

/// Finds `Service/Method` (the service by its full or its short name, e.g.
/// `RegistrationService/GetUnit` or `dvk.registration.v1.RegistrationService/GetUnit`).
pub fn method(pool: &DescriptorPool, name: &str) -> Result<MethodDescriptor, CallError> {
    let (service, method) = name
        .rsplit_once('/')
        .ok_or_else(|| CallError::Usage(format!("{name:?}: name the method as Service/Method")))?;
    let services: Vec<_> = pool.services().filter(|s| s.full_name() == service || s.name() == service).collect();
    let Some(s) = services.first() else {
        let known: Vec<String> = pool.services().map(|s| s.name().to_owned()).collect();
        return Err(CallError::Usage(format!("no service {service:?}; the services are {}", known.join(", "))));
    };
    let m = s.methods().find(|m| m.name() == method).ok_or_else(|| {
        let known: Vec<String> = s.methods().map(|m| m.name().to_owned()).collect();
        CallError::Usage(format!("{} has no method {method:?}; it has {}", s.name(), known.join(", ")))
    })?;
    if m.is_client_streaming() || m.is_server_streaming() {
        return Err(CallError::Usage(format!(
            "{} streams; use its own command (dvkctl units import for ImportUnits)",
            m.name()
        )));
    }
    Ok(m)
}

/// Which service a method belongs to: registration, reporting or aggregation.
pub fn service_of(m: &MethodDescriptor) -> &'static str {
    let s = m.parent_service().full_name().to_owned();
    if s.contains(".registration.") {
        "registration"
    } else if s.contains(".reporting.") {
        "reporting"
    } else {
        "aggregation"
    }
}

/// Encodes the request written as JSON.
pub fn request(m: &MethodDescriptor, json: &str) -> Result<Vec<u8>, CallError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let msg = DynamicMessage::deserialize(m.input(), &mut de)
        .map_err(|e| CallError::Usage(format!("the request is not a {}: {e}", m.input().full_name())))?;
    de.end().map_err(|e| CallError::Usage(format!("the request has more after its end: {e}")))?;
    Ok(prost::Message::encode_to_vec(&msg))
}

/// Calls `m` with the encoded request; returns the answer as JSON.
pub async fn call(channel: Channel, m: &MethodDescriptor, body: Vec<u8>, token: &str) -> Result<String, CallError> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path: tonic::codegen::http::uri::PathAndQuery = format!("/{}/{}", m.parent_service().full_name(), m.name())
        .parse()
        .map_err(|_| CallError::Usage("the method's path is not a valid URI path".into()))?;
    let request = dvk_client::authorized(body, token)?;
    let answer = grpc.unary(request, path, BytesCodec).await?.into_inner();
    let msg = DynamicMessage::decode(m.output(), answer.as_slice())
        .map_err(|e| tonic::Status::internal(format!("the answer does not decode: {e}")))?;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::pretty(&mut out);
    msg.serialize_with_options(&mut ser, &prost_reflect::SerializeOptions::new().skip_default_fields(false))
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// Passes encoded messages through unchanged.
#[derive(Debug, Clone, Copy, Default)]
struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_found_by_short_or_full_names_and_requests_encode_from_json() {
        let pool = pool();
        let m = method(&pool, "RegistrationService/GetUnit").unwrap();
        assert_eq!(service_of(&m), "registration");
        let full = method(&pool, "dvk.aggregation.v1.AggregationService/GetRollup").unwrap();
        assert_eq!(service_of(&full), "aggregation");
        let body = request(&full, r#"{"period": {"code": "2024-H1"}, "tree": "TREE_PRE2025"}"#).unwrap();
        let decoded: dvk_proto::aggregation::v1::GetRollupRequest = prost::Message::decode(body.as_slice()).unwrap();
        assert_eq!(decoded.period.unwrap().code, "2024-H1");
        assert_eq!(decoded.tree, dvk_proto::common::v1::Tree::Pre2025 as i32);
    }

    #[test]
    fn unknown_methods_streams_and_bad_json_are_usage_errors() {
        let pool = pool();
        assert!(method(&pool, "RegistrationService/Nope").unwrap_err().to_string().contains("GetUnit"));
        assert!(method(&pool, "RegistrationService/ImportUnits").unwrap_err().to_string().contains("units import"));
        let m = method(&pool, "ReportingService/GetReport").unwrap();
        assert!(request(&m, r#"{"reportId": 3}"#).is_err());
    }
}
