//! Test kit for authx.

pub mod browser;
