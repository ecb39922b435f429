//! The pure half of syncing: from desired state (rendered values and the
//! workloads the chart renders) and observed state (a cluster read, or a
//! snapshot file) to an ordered plan of safe transitions.
//!
//! - [`state`]: the observed and desired state model; both serialize to
//!   JSON, so a snapshot taken with cluster credentials plans offline.
//! - [`version`]: chart version order (SemVer 2) and upgrade paths.
//! - [`plan`]: the planner, split per concern (volumes, patches, upgrades,
//!   refusals), value diffs with redaction, and the text, Markdown and
//!   JSON formats.
//! - [`redact`]: which values are secret, masked forms, and a scrubber
//!   for free text.
//! - [`journal`]: the journal model (which plan a sync executes, which
//!   steps are done) and its ConfigMap data form.
//! - [`phased`]: list fields moved one element per edit, growing before
//!   shrinking (cStor replicas), and their phases.
//! - [`platform`]: platform releases (a manifest's sets of chart versions),
//!   their order and the moves between them.
//! - [`manifests`]: StatefulSets and Deployments from rendered manifests
//!   (`helm template` output).
//!
//! **Architecture Invariant:** nothing here performs I/O or depends on
//! kube, k8s-openapi, tokio, git2 or hyper; `tests/dependencies.rs`
//! checks the dependency tree.

pub mod capacity;
pub mod health;
pub mod journal;
pub mod live_drift;
pub mod manifest_diff;
pub mod manifests;
pub mod phased;
pub mod plan;
pub mod platform;
pub mod redact;
pub mod state;
pub mod version;
