//! JWTs that authx issues: access tokens (RFC 9068) and ID tokens (OIDC Core §2), signed with
//! the key ring and verified with `jsonwebtoken` under an algorithm fixed by the key, never by
//! the token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use super::keys::{KeyError, KeyRing, Signer, SigningAlg, Verifier};
use crate::Timestamp;

/// Longest token the verifier looks at (SECURITY.md #50).
pub const MAX_JWT_LEN: usize = 8 * 1024;

/// The `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Claims of an access token (RFC 9068 §2.2).
///
/// The claims authx knows are strictly typed: a token missing a required one, or holding one of
/// the wrong JSON type, does not decode. Claims it does not know are ignored, as RFC 9068 §2.2
/// allows, so a claim that a newer build adds (`acr`, `cnf`) can be rolled out to several
/// instances one at a time without the older ones refusing the newer ones' tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer.
    pub iss: String,
    /// The user, or `client:<client_id>` for client credentials.
    pub sub: String,
    /// The resource the token is for.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Unique id.
    pub jti: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Granted scopes, space-delimited.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// The browser session behind the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The refresh token family the token came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fid: Option<String>,
    /// When the user authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The authentication context class the user's sign-in earned (`urn:authx:acr:*`), so an
    /// API can demand a second factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The key the token is bound to (RFC 9449 §6.1: `cnf.jkt`): it is accepted only with a
    /// DPoP proof by that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<super::dpop::Confirmation>,
}

impl AccessTokenClaims {
    /// The thumbprint of the DPoP key the token is bound to, if it is bound.
    #[must_use]
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.cnf.as_ref().and_then(|c| c.jkt.as_deref())
    }
}

/// What the verifier reads from an access token: its claims, and `nbf` (RFC 7519 §4.1.5), a
/// registered claim that authx does not issue but that must be a NumericDate, and in the past,
/// when it is present.
#[derive(Deserialize)]
struct VerifiedClaims {
    #[serde(flatten)]
    claims: AccessTokenClaims,
    #[serde(default)]
    nbf: Option<i64>,
}

/// Claims of an ID token (OIDC Core §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// Issuer.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// The client.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the user authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The authentication context class the sign-in earned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// How the user authenticated (RFC 8176 values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The nonce of the authorization request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Left half of the hash of the access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// Session id (OIDC Back-Channel Logout §2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Email, with the `email` scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the email is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs `claims` as a compact JWS with `typ`.
///
/// # Errors
/// On a signing failure.
pub fn sign<T: Serialize>(signer: &Signer, typ: &str, claims: &T) -> Result<String, KeyError> {
    let header = serde_json::to_vec(&Header {
        alg: signer.alg().as_str(),
        typ,
        kid: signer.kid(),
    })
    .map_err(|_| KeyError::Crypto("header"))?;
    let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Crypto("claims"))?;
    let mut input = URL_SAFE_NO_PAD.encode(header);
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let sig = signer.sign(input.as_bytes())?;
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(input)
}

/// `at_hash` (OIDC Core §3.1.3.6): the left half of the hash of the access token, with the hash
/// of the ID token's algorithm (SHA-512 for Ed25519).
#[must_use]
pub fn at_hash(access_token: &str, alg: SigningAlg) -> String {
    match alg {
        SigningAlg::EdDsa => {
            let d = Sha512::digest(access_token.as_bytes());
            URL_SAFE_NO_PAD.encode(&d[..32])
        }
        SigningAlg::Rs256 | SigningAlg::Es256 => {
            let d = Sha256::digest(access_token.as_bytes());
            URL_SAFE_NO_PAD.encode(&d[..16])
        }
    }
}

/// Whether `typ` names an access token: `at+jwt`, or its full media type `application/at+jwt`
/// (RFC 9068 §4), in any case.
#[must_use]
pub fn is_access_token_typ(typ: &str) -> bool {
    typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// Why a compact JWS was refused before its claims were looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwsDefect {
    /// Not a compact JWS of sane size, or a header that does not decode.
    #[error("not a compact JWS of sane size")]
    Malformed,
    /// Not `typ: at+jwt` (an ID token, for example).
    #[error("not an access token (typ)")]
    WrongType,
    /// No `kid`, or one of absurd length.
    #[error("no usable key id")]
    UnknownKey,
    /// The header's `alg` differs from the key's own algorithm.
    #[error("alg differs from the key's algorithm")]
    WrongAlgorithm,
    /// A bad signature, another issuer, or claims of the wrong shape.
    #[error("signature, issuer or claims invalid")]
    Invalid,
}

/// The parts of an access token's header that choose how it is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenHeader {
    /// The algorithm the token claims; it must equal the key's own.
    pub alg: String,
    /// The key id, to look up in the issuer's keys.
    pub kid: String,
}

/// The protected header of a compact JWS, as far as authx reads it (RFC 7515 §4.1). Members it
/// does not name are ignored, except that a duplicated member makes the header malformed.
#[derive(Debug, Clone, Deserialize)]
pub struct JoseHeader {
    /// The algorithm the token claims.
    pub alg: String,
    /// The token's type.
    #[serde(default)]
    pub typ: Option<String>,
    /// The key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Extensions the recipient must understand (RFC 7515 §4.1.11): authx understands none, so
    /// a header that lists any is refused.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// The three segments of a compact JWS (RFC 7515 §7.1), still base64url-encoded.
struct Compact<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, what the signature covers.
    signing_input: &'a str,
}

/// Splits a compact JWS of at most [`MAX_JWT_LEN`] ASCII bytes into its three segments.
fn compact(token: &str) -> Result<Compact<'_>, JwsDefect> {
    if token.len() > MAX_JWT_LEN || !token.is_ascii() {
        return Err(JwsDefect::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsDefect::Malformed);
    };
    Ok(Compact {
        header,
        payload,
        signature,
        signing_input: &token[..header.len() + 1 + payload.len()],
    })
}

/// Reads the protected header of a compact JWS of sane size, without verifying anything. A
/// header with `crit` is refused.
///
/// # Errors
/// [`JwsDefect::Malformed`].
pub fn jose_header(token: &str) -> Result<JoseHeader, JwsDefect> {
    let c = compact(token)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(c.header)
        .map_err(|_| JwsDefect::Malformed)?;
    let header: JoseHeader = serde_json::from_slice(&bytes).map_err(|_| JwsDefect::Malformed)?;
    if header.crit.is_some() {
        return Err(JwsDefect::Malformed);
    }
    Ok(header)
}

/// Checks the shape of an access token and reads its header: at most [`MAX_JWT_LEN`] ASCII
/// bytes in three segments, `typ` per [`is_access_token_typ`], and a `kid` of 1-256 bytes.
/// Header `jwk`, `jku`, `x5u` and `x5c` are never looked at: keys come from the issuer.
///
/// # Errors
/// What is wrong with the token.
pub fn access_token_header(token: &str) -> Result<AccessTokenHeader, JwsDefect> {
    let header = jose_header(token)?;
    if !header.typ.as_deref().is_some_and(is_access_token_typ) {
        return Err(JwsDefect::WrongType);
    }
    match header.kid {
        Some(kid) if !kid.is_empty() && kid.len() <= 256 => Ok(AccessTokenHeader {
            alg: header.alg,
            kid,
        }),
        _ => Err(JwsDefect::UnknownKey),
    }
}

/// Claims that name their issuer, so that [`decode_verified`] can require it.
pub trait Issued {
    /// The `iss` claim.
    fn issuer(&self) -> &str;
}

impl Issued for VerifiedClaims {
    fn issuer(&self) -> &str {
        &self.claims.iss
    }
}

impl Issued for IdTokenClaims {
    fn issuer(&self) -> &str {
        &self.iss
    }
}

/// Verifies the signature of a compact JWS under `verifier`'s key and decodes its payload as
/// `T`. The header is the caller's to have read, and its `alg` checked against the key's.
///
/// # Errors
/// [`JwsDefect::Malformed`] for a token that is not a compact JWS of sane size or claims that
/// do not decode as `T`; [`JwsDefect::Invalid`] for a bad signature.
pub fn verify_signed<T: serde::de::DeserializeOwned>(
    token: &str,
    verifier: &Verifier,
) -> Result<T, JwsDefect> {
    let c = compact(token)?;
    if !signature_valid(verifier, c.signing_input.as_bytes(), c.signature) {
        return Err(JwsDefect::Invalid);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(c.payload)
        .map_err(|_| JwsDefect::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| JwsDefect::Malformed)
}

/// Verifies the signature of `token` under `verifier`'s key and that key's one algorithm (a
/// header naming another is refused), requires `iss` to equal `issuer`, and decodes the claims
/// as `T` (serde decides which JSON types are right). Times and audience are left to the
/// caller, who checks them against its own clock and audience rules.
///
/// # Errors
/// [`JwsDefect::WrongAlgorithm`], or [`JwsDefect::Invalid`] for a bad signature, another issuer
/// or claims that do not decode.
pub fn decode_verified<T: serde::de::DeserializeOwned + Issued>(
    token: &str,
    header: &AccessTokenHeader,
    verifier: &Verifier,
    issuer: &str,
) -> Result<T, JwsDefect> {
    if header.alg != verifier.alg.as_str() {
        return Err(JwsDefect::WrongAlgorithm);
    }
    let claims: T = verify_signed(token, verifier).map_err(|_| JwsDefect::Invalid)?;
    if claims.issuer() != issuer {
        return Err(JwsDefect::Invalid);
    }
    Ok(claims)
}

/// Verifies an access token authx issued: shape and header ([`access_token_header`]), a known
/// `kid`, the signature under that key's algorithm and the issuer ([`decode_verified`]), `exp`
/// and `iat` against `now` with `leeway` seconds, and claims of the right JSON types.
/// Revocation and audience are the caller's to check.
#[must_use]
pub fn verify_access_token(
    token: &str,
    ring: &KeyRing,
    issuer: &str,
    now: Timestamp,
    leeway: i64,
) -> Option<AccessTokenClaims> {
    let header = access_token_header(token).ok()?;
    let verifier = ring.verifier(&header.kid)?;
    let VerifiedClaims { claims: c, nbf } =
        decode_verified(token, &header, verifier, issuer).ok()?;
    // Saturating: the claims are signed, but a far-future `exp` must not overflow the check.
    let now = now.secs();
    if c.exp.saturating_add(leeway) <= now
        || c.iat.saturating_sub(leeway) > now
        || nbf.is_some_and(|nbf| nbf.saturating_sub(leeway) > now)
    {
        return None;
    }
    Some(c)
}

/// Whether `signature` (the base64url third segment of a compact JWS) is a valid signature of
/// `signing_input` under `verifier`'s key and its one algorithm.
///
/// This is the signature primitive of every JWT verification here ([`verify_signed`]); it is
/// public so that signature test vectors (Wycheproof) and fuzzing can drive it with arbitrary
/// messages, which a JWT's signing input cannot carry.
#[must_use]
pub fn signature_valid(verifier: &Verifier, signing_input: &[u8], signature: &str) -> bool {
    // The largest signature is an RSA one of 8,192 bits (1,024 bytes; the decoder asks for room
    // by whole groups of four characters); anything longer is refused unread.
    let mut raw = [0u8; 1032];
    match URL_SAFE_NO_PAD.decode_slice(signature, &mut raw) {
        Ok(n) => raw
            .get(..n)
            .is_some_and(|sig| verifier.verify(signing_input, sig)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::keys::{KeyEncryptor, KeyState, generate};

    fn ring(alg: SigningAlg) -> KeyRing {
        let enc = KeyEncryptor::new(&[3u8; 32]).unwrap();
        let mut k = generate(alg, &enc, Timestamp(0)).unwrap();
        k.state = KeyState::Active;
        KeyRing::load(&[k], &enc).unwrap()
    }

    /// `claims` signed by `ring`'s key of `alg` as an access token.
    fn token<T: Serialize>(r: &KeyRing, alg: SigningAlg, claims: &T) -> String {
        sign(&r.signer(alg).unwrap(), ACCESS_TOKEN_TYP, claims).unwrap()
    }

    /// A compact JWS of a JSON header, a payload segment and a signature segment.
    fn jws(header: serde_json::Value, payload: &str, signature: &str) -> String {
        format!(
            "{}.{payload}.{signature}",
            URL_SAFE_NO_PAD.encode(header.to_string())
        )
    }

    fn claims(now: i64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://id.example.com".into(),
            sub: "user".into(),
            aud: "https://api.example.com".into(),
            exp: now + 900,
            iat: now,
            jti: "j".into(),
            client_id: "app".into(),
            scope: "read".into(),
            sid: None,
            fid: None,
            auth_time: None,
            acr: None,
            cnf: None,
        }
    }

    #[test]
    fn round_trip_every_algorithm() {
        for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
            let r = ring(alg);
            let t = token(&r, alg, &claims(1000));
            let c =
                verify_access_token(&t, &r, "https://id.example.com", Timestamp(1000), 0).unwrap();
            assert_eq!(c, claims(1000));
            assert!(verify_access_token(&t, &r, "https://other", Timestamp(1000), 0).is_none());
            assert!(
                verify_access_token(&t, &r, "https://id.example.com", Timestamp(1900), 0).is_none(),
                "expired"
            );
        }
    }

    #[test]
    fn hostile_tokens_are_refused() {
        let r = ring(SigningAlg::Es256);
        let good = token(&r, SigningAlg::Es256, &claims(1000));
        let parts: Vec<&str> = good.split('.').collect();
        let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let kid = jsonwebtoken::decode_header(&good).unwrap().kid.unwrap();
        let (payload, sig) = (parts[1], parts[2]);
        let mut bad = vec![
            jws(
                serde_json::json!({"alg":"none","typ":"at+jwt","kid":kid}),
                payload,
                "",
            ),
            jws(
                serde_json::json!({"alg":"HS256","typ":"at+jwt","kid":kid}),
                payload,
                sig,
            ),
            jws(
                serde_json::json!({"alg":"ES256","typ":"JWT","kid":kid}),
                payload,
                sig,
            ),
            jws(
                serde_json::json!({"alg":"ES256","typ":"at+jwt","kid":"../../dev/null"}),
                payload,
                sig,
            ),
            format!(
                "{}.{}.{sig}",
                parts[0],
                enc(
                    serde_json::json!({"iss":"https://id.example.com","exp":"9999999999","iat":1000,"sub":"u","aud":"a","jti":"j","client_id":"c"})
                ),
            ),
            format!("{}.{}.{}", parts[0], parts[1], "A".repeat(86)),
            good.replace('.', ""),
            "x".repeat(10_000),
        ];
        // An ID token is not an access token.
        bad.push(sign(&r.signer(SigningAlg::Es256).unwrap(), "JWT", &claims(1000)).unwrap());
        for t in bad {
            assert!(
                verify_access_token(&t, &r, "https://id.example.com", Timestamp(1000), 0).is_none(),
                "{t:.80}"
            );
        }
    }

    /// `claims` under `header`, signed by `ring`'s ES256 key whatever the header says.
    fn signed_with_header(
        r: &KeyRing,
        header: &serde_json::Value,
        claims: &AccessTokenClaims,
    ) -> String {
        let signer = r.signer(SigningAlg::Es256).unwrap();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
        );
        let sig = signer.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// RFC 7515 §4.1.11: a validly signed token whose header lists critical extensions is
    /// refused (authx understands none, so `"b64": false` of RFC 7797 cannot change what the
    /// signature covers); so is a header with a member twice. The same header without them
    /// verifies, so the refusals are the header's doing, not the signature's.
    #[test]
    fn critical_extensions_and_duplicated_members_are_refused_even_when_signed() {
        let r = ring(SigningAlg::Es256);
        let kid = r.signer(SigningAlg::Es256).unwrap().kid().to_owned();
        let verify =
            |t: &str| verify_access_token(t, &r, "https://id.example.com", Timestamp(1000), 0);
        let plain = serde_json::json!({"alg":"ES256","typ":"at+jwt","kid":kid});
        assert_eq!(
            verify(&signed_with_header(&r, &plain, &claims(1000))),
            Some(claims(1000))
        );
        let crit =
            serde_json::json!({"alg":"ES256","typ":"at+jwt","kid":kid,"crit":["b64"],"b64":false});
        assert_eq!(verify(&signed_with_header(&r, &crit, &claims(1000))), None);
        // A second `typ` could make two parsers disagree on what the token is.
        let signer = r.signer(SigningAlg::Es256).unwrap();
        let header = format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}","typ":"at+jwt"}}"#);
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(1000)).unwrap())
        );
        let sig = URL_SAFE_NO_PAD.encode(signer.sign(input.as_bytes()).unwrap());
        assert_eq!(verify(&format!("{input}.{sig}")), None);
        assert_eq!(
            jose_header(&format!("{input}.{sig}")).err(),
            Some(JwsDefect::Malformed)
        );
    }

    /// The order n of the P-256 group, big-endian.
    const P256_N: [u8; 32] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFF, 0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63,
        0x25, 0x51,
    ];
    /// The order L of the Ed25519 group, little-endian.
    const ED25519_L: [u8; 32] = [
        0xED, 0xD3, 0xF5, 0x5C, 0x1A, 0x63, 0x12, 0x58, 0xD6, 0x9C, 0xF7, 0xA2, 0xDE, 0xF9, 0xDE,
        0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x10,
    ];

    /// `a - b` for big-endian 256-bit numbers with `a >= b`.
    fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
            borrow = i16::from(d < 0);
            if d < 0 {
                d += 256;
            }
            out[i] = u8::try_from(d).unwrap();
        }
        out
    }

    /// `a + b` for little-endian 256-bit numbers (the carry out is dropped).
    fn add_le(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let s = u16::from(a[i]) + u16::from(b[i]) + carry;
            out[i] = u8::try_from(s & 0xff).unwrap();
            carry = s >> 8;
        }
        out
    }

    /// The ASN.1 DER form of an ECDSA signature, which JWS does not use (RFC 7518 §3.4).
    fn der(r: &[u8], s: &[u8]) -> Vec<u8> {
        let int = |x: &[u8]| {
            let mut v: Vec<u8> = x.iter().copied().skip_while(|b| *b == 0).collect();
            if v.first().is_none_or(|b| *b >= 0x80) {
                v.insert(0, 0);
            }
            let mut out = vec![0x02, u8::try_from(v.len()).unwrap()];
            out.extend(v);
            out
        };
        let body = [int(r), int(s)].concat();
        let mut out = vec![0x30, u8::try_from(body.len()).unwrap()];
        out.extend(body);
        out
    }

    /// SECURITY.md §2 #3: malformed ES256 and Ed25519 signatures on an otherwise good token.
    #[test]
    fn hostile_signatures_are_refused_through_the_access_token_path() {
        let issuer = "https://id.example.com";
        let r = ring(SigningAlg::Es256);
        let good = token(&r, SigningAlg::Es256, &claims(1000));
        let (input, sig_b64) = good.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
        let (sr, ss) = sig.split_at(32);
        let with = |s: &[u8]| format!("{input}.{}", URL_SAFE_NO_PAD.encode(s));
        let verify = |t: &str| verify_access_token(t, &r, issuer, Timestamp(1000), 0);
        assert_eq!(verify(&good), Some(claims(1000)));
        let n = P256_N.as_slice();
        for (what, bad) in [
            ("r = s = 0 (CVE-2022-21449)", vec![0u8; 64]),
            ("r = s = n", [n, n].concat()),
            ("r = n", [n, ss].concat()),
            ("s = 0", [sr, &[0u8; 32]].concat()),
            ("r and s swapped", [ss, sr].concat()),
            ("one byte short", sig[..63].to_vec()),
            ("one byte long", [sig.as_slice(), &[0]].concat()),
            ("empty", vec![]),
            ("DER instead of P1363", der(sr, ss)),
        ] {
            assert_eq!(verify(&with(&bad)), None, "{what}");
            let v = r
                .verifier(r.signer(SigningAlg::Es256).unwrap().kid())
                .unwrap();
            assert!(
                !signature_valid(v, input.as_bytes(), &URL_SAFE_NO_PAD.encode(&bad)),
                "{what}"
            );
        }
        // (r, n - s) is the same signature spelled differently: ECDSA (FIPS 186-5) and the
        // Wycheproof P1363 vectors accept it. It yields exactly the signed claims and forges
        // nothing; revocation and replay checks key on `jti`, never on the token's bytes.
        let high_s = [sr, &sub_be(n, ss)].concat();
        assert_eq!(verify(&with(&high_s)), Some(claims(1000)));

        let r = ring(SigningAlg::EdDsa);
        let good = token(&r, SigningAlg::EdDsa, &claims(1000));
        let (input, sig_b64) = good.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
        let with = |s: &[u8]| format!("{input}.{}", URL_SAFE_NO_PAD.encode(s));
        let verify = |t: &str| verify_access_token(t, &r, issuer, Timestamp(1000), 0);
        assert_eq!(verify(&good), Some(claims(1000)));
        for (what, bad) in [
            ("all zero", vec![0u8; 64]),
            (
                "S + L (non-canonical, malleated)",
                [&sig[..32], &add_le(&sig[32..], &ED25519_L)].concat(),
            ),
            ("one byte short", sig[..63].to_vec()),
            ("one byte long", [sig.as_slice(), &[0]].concat()),
        ] {
            assert_eq!(verify(&with(&bad)), None, "{what}");
        }
        // An ES256 key's token relabelled EdDSA, or the reverse, names an algorithm the key
        // does not have.
        let es = ring(SigningAlg::Es256);
        let es_token = token(&es, SigningAlg::Es256, &claims(1000));
        let parts: Vec<&str> = es_token.split('.').collect();
        let mut header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        header["alg"] = "EdDSA".into();
        let relabelled = jws(header, parts[1], parts[2]);
        assert!(verify_access_token(&relabelled, &es, issuer, Timestamp(1000), 0).is_none());
    }

    /// Signed claims at the ends of the `i64` range are judged, never overflow (a panic here
    /// would be a 500 in a debug build).
    #[test]
    fn extreme_times_do_not_overflow_the_checks() {
        let r = ring(SigningAlg::Es256);
        let signer = r.signer(SigningAlg::Es256).unwrap();
        let verify = |c: &AccessTokenClaims| {
            let t = sign(&signer, ACCESS_TOKEN_TYP, c).unwrap();
            verify_access_token(&t, &r, "https://id.example.com", Timestamp(1000), 60)
        };
        let mut far = claims(1000);
        far.exp = i64::MAX;
        assert_eq!(verify(&far), Some(far.clone()));
        far.iat = i64::MIN;
        assert_eq!(verify(&far), Some(far.clone()));
        let mut past = claims(1000);
        past.exp = i64::MIN;
        assert_eq!(verify(&past), None);
        let mut future = claims(1000);
        future.iat = i64::MAX;
        assert_eq!(verify(&future), None);
    }

    /// Claims this build does not know (RFC 9068 allows them) are ignored, so a newer
    /// instance's tokens verify on an older one during a rolling upgrade.
    #[test]
    fn unknown_claims_are_accepted() {
        let r = ring(SigningAlg::Es256);
        let mut with_more = serde_json::to_value(claims(1000)).unwrap();
        with_more["x_future"] = "urn:example:mfa".into();
        with_more["amr"] = serde_json::json!(["pwd", "otp"]);
        // A confirmation method authx does not know is ignored too.
        with_more["cnf"] =
            serde_json::json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"});
        let t = token(&r, SigningAlg::Es256, &with_more);
        let verified = verify_access_token(&t, &r, "https://id.example.com", Timestamp(1000), 0);
        let unbound = AccessTokenClaims {
            cnf: Some(crate::oauth::dpop::Confirmation { jkt: None }),
            ..claims(1000)
        };
        assert_eq!(verified, Some(unbound));
        // `cnf.jkt` (DPoP) is known now: read, and typed.
        with_more["cnf"] =
            serde_json::json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
        let t = token(&r, SigningAlg::Es256, &with_more);
        let verified = verify_access_token(&t, &r, "https://id.example.com", Timestamp(1000), 0);
        assert_eq!(
            verified.as_ref().and_then(AccessTokenClaims::dpop_jkt),
            Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
        );
        with_more["cnf"] = serde_json::json!({"jkt": 7});
        let t = token(&r, SigningAlg::Es256, &with_more);
        assert_eq!(
            verify_access_token(&t, &r, "https://id.example.com", Timestamp(1000), 0),
            None
        );
        // `acr` is known now: read, and typed.
        let mut with_acr = claims(1000);
        with_acr.acr = Some("urn:authx:acr:mfa".into());
        let t = token(&r, SigningAlg::Es256, &with_acr);
        let verified = verify_access_token(&t, &r, "https://id.example.com", Timestamp(1000), 0);
        assert_eq!(
            verified.and_then(|c| c.acr).as_deref(),
            Some("urn:authx:acr:mfa")
        );
        let mut bad = serde_json::to_value(claims(1000)).unwrap();
        bad["acr"] = serde_json::json!(2);
        let t = token(&r, SigningAlg::Es256, &bad);
        assert_eq!(
            verify_access_token(&t, &r, "https://id.example.com", Timestamp(1000), 0),
            None
        );
    }

    /// The claims authx knows stay strictly typed: one missing, or of the wrong JSON type, and
    /// the token is refused.
    #[test]
    fn known_claims_are_required_and_typed() {
        let r = ring(SigningAlg::Es256);
        let good = serde_json::to_value(claims(1000)).unwrap();
        let verify = |c: &serde_json::Value| {
            let t = token(&r, SigningAlg::Es256, c);
            verify_access_token(&t, &r, "https://id.example.com", Timestamp(1000), 0)
        };
        assert!(verify(&good).is_some());
        let mut not_before = good.clone();
        not_before["nbf"] = 900.into();
        assert!(verify(&not_before).is_some(), "nbf in the past");
        not_before["nbf"] = 1100.into();
        assert_eq!(verify(&not_before), None, "nbf in the future");
        // A claim given twice is refused, not read as either value.
        let mut twice = serde_json::to_string(&good).unwrap();
        twice.insert_str(1, r#""sub":"someone-else","#);
        let signer = r.signer(SigningAlg::Es256).unwrap();
        let header = jsonwebtoken::decode_header(token(&r, SigningAlg::Es256, &good)).unwrap();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(&twice)
        );
        let sig = URL_SAFE_NO_PAD.encode(signer.sign(input.as_bytes()).unwrap());
        let issuer = "https://id.example.com";
        let t = format!("{input}.{sig}");
        assert_eq!(
            verify_access_token(&t, &r, issuer, Timestamp(1000), 0),
            None
        );
        for required in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"] {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove(required);
            assert_eq!(verify(&c), None, "without {required}");
        }
        for (claim, wrong) in [
            ("sub", serde_json::json!(7)),
            ("aud", serde_json::json!(["https://api.example.com"])),
            ("exp", serde_json::json!("9999999999")),
            ("iat", serde_json::json!(1000.5)),
            ("jti", serde_json::Value::Null),
            ("client_id", serde_json::json!({"id": "app"})),
            ("scope", serde_json::json!(["read"])),
            ("sid", serde_json::json!(1)),
            ("fid", serde_json::json!(true)),
            ("auth_time", serde_json::json!("1000")),
            ("nbf", serde_json::json!("0")),
        ] {
            let mut c = good.clone();
            c[claim] = wrong;
            assert_eq!(verify(&c), None, "{claim} of the wrong type");
        }
    }

    #[test]
    fn at_hash_matches_oidc_example_shape() {
        assert_eq!(at_hash("token", SigningAlg::Rs256).len(), 22);
        assert_eq!(at_hash("token", SigningAlg::EdDsa).len(), 43);
    }
}
