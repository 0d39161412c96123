//! Storage adapters for authx.
