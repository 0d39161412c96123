//! The store conformance suite: one set of tests, instantiated for every backend (SQLite,
//! PostgreSQL, Redis), so they all keep the same promises.
//!
//! SQLite always runs, on a temporary file. PostgreSQL runs when `AUTHX_TEST_POSTGRES_URL` is
//! set, each test in a fresh schema; Redis runs when `AUTHX_TEST_REDIS_URL` is set, each test
//! under a fresh key prefix. A backend that is not configured or not reachable is reported on
//! stderr as `SKIPPED: ...`, or fails the test when `AUTHX_TEST_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod audit;
mod clients;
mod grants;
mod harness;
mod keys;
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
            accounts::search_users_pages_and_escapes_wildcards,
            accounts::the_last_active_administrator_stays_one,
            accounts::administrators_demoting_each_other_at_once_leave_one,
            accounts::set_email_verified,
            accounts::concurrent_sign_ups_with_one_email_one_wins,
            throttle::record_failure_counts_and_resets,
            throttle::clear_failures_forgets,
            throttle::purge_failures_removes_old_counters,
            throttle::parallel_failures_all_count,
            throttle::count_hit_counts_per_fixed_window,
            throttle::parallel_hits_all_count,
            throttle::health_ping_answers,
            audit::audit_appends_in_order_and_filters,
            audit::audit_purge_removes_only_old_events,
            audit::audit_filters_by_client_outcome_and_time_and_counts,
            migrations::reconnecting_applies_nothing,
            migrations::modified_migration_is_refused,
            migrations::newer_schema_is_refused,
            migrations::upgrade_grants_existing_clients_every_api,
        );
    };
}

/// Every test of the provider's stores: clients and resources, signing keys, grants.
macro_rules! oauth_tests {
    ($fixture:path) => {
        instantiate!($fixture;
            clients::put_and_get_client_round_trip,
            clients::duplicate_client_id_conflicts,
            clients::list_clients_by_id,
            clients::delete_client_removes_everything_issued_to_it,
            clients::grants_need_an_existing_client_and_user,
            clients::resources_round_trip_and_conflict,
            clients::deleting_a_resource_takes_it_from_every_client,
            keys::keys_round_trip_oldest_first,
            keys::duplicate_kid_conflicts,
            keys::set_key_state_keeps_times_not_given,
            keys::delete_key,
            grants::codes_round_trip_and_redeem_once,
            grants::expired_or_unknown_codes_are_unknown,
            grants::codes_of_ended_sessions_and_users_are_deleted,
            grants::concurrent_redemptions_one_wins,
            grants::families_and_tokens_round_trip,
            grants::duplicate_family_or_token_conflicts_atomically,
            grants::rotation_consumes_a_token_once,
            grants::concurrent_rotations_one_wins,
            grants::concurrent_rotations_of_distinct_tokens_all_land,
            grants::a_taken_successor_fails_only_its_own_rotation,
            grants::revoke_family_keeps_the_first_revocation,
            grants::revoke_user_and_session_families,
            grants::list_user_families_live_newest_first,
            grants::consents_upsert_list_and_delete,
            grants::revoked_jtis_are_remembered_until_expiry,
            grants::purge_removes_only_dead_grants,
            grants::concurrent_revocations_report_each_family_once,
            grants::deleting_a_user_removes_their_grants,
        );
    };
}

mod sqlite {
    session_tests!(crate::harness::sqlite);
    database_tests!(crate::harness::sqlite);
    oauth_tests!(crate::harness::sqlite);
}

mod postgres {
    session_tests!(crate::harness::postgres);
    database_tests!(crate::harness::postgres);
    oauth_tests!(crate::harness::postgres);
}

mod redis {
    session_tests!(crate::harness::redis);
    instantiate!(crate::harness::redis;
        sessions::copies_of_users_follow_every_change,
        throttle::record_failure_counts_and_resets,
        throttle::clear_failures_forgets,
        throttle::parallel_failures_all_count,
        throttle::count_hit_counts_per_fixed_window,
        throttle::parallel_hits_all_count,
        throttle::the_shared_generation_is_seen_by_every_handle,
    );
}

// After the macros above, which they use.
mod device;
mod factors;
mod federation;
mod links;
mod outbox;
mod passkeys;
mod pushed;
mod registration;
mod revocations;
mod sp_keys;
