//! Partition tables (placeholder; filled in by the partition-table work).
