//! The web UI slots: `www_0`/`www_1`, the NVS pointer `otter`/`www_slot`, mounting with fallback, and the frontend update.
