//! The provider service.
