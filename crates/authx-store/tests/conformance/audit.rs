//! `AuditStore`.

use authx_core::Timestamp;
use authx_core::audit::{AuditQuery, AuditRecord};

use crate::harness::Stores;

fn event(at: i64, kind: &str, user: Option<&str>) -> AuditRecord {
    AuditRecord {
        id: 0,
        at: Timestamp(at),
        kind: kind.to_owned(),
        outcome: "success".to_owned(),
        request_id: Some(format!("req-{at}")),
        client_id: None,
        user_id: user.map(str::to_owned),
        ip: Some("192.0.2.1".to_owned()),
        user_agent: Some("ua\r\nwith a line break".to_owned()),
        detail: r#"{"session_id":"s1"}"#.to_owned(),
    }
}

pub(crate) async fn audit_appends_in_order_and_filters(s: Stores) {
    let a = s.audit();
    a.append_audit(&[
        event(100, "sign_in", Some("u1")),
        event(110, "sign_in_failed", None),
        event(120, "sign_out", Some("u1")),
    ])
    .await
    .unwrap();
    a.append_audit(&[event(130, "sign_in", Some("u2"))])
        .await
        .unwrap();

    let all = a
        .list_audit(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let kinds: Vec<_> = all.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["sign_in", "sign_in_failed", "sign_out", "sign_in"]);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ids grow");
    // Stored as given, the line break included (escaping is for output).
    assert_eq!(
        all[0],
        AuditRecord {
            id: all[0].id,
            ..event(100, "sign_in", Some("u1"))
        }
    );

    // The newest `limit`, oldest first.
    let last2 = a
        .list_audit(&AuditQuery {
            limit: 2,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(last2.iter().map(|e| e.at.0).collect::<Vec<_>>(), [120, 130]);

    let u1 = a
        .list_audit(&AuditQuery {
            user_id: Some("u1".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(u1.iter().map(|e| e.at.0).collect::<Vec<_>>(), [100, 120]);

    let sign_ins_since = a
        .list_audit(&AuditQuery {
            kind: Some("sign_in".into()),
            since: Some(Timestamp(101)),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        sign_ins_since.iter().map(|e| e.at.0).collect::<Vec<_>>(),
        [130]
    );

    // Following: after an id, oldest first.
    let after = a
        .list_audit(&AuditQuery {
            after_id: Some(all[1].id),
            limit: 1,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(after.iter().map(|e| e.at.0).collect::<Vec<_>>(), [120]);
    let none = a
        .list_audit(&AuditQuery {
            after_id: Some(all[3].id),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

pub(crate) async fn audit_purge_removes_only_old_events(s: Stores) {
    let a = s.audit();
    a.append_audit(&[
        event(100, "a", None),
        event(200, "b", None),
        event(300, "c", None),
    ])
    .await
    .unwrap();
    // Strictly before `before`.
    assert_eq!(a.purge_audit(Timestamp(200)).await.unwrap(), 1);
    assert_eq!(a.purge_audit(Timestamp(200)).await.unwrap(), 0);
    let left = a
        .list_audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["b", "c"]
    );
    // An empty batch is nothing to do.
    a.append_audit(&[]).await.unwrap();
}

pub(crate) async fn audit_filters_by_client_outcome_and_time_and_counts(s: Stores) {
    let store = s.audit();
    let a = &*store;
    let mut failed = event(110, "token_failed", None);
    failed.outcome = "failure".to_owned();
    failed.client_id = Some("app".to_owned());
    let mut issued = event(120, "token_issued", Some("u1"));
    issued.client_id = Some("app".to_owned());
    a.append_audit(&[
        event(100, "sign_in", Some("u1")),
        failed,
        issued,
        event(130, "sign_in", Some("u2")),
    ])
    .await
    .unwrap();
    let kinds = |q: AuditQuery| async move {
        a.list_audit(&AuditQuery { limit: 10, ..q })
            .await
            .unwrap()
            .iter()
            .map(|e| e.kind.clone())
            .collect::<Vec<_>>()
    };
    let by_client = AuditQuery {
        client_id: Some("app".to_owned()),
        ..AuditQuery::default()
    };
    assert_eq!(
        kinds(by_client.clone()).await,
        ["token_failed", "token_issued"]
    );
    let failures = AuditQuery {
        outcome: Some("failure".to_owned()),
        ..AuditQuery::default()
    };
    assert_eq!(kinds(failures.clone()).await, ["token_failed"]);
    let window = AuditQuery {
        since: Some(Timestamp(110)),
        until: Some(Timestamp(130)),
        ..AuditQuery::default()
    };
    assert_eq!(
        kinds(window.clone()).await,
        ["token_failed", "token_issued"]
    );

    // Paging back: the newest two, then the two before them.
    let newest = a
        .list_audit(&AuditQuery {
            limit: 2,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        newest.iter().map(|e| e.at.0).collect::<Vec<_>>(),
        [120, 130]
    );
    let older = AuditQuery {
        before_id: Some(newest[0].id),
        ..AuditQuery::default()
    };
    assert_eq!(kinds(older).await, ["sign_in", "token_failed"]);

    assert_eq!(a.count_audit(&AuditQuery::default()).await.unwrap(), 4);
    assert_eq!(a.count_audit(&by_client).await.unwrap(), 2);
    assert_eq!(a.count_audit(&failures).await.unwrap(), 1);
    assert_eq!(a.count_audit(&window).await.unwrap(), 2);
    let sign_ins = AuditQuery {
        kind: Some("sign_in".to_owned()),
        since: Some(Timestamp(101)),
        ..AuditQuery::default()
    };
    assert_eq!(a.count_audit(&sign_ins).await.unwrap(), 1);
}
