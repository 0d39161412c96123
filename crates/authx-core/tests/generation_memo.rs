//! One read of the shared count per request (`authx_core::generation::in_request`). Alone in
//! its own test binary: the reuse ends at any change this process counts, so changes counted by
//! tests running beside it would change the number of reads this test expects.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use authx_core::generation::{Generations, RevocationGeneration, SharedGeneration, in_request};
use authx_core::store::StoreResult;

/// A shared count that counts its reads.
#[derive(Default)]
struct CountingReads {
    value: AtomicU64,
    reads: AtomicU64,
}

#[async_trait]
impl SharedGeneration for CountingReads {
    async fn current(&self) -> StoreResult<u64> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.value.load(Ordering::SeqCst))
    }

    async fn bump(&self) -> StoreResult<()> {
        self.value.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// One request reads the shared count once, however many lookups it makes, until this
/// process changes something; the next request reads it again and so sees a change made
/// elsewhere in between; outside a request every stamp reads it.
#[tokio::test]
async fn a_request_reads_the_shared_count_once_until_it_changes_something() {
    let local = Arc::new(RevocationGeneration::default());
    let shared = Arc::new(CountingReads::default());
    let g = Generations::shared(Arc::clone(&local), shared.clone());
    let reads = || shared.reads.load(Ordering::SeqCst);

    let first = in_request(async {
        let a = g.stamp().await.unwrap();
        assert_eq!(g.stamp().await.unwrap(), a);
        assert_eq!(reads(), 1);
        // This request's own change ends the reuse.
        g.bump().await.unwrap();
        let b = g.stamp().await.unwrap();
        assert_ne!(b, a);
        assert_eq!(reads(), 2);
        b
    })
    .await;

    // Another instance's change, then the next request.
    shared.bump().await.unwrap();
    let next = in_request(async { g.stamp().await.unwrap() }).await;
    assert_ne!(next, first);
    assert_eq!(reads(), 3);

    // Another cache's counts (its own local count, the same shared one) reuse the read,
    // until a change counted by either.
    let other_local = Generations::shared(Arc::default(), shared.clone());
    in_request(async {
        g.stamp().await.unwrap();
        other_local.stamp().await.unwrap();
        assert_eq!(reads(), 4);
        other_local.bump_local();
        g.stamp().await.unwrap();
        assert_eq!(reads(), 5);
    })
    .await;

    // Another shared counter in the same request is read on its own.
    let other = Arc::new(CountingReads::default());
    let h = Generations::shared(Arc::clone(&local), other.clone());
    in_request(async {
        g.stamp().await.unwrap();
        h.stamp().await.unwrap();
        h.stamp().await.unwrap();
    })
    .await;
    assert_eq!(other.reads.load(Ordering::SeqCst), 1);
    assert_eq!(reads(), 6);

    // Outside a request, every stamp reads.
    g.stamp().await.unwrap();
    g.stamp().await.unwrap();
    assert_eq!(reads(), 8);
}
