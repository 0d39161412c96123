//! The store conformance suite: one set of tests, instantiated for every backend (SQLite,
//! PostgreSQL, Redis), so they all keep the same promises.
//!
//! SQLite always runs, on a temporary file. PostgreSQL runs when `AUTHX_TEST_POSTGRES_URL` is
//! set, each test in a fresh schema; Redis runs when `AUTHX_TEST_REDIS_URL` is set, each test
//! under a fresh key prefix. A backend that is not configured or not reachable is reported on
//! stderr as `SKIPPED: ...`, or fails the test when `AUTHX_TEST_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod harness;
mod migrations;
mod sessions;
mod throttle;

/// Defines one `#[tokio::test]` per listed test for the backend fixture `$fixture`. Each test
/// gets fresh stores and its own cleanup, which runs even when the test fails.
macro_rules! instantiate {
    ($fixture:path; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                crate::harness::run(
                    concat!(module_path!(), "::", stringify!($test)),
                    $fixture, crate::$module::$test).await;
            }
        )*
    };
}

/// Every test that only needs a session store.
macro_rules! session_tests {
    ($fixture:path) => {
        instantiate!($fixture;
            sessions::create_and_find_by_hash,
            sessions::duplicate_id_or_hash_conflicts,
            sessions::touch_records_activity,
            sessions::touch_of_unknown_session_is_false,
            sessions::delete_returns_the_session_only_to_its_owner,
            sessions::delete_user_sessions_keeps_one,
            sessions::list_shows_live_sessions_newest_first,
            sessions::count_excludes_expired_sessions,
            sessions::purge_removes_only_expired_sessions,
            sessions::touch_racing_delete_never_resurrects,
            sessions::concurrent_creates_all_land,
        );
    };
}

/// Every test of the account, throttle and health stores, and of the migrations.
macro_rules! database_tests {
    ($fixture:path) => {
        instantiate!($fixture;
            accounts::create_and_find_user,
            accounts::duplicate_email_or_id_conflicts,
            accounts::list_users_oldest_first,
            accounts::set_password_hash,
            accounts::set_status,
            accounts::concurrent_sign_ups_with_one_email_one_wins,
            throttle::record_failure_counts_and_resets,
            throttle::clear_failures_forgets,
            throttle::purge_failures_removes_old_counters,
            throttle::parallel_failures_all_count,
            throttle::health_ping_answers,
            migrations::reconnecting_applies_nothing,
            migrations::modified_migration_is_refused,
            migrations::newer_schema_is_refused,
        );
    };
}

mod sqlite {
    session_tests!(crate::harness::sqlite);
    database_tests!(crate::harness::sqlite);
}

mod postgres {
    session_tests!(crate::harness::postgres);
    database_tests!(crate::harness::postgres);
}

mod redis {
    session_tests!(crate::harness::redis);
}
