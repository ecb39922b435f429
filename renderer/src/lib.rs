//! The renderer half of Plimsoll: pure functions from layered values files
//! to one rendered values document per Helm release.
//!
//! The YAML layer itself (parser, emitter, values model, JSON typing) is
//! the `plimsoll-yaml` crate.
//!
//! - [`merge`]: yq's `*` merge (`. as $item ireduce ({}; . * $item)`) with
//!   the `*+` (append) and `*d` (deep, by index) variants.
//! - [`yq`]: the whole `yq eval-all` reduce over files, leading comments and
//!   document separators included.
//!
//! - [`manifest`]: the release manifest (platform release to chart
//!   versions), TSV or YAML.
//!
//! Nothing here does I/O: callers read files and hand over bytes.

pub mod keys;
pub mod manifest;
pub mod merge;
pub mod render;
pub mod stack;
pub mod yq;

/// The stack file's name, at the repository root.
pub const STACK_FILE: &str = "plimsoll.yaml";
