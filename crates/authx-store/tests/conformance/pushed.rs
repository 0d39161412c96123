//! `PushedRequestStore`: pushed authorization requests (RFC 9126), opened within their
//! lifetime, taken once, purged when expired, gone with their client.

use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::oauth::store::{PushedRequest, PushedRequestStore};
use authx_core::secret::TokenHash;
use authx_core::store::StoreError;
use authx_store::{ConnectOptions, connect};

use crate::clients::client;
use crate::harness::Stores;

mod sqlite {
    instantiate!(crate::harness::sqlite;
        pushed::a_request_is_opened_within_its_lifetime_and_taken_once,
        pushed::concurrent_takes_one_wins,
        pushed::expired_requests_are_refused_and_purged,
        pushed::deleting_the_client_removes_its_requests,
    );
}

mod postgres {
    instantiate!(crate::harness::postgres;
        pushed::a_request_is_opened_within_its_lifetime_and_taken_once,
        pushed::concurrent_takes_one_wins,
        pushed::expired_requests_are_refused_and_purged,
        pushed::deleting_the_client_removes_its_requests,
    );
}

const T: Timestamp = Timestamp(1_000_000);

/// The pushed-request store of the backend under test, with a client `app` registered.
async fn store(s: &Stores) -> Arc<dyn PushedRequestStore> {
    s.clients().put_client(&client("app")).await.unwrap();
    connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap()
        .pushed
}

fn request(name: &str) -> PushedRequest {
    PushedRequest {
        hash: TokenHash::of(name.as_bytes()),
        client_id: "app".into(),
        params: "client_id=app&state=%C3%A9t%C3%A9".into(),
        created_at: T,
        expires_at: T.plus(60),
    }
}

pub(crate) async fn a_request_is_opened_within_its_lifetime_and_taken_once(s: Stores) {
    let p = store(&s).await;
    let r = request("a");
    p.insert_pushed_request(&r).await.unwrap();
    assert!(matches!(
        p.insert_pushed_request(&r).await,
        Err(StoreError::Conflict)
    ));
    // Opening moves the end to the sign-in window, once, from the push.
    let opened = p
        .open_pushed_request(&r.hash, T.plus(30), 600)
        .await
        .unwrap()
        .expect("open within its lifetime");
    assert_eq!(opened.expires_at, T.plus(600));
    assert_eq!(opened.params, r.params);
    let again = p
        .open_pushed_request(&r.hash, T.plus(500), 600)
        .await
        .unwrap()
        .expect("open again while signing in");
    assert_eq!(again.expires_at, T.plus(600));
    let taken = p
        .take_pushed_request(&r.hash, T.plus(500))
        .await
        .unwrap()
        .expect("taken");
    assert_eq!(taken.client_id, "app");
    assert_eq!(
        p.take_pushed_request(&r.hash, T.plus(500)).await.unwrap(),
        None
    );
    assert_eq!(
        p.open_pushed_request(&r.hash, T.plus(500), 600)
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn concurrent_takes_one_wins(s: Stores) {
    let p = store(&s).await;
    let r = request("b");
    p.insert_pushed_request(&r).await.unwrap();
    let takes = (0..8).map(|_| {
        let p = Arc::clone(&p);
        tokio::spawn(async move { p.take_pushed_request(&r.hash, T).await.unwrap() })
    });
    let mut won = 0;
    for t in takes {
        won += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(won, 1);
}

pub(crate) async fn expired_requests_are_refused_and_purged(s: Stores) {
    let p = store(&s).await;
    let r = request("c");
    p.insert_pushed_request(&r).await.unwrap();
    let end = T.plus(60);
    assert_eq!(
        p.open_pushed_request(&r.hash, end, 600).await.unwrap(),
        None
    );
    assert_eq!(p.take_pushed_request(&r.hash, end).await.unwrap(), None);
    assert_eq!(p.purge_pushed_requests(end.plus(-1)).await.unwrap(), 0);
    assert_eq!(p.purge_pushed_requests(end).await.unwrap(), 1);
}

pub(crate) async fn deleting_the_client_removes_its_requests(s: Stores) {
    let p = store(&s).await;
    let r = request("d");
    p.insert_pushed_request(&r).await.unwrap();
    assert!(s.clients().delete_client("app").await.unwrap());
    assert_eq!(p.take_pushed_request(&r.hash, T).await.unwrap(), None);
}
