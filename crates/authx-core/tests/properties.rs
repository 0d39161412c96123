//! Property tests of the matchers and parsers that stand between hostile input and a decision:
//! redirect URI matching, scope sets, user codes, PKCE and the encodings of opaque tokens
//! (STYLE.md §7; SECURITY.md #22, #23, #34, #42, #56).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authx_core::Timestamp;
use authx_core::oauth::client::{
    Client, GrantType, TokenEndpointAuthMethod, validate_redirect_uri,
};
use authx_core::oauth::device::{USER_CODE_ALPHABET, USER_CODE_LEN, UserCode};
use authx_core::oauth::keys::SigningAlg;
use authx_core::oauth::pkce;
use authx_core::oauth::scope::{MAX_SCOPE_LEN, Scopes};
use authx_core::secret::{SessionToken, TokenHash, b64url};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

fn client(uris: &[String], public: bool) -> Client {
    Client {
        id: "app".into(),
        name: "App".into(),
        secret_hash: (!public).then(|| TokenHash::of(b"secret")),
        token_endpoint_auth_method: if public {
            TokenEndpointAuthMethod::None
        } else {
            TokenEndpointAuthMethod::ClientSecretBasic
        },
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        redirect_uris: uris.to_vec(),
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
        grant_types: vec![GrantType::AuthorizationCode],
        scopes: vec![],
        resources: vec![],
        first_party: false,
        require_pushed_authorization_requests: false,
        require_acr: None,
        id_token_alg: SigningAlg::Rs256,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 86_400,
        refresh_idle_secs: 86_400,
        created_at: Timestamp(0),
    }
}

/// Registered-looking https redirect URIs: host, optional port, path, optional query.
fn https_uri() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9-]{0,12}(\\.[a-z][a-z0-9-]{0,8}){1,3}",
        proptest::option::of(1u16..),
        "(/[A-Za-z0-9._~%-]{0,10}){0,4}",
        proptest::option::of("[a-z]{1,5}=[A-Za-z0-9]{0,5}"),
    )
        .prop_map(|(host, port, path, query)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("https://{host}{port}{path}{query}")
        })
}

/// One edit of a string: a character inserted, removed, replaced or case-flipped.
fn mutate(s: &str, at: usize, kind: u8, ch: char) -> String {
    let chars: Vec<char> = s.chars().collect();
    let i = at % (chars.len() + 1);
    let mut out = chars.clone();
    match kind % 4 {
        0 => out.insert(i, ch),
        1 if i < chars.len() => {
            out.remove(i);
        }
        2 if i < chars.len() => out[i] = ch,
        _ => {
            if let Some(c) = out.get_mut(i) {
                *c = if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                };
            } else {
                out.push(ch);
            }
        }
    }
    out.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // --- Redirect URIs (SECURITY.md #23, #25) -----------------------------------------------

    #[test]
    fn a_registered_uri_matches_itself_and_no_edit_of_it(
        uri in https_uri(),
        at in any::<usize>(),
        kind in any::<u8>(),
        ch in proptest::char::any(),
        public in any::<bool>(),
    ) {
        prop_assert_eq!(validate_redirect_uri(&uri), Ok(()));
        let c = client(std::slice::from_ref(&uri), public);
        prop_assert!(c.redirect_uri_matches(&uri));
        let edited = mutate(&uri, at, kind, ch);
        prop_assert_eq!(c.redirect_uri_matches(&edited), edited == uri, "{:?}", edited);
    }

    #[test]
    fn confidential_clients_match_only_byte_equal_uris(
        registered in proptest::collection::vec(".{0,40}", 0..4),
        presented in ".{0,40}",
    ) {
        let c = client(&registered, false);
        prop_assert_eq!(c.redirect_uri_matches(&presented), registered.contains(&presented));
    }

    #[test]
    fn loopback_redirects_of_native_clients_vary_in_port_only(
        ip in prop_oneof![Just("127.0.0.1"), Just("[::1]")],
        path in "(/[a-z]{1,6}){0,3}",
        port in any::<u16>(),
        other_path in "(/[a-z]{1,6}){0,3}",
        query in proptest::option::of("[a-z]=[a-z0-9]{0,4}"),
    ) {
        let registered = format!("http://{ip}{path}");
        let native = client(std::slice::from_ref(&registered), true);
        let confidential = client(std::slice::from_ref(&registered), false);
        let presented = format!("http://{ip}:{port}{path}");
        prop_assert!(native.redirect_uri_matches(&presented));
        prop_assert!(!confidential.redirect_uri_matches(&presented));
        let moved = format!("http://{ip}:{port}{other_path}");
        prop_assert_eq!(native.redirect_uri_matches(&moved), other_path == path);
        if let Some(q) = query {
            let with_query = format!("{presented}?{q}");
            prop_assert!(!native.redirect_uri_matches(&with_query));
        }
        for host in ["localhost", "127.0.0.2", "[::2]", "127.0.0.1.evil.com"] {
            if host != ip {
                let elsewhere = format!("http://{host}:{port}{path}");
                prop_assert!(!native.redirect_uri_matches(&elsewhere), "{}", elsewhere);
            }
        }
    }

    #[test]
    fn accepted_registrations_are_https_or_loopback_without_tricks(
        scheme in prop_oneof![
            Just("https://"), Just("http://"), Just("HTTPS://"), Just("https:"), Just("")
        ],
        rest in prop_oneof![
            "[ -~]{0,40}",
            "(127\\.0\\.0\\.1|\\[::1\\]|localhost|[a-z.@:]{1,12})(:[0-9]{1,5})?[/?#*\\\\ a-z.%@]{0,12}",
            ".{0,40}",
        ],
    ) {
        let uri = format!("{scheme}{rest}");
        if validate_redirect_uri(&uri).is_ok() {
            prop_assert!(uri.starts_with("https://") || uri.starts_with("http://"));
            for forbidden in ['#', '*', '\\', ' ', '\r', '\n', '\0'] {
                prop_assert!(!uri.contains(forbidden), "{:?}", uri);
            }
            let authority = uri.split_once("://").unwrap().1.split(['/', '?']).next().unwrap();
            prop_assert!(!authority.is_empty() && !authority.contains('@'));
            if uri.starts_with("http://") {
                let loopback = match authority.strip_prefix('[') {
                    Some(v6) => v6
                        .split(']')
                        .next()
                        .unwrap()
                        .parse::<std::net::Ipv6Addr>()
                        .is_ok_and(|ip| ip.is_loopback()),
                    None => authority
                        .split(':')
                        .next()
                        .unwrap()
                        .parse::<std::net::Ipv4Addr>()
                        .is_ok_and(|ip| ip.is_loopback()),
                };
                prop_assert!(loopback, "{:?}", uri);
            }
        }
    }

    #[test]
    fn dangerous_schemes_are_refused_in_any_case(
        scheme in prop_oneof![Just("javascript"), Just("data"), Just("vbscript"), Just("file")],
        flips in proptest::collection::vec(any::<bool>(), 10),
        rest in "[a-z0-9/:.()]{0,20}",
    ) {
        let mixed: String = scheme
            .chars()
            .zip(flips.iter().cycle())
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        for sep in [":", "://"] {
            let uri = format!("{mixed}{sep}{rest}");
            prop_assert!(validate_redirect_uri(&uri).is_err(), "{}", uri);
        }
    }

    // --- Scopes (SECURITY.md #42, #43) --------------------------------------------------------

    #[test]
    fn scope_sets_round_trip_and_intersect_like_sets(
        a in proptest::collection::vec("[a-z:._-]{1,8}", 0..8),
        b in proptest::collection::vec("[a-z:._-]{1,8}", 0..8),
    ) {
        let sa = Scopes::parse(&a.join(" ")).unwrap();
        let sb = Scopes::parse(&b.join("  ")).unwrap();
        prop_assert_eq!(Scopes::parse(&sa.to_param()).unwrap(), sa.clone());
        let both = sa.intersect(&sb);
        prop_assert_eq!(&both, &sb.intersect(&sa));
        prop_assert!(both.is_subset(&sa) && both.is_subset(&sb));
        prop_assert_eq!(both.intersect(&sa), both.clone());
        for s in sa.iter() {
            prop_assert_eq!(both.contains(s), sb.contains(s));
            prop_assert_eq!(sa.minus(&sb).contains(s), !sb.contains(s));
        }
        prop_assert!(sa.minus(&sb).intersect(&sb).is_empty());
        // Granted = requested ∩ allowed can never exceed what was allowed.
        prop_assert!(sa.intersect(&sb).minus(&sb).is_empty());
    }

    #[test]
    fn scope_parsing_refuses_what_is_not_nqchar(s in ".{0,64}") {
        match Scopes::parse(&s) {
            Some(set) => {
                for token in set.iter() {
                    prop_assert!(!token.is_empty());
                    prop_assert!(token.bytes().all(|b| b == 0x21
                        || (0x23..=0x5B).contains(&b)
                        || (0x5D..=0x7E).contains(&b)));
                }
            }
            None => prop_assert!(
                s.len() > MAX_SCOPE_LEN
                    || s.split(' ').any(|t| t.bytes().any(|b| !(b == 0x21
                        || (0x23..=0x5B).contains(&b)
                        || (0x5D..=0x7E).contains(&b))))
            ),
        }
    }

    // --- User codes (SECURITY.md #56) ---------------------------------------------------------

    #[test]
    fn user_codes_survive_any_case_and_separators(
        seps in proptest::collection::vec(prop_oneof![Just(""), Just("-"), Just(" "), Just("- ")], 9),
        lower in proptest::collection::vec(any::<bool>(), 8),
    ) {
        let code = UserCode::generate();
        prop_assert_eq!(code.as_str().len(), USER_CODE_LEN);
        prop_assert!(code.as_str().bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        let mut typed = String::new();
        for (i, c) in code.as_str().chars().enumerate() {
            typed.push_str(seps[i]);
            typed.push(if lower[i] { c.to_ascii_lowercase() } else { c });
        }
        typed.push_str(seps[8]);
        prop_assert_eq!(UserCode::normalize(&typed), Some(code.clone()));
        prop_assert_eq!(UserCode::normalize(&code.display()), Some(code));
    }

    #[test]
    fn normalised_user_codes_are_canonical(
        s in prop_oneof![
            "[BCDFGHJKLMNPQRSTVWXZbcdfghjklmnpqrstvwxz -]{6,14}",
            "[BCDFGHJKLMNPQRSTVWXZbcdfghjklmnpqrstvwxz -AEIOUaeiou019_\t\u{212A}\u{FF22}]{6,14}",
            ".{0,20}",
        ],
    ) {
        if let Some(code) = UserCode::normalize(&s) {
            prop_assert_eq!(code.as_str().len(), USER_CODE_LEN);
            prop_assert!(code.as_str().bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
            let stripped: String = s
                .chars()
                .filter(|c| *c != '-' && *c != ' ')
                .map(|c| c.to_ascii_uppercase())
                .collect();
            prop_assert_eq!(code.as_str(), stripped.as_str());
            prop_assert_eq!(UserCode::normalize(code.as_str()), Some(code));
        }
    }

    #[test]
    fn one_foreign_character_spoils_a_user_code(
        pos in 0usize..9,
        bad in proptest::char::any().prop_filter("not a code character", |c| {
            *c != '-' && *c != ' ' && !(c.is_ascii() && USER_CODE_ALPHABET.contains(&(c.to_ascii_uppercase() as u8)))
        }),
    ) {
        let code = UserCode::generate();
        let mut typed: Vec<char> = code.display().chars().collect();
        typed.insert(pos.min(typed.len()), bad);
        let typed: String = typed.into_iter().collect();
        prop_assert_eq!(UserCode::normalize(&typed), None, "{:?}", typed);
    }

    // --- PKCE (SECURITY.md #34, #35) ----------------------------------------------------------

    #[test]
    fn valid_verifiers_verify_only_against_their_own_challenge(
        v in "[A-Za-z0-9._~-]{43,128}",
        w in "[A-Za-z0-9._~-]{43,128}",
    ) {
        prop_assert!(pkce::is_valid_verifier(&v));
        let challenge = pkce::s256(&v);
        prop_assert!(pkce::is_valid_challenge(&challenge));
        prop_assert!(pkce::verify(&v, &challenge));
        prop_assert_eq!(pkce::verify(&w, &challenge), v == w);
        // Sending the challenge back as the verifier proves nothing.
        prop_assert!(!pkce::verify(&challenge, &challenge));
    }

    #[test]
    fn malformed_verifiers_never_verify(
        v in prop_oneof!["[A-Za-z0-9._~+/= -]{40,132}", ".{0,140}"],
    ) {
        let shape_ok = (43..=128).contains(&v.len())
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        prop_assert_eq!(pkce::is_valid_verifier(&v), shape_ok);
        if !shape_ok {
            prop_assert!(!pkce::verify(&v, &pkce::s256(&v)));
        }
    }

    #[test]
    fn challenges_are_exactly_43_canonical_base64url_chars(c in "[A-Za-z0-9_+/=-]{40,46}") {
        let decodes = URL_SAFE_NO_PAD.decode(&c).is_ok_and(|d| d.len() == 32);
        prop_assert_eq!(pkce::is_valid_challenge(&c), c.len() == 43 && decodes);
    }

    // --- Opaque tokens and their encodings (SECURITY.md #1, #4) --------------------------------

    #[test]
    fn any_32_bytes_round_trip_as_a_token(bytes in any::<[u8; 32]>()) {
        let encoded = b64url(&bytes);
        prop_assert_eq!(encoded.len(), 43);
        let token = SessionToken::parse(&encoded).unwrap();
        prop_assert_eq!(token.expose(), encoded.as_str());
        prop_assert_eq!(token.hash(), TokenHash::of(encoded.as_bytes()));
    }

    #[test]
    fn only_canonical_43_char_values_parse(s in "[A-Za-z0-9_+/=.-]{41,45}") {
        match SessionToken::parse(&s) {
            Some(t) => {
                let bytes = URL_SAFE_NO_PAD.decode(t.expose()).unwrap();
                prop_assert_eq!(bytes.len(), 32);
                // One token, one spelling: re-encoding gives the very same string.
                prop_assert_eq!(b64url(&bytes), s);
            }
            None => prop_assert!(
                s.len() != 43 || !URL_SAFE_NO_PAD.decode(&s).is_ok_and(|b| b.len() == 32)
            ),
        }
    }

    #[test]
    fn b64url_round_trips_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let s = b64url(&bytes);
        prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(URL_SAFE_NO_PAD.decode(&s).unwrap(), bytes);
    }

    #[test]
    fn token_hashes_round_trip_through_hex(
        secret in proptest::collection::vec(any::<u8>(), 0..64),
        other in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let h = TokenHash::of(&secret);
        let hex = h.to_hex();
        prop_assert_eq!(hex.len(), 64);
        prop_assert_eq!(TokenHash::from_hex(&hex), Some(h));
        prop_assert_eq!(TokenHash::from_hex(&hex.to_ascii_uppercase()).is_some(), !hex.bytes().any(|b| b.is_ascii_lowercase()));
        let debug = format!("{h:?}");
        prop_assert!(!debug.contains(&hex));
        prop_assert_eq!(h.ct_eq(&TokenHash::of(&other)), secret == other);
    }

    #[test]
    fn hex_parsing_takes_only_64_lower_case_digits(s in "[0-9a-fA-Gz]{62,66}") {
        let ok = s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        prop_assert_eq!(TokenHash::from_hex(&s).is_some(), ok);
    }
}

#[test]
fn spaced_lower_case_codes_equal_the_canonical_form() {
    assert_eq!(
        UserCode::normalize("bcdf-ghjk"),
        UserCode::normalize("BCDFGHJK")
    );
    assert!(UserCode::normalize("bcdf-ghjk").is_some());
}
