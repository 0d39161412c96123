//! The admin JSON API's account, client, key and overview calls: the same administration as
//! the console and the command line.

use reqwest::Method;
use serde_json::{Value, json};

use authx_testkit::PASSWORD;

use super::console::with_admin;
use super::{sign_in_raw, token_status};

async fn json_of(res: reqwest::Response) -> Value {
    res.json().await.unwrap()
}

#[tokio::test]
async fn users_are_paged_shown_and_managed_over_the_api() {
    let (server, admin) = with_admin().await;
    for i in 0..5 {
        server
            .create_user(&format!("api{i}@corp.example"), PASSWORD)
            .await
            .unwrap();
    }
    let kate_cookie = server.sign_in("api1@corp.example", PASSWORD).await.unwrap();

    // Three pages of two hold the five, each once (users created in the same second are
    // ordered by id).
    let mut seen = Vec::new();
    for p in 0..3 {
        let page: Value = json_of(
            server
                .get(
                    &format!("/api/v1/admin/users?q=corp&page={p}&per_page=2"),
                    Some(&admin),
                )
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(page["total"], 5);
        for u in page["users"].as_array().unwrap() {
            seen.push(u["email"].as_str().unwrap().to_owned());
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.iter().all(|e| e.ends_with("@corp.example")));

    let kate = server
        .running()
        .unwrap()
        .state
        .auth
        .stores()
        .accounts
        .user_by_email("api1@corp.example")
        .await
        .unwrap()
        .unwrap();
    let path = format!("/api/v1/admin/users/{}", kate.id.0);
    let detail = json_of(server.get(&path, Some(&admin)).await.unwrap()).await;
    assert_eq!(detail["user"]["email"], "api1@corp.example");
    assert_eq!(detail["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(
        server
            .get("/api/v1/admin/users/nobody", Some(&admin))
            .await
            .unwrap()
            .status(),
        404
    );

    // Roles: granted, and withdrawn from anyone but the last administrator.
    let role = |admin_flag: bool, who: String| {
        let (server, admin) = (&server, &admin);
        async move {
            server
                .send_json(
                    Method::POST,
                    &format!("/api/v1/admin/users/{who}/admin"),
                    admin,
                    Some(json!({"admin": admin_flag})),
                )
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let root = server
        .running()
        .unwrap()
        .state
        .auth
        .stores()
        .accounts
        .user_by_email("root@example.com")
        .await
        .unwrap()
        .unwrap();
    let res = server
        .send_json(
            Method::POST,
            &format!("/api/v1/admin/users/{}/admin", root.id.0),
            &admin,
            Some(json!({"admin": false})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(json_of(res).await["error"], "last_administrator");
    assert_eq!(role(true, kate.id.0.clone()).await, 204);
    // Kate's session sees her new role at once.
    assert_eq!(
        server
            .get("/api/v1/admin/users", Some(&kate_cookie))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(role(false, kate.id.0.clone()).await, 204);
    assert_eq!(
        server
            .get("/api/v1/admin/users", Some(&kate_cookie))
            .await
            .unwrap()
            .status(),
        403
    );

    // Everything of hers ends; the account stays.
    let res = server
        .send_json(Method::POST, &format!("{path}/revoke-all"), &admin, None)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json_of(res).await["sessions_ended"], 1);
    assert_eq!(
        server
            .get("/api/v1/me", Some(&kate_cookie))
            .await
            .unwrap()
            .status(),
        401
    );
    assert!(server.sign_in("api1@corp.example", PASSWORD).await.is_ok());

    // A reset link is queued for her.
    let res = server
        .send_json(Method::POST, &format!("{path}/reset-link"), &admin, None)
        .await
        .unwrap();
    assert_eq!(res.status(), 202);

    // Created over the API, with the password rules of every account.
    let res = server
        .send_json(
            Method::POST,
            "/api/v1/admin/users",
            &admin,
            Some(json!({"email": "new@corp.example", "password": "short"})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = server
        .send_json(
            Method::POST,
            "/api/v1/admin/users",
            &admin,
            Some(json!({"email": "new@corp.example", "password": PASSWORD, "admin": true})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(json_of(res).await["user"]["is_admin"], true);
}

#[tokio::test]
async fn secrets_keys_and_the_overview_over_the_api() {
    let (server, admin) = with_admin().await;
    let res = server
        .send_json(
            Method::POST,
            "/api/v1/admin/clients",
            &admin,
            Some(json!({"id": "batch", "name": "Batch", "grant_types": ["client_credentials"]})),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let first = json_of(res).await["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = server
        .send_json(
            Method::POST,
            "/api/v1/admin/clients/batch/secret",
            &admin,
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let second = json_of(res).await["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(first, second);
    assert_eq!(token_status(&server, "batch", &first).await, 401);
    assert_eq!(token_status(&server, "batch", &second).await, 200);
    let shown = json_of(
        server
            .get("/api/v1/admin/clients/batch", Some(&admin))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(shown["client"]["id"], "batch");
    assert!(shown.to_string().find("secret_hash").is_none());

    let before = json_of(
        server
            .get("/api/v1/admin/keys", Some(&admin))
            .await
            .unwrap(),
    )
    .await;
    let res = server
        .send_json(Method::POST, "/api/v1/admin/keys/rotate", &admin, None)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let published = json_of(res).await;
    assert_eq!(published["published"].as_array().unwrap().len(), 3);
    let after = json_of(
        server
            .get("/api/v1/admin/keys", Some(&admin))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        after["keys"].as_array().unwrap().len(),
        before["keys"].as_array().unwrap().len() + 3
    );
    assert!(!after.to_string().contains("private"));

    let failed = sign_in_raw(&server, "root@example.com", "not the password at all").await;
    assert_eq!(failed.status(), 401);
    server.running().unwrap().state.auth.audit().flush().await;
    let o = json_of(
        server
            .get("/api/v1/admin/overview", Some(&admin))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(o["users"], 1);
    assert_eq!(o["clients"], 1);
    assert_eq!(o["sign_ins_24h"], 1);
    assert_eq!(o["sign_in_failures_24h"], 1);
    assert!(o["live_sessions"].as_u64().unwrap() >= 1);

    let events = json_of(
        server
            .get(
                "/api/v1/admin/audit?client=batch&outcome=success",
                Some(&admin),
            )
            .await
            .unwrap(),
    )
    .await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"client_secret_rotated"), "{kinds:?}");
    assert!(kinds.iter().all(|k| *k != "token_failed"), "{kinds:?}");
}
