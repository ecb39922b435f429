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
//! - [`helm_release`]: Helm releases decoded from their storage Secrets.
//! - [`observe`]: the I/O edge that reads observed state from a cluster.
//! - [`git`]: the I/O edge that reads a revision's files from a repository's
//!   object database (no checkout; bare clones work).
//!
//! - [`journal`]: which plan a sync executes and which steps are done (pure;
//!   stored in a ConfigMap so a killed sync resumes).
//! - [`execute`]: the I/O edge that performs a plan's steps, each checking
//!   its own precondition, recording each in the journal.
//! - [`lease`]: one syncer per stack (a `coordination.k8s.io` Lease).
//!
//! **Architecture Invariant:** only [`observe`], [`execute`] and [`lease`]
//! talk to Kubernetes; the planner and the journal are pure, and the
//! planner plans equally from a live read or a snapshot file.

pub mod desired;
pub mod execute;
pub mod git;
pub mod helm_release;
pub mod journal;
pub mod lease;
pub mod observe;
pub mod plan;
pub mod state;
pub mod version;
