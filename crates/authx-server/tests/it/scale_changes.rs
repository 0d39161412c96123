//! Several instances on one PostgreSQL and one Redis: a change made on one instance to an
//! application or an account holds on the others from the very next request.
//!
//! Needs PostgreSQL and Redis (found on their default local ports, or named by
//! `AUTHX_TEST_POSTGRES_URL` and `AUTHX_TEST_REDIS_URL`); without them each test prints
//! `SKIPPED: ...` (or fails when `AUTHX_TEST_REQUIRE_SERVICES=1`).

use authx_testkit::services::SharedServices;
use authx_testkit::{PASSWORD, TestServer};
use reqwest::Method;
use serde_json::{Value, json};

use crate::scale::{me, sign_in, three, three_with};

/// Three instances as behind a load balancer: one issuer for all, each still trusting the
/// origin the tests call it on. The API `https://api.example.com` is registered, and an
/// administrator is signed in on C (the cookie is returned).
async fn behind_one_issuer(services: &SharedServices) -> ([TestServer; 3], String) {
    let [a, b, c] = three_with(services, |f| {
        f.trusted_origins = f.issuer.clone().map(|own| vec![own]);
        f.issuer = Some("http://authx.lb.test".into());
    })
    .await;
    let state = &c.running().unwrap().state;
    crate::oidc::register_example_api(state).await;
    state
        .auth
        .create_user("owner@example.com", PASSWORD, true)
        .await
        .unwrap();
    let admin = c.sign_in("owner@example.com", PASSWORD).await.unwrap();
    ([a, b, c], admin)
}

/// Deleting an application on one instance holds on the others from the very next request:
/// its secret, its refresh tokens and the user access tokens it was issued are refused on A and
/// B the moment C's delete response arrives, although A and B keep clients and tokens found
/// good in memory (checked against the generation the instances share in Redis). Twenty
/// trials, each its own client.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_client_is_refused_on_every_instance_at_once() {
    use authx_core::oauth::client::GrantType;

    use crate::oidc::{REDIRECT, VERIFIER, client, query_param, urlencode};

    let Some(services) = SharedServices::acquire(
        "scale_changes::a_deleted_client_is_refused_on_every_instance_at_once",
    )
    .await
    else {
        return;
    };
    let ([a, b, c], admin) = behind_one_issuer(&services).await;
    let state = &c.running().unwrap().state;
    a.create_user("app-user@example.com", PASSWORD)
        .await
        .unwrap();
    let user = a.sign_in("app-user@example.com", PASSWORD).await.unwrap();
    let grants = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];
    let token = |s: &TestServer, id: &str, secret: &str, form: Vec<(&'static str, String)>| {
        s.client
            .post(format!("{}/oauth2/token", s.url))
            .basic_auth(id, Some(secret))
            .form(&form)
            .send()
    };
    let userinfo = |s: &TestServer, access: &str| {
        s.client
            .get(format!("{}/oauth2/userinfo", s.url))
            .bearer_auth(access)
            .send()
    };
    for trial in 0..20 {
        let id = format!("doomed-{trial}");
        let (_, secret) = state
            .oauth
            .register_client(client(&id, &grants, true), true)
            .await
            .unwrap();
        let secret = secret.unwrap();
        // A code on A, redeemed on B; the tokens work on C.
        let authorize = format!(
            "{}/oauth2/authorize?response_type=code&client_id={id}&redirect_uri={}&scope=openid%20email&state=s&code_challenge={}&code_challenge_method=S256",
            a.url,
            urlencode(REDIRECT),
            authx_core::oauth::pkce::s256(VERIFIER)
        );
        let res = a
            .client
            .get(&authorize)
            .header("cookie", &user)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302, "trial {trial}");
        let code = query_param(res.headers()["location"].to_str().unwrap(), "code").unwrap();
        let res = token(
            &b,
            &id,
            &secret,
            vec![
                ("grant_type", "authorization_code".into()),
                ("code", code),
                ("redirect_uri", REDIRECT.into()),
                ("code_verifier", VERIFIER.into()),
            ],
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 200, "trial {trial}");
        let tokens: Value = res.json().await.unwrap();
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
        // Each instance finds the token and the client good, and keeps them in memory.
        for s in [&c, &a, &b] {
            let res = userinfo(s, &access).await.unwrap();
            assert_eq!(
                res.status(),
                200,
                "trial {trial}: {:?} {tokens}",
                res.headers().get("www-authenticate")
            );
        }
        let cc = vec![("grant_type", "client_credentials".to_owned())];
        for s in [&a, &b] {
            assert_eq!(
                token(s, &id, &secret, cc.clone()).await.unwrap().status(),
                200
            );
        }

        let res = c
            .send_json(
                Method::DELETE,
                &format!("/api/v1/admin/clients/{id}"),
                &admin,
                None,
            )
            .await
            .unwrap();
        assert!(res.status().is_success(), "trial {trial}: {}", res.status());
        // The very next requests, on the other instances at once.
        let refresh_form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh.clone()),
        ];
        let (on_a, on_b, cc_on_b, refresh_on_a) = tokio::join!(
            userinfo(&a, &access),
            userinfo(&b, &access),
            token(&b, &id, &secret, cc.clone()),
            token(&a, &id, &secret, refresh_form),
        );
        assert_eq!(on_a.unwrap().status(), 401, "trial {trial}: userinfo on A");
        assert_eq!(on_b.unwrap().status(), 401, "trial {trial}: userinfo on B");
        assert_eq!(cc_on_b.unwrap().status(), 401, "trial {trial}: secret on B");
        let refreshed = refresh_on_a.unwrap();
        assert_eq!(refreshed.status(), 401, "trial {trial}: refresh on A");
        let body: Value = refreshed.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client", "trial {trial}");
    }
    for s in [a, b, c] {
        s.stop().await;
    }
    services.cleanup().await;
}

/// A change to an account on one instance holds on the others from the very next request,
/// although they read users from the copies kept beside the sessions in Redis: twenty times,
/// an administrator is demoted on C and refused the admin API on A and B at once, then made
/// one again and let in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_to_an_account_holds_on_every_instance_at_once() {
    let Some(services) = SharedServices::acquire(
        "scale_changes::a_change_to_an_account_holds_on_every_instance_at_once",
    )
    .await
    else {
        return;
    };
    let [a, b, c] = three(&services).await;
    c.running()
        .unwrap()
        .state
        .auth
        .create_user("root@example.com", PASSWORD, true)
        .await
        .unwrap();
    let root = c.sign_in("root@example.com", PASSWORD).await.unwrap();
    a.create_user("deputy@example.com", PASSWORD).await.unwrap();
    let deputy = sign_in(&a, "deputy@example.com", PASSWORD).await;
    let id = me(&b, &deputy.cookie).await.json::<Value>().await.unwrap()["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/admin/users/{id}/admin");
    let set_admin =
        |admin: bool| c.send_json(Method::POST, &path, &root, Some(json!({ "admin": admin })));
    async fn overview(s: &TestServer, cookie: &str) -> u16 {
        s.get("/api/v1/admin/overview", Some(cookie))
            .await
            .unwrap()
            .status()
            .as_u16()
    }
    let cookie = deputy.cookie.as_str();
    for trial in 0..20 {
        assert_eq!(
            set_admin(true).await.unwrap().status(),
            204,
            "trial {trial}"
        );
        let (on_a, on_b) = tokio::join!(overview(&a, cookie), overview(&b, cookie));
        assert_eq!(on_a, 200, "trial {trial}: promoted, on A");
        assert_eq!(on_b, 200, "trial {trial}: promoted, on B");
        // Again, so that both instances answer from what they keep.
        assert_eq!(overview(&a, cookie).await, 200);
        assert_eq!(overview(&b, cookie).await, 200);

        assert_eq!(
            set_admin(false).await.unwrap().status(),
            204,
            "trial {trial}"
        );
        let (on_a, on_b) = tokio::join!(overview(&a, cookie), overview(&b, cookie));
        assert_eq!(on_a, 403, "trial {trial}: demoted, on A");
        assert_eq!(on_b, 403, "trial {trial}: demoted, on B");
    }
    for s in [a, b, c] {
        s.stop().await;
    }
    services.cleanup().await;
}

/// A token or a secret that instances keep in memory dies everywhere with its revocation on
/// one instance: fifty times, a client-credentials token introspected as active on A and B
/// (so both keep it) is revoked on C (RFC 7009) and found inactive by A and B at once; and a
/// secret rotated on C is refused by A and B at once while the new one works (eight times:
/// sixteen wrong secrets stay under the client throttle's free failures).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_instances_keep_in_memory_dies_with_a_revocation_anywhere() {
    use authx_core::oauth::client::GrantType;

    let Some(services) = SharedServices::acquire(
        "scale_changes::what_instances_keep_in_memory_dies_with_a_revocation_anywhere",
    )
    .await
    else {
        return;
    };
    let ([a, b, c], admin) = behind_one_issuer(&services).await;
    let state = &c.running().unwrap().state;
    let (_, secret) = state
        .oauth
        .register_client(
            crate::oidc::client("worker", &[GrantType::ClientCredentials], true),
            true,
        )
        .await
        .unwrap();
    let mut secret = secret.unwrap();
    let post = |s: &TestServer, path: &str, secret: &str, form: Vec<(&'static str, String)>| {
        s.client
            .post(format!("{}{path}", s.url))
            .basic_auth("worker", Some(secret.to_owned()))
            .form(&form)
            .send()
    };
    let active = |s: &TestServer, secret: &str, token: &str| {
        let req = post(
            s,
            "/oauth2/introspect",
            secret,
            vec![("token", token.to_owned())],
        );
        async move {
            let res = req.await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()["active"] == json!(true)
        }
    };
    let cc = || vec![("grant_type", "client_credentials".to_owned())];
    for trial in 0..50 {
        let res = post(&a, "/oauth2/token", &secret, cc()).await.unwrap();
        assert_eq!(res.status(), 200, "trial {trial}");
        let access = res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        for s in [&a, &b, &a, &b] {
            assert!(active(s, &secret, &access).await, "trial {trial}: fresh");
        }
        let res = post(
            &c,
            "/oauth2/revoke",
            &secret,
            vec![("token", access.clone())],
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 200, "trial {trial}");
        let (on_a, on_b) = tokio::join!(active(&a, &secret, &access), active(&b, &secret, &access));
        assert!(!on_a, "trial {trial}: revoked on C, active on A");
        assert!(!on_b, "trial {trial}: revoked on C, active on B");
    }
    for trial in 0..8 {
        let res = c
            .send_json(
                Method::POST,
                "/api/v1/admin/clients/worker/secret",
                &admin,
                None,
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "trial {trial}");
        let fresh = res.json::<Value>().await.unwrap()["client_secret"]
            .as_str()
            .unwrap()
            .to_owned();
        let (old_a, old_b, new_a, new_b) = tokio::join!(
            post(&a, "/oauth2/token", &secret, cc()),
            post(&b, "/oauth2/token", &secret, cc()),
            post(&a, "/oauth2/token", &fresh, cc()),
            post(&b, "/oauth2/token", &fresh, cc()),
        );
        assert_eq!(
            old_a.unwrap().status(),
            401,
            "trial {trial}: old secret on A"
        );
        assert_eq!(
            old_b.unwrap().status(),
            401,
            "trial {trial}: old secret on B"
        );
        assert_eq!(
            new_a.unwrap().status(),
            200,
            "trial {trial}: new secret on A"
        );
        assert_eq!(
            new_b.unwrap().status(),
            200,
            "trial {trial}: new secret on B"
        );
        secret = fresh;
    }
    for s in [a, b, c] {
        s.stop().await;
    }
    services.cleanup().await;
}
