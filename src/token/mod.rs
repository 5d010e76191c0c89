//! Access tokens: signing keys, the shared key ring, minting, the one validation function and
//! the JWKS document.
//!
//! Profile (DESIGN §4): `{"alg":"ES256"|"EdDSA","typ":"at+jwt","kid":…}`, claims `iss sub aud exp
//! nbf iat jti sid auth_time acr amr roles ver`, default lifetime 5 minutes, at most 15.

pub mod cache;
pub mod issuer;
pub mod kek;
pub mod keys;
pub mod ring;
pub mod validate;

pub use issuer::{Issuer, IssuerSettings};
pub use kek::Kek;
pub use keys::{KeyMaterial, SigningAlg};
pub use ring::{ActiveKeys, StoredRing};
pub use validate::{
    validate_access_token, verify_jws, AccessClaims, KeyLookup, TokenError, Validation,
    VerifyingKey,
};
