//! Test kit for authx.
