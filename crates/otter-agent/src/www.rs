//! The web UI: the mounted `www` slot served at `/`, and `POST /api/ota/frontend`.
