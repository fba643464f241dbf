//! The REST API's OpenAPI 3.1 description, served at `/openapi.json`.
//! `tests/api.rs` checks that every operation it lists is routed and that
//! every route is listed.

/// The document.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");
