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
    let metrics = server
        .get("/metrics", None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
