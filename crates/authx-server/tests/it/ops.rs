//! Health, readiness and metrics.

use authx_testkit::{PASSWORD, TestServer};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start().await.unwrap();
    assert_eq!(
        server
            .get("/healthz", None)
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let ready = server.get("/readyz", None).await.unwrap();
    assert_eq!(ready.status(), 200);
    server.create_user("m@example.com", PASSWORD).await.unwrap();
    server.sign_in("m@example.com", PASSWORD).await.unwrap();
    assert!(
        server
            .sign_in("m@example.com", "wrong password here")
            .await
            .is_err()
    );
    let metrics = server.metrics().await.unwrap();
    for needle in [
        "authx_http_requests_total{method=\"POST\",route=\"/api/v1/auth/sign-in\",status=\"200\"} 1",
        "authx_sign_ins_total{outcome=\"success\"} 1",
        "authx_sign_ins_total{outcome=\"failure\"} 1",
        "authx_active_sessions 1",
        "authx_http_request_duration_seconds_bucket",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
    assert!(
        server
            .get("/healthz", None)
            .await
            .unwrap()
            .headers()
            .get("x-request-id")
            .is_some()
    );
}

/// With `Secure` cookies (served over TLS) every answer carries Strict-Transport-Security, a
/// 404 included, and the security headers; without them no answer claims HSTS.
#[tokio::test]
async fn hsts_goes_with_secure_cookies_on_every_answer() {
    let secure = TestServer::start_with(|c| {
        c.session = Some(authx_server::config::SessionFile {
            cookie_secure: Some(true),
            ..Default::default()
        });
    })
    .await
    .unwrap();
    let plain = TestServer::start().await.unwrap();
    for path in ["/healthz", "/no/such/page"] {
        let res = secure.get(path, None).await.unwrap();
        let h = res.headers();
        assert_eq!(
            h.get("strict-transport-security")
                .and_then(|v| v.to_str().ok()),
            Some("max-age=31536000; includeSubDomains"),
            "{path}"
        );
        assert_eq!(
            h.get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff"),
            "{path}"
        );
        let res = plain.get(path, None).await.unwrap();
        assert!(
            res.headers().get("strict-transport-security").is_none(),
            "{path}"
        );
        assert!(res.headers().get("x-frame-options").is_some(), "{path}");
    }
    secure.stop().await;
    plain.stop().await;
}

/// A method the server does not know is counted as `other`: a client inventing methods cannot
/// grow the metrics without bound. Routes are labelled as matched, `unmatched` otherwise.
#[tokio::test]
async fn invented_methods_and_unknown_paths_share_one_label_each() {
    let server = TestServer::start().await.unwrap();
    for (i, method) in ["BREW", "WHEN", "PROPFIND"].iter().enumerate() {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        server
            .client
            .request(m, format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap();
        server
            .get(&format!("/no/such/page/{i}"), None)
            .await
            .unwrap();
    }
    let metrics = server.metrics().await.unwrap();
    for needle in [
        "method=\"other\",route=\"/healthz\"",
        "method=\"GET\",route=\"unmatched\",status=\"404\"} 3",
    ] {
        assert!(metrics.contains(needle), "no {needle} in:\n{metrics}");
    }
    for invented in ["BREW", "WHEN", "PROPFIND", "/no/such/page"] {
        assert!(!metrics.contains(invented), "{invented} in:\n{metrics}");
    }
    server.stop().await;
}
