//! The authorization endpoint's decision: sign in first (and again for `prompt=login` and
//! `max_age`), `prompt=none` never shows a page, consent is asked until it is remembered, and
//! an untrusted client or redirect URI gets a page, never a redirect.

use super::super::authorize::{AuthorizeDecision, SignedIn};
use super::*;

/// The parameters of a well-formed request of `client`, and its query string.
pub(super) fn params(client: &Client, extra: &[(&str, &str)]) -> (AuthorizeParams, String) {
    let mut pairs = vec![
        ("client_id", client.id.clone()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("response_type", "code".to_owned()),
        ("scope", "openid email".to_owned()),
        ("state", "s".to_owned()),
        ("code_challenge", challenge()),
        ("code_challenge_method", "S256".to_owned()),
    ];
    // An extra parameter replaces the default of its name.
    for (k, v) in extra {
        match pairs.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = (*v).to_owned(),
            None => pairs.push((k, (*v).to_owned())),
        }
    }
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        ser.append_pair(k, v);
    }
    let query = ser.finish();
    (AuthorizeParams::from_query(&query), query)
}

impl Rig {
    pub(super) fn signed_in(&self) -> SignedIn<'_> {
        self.signed_in_at(Timestamp(NOW))
    }

    /// The rig's session, signed in with a password at `at`.
    pub(super) fn signed_in_at(&self, at: Timestamp) -> SignedIn<'_> {
        SignedIn {
            user: &self.user.id,
            session: &self.session,
            auth_time: at,
            auth_methods: "password",
            can_step_up: false,
        }
    }

    pub(super) async fn decide(
        &self,
        client: &Client,
        extra: &[(&str, &str)],
        signed_in: bool,
    ) -> AuthorizeDecision {
        let (p, query) = params(client, extra);
        let session = signed_in.then(|| self.signed_in());
        self.oauth.decide(&p, &query, session).await.unwrap()
    }
}

/// The query parameters of a redirect to the client, or a panic.
pub(super) fn redirected(d: AuthorizeDecision) -> Vec<(String, String)> {
    let AuthorizeDecision::Redirect(to) = d else {
        panic!("expected a redirect, got {d:?}");
    };
    let query = to
        .strip_prefix(&format!("{REDIRECT}?"))
        .expect("the registered redirect URI");
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The value of `k` in a redirect's parameters.
pub(super) fn param<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// The resumed request of a sign-in decision, or a panic.
fn login(d: AuthorizeDecision) -> Vec<(String, String)> {
    let AuthorizeDecision::Login { request } = d else {
        panic!("expected a sign-in, got {d:?}");
    };
    form_urlencoded::parse(request.as_bytes())
        .into_owned()
        .collect()
}

#[tokio::test]
async fn a_signed_out_browser_signs_in_first() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let resumed = login(rig.decide(&client, &[], false).await);
    assert_eq!(param(&resumed, "client_id"), Some("web"));
    assert_eq!(param(&resumed, "state"), Some("s"));
    // Nothing forces a newer sign-in.
    assert_eq!(param(&resumed, "login_after"), None);

    // prompt=none never shows a page.
    let refused = redirected(rig.decide(&client, &[("prompt", "none")], false).await);
    assert_eq!(param(&refused, "error"), Some("login_required"));
    assert_eq!(param(&refused, "state"), Some("s"));
    assert_eq!(param(&refused, "iss"), Some(ISSUER));
}

#[tokio::test]
async fn prompt_login_and_max_age_ask_for_a_newer_sign_in() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let resumed = login(rig.decide(&client, &[("prompt", "login")], true).await);
    let after = NOW.to_string();
    assert_eq!(param(&resumed, "login_after"), Some(after.as_str()));

    // Coming back with a sign-in no older than `login_after` is enough.
    let again = rig
        .decide(
            &client,
            &[("prompt", "login"), ("login_after", &after)],
            true,
        )
        .await;
    assert!(matches!(again, AuthorizeDecision::Consent(_)), "{again:?}");
    // A `login_after` the session is older than is not.
    let later = (NOW + 1).to_string();
    let stale = rig.decide(&client, &[("login_after", &later)], true).await;
    assert!(
        matches!(stale, AuthorizeDecision::Login { .. }),
        "{stale:?}"
    );

    // max_age: a sign-in older than it signs in again, with `login_after` now.
    rig.clock.advance(120);
    let fresh = rig.decide(&client, &[("max_age", "300")], true).await;
    assert!(matches!(fresh, AuthorizeDecision::Consent(_)), "{fresh:?}");
    let resumed = login(rig.decide(&client, &[("max_age", "60")], true).await);
    let now = (NOW + 120).to_string();
    assert_eq!(param(&resumed, "login_after"), Some(now.as_str()));
    let refused = redirected(
        rig.decide(&client, &[("max_age", "60"), ("prompt", "none")], true)
            .await,
    );
    assert_eq!(param(&refused, "error"), Some("login_required"));
}

#[tokio::test]
async fn consent_is_asked_until_it_is_remembered() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let AuthorizeDecision::Consent(req) = rig.decide(&client, &[], true).await else {
        panic!("expected the consent page");
    };
    assert_eq!(req.client.id, "web");
    let refused = redirected(rig.decide(&client, &[("prompt", "none")], true).await);
    assert_eq!(param(&refused, "error"), Some("consent_required"));

    // Allowing redirects with a code and remembers the consent.
    let (p, _) = params(&client, &[]);
    let allowed = redirected(
        rig.oauth
            .decide_consent(&p, rig.signed_in(), true)
            .await
            .unwrap(),
    );
    assert!(param(&allowed, "code").is_some());
    assert_eq!(param(&allowed, "state"), Some("s"));
    let remembered = redirected(rig.decide(&client, &[], true).await);
    let code = param(&remembered, "code").expect("a code");
    assert!(rig.redeem(&client, code).await.is_ok());
    // prompt=consent asks again.
    let asked = rig.decide(&client, &[("prompt", "consent")], true).await;
    assert!(matches!(asked, AuthorizeDecision::Consent(_)), "{asked:?}");

    // Denying redirects access_denied.
    let denied = redirected(
        rig.oauth
            .decide_consent(&p, rig.signed_in(), false)
            .await
            .unwrap(),
    );
    assert_eq!(param(&denied, "error"), Some("access_denied"));
    assert_eq!(param(&denied, "code"), None);
}

#[tokio::test]
async fn an_untrusted_request_gets_a_page_and_a_bad_one_a_redirect() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let (mut p, query) = params(&client, &[]);
    p.client_id = Some("nobody".into());
    let d = rig.oauth.decide(&p, &query, None).await.unwrap();
    assert!(matches!(d, AuthorizeDecision::Refused(_)), "{d:?}");

    let (mut p, query) = params(&client, &[]);
    p.repeated = vec!["redirect_uri".into()];
    let d = rig.oauth.decide(&p, &query, None).await.unwrap();
    assert!(matches!(d, AuthorizeDecision::Refused(_)), "{d:?}");

    // Once the client and redirect URI are trusted, errors go back to the client.
    p.repeated = vec!["scope".into()];
    let bad = redirected(rig.oauth.decide(&p, &query, None).await.unwrap());
    assert_eq!(param(&bad, "error"), Some("invalid_request"));
    assert_eq!(
        param(&bad, "error_description"),
        Some("parameter scope is repeated")
    );
    let bad = redirected(
        rig.decide(&client, &[("response_type", "token")], true)
            .await,
    );
    assert_eq!(param(&bad, "error"), Some("unsupported_response_type"));

    // The consent form's request is trusted no more than the first one.
    let (mut p, _) = params(&client, &[]);
    p.repeated = vec!["scope".into()];
    let d = rig
        .oauth
        .decide_consent(&p, rig.signed_in(), true)
        .await
        .unwrap();
    assert!(matches!(d, AuthorizeDecision::Refused(_)), "{d:?}");
}

#[tokio::test]
async fn acr_values_ask_a_user_with_a_second_factor_to_step_up() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let extra = [("acr_values", "urn:authx:acr:mfa urn:authx:acr:pwd")];
    let (p, query) = params(&client, &extra);
    let with_factor = SignedIn {
        can_step_up: true,
        ..rig.signed_in()
    };
    match rig
        .oauth
        .decide(&p, &query, Some(with_factor))
        .await
        .unwrap()
    {
        AuthorizeDecision::StepUp { request } => {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(request.as_bytes())
                .into_owned()
                .collect();
            assert_eq!(
                param(&pairs, "acr_values"),
                Some("urn:authx:acr:mfa urn:authx:acr:pwd")
            );
        }
        d => panic!("expected a step-up, got {d:?}"),
    }
    // prompt=none cannot show the step: interaction_required.
    let (p_none, q_none) = params(&client, &[extra[0], ("prompt", "none")]);
    let refused = redirected(
        rig.oauth
            .decide(&p_none, &q_none, Some(with_factor))
            .await
            .unwrap(),
    );
    assert_eq!(param(&refused, "error"), Some("interaction_required"));
    // A session that proved a second factor needs no step-up.
    let stepped = SignedIn {
        auth_methods: "password+totp",
        ..with_factor
    };
    assert!(matches!(
        rig.oauth.decide(&p, &query, Some(stepped)).await.unwrap(),
        AuthorizeDecision::Consent(_)
    ));
    // A user without a factor cannot step up: the request goes on, and the granted acr will
    // say what happened.
    assert!(matches!(
        rig.oauth
            .decide(&p, &query, Some(rig.signed_in()))
            .await
            .unwrap(),
        AuthorizeDecision::Consent(_)
    ));
    // Values authx does not know ask for nothing.
    let (p_other, q_other) = params(&client, &[("acr_values", "urn:example:loa:4")]);
    assert!(matches!(
        rig.oauth
            .decide(&p_other, &q_other, Some(with_factor))
            .await
            .unwrap(),
        AuthorizeDecision::Consent(_)
    ));
}

#[tokio::test]
async fn tokens_carry_the_acr_and_amr_the_sign_in_earned() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    for (methods, acr, amr) in [
        ("password", "urn:authx:acr:pwd", vec!["pwd"]),
        (
            "password+totp",
            "urn:authx:acr:mfa",
            vec!["pwd", "otp", "mfa"],
        ),
    ] {
        let req = rig.request(&client, "openid offline_access", None).await;
        let who = SignedIn {
            auth_methods: methods,
            ..rig.signed_in()
        };
        let code = rig.oauth.issue_code(&req, who).await.unwrap();
        let t = rig.redeem(&client, &code).await.unwrap();
        let id = rig
            .oauth
            .id_token_hint(t.id_token.as_deref().unwrap())
            .expect("an ID token of this issuer");
        assert_eq!(id.acr.as_deref(), Some(acr), "{methods}");
        assert_eq!(id.amr, Some(amr.iter().map(|s| (*s).to_owned()).collect()));
        let at = rig
            .oauth
            .active_access_token(&t.access_token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(at.acr.as_deref(), Some(acr));
        // A refresh keeps what the sign-in earned.
        let refreshed = rig
            .oauth
            .tokens()
            .refresh(&client, t.refresh_token.as_deref().unwrap(), None)
            .await
            .unwrap();
        let id = rig
            .oauth
            .id_token_hint(refreshed.id_token.as_deref().unwrap())
            .unwrap();
        assert_eq!(id.acr.as_deref(), Some(acr));
    }
}

#[tokio::test]
async fn a_client_that_requires_mfa_steps_users_up_and_refuses_those_without_a_factor() {
    let rig = Rig::new().await;
    let base = rig.web_client("base").await;
    let strict = Client {
        id: "strict".into(),
        require_acr: Some("urn:authx:acr:mfa".into()),
        ..base
    };
    let client = rig.oauth.register_client(strict, false).await.unwrap().0;
    let (p, query) = params(&client, &[]);
    let with_factor = SignedIn {
        can_step_up: true,
        ..rig.signed_in()
    };
    assert!(matches!(
        rig.oauth
            .decide(&p, &query, Some(with_factor))
            .await
            .unwrap(),
        AuthorizeDecision::StepUp { .. }
    ));
    // No factor: refused, not let through with a weaker sign-in.
    let refused = redirected(
        rig.oauth
            .decide(&p, &query, Some(rig.signed_in()))
            .await
            .unwrap(),
    );
    assert_eq!(param(&refused, "error"), Some("access_denied"));
    // `acr_values` asking for less does not lower the client's requirement.
    let (p_less, q_less) = params(&client, &[("acr_values", "urn:authx:acr:pwd")]);
    let refused = redirected(
        rig.oauth
            .decide(&p_less, &q_less, Some(rig.signed_in()))
            .await
            .unwrap(),
    );
    assert_eq!(param(&refused, "error"), Some("access_denied"));
    // A session that proved a second factor passes.
    let stepped = SignedIn {
        auth_methods: "password+totp",
        ..rig.signed_in()
    };
    assert!(matches!(
        rig.oauth.decide(&p, &query, Some(stepped)).await.unwrap(),
        AuthorizeDecision::Consent(_)
    ));
}
