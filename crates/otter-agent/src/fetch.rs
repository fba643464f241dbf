//! Resumable HTTP(S) downloads for the pull client.
