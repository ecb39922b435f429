//! The renderer half of Plimsoll: pure functions from layered values files
//! to one rendered values document per Helm release.
//!
//! - [`yaml`]: the values document model and a YAML parser/emitter that keep
//!   comments, styles, anchors and tags, formatting output as yq does.
//! - [`merge`]: yq's `*` merge (`. as $item ireduce ({}; . * $item)`) with
//!   the `*+` (append) and `*d` (deep, by index) variants.
//! - [`yq`]: the whole `yq eval-all` reduce over files, leading comments and
//!   document separators included.
//!
//! Nothing here does I/O: callers read files and hand over bytes.

pub mod json;
pub mod keys;
pub mod merge;
pub mod render;
pub mod stack;
pub mod yaml;
pub mod yq;
