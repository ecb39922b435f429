//! The runtime of Plimsoll: everything that reads a repository, runs helm
//! or talks to a cluster, around the pure planner (`plimsoll-planner`).
//!
//! - [`source`]: where the desired state's files come from (the working
//!   tree or a git revision) and the stack file read from there.
//! - [`git`]: a revision's files from the object database; branch heads;
//!   a branch fetched into a bare mirror.
//! - [`helm`]: the helm executable, `helm template` and its on-disk cache.
//! - [`desired`]: the desired state of a source: rendered values, the
//!   workloads the chart renders, declared patches, and their digest.
//! - [`client`]: a Kubernetes client from a kubeconfig or the pod's
//!   service account.
//! - [`observe`]: the observed state read from a cluster.
//! - [`helm_release`]: Helm releases decoded from their storage Secrets.
//! - [`journal_store`]: the journal kept in a ConfigMap.
//! - [`lease`]: one writer per stack (a `coordination.k8s.io` Lease).
//! - [`execute`]: performs a plan's steps, each checking its own
//!   precondition, recording each in the journal.
//! - [`progress`]: what a running sync does now (step n of m, what each
//!   release waits on), for a status page.
//! - [`sync`]: one sync: lease, journal, plan (or resume), execute; in two
//!   phases so that what a person approves is exactly what runs.
//!
//! The daemon that follows branches and shares stacks among replicas is
//! its own crate (`plimsoll-daemon`), built on this one.
//!
//! **Architecture Invariant:** planning happens only in `plimsoll-planner`
//! (pure); this crate observes, decides nothing the planner has not
//! planned, and every write to the cluster is a step of a plan or the
//! journal and lease that guard it.

pub mod charts;
pub mod client;
pub mod desired;
pub mod execute;
pub mod git;
pub mod helm;
pub mod helm_release;
pub mod journal_store;
pub mod lease;
pub mod observe;
pub mod progress;
pub mod source;
pub mod sync;
