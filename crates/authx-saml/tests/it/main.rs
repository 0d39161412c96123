//! End-to-end tests of `authx_saml`: responses signed by a test IdP, verified by the library.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod encrypted;
mod idp;
mod metadata;
mod parser;
mod response;
mod seeds;
mod wrapping;
mod xmlsec;
