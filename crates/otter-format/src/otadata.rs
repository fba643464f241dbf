//! otadata (placeholder).
