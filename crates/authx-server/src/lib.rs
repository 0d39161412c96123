//! authx server.
