//! Every table stays bounded under churn (SECURITY.md #74): sessions, throttle counters,
//! authorization codes, refresh-token families and tokens, revoked token ids, device grants and
//! audit events are purged once their life is over, so row counts plateau instead of growing.

use std::collections::BTreeMap;

use authx_core::oauth::client::GrantType;
use authx_core::oauth::pkce;
use authx_testkit::{PASSWORD, TestServer};
use serde_json::Value;

use super::oidc::{REDIRECT, VERIFIER, client, query_param, urlencode};

/// The tables that churn, and the ones that must not change size at all.
const TABLES: [&str; 10] = [
    "sessions",
    "throttle",
    "auth_codes",
    "refresh_families",
    "refresh_tokens",
    "revoked_jtis",
    "device_grants",
    "audit_events",
    "users",
    "oauth_clients",
];

async fn counts(db: &sqlx::SqlitePool) -> BTreeMap<&'static str, i64> {
    let mut out = BTreeMap::new();
    for t in TABLES {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
            .fetch_one(db)
            .await
            .unwrap();
        out.insert(t, n);
    }
    out
}

/// One round of ordinary and hostile traffic: sign-ins, failed sign-ins for unknown accounts,
/// a code flow with a refresh and a revocation, and a device authorization, `n` times.
async fn churn(server: &TestServer, secret: &str, round: usize, n: usize) {
    let c = &server.client;
    for i in 0..n {
        let cookie = server.sign_in("kate@example.com", PASSWORD).await.unwrap();
        let res = c
            .post(format!("{}/api/v1/auth/sign-in", server.url))
            .header("origin", server.origin())
            .json(&serde_json::json!({
                "email": format!("ghost-{round}-{i}@example.com"),
                "password": "not the password at all",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);

        let authorize = format!(
            "{}/oauth2/authorize?response_type=code&client_id=app&redirect_uri={}&scope=openid%20read&state=s&code_challenge={}&code_challenge_method=S256",
            server.url,
            urlencode(REDIRECT),
            pkce::s256(VERIFIER)
        );
        let res = c
            .get(&authorize)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302);
        let loc = res.headers()["location"].to_str().unwrap().to_owned();
        let code = query_param(&loc, "code").unwrap();
        let token = |form: Vec<(&'static str, String)>| {
            c.post(format!("{}/oauth2/token", server.url))
                .basic_auth("app", Some(secret))
                .form(&form)
                .send()
        };
        let tokens: Value = token(vec![
            ("grant_type", "authorization_code".into()),
            ("code", code),
            ("redirect_uri", REDIRECT.into()),
            ("code_verifier", VERIFIER.into()),
        ])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let refreshed: Value = token(vec![
            ("grant_type", "refresh_token".into()),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().unwrap().into(),
            ),
        ])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let at = refreshed["access_token"].as_str().unwrap();
        let res = c
            .post(format!("{}/oauth2/revoke", server.url))
            .basic_auth("app", Some(secret))
            .form(&[("token", at)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);

        let res = c
            .post(format!("{}/oauth2/device_authorization", server.url))
            .form(&[("client_id", "tv"), ("scope", "openid")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
}

#[tokio::test]
async fn table_sizes_plateau_under_churn() {
    let server = TestServer::start_with(|f| {
        f.audit = Some(authx_server::config::AuditFile {
            retention_days: Some(1),
        });
    })
    .await
    .unwrap();
    let state = &server.running().unwrap().state;
    authx_server::web::api::register_resource(
        state,
        "https://api.example.com".into(),
        vec!["read".into()],
    )
    .await
    .unwrap();
    let (_, secret) = state
        .oauth
        .register_client(
            client(
                "app",
                &[GrantType::AuthorizationCode, GrantType::RefreshToken],
                true,
            ),
            true,
        )
        .await
        .unwrap();
    let secret = secret.unwrap();
    let mut tv = client("tv", &[GrantType::DeviceCode], false);
    tv.redirect_uris.clear();
    state.oauth.register_client(tv, false).await.unwrap();
    server
        .create_user("kate@example.com", PASSWORD)
        .await
        .unwrap();
    let db = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", server.db_path().display()))
        .await
        .unwrap();

    const ROUNDS: usize = 4;
    const N: usize = 8;
    let mut before_purge = Vec::new();
    let mut after_purge = Vec::new();
    for round in 0..ROUNDS {
        churn(&server, &secret, round, N).await;
        state.auth.audit().flush().await;
        before_purge.push(counts(&db).await);
        // Longer than every lifetime: refresh families (30 days), sessions, codes, device codes,
        // idle counters (1 day) and the audit retention (1 day).
        server.clock.advance(31 * 86_400);
        let purged = authx_server::purge_expired(state).await.unwrap();
        assert!(purged.total() > 0, "round {round}: nothing purged");
        state.auth.audit().flush().await;
        after_purge.push(counts(&db).await);
    }
    for (round, c) in before_purge.iter().enumerate() {
        eprintln!("round {round}: before purge {c:?}");
        eprintln!("round {round}: after purge  {:?}", after_purge[round]);
    }

    // Every churned table really was written to...
    for t in &TABLES[..8] {
        assert!(before_purge[0][t] > 0, "{t} saw no rows");
    }
    // ...and each round ends where the first one did: nothing accumulates across rounds.
    for round in 1..ROUNDS {
        for t in TABLES {
            assert!(
                before_purge[round][t] <= before_purge[0][t],
                "{t} grew: {} after round 0, {} after round {round}",
                before_purge[0][t],
                before_purge[round][t]
            );
            assert!(
                after_purge[round][t] <= after_purge[0][t],
                "{t} grew after purging: {} then {}",
                after_purge[0][t],
                after_purge[round][t]
            );
        }
    }
    // Past every lifetime, what churned is gone; the audit trail keeps only recent events.
    let last = &after_purge[ROUNDS - 1];
    for t in &TABLES[..7] {
        assert_eq!(last[t], 0, "{t} kept expired rows");
    }
    assert!(last["audit_events"] < before_purge[0]["audit_events"]);
    assert_eq!(last["users"], 1);
    assert_eq!(last["oauth_clients"], 2);
    db.close().await;
    server.stop().await;
}
