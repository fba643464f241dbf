//! Signed release manifests.
