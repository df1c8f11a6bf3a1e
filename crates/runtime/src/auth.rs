//! Authentication (JWT bearer tokens) and the roles of DESIGN.md "Security"; what each
//! role may do is each service's policy table (`crate::policy`). Refusals are logged and
//! returned as UNAUTHENTICATED, never silently.

use std::path::Path;

use dvk_domain::UnitCode;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::settings::AuthSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Reporter,
    Approver,
    Analyst,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reporter" => Some(Role::Reporter),
            "approver" => Some(Role::Approver),
            "analyst" => Some(Role::Analyst),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reporter => "reporter",
            Role::Approver => "approver",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    pub fn to_proto(self) -> dvk_proto::common::v1::Role {
        use dvk_proto::common::v1::Role as R;
        match self {
            Role::Reporter => R::Reporter,
            Role::Approver => R::Approver,
            Role::Analyst => R::Analyst,
            Role::Admin => R::Admin,
        }
    }
}

/// The claims of a DVK token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    /// The unit the caller acts for; empty for the nation.
    #[serde(default)]
    pub unit: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
    /// `None`: the caller acts for the nation.
    pub unit: Option<UnitCode>,
}

impl Caller {
    /// The actor recorded on the events this caller causes.
    pub fn actor(&self) -> dvk_proto::common::v1::Actor {
        dvk_proto::common::v1::Actor {
            subject: self.subject.clone(),
            role: self.role.to_proto() as i32,
            unit: self.unit.as_ref().map(dvk_codec::convert::unit_out),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no JWT key configured: set DVK_JWT_PUBLIC_KEY_FILE (or DVK_JWT_HS256_SECRET_FILE in development)")]
    NoKey,
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} holds neither an Ed25519 nor an RSA public key in PEM form")]
    BadPublicKey { path: String },
    #[error("the HS256 secret in {path} is shorter than 32 bytes")]
    ShortSecret { path: String },
}

/// Tokens verified recently, at most this many, kept until they expire.
const VERIFIED_CACHE: usize = 10_000;

/// Verifies bearer tokens against the configured keys. A token that verified is
/// remembered (by its exact text, so by its signature) until its expiry, which spares
/// a client that sends the same token on every call the signature check each time.
#[derive(Clone)]
pub struct Authenticator {
    keys: Vec<(Algorithm, DecodingKey)>,
    verified: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (Caller, u64)>>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algs: Vec<_> = self.keys.iter().map(|(a, _)| a).collect();
        f.debug_struct("Authenticator").field("algorithms", &algs).finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::Read { path: path.display().to_string(), source })
}

impl Authenticator {
    pub fn from_settings(s: &AuthSettings) -> Result<Self, AuthError> {
        let mut keys = Vec::new();
        if let Some(path) = &s.jwt_public_key_file {
            let pem = read(path)?;
            if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
                keys.push((Algorithm::EdDSA, k));
            } else if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                keys.push((Algorithm::RS256, k));
            } else {
                return Err(AuthError::BadPublicKey { path: path.display().to_string() });
            }
        }
        if let Some(path) = &s.jwt_hs256_secret_file {
            let secret = read(path)?;
            let secret = secret.trim_ascii();
            if secret.len() < 32 {
                return Err(AuthError::ShortSecret { path: path.display().to_string() });
            }
            keys.push((Algorithm::HS256, DecodingKey::from_secret(secret)));
        }
        if keys.is_empty() {
            return Err(AuthError::NoKey);
        }
        Ok(Self { keys, verified: Default::default() })
    }

    /// An authenticator for one HS256 secret (development and tests).
    pub fn hs256(secret: &[u8]) -> Self {
        Self { keys: vec![(Algorithm::HS256, DecodingKey::from_secret(secret))], verified: Default::default() }
    }

    /// The caller of a request, from its `authorization: Bearer <JWT>` header.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Caller, Status> {
        let Some(value) = headers.get("authorization") else {
            tracing::warn!("unauthenticated: no authorization header");
            return Err(Status::unauthenticated("missing authorization: Bearer <JWT>"));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(|| Status::unauthenticated("authorization must be: Bearer <JWT>"))?
            .trim();
        if let Some((caller, exp)) = self.verified.lock().expect("lock").get(token)
            && now_secs() < *exp
        {
            return Ok(caller.clone());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            tracing::warn!(error = %e, "unauthenticated: malformed token");
            Status::unauthenticated("malformed token")
        })?;
        let Some((alg, key)) = self.keys.iter().find(|(alg, _)| *alg == header.alg) else {
            tracing::warn!(alg = ?header.alg, "unauthenticated: algorithm not accepted");
            return Err(Status::unauthenticated(format!("tokens signed with {:?} are not accepted", header.alg)));
        };
        let mut validation = Validation::new(*alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| {
                tracing::warn!(error = %e, "unauthenticated: token refused");
                Status::unauthenticated(format!("token refused: {e}"))
            })?
            .claims;
        let role = Role::parse(&claims.role).ok_or_else(|| {
            tracing::warn!(subject = %claims.sub, role = %claims.role, "unauthenticated: unknown role");
            Status::unauthenticated(format!("unknown role {:?}", claims.role))
        })?;
        let unit = match claims.unit.trim() {
            "" => None,
            u => Some(UnitCode::parse("unit", u).map_err(|_| {
                tracing::warn!(subject = %claims.sub, unit = u, "unauthenticated: bad unit claim");
                Status::unauthenticated(format!("the unit claim {u:?} is not a unit code"))
            })?),
        };
        let caller = Caller { subject: claims.sub, role, unit };
        let mut verified = self.verified.lock().expect("lock");
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(token.to_owned(), (caller.clone(), claims.exp));
        Ok(caller)
    }
}

/// Signs a development token with an HS256 secret.
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn metadata(token: &str) -> http::HeaderMap {
        let mut m = http::HeaderMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        m
    }

    fn claims(exp: u64) -> Claims {
        Claims { sub: "ubnd-xa".into(), role: "reporter".into(), unit: "00001".into(), exp }
    }

    #[test]
    fn a_valid_token_names_the_caller() {
        let auth = Authenticator::hs256(SECRET);
        let token = mint_hs256(SECRET, &claims(now_secs() + 60)).unwrap();
        let caller = auth.authenticate(&metadata(&token)).unwrap();
        assert_eq!(caller.role, Role::Reporter);
        assert_eq!(caller.unit.as_ref().unwrap().as_str(), "00001");
        // Again, from the verified tokens: the same caller.
        assert_eq!(auth.authenticate(&metadata(&token)).unwrap(), caller);
    }

    #[test]
    fn a_remembered_token_is_checked_again_once_its_expiry_has_passed() {
        let auth = Authenticator::hs256(SECRET);
        let token = mint_hs256(SECRET, &claims(now_secs() - 3600)).unwrap();
        let caller = Caller { subject: "ubnd-xa".into(), role: Role::Reporter, unit: None };
        auth.verified.lock().unwrap().insert(token.clone(), (caller, now_secs() - 3600));
        assert_eq!(auth.authenticate(&metadata(&token)).unwrap_err().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn missing_expired_forged_and_foreign_tokens_are_unauthenticated() {
        let auth = Authenticator::hs256(SECRET);
        let code = |m: &http::HeaderMap| auth.authenticate(m).unwrap_err().code();
        assert_eq!(code(&http::HeaderMap::new()), tonic::Code::Unauthenticated);
        let expired = mint_hs256(SECRET, &claims(now_secs() - 3600)).unwrap();
        assert_eq!(code(&metadata(&expired)), tonic::Code::Unauthenticated);
        let forged = mint_hs256(b"another-secret-another-secret-xx", &claims(now_secs() + 60)).unwrap();
        assert_eq!(code(&metadata(&forged)), tonic::Code::Unauthenticated);
        // alg "none" and other algorithms than the configured key's are refused.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert_eq!(code(&metadata(none)), tonic::Code::Unauthenticated);
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims(now_secs() + 60),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(code(&metadata(&hs384)), tonic::Code::Unauthenticated);
        let bad_role = mint_hs256(SECRET, &Claims { role: "mayor".into(), ..claims(now_secs() + 60) }).unwrap();
        assert_eq!(code(&metadata(&bad_role)), tonic::Code::Unauthenticated);
    }
}
