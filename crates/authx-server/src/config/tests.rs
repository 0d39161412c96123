//! Unit tests of the configuration: defaults, overrides and validation messages.

use super::*;

fn parse(toml_text: &str) -> Result<Config, ConfigError> {
    Config::from_parts(
        toml::from_str(toml_text).map_err(|e| ConfigError(e.to_string()))?,
        &Overrides::default(),
    )
}

#[test]
fn defaults_are_the_embedded_store_on_loopback() {
    let c = parse("").unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.issuer, "http://127.0.0.1:8080");
    assert_eq!(c.database_url, "sqlite://authx.db");
    assert_eq!(c.trusted_origins, vec!["http://127.0.0.1:8080".to_owned()]);
    assert!(!c.cookie_secure);
}

#[test]
fn overrides_win_over_the_file() {
    let f: FileConfig =
        toml::from_str("listen = \"127.0.0.1:1\"\nissuer = \"https://id.example.com/\"").unwrap();
    let o = Overrides {
        listen: Some("127.0.0.1:2".into()),
        ..Overrides::default()
    };
    let c = Config::from_parts(f, &o).unwrap();
    assert_eq!(c.listen.port(), 2);
    assert_eq!(c.issuer, "https://id.example.com");
    assert!(c.cookie_secure);
}

#[test]
fn bad_values_get_clear_messages() {
    for (text, needle) in [
        ("listen = \"nope\"", "listen"),
        ("issuer = \"ftp://x\"", "issuer"),
        ("database_url = \"mysql://x\"", "database_url"),
        (
            "trusted_origins = [\"https://*.example.com\"]",
            "trusted_origins",
        ),
        ("[session]\nidle_timeout_secs = 0", "idle_timeout_secs"),
        ("[password]\nargon2_memory_kib = 1024", "argon2"),
        ("[password]\nmin_length = 4", "min_length"),
        ("version = 2", "version"),
        ("log_format = \"xml\"", "log_format"),
        ("redis_url = \"http://cache:6379\"", "redis_url"),
        ("redis_key_prefix = \"\"", "redis_key_prefix"),
        ("[rate_limit]\nwindow_secs = 0", "rate_limit.window_secs"),
        ("[audit]\nretention_days = 0", "audit.retention_days"),
        (
            "[oauth]\nsession_token_ttl_secs = 9",
            "oauth.session_token_ttl_secs",
        ),
        (
            "[oauth]\nsession_token_ttl_secs = 3601",
            "oauth.session_token_ttl_secs",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
    assert!(
        toml::from_str::<FileConfig>("lisen = \"x\"").is_err(),
        "unknown keys are refused"
    );
}

#[test]
fn session_token_lifetime_defaults_to_five_minutes_and_can_be_shortened() {
    assert_eq!(parse("").unwrap().oauth.session_token_ttl_secs, 300);
    let c = parse("[oauth]\nsession_token_ttl_secs = 10").unwrap();
    assert_eq!(c.oauth.session_token_ttl_secs, 10);
}

#[test]
fn federation_providers_are_validated() {
    let ok = parse(
        "[[federation.providers]]\nname = \"acme\"\nissuer = \"https://login.acme.test\"\n\
         client_id = \"authx\"\nclient_secret = \"s3cret\"\nscopes = [\"email\"]\n\
         claims = { email = \"mail\" }",
    )
    .unwrap();
    let p = &ok.federation[0];
    assert_eq!(p.scope, "openid email");
    assert_eq!(p.email_claim, "mail");
    assert!(!p.allow_sign_up);
    assert!(
        !format!("{ok:?}").contains("s3cret"),
        "the secret is printed"
    );
    for (body, needle) in [
        (
            "name = \"Acme!\"\nissuer = \"https://a.test\"\nclient_id = \"c\"\nclient_secret = \"s\"",
            "name",
        ),
        (
            "name = \"a\"\nissuer = \"http://idp.test\"\nclient_id = \"c\"\nclient_secret = \"s\"",
            "issuer",
        ),
        (
            "name = \"a\"\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\nclient_secret = \"s\"",
            "issuer",
        ),
        (
            "name = \"a\"\nissuer = \"https://a.test\"\nclient_id = \"c\"",
            "client_secret",
        ),
        (
            "name = \"a\"\nissuer = \"https://a.test\"\nclient_id = \"c\"\nclient_secret = \"s\"\ntoken_endpoint_auth_method = \"none\"",
            "token_endpoint_auth_method",
        ),
    ] {
        let err = parse(&format!("[[federation.providers]]\n{body}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{body}: {err}");
    }
    let loopback = parse(
        "[[federation.providers]]\nname = \"dev\"\nissuer = \"http://127.0.0.1:9\"\n\
         client_id = \"c\"\nclient_secret = \"s\"\ninsecure_allow_http_loopback = true",
    )
    .unwrap();
    assert!(loopback.federation[0].insecure_allow_http_loopback);
}

#[test]
fn outbound_urls_are_https_or_opted_in_loopback() {
    assert!(outbound_url_allowed("https://idp.example.com/jwks", false));
    assert!(!outbound_url_allowed("http://idp.example.com/jwks", false));
    assert!(!outbound_url_allowed("http://127.0.0.1:8080/jwks", false));
    assert!(outbound_url_allowed("http://127.0.0.1:8080/jwks", true));
    assert!(outbound_url_allowed("http://localhost:8080/jwks", true));
    assert!(outbound_url_allowed("http://[::1]:8080/jwks", true));
    for bad in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://127.0.0.1.evil.com/",
        "http://localhost@evil.com/",
        "https://user@idp.example.com/",
        "file:///etc/passwd",
        "gopher://127.0.0.1/",
    ] {
        assert!(!outbound_url_allowed(bad, true), "{bad}");
    }
}

#[test]
fn origins_are_exact() {
    assert_eq!(
        origin_of("HTTPS://App.Example.com:8443/x?y").as_deref(),
        Some("https://app.example.com:8443")
    );
    assert_eq!(origin_of("javascript:alert(1)"), None);
    assert_eq!(origin_of("https://good@evil.com/"), None);
    assert_eq!(
        redact_url("postgres://u:secret@h/db"),
        "postgres://u:***@h/db"
    );
}
