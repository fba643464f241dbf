//! Per-chip facts (placeholder; filled in by the image work).
