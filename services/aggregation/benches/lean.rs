//! A lean gRPC client for load generation: unary calls straight over one `h2`
//! connection, as load generators such as h2load and ghz do, without the per-call
//! buffer task and the service stack of tonic's `Channel`. On a machine where the
//! clients share the server's cores, every microsecond the clients spend is taken
//! from the server; this client spends fewer. It speaks plain gRPC: the message in a
//! length-prefixed frame, `grpc-status` read from the trailers, the answer decoded.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};

/// One HTTP/2 connection; cheap to clone (the clones share the connection).
#[derive(Clone, Debug)]
pub struct Client {
    send: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
    authorization: http::HeaderValue,
}

impl Client {
    /// A connection to `addr` for calls of `path` with the bearer `token`.
    pub async fn connect(addr: SocketAddr, path: &str, token: &str) -> Client {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (send, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let uri = format!("http://{addr}{path}").parse().expect("uri");
        let authorization = format!("Bearer {token}").parse().expect("token");
        Client { send, uri, authorization }
    }

    /// Calls the path with `message`; panics on any failure, so a benchmark never
    /// counts an error as an answer. Returns the answer.
    pub async fn unary<M: prost::Message + Default>(&self, message: &impl prost::Message) -> M {
        let framed = frame(message);
        let request = http::Request::post(self.uri.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", self.authorization.clone())
            .body(())
            .expect("request");
        let mut send = self.send.clone().ready().await.expect("connection ready");
        let (response, mut stream) = send.send_request(request, false).expect("send request");
        stream.send_data(framed, true).expect("send message");
        let response = response.await.expect("response");
        let (head, mut body) = response.into_parts();
        assert_eq!(head.status, http::StatusCode::OK, "HTTP status");
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("response body");
            let _ = body.flow_control().release_capacity(chunk.len());
            buf.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.expect("trailers");
        let status = trailers.as_ref().unwrap_or(&head.headers).get("grpc-status").map(|v| v.as_bytes().to_vec());
        assert_eq!(status.as_deref(), Some(&b"0"[..]), "grpc-status (trailers {trailers:?})");
        assert!(buf.len() >= 5 && buf[0] == 0, "a gRPC message frame");
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        assert_eq!(buf.len(), 5 + len, "one message in the answer");
        M::decode(&buf[5..]).expect("answer decodes")
    }
}

/// `message` in a gRPC length-prefixed frame (uncompressed).
fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    message.encode(&mut buf).expect("encode");
    buf.freeze()
}
