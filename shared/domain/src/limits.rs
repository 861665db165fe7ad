//! Input limits. Every one is enforced by the decoder and documented in the README's wire format
//! section, so a producer in any language knows what is accepted.

/// Longest node id, in bytes.
pub const MAX_NODE_ID_BYTES: usize = 128;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest value of any other field, in bytes (URLs, addresses, paths, command ids).
pub const MAX_FIELD_BYTES: usize = 2048;
/// Most keys in one `assign` or `unassign` entry.
pub const MAX_BATCH_KEYS: usize = 10_000;
/// Most field/value pairs in one entry (a full batch plus the fixed fields).
pub const MAX_FIELDS: usize = MAX_BATCH_KEYS + 16;
/// Node weights are `1..=MAX_WEIGHT`.
pub const MAX_WEIGHT: u32 = 100;
/// Virtual nodes per unit of weight are `1..=MAX_VNODES`.
pub const MAX_VNODES: u32 = 4096;
/// `fall` and `rise` thresholds are `1..=MAX_THRESHOLD`.
pub const MAX_THRESHOLD: u32 = 100;
/// Most live (not left) nodes in one cluster.
pub const MAX_NODES: usize = 10_000;
/// How many recent client command ids (`cmd`) are remembered for de-duplication.
pub const CMD_DEDUP_WINDOW: usize = 10_000;
/// Most points a ring may have (total weight of joined nodes × vnodes): 16,777,216 points
/// are about 270 MB of ring in the projector and in every client that locates keys itself.
pub const MAX_RING_POINTS: u64 = 1 << 24;

/// Longest load text a `loads` entry may carry per node (a number needs far less).
pub const MAX_LOAD_TEXT_BYTES: usize = 64;
