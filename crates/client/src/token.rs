//! Tokens as DVK Ledger's services accept them: a JWT with `sub`, `role`, `unit` and
//! `exp`, minted here with a development HS256 secret, and the interceptor that sends
//! one as `authorization: Bearer <JWT>` on every call.

use serde::Serialize;

/// The roles a token may carry.
pub const ROLES: [&str; 4] = ["reporter", "approver", "analyst", "admin"];

/// The claims of a token (the services' contract; they verify the same fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    pub sub: String,
    /// One of [`ROLES`].
    pub role: String,
    /// The unit the caller acts for; empty for the nation.
    pub unit: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// Mints an HS256 token (development: production tokens come from the identity
/// provider).
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(secret))
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Adds `authorization: Bearer <token>` to every request of a client
/// (`XServiceClient::with_interceptor(channel, Bearer::new(token)?)`).
#[derive(Debug, Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    pub fn new(token: &str) -> Result<Bearer, tonic::Status> {
        format!("Bearer {token}")
            .parse()
            .map(Bearer)
            .map_err(|_| tonic::Status::invalid_argument("the token holds characters a header cannot carry"))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn a_minted_token_carries_its_claims_and_the_interceptor_sends_it() {
        let claims = Claims { sub: "ubnd".into(), role: "analyst".into(), unit: "22".into(), exp: now_secs() + 60 };
        let token = mint_hs256(b"0123456789abcdef0123456789abcdef", &claims).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        assert_eq!(token.split('.').count(), 3);
        assert!(!payload.is_empty());
        let request = Bearer::new(&token).unwrap().call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap().to_str().unwrap(), format!("Bearer {token}"));
        assert!(Bearer::new("line\nbreak").is_err());
    }
}
