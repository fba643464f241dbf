//! App images (placeholder; filled in by the image work).
