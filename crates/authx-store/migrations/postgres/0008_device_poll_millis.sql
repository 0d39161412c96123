-- Device polling is paced in milliseconds (RFC 8628 §3.5): whole seconds measured a client that
-- waits exactly its interval as one second early. `last_poll_ms` is the last poll in
-- milliseconds since the epoch (NULL on rows polled before this migration: `last_poll_at` then
-- stands in). `slow_down_gap_ms` is the gap that earned the last `slow_down` (NULL once the
-- device polls on time), so the interval grows only for a device that did not slow down by
-- the 5 s that `slow_down` asked for.

ALTER TABLE device_grants ADD COLUMN last_poll_ms BIGINT;
ALTER TABLE device_grants ADD COLUMN slow_down_gap_ms BIGINT;
