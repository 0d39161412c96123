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
        ("[oauth]\ndpop_require_nonce = true", "oauth.dpop"),
        (
            "[oauth]\ndpop = true\ndpop_leeway_secs = 61",
            "oauth.dpop_leeway_secs",
        ),
        (
            "[oauth]\ndpop = true\ndpop_leeway_secs = -1",
            "oauth.dpop_leeway_secs",
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
fn dpop_is_off_by_default_and_its_settings_are_read() {
    let c = parse("").unwrap();
    assert!(!c.oauth.dpop && !c.oauth.dpop_require_nonce);
    assert_eq!(c.oauth.dpop_leeway_secs, 5);
    let c = parse("[oauth]\ndpop = true\ndpop_require_nonce = true\ndpop_leeway_secs = 2").unwrap();
    assert!(c.oauth.dpop && c.oauth.dpop_require_nonce);
    assert_eq!(c.oauth.dpop_leeway_secs, 2);
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

#[test]
fn email_defaults_to_the_log_transport() {
    use crate::mail::settings::TransportSettings;
    let c = parse("").unwrap();
    assert_eq!(c.email.transport, TransportSettings::Log);
    assert_eq!(c.email.from, "no-reply@localhost");
    assert_eq!(c.email.product_name, "authx");
    assert_eq!(c.email.retry.max_attempts, 8);
    let c = parse("issuer = \"https://id.example.com\"").unwrap();
    assert_eq!(c.email.from, "no-reply@id.example.com");
}

#[test]
fn email_smtp_settings_are_read() {
    use crate::mail::settings::{SmtpTls, TransportSettings};
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, "s3cret-pw\n").unwrap();
    let c = parse(&format!(
        "[email]\ntransport = \"smtp\"\nsmtp_host = \"smtp.example.com\"\nusername = \"authx\"\n\
         password_file = \"{}\"\nfrom = \"Example <id@example.com>\"\nmax_attempts = 3\n",
        pw.display()
    ))
    .unwrap();
    let TransportSettings::Smtp(s) = &c.email.transport else {
        panic!("{:?}", c.email.transport);
    };
    assert_eq!(
        (s.host.as_str(), s.port, s.tls),
        ("smtp.example.com", 587, SmtpTls::StartTls)
    );
    let (user, password) = s.credentials.as_ref().unwrap();
    assert_eq!((user.as_str(), password.expose()), ("authx", "s3cret-pw"));
    assert_eq!(c.email.retry.max_attempts, 3);
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret-pw"),
        "the password is never printed"
    );
    let implicit =
        parse("[email]\ntransport = \"smtp\"\nsmtp_host = \"h\"\ntls = \"implicit\"").unwrap();
    let TransportSettings::Smtp(s) = &implicit.email.transport else {
        panic!("not smtp");
    };
    assert_eq!(s.port, 465);
}

#[test]
fn bad_email_settings_get_clear_messages() {
    for (text, needle) in [
        ("[email]\ntransport = \"pigeon\"", "email.transport"),
        ("[email]\ntransport = \"file\"", "email.directory"),
        ("[email]\ntransport = \"smtp\"", "email.smtp_host"),
        (
            "[email]\ntransport = \"smtp\"\nsmtp_host = \"mail.example.com\"\ntls = \"none\"",
            "only for a server on this machine",
        ),
        (
            "[email]\ntransport = \"smtp\"\nsmtp_host = \"h\"\ntls = \"ssl\"",
            "email.tls",
        ),
        (
            "[email]\ntransport = \"smtp\"\nsmtp_host = \"h\"\nusername = \"u\"",
            "password_env or email.password_file",
        ),
        (
            "[email]\ntransport = \"smtp\"\nsmtp_host = \"h\"\nusername = \"u\"\npassword_env = \"AUTHX_TEST_UNSET_VARIABLE\"",
            "AUTHX_TEST_UNSET_VARIABLE is not set",
        ),
        ("[email]\nfrom = \"not an address\"", "email.from"),
        ("[email]\nmax_attempts = 0", "email.max_attempts"),
        (
            "[email]\nretry_base_secs = 10\nretry_max_secs = 5",
            "email.retry_base_secs",
        ),
        ("[email]\nproduct_name = \"\"", "email.product_name"),
        ("[email]\nsmpt_host = \"typo\"", "unknown field"),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
    // No clear-text SMTP across the network, but to this machine it is fine.
    for host in ["127.0.0.1", "localhost", "::1"] {
        let text = format!("[email]\ntransport = \"smtp\"\nsmtp_host = \"{host}\"\ntls = \"none\"");
        assert!(parse(&text).is_ok(), "{host}");
    }
}

#[test]
fn saml_providers_parse_from_toml_behind_their_switch() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let bundle = std::env::temp_dir().join(format!("authx-saml-bundle-{}.pem", std::process::id()));
    let rsa = std::fs::read_to_string(format!("{dir}/../authx-saml/tests/data/idp-rsa.cert.pem"))
        .unwrap();
    let ec =
        std::fs::read_to_string(format!("{dir}/../authx-saml/tests/data/idp-ec.cert.pem")).unwrap();
    std::fs::write(&bundle, format!("{rsa}\n{ec}")).unwrap();
    let provider = format!(
        r#"
[[federation.saml]]
name = "corp"
idp_entity_id = "https://idp.example.org/metadata"
sso_url = "https://idp.example.org/sso"
certificate_file = "{}"
"#,
        bundle.display()
    );
    // Without the switch: parsed, not served.
    let c = parse(&provider).unwrap();
    assert!(c.saml.is_empty());
    // With it: both certificates of the bundle are pinned, the defaults are the safe ones.
    let c = parse(&format!("[federation]\nenable_saml = true\n{provider}")).unwrap();
    let p = &c.saml[0];
    assert_eq!(p.keys.len(), 2);
    assert_eq!(p.display_name, "corp");
    assert!(!p.emails_verified && !p.allow_sign_up && !p.allow_signed_response_only);
    assert!(!p.sign_authn_requests && !p.require_encrypted_assertions);
    assert!(p.subject_attribute.is_none() && p.metadata_url.is_none());
    // The SP key settings and the subject attribute.
    let c = parse(&format!(
        "[federation]\nenable_saml = true\n{provider}sign_authn_requests = true\n\
         require_encrypted_assertions = true\nsubject_attribute = \"employeeNumber\"\n"
    ))
    .unwrap();
    let p = &c.saml[0];
    assert!(p.sign_authn_requests && p.require_encrypted_assertions);
    assert_eq!(p.subject_attribute.as_deref(), Some("employeeNumber"));
    let err = parse(&format!(
        "[federation]\nenable_saml = true\n{provider}subject_attribute = \"\"\n"
    ))
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("subject_attribute must be 1 to 1024"),
        "{err}"
    );
    // A metadata URL is only checked here (https), fetched when the server starts.
    let by_url = "[federation]\nenable_saml = true\n[[federation.saml]]\nname = \"corp\"\n";
    let c = parse(&format!(
        "{by_url}metadata_url = \"https://idp.example.org/metadata\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.saml[0].metadata_url.as_deref(),
        Some("https://idp.example.org/metadata")
    );
    assert!(c.saml[0].keys.is_empty());
    let err = parse(&format!(
        "{by_url}metadata_url = \"http://idp.example.org/metadata\"\n"
    ))
    .unwrap_err();
    assert!(err.to_string().contains("must be an https URL"), "{err}");
    // Two SAML providers of one name.
    let err = parse(&format!(
        "[federation]\nenable_saml = true\n{provider}{provider}"
    ))
    .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    // A certificate file with no certificate pins nothing.
    std::fs::write(&bundle, "not a certificate").unwrap();
    let err = parse(&format!("[federation]\nenable_saml = true\n{provider}")).unwrap_err();
    assert!(err.to_string().contains("no signing certificate"), "{err}");
    std::fs::remove_file(&bundle).unwrap();
}
