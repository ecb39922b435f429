//! The syncer half of Plimsoll: reading desired state from git and live state
//! from the cluster, planning safe transitions and executing them.
//!
//! Nothing here yet: see the open issues for the plan, the executor and the
//! daemon. The crate exists so the workspace layout is final from the start.
