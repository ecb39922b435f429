//! The syncer half of Plimsoll: from desired state (rendered values of a git
//! revision) and observed state (the cluster) to an ordered plan of safe
//! transitions.
//!
//! - [`state`]: the observed state the planner needs (Helm releases,
//!   StatefulSets, PVCs, StorageClasses, Deployments) and the desired state
//!   of each release; both serialize to JSON, so a snapshot taken with
//!   cluster credentials can be planned against offline.
//! - [`plan`]: the planner, a pure function from (desired, observed) to a
//!   [`plan::Plan`]: steps in stage order, or refusals that stop it.
//! - [`version`]: chart version ordering and upgrade paths.
//!
//! **Architecture Invariant:** nothing here talks to git or Kubernetes;
//! reading them is the caller's job (and the executor's, later).

pub mod plan;
pub mod state;
pub mod version;
