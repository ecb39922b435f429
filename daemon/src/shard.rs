//! Replicas sharing stacks through Leases (`coordination.k8s.io/v1`), with
//! no other coordinator: Kubernetes is the distributed engine.
//!
//! - Each replica keeps a **member lease** (`plimsoll-member-ID`, labelled
//!   with its group): peers find each other by listing them.
//! - Each stack has an **owner lease** (`plimsoll-stack-KEY`, the key from
//!   the stack's location): only its holder reconciles the stack. It is
//!   separate from the sync lease (`plimsoll-sync-NAME`), which every sync
//!   still takes for its writes: ownership spreads the work, the sync lease
//!   keeps one writer per stack even while ownership moves.
//!
//! Every round (a third of the lease duration) a replica renews its
//! leases, lists the group's, and decides ([`decide`], pure): its fair
//! share is the number of stacks over the number of live peers, the first
//! peers by name taking one more when it does not divide; it takes free
//! stacks up to its share (those that rank highest for it by rendezvous
//! hashing first, so peers starting together reach for different stacks)
//! and gives up idle stacks beyond it. A lease is free when it has no
//! holder, when its holder is a dead process of this host, or when this
//! replica saw its record unchanged for the record's whole duration (the
//! holder stopped renewing: client-go's rule, by the local monotonic
//! clock). A holder acts only while its last renewal is younger than two
//! thirds of the duration, so it stops before anyone may take over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use plimsoll_syncer::lease::{dead_here, LeaseCheck};
use sha2::{Digest, Sha256};

use crate::discover::StackLocation;

pub const GROUP_LABEL: &str = "plimsoll.io/group";
pub const ROLE_LABEL: &str = "plimsoll.io/role";
const FILE_ANNOTATION: &str = "plimsoll.io/stack-file";
const REPOSITORY_ANNOTATION: &str = "plimsoll.io/repository";
const BRANCH_ANNOTATION: &str = "plimsoll.io/branch";
/// What the holder reports of the stack ([`crate::status::Reported`]).
pub const REPORT_ANNOTATION: &str = "plimsoll.io/report";

/// Every lease request gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The owner lease of a stack.
pub fn stack_lease_name(key: &str) -> String {
    format!("plimsoll-stack-{key}")
}

/// The member lease of a replica (its identity may hold any printable
/// character; the name is a digest).
pub fn member_lease_name(identity: &str) -> String {
    let d = Sha256::digest(identity.as_bytes());
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("plimsoll-member-{hex}")
}

/// A stack's owner lease as one replica sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// This replica holds it.
    Mine,
    /// Nobody holds it (no lease, no holder, a dead or silent holder).
    Free,
    /// A live replica holds it.
    Peer(String),
}

/// What a round decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Free stacks to take, best first.
    pub take: Vec<String>,
    /// Own idle stacks to give up.
    pub release: Vec<String>,
}

/// How strongly `identity` prefers `key` (rendezvous hashing).
pub fn affinity(key: &str, identity: &str) -> u64 {
    let d = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update([0])
        .chain_update(identity.as_bytes())
        .finalize();
    u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

/// This replica's fair share of `stacks` among `peers` (sorted, itself
/// included): `stacks / peers`, and one more for the first `stacks %
/// peers` peers by name, so that the shares add up exactly.
pub fn share(me: &str, peers: &[String], stacks: usize) -> usize {
    let n = peers.len().max(1);
    let rank = peers.iter().position(|p| p == me).unwrap_or(n - 1);
    stacks / n + usize::from(rank < stacks % n)
}

/// Decides what to take and give up. Pure: the lease records as seen, the
/// live peers and which own stacks are busy (a sync runs) in, actions out.
pub fn decide(
    me: &str,
    peers: &[String],
    stacks: &BTreeMap<String, Holder>,
    busy: &HashSet<String>,
) -> Decision {
    let target = share(me, peers, stacks.len());
    let mine: Vec<&String> = stacks
        .iter()
        .filter(|(_, h)| **h == Holder::Mine)
        .map(|(k, _)| k)
        .collect();
    let mut d = Decision::default();
    if mine.len() < target {
        let mut free: Vec<&String> = stacks
            .iter()
            .filter(|(_, h)| **h == Holder::Free)
            .map(|(k, _)| k)
            .collect();
        free.sort_by_key(|k| std::cmp::Reverse(affinity(k, me)));
        d.take = free
            .into_iter()
            .take(target - mine.len())
            .cloned()
            .collect();
    } else if mine.len() > target {
        let mut idle: Vec<&String> = mine.into_iter().filter(|k| !busy.contains(*k)).collect();
        idle.sort_by_key(|k| affinity(k, me));
        let extra = stacks.values().filter(|h| **h == Holder::Mine).count() - target;
        d.release = idle.into_iter().take(extra).cloned().collect();
    }
    d
}

/// A stack this replica holds.
#[derive(Debug)]
pub struct Owned {
    pub check: LeaseCheck,
    pub location: StackLocation,
}

/// What the shard loop knows after a round, for the status page.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ShardView {
    /// Live peers of the group, this replica included, with the number of
    /// stacks each holds.
    pub peers: Vec<(String, usize)>,
    /// Who holds each stack (by key); absent: nobody.
    pub holders: BTreeMap<String, String>,
    /// This replica's fair share.
    pub share: usize,
    /// What peers report of the stacks they hold (their leases'
    /// annotation), by key.
    pub reported: BTreeMap<String, crate::status::Reported>,
}

/// The record of a lease, and since when (monotonic) it is unchanged.
struct Seen {
    version: Option<String>,
    since: Instant,
}

/// One replica's side of the sharing.
pub struct Shard {
    api: Api<Lease>,
    pub identity: String,
    pub group: String,
    pub duration: Duration,
    /// Stacks held now, by key.
    pub owned: HashMap<String, Owned>,
    seen: HashMap<String, Seen>,
    /// Rounds done; the first only announces this replica.
    rounds: u64,
}

fn labels(group: &str, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (GROUP_LABEL.to_string(), group.to_string()),
        (ROLE_LABEL.to_string(), role.to_string()),
    ])
}

async fn bounded<T>(
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(r) => r,
        Err(_) => Err(kube::Error::Service(
            format!("a lease request did not complete within {REQUEST_TIMEOUT:?}").into(),
        )),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Shard {
    pub fn new(
        client: &kube::Client,
        namespace: &str,
        identity: &str,
        group: &str,
        duration: Duration,
    ) -> Shard {
        Shard {
            api: Api::namespaced(client.clone(), namespace),
            identity: identity.to_string(),
            group: group.to_string(),
            duration,
            owned: HashMap::new(),
            seen: HashMap::new(),
            rounds: 0,
        }
    }

    /// How often rounds run.
    pub fn period(&self) -> Duration {
        self.duration / 3
    }

    fn spec(&self) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().clamp(1, i32::MAX as u64) as i32),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..Default::default()
        }
    }

    /// Whether the record `lease` is free for this replica to take.
    fn is_free(&self, lease: &Lease) -> bool {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().unwrap_or("");
        if holder.is_empty() || holder == self.identity || dead_here(holder, &self.identity) {
            return true;
        }
        self.is_silent(lease)
    }

    /// Whether this replica saw `lease` unchanged for its whole duration.
    fn is_silent(&self, lease: &Lease) -> bool {
        let name = lease.metadata.name.as_deref().unwrap_or("");
        let duration = Duration::from_secs(
            lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_duration_seconds)
                .unwrap_or(1)
                .max(1) as u64,
        );
        self.seen.get(name).is_some_and(|s| {
            s.version == lease.metadata.resource_version && s.since.elapsed() > duration
        })
    }

    /// Renews (or creates) this replica's member lease.
    async fn announce(&self) -> Result<(), kube::Error> {
        let name = member_lease_name(&self.identity);
        match bounded(self.api.get_opt(&name)).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name),
                        labels: Some(labels(&self.group, "member")),
                        ..Default::default()
                    },
                    spec: Some(self.spec()),
                };
                match bounded(self.api.create(&PostParams::default(), &lease)).await {
                    Err(e) if is_conflict(&e) => Ok(()),
                    r => r.map(drop),
                }
            }
            Some(mut lease) => {
                let acquired = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
                let mut spec = self.spec();
                spec.acquire_time = acquired.or(spec.acquire_time);
                lease.spec = Some(spec);
                lease.metadata.labels = Some(labels(&self.group, "member"));
                match bounded(self.api.replace(
                    lease.metadata.name.clone().unwrap_or_default().as_str(),
                    &PostParams::default(),
                    &lease,
                ))
                .await
                {
                    Err(e) if is_conflict(&e) => Ok(()),
                    r => r.map(drop),
                }
            }
        }
    }

    /// Renews an owned stack's lease, with this replica's report of the
    /// stack; `false` once it is another's.
    async fn renew(
        &self,
        lease: Option<&Lease>,
        report: Option<&String>,
    ) -> Result<bool, kube::Error> {
        let Some(lease) = lease else {
            // Deleted by someone: not ours any more.
            return Ok(false);
        };
        let mut lease = lease.clone();
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref());
        if holder != Some(self.identity.as_str()) {
            return Ok(false);
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        if let Some(report) = report {
            lease
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(REPORT_ANNOTATION.to_string(), report.clone());
        }
        let name = lease.metadata.name.clone().unwrap_or_default();
        match bounded(self.api.replace(&name, &PostParams::default(), &lease)).await {
            Ok(_) => Ok(true),
            // Changed since the list: look again.
            Err(e) if is_conflict(&e) => match bounded(self.api.get_opt(&name)).await? {
                Some(now)
                    if now.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                        == Some(self.identity.as_str()) =>
                {
                    let mut now = now;
                    if let Some(spec) = now.spec.as_mut() {
                        spec.renew_time = Some(MicroTime(Timestamp::now()));
                    }
                    bounded(self.api.replace(&name, &PostParams::default(), &now))
                        .await
                        .map(|_| true)
                }
                _ => Ok(false),
            },
            Err(e) => Err(e),
        }
    }

    /// Takes a free stack (its lease as listed, or none); `false` when
    /// someone else was faster.
    async fn take(
        &self,
        location: &StackLocation,
        listed: Option<&Lease>,
    ) -> Result<bool, kube::Error> {
        let name = stack_lease_name(&location.key());
        let annotations = BTreeMap::from([
            (FILE_ANNOTATION.to_string(), location.file.clone()),
            (
                REPOSITORY_ANNOTATION.to_string(),
                location.repository.clone(),
            ),
            (BRANCH_ANNOTATION.to_string(), location.branch.clone()),
        ]);
        let result = match listed {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name),
                        labels: Some(labels(&self.group, "stack")),
                        annotations: Some(annotations),
                        ..Default::default()
                    },
                    spec: Some(self.spec()),
                };
                bounded(self.api.create(&PostParams::default(), &lease))
                    .await
                    .map(drop)
            }
            Some(current) => {
                let mut lease = current.clone();
                let cur = current.spec.clone().unwrap_or_default();
                let transitions = cur.lease_transitions.unwrap_or(0)
                    + i32::from(cur.holder_identity.as_deref() != Some(self.identity.as_str()));
                lease.spec = Some(LeaseSpec {
                    lease_transitions: Some(transitions),
                    ..self.spec()
                });
                lease.metadata.labels = Some(labels(&self.group, "stack"));
                lease.metadata.annotations = Some(annotations);
                // resourceVersion kept: a concurrent taker gets a conflict.
                bounded(self.api.replace(&name, &PostParams::default(), &lease))
                    .await
                    .map(drop)
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives a stack up (its worker has ended): the lease without a holder,
    /// so that a peer takes it at once; deleted when the stack is gone from
    /// the repository.
    pub async fn give_up(&mut self, key: &str, gone: bool) {
        let Some(owned) = self.owned.remove(key) else {
            return;
        };
        if owned.check.is_lost() {
            return;
        }
        let name = stack_lease_name(key);
        let result = async {
            let Some(mut lease) = bounded(self.api.get_opt(&name)).await? else {
                return Ok(());
            };
            if lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                != Some(self.identity.as_str())
            {
                return Ok(());
            }
            if gone {
                let dp = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        resource_version: lease.metadata.resource_version.clone(),
                        uid: None,
                    }),
                    ..Default::default()
                };
                return bounded(self.api.delete(&name, &dp)).await.map(drop);
            }
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
            }
            bounded(self.api.replace(&name, &PostParams::default(), &lease))
                .await
                .map(drop)
        }
        .await;
        match result {
            Ok(()) => tracing::info!(stack = %owned.location.file, key, "gave the stack up"),
            Err(e) => tracing::warn!(
                key,
                "cannot give the stack's lease up (it expires by itself): {e}"
            ),
        }
    }

    /// Leaves the group: every held stack given up, the member lease
    /// deleted (a clean stop: peers take over at once).
    pub async fn leave(&mut self) {
        let keys: Vec<String> = self.owned.keys().cloned().collect();
        for k in keys {
            self.give_up(&k, false).await;
        }
        let name = member_lease_name(&self.identity);
        let _ = bounded(self.api.delete(&name, &DeleteParams::default())).await;
    }

    /// One round: announce, list, renew what is held, take and give up by
    /// the fair share. `stacks` are the stacks the repositories hold now;
    /// `busy` the held ones whose worker is in a sync. Returns the stacks
    /// to give up (the caller stops their workers, then calls
    /// [`Shard::give_up`]) and the view for the status page; the stacks
    /// taken are in `owned`.
    pub async fn round(
        &mut self,
        stacks: &BTreeMap<String, StackLocation>,
        busy: &HashSet<String>,
        reports: &BTreeMap<String, String>,
    ) -> Result<(Vec<String>, ShardView), kube::Error> {
        self.rounds += 1;
        self.announce().await?;
        let lp = ListParams::default().labels(ROLE_LABEL);
        let listed = bounded(self.api.list(&lp)).await?.items;
        // Unchanged since when, by this replica's clock.
        let names: HashSet<String> = listed
            .iter()
            .filter_map(|l| l.metadata.name.clone())
            .collect();
        self.seen.retain(|n, _| names.contains(n));
        for l in &listed {
            let name = l.metadata.name.clone().unwrap_or_default();
            let version = l.metadata.resource_version.clone();
            match self.seen.get(&name) {
                Some(s) if s.version == version => {}
                _ => {
                    self.seen.insert(
                        name,
                        Seen {
                            version,
                            since: Instant::now(),
                        },
                    );
                }
            }
        }
        let by_name: HashMap<&str, &Lease> = listed
            .iter()
            .filter_map(|l| l.metadata.name.as_deref().map(|n| (n, l)))
            .collect();
        let role = |l: &Lease| {
            l.metadata
                .labels
                .as_ref()
                .and_then(|m| m.get(ROLE_LABEL))
                .cloned()
                .unwrap_or_default()
        };
        let group_of = |l: &Lease| {
            l.metadata
                .labels
                .as_ref()
                .and_then(|m| m.get(GROUP_LABEL))
                .cloned()
                .unwrap_or_default()
        };
        let holder_of = |l: &Lease| {
            l.spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty())
        };
        // Live peers: members of the group that renew.
        let mut peers: Vec<String> = listed
            .iter()
            .filter(|l| role(l) == "member" && group_of(l) == self.group)
            .filter(|l| !self.is_silent(l))
            .filter_map(holder_of)
            .filter(|h| *h == self.identity || !dead_here(h, &self.identity))
            .collect();
        if !peers.contains(&self.identity) {
            peers.push(self.identity.clone());
        }
        peers.sort();
        peers.dedup();

        // Renew what is held; a stack taken by someone else is lost.
        let keys: Vec<String> = self.owned.keys().cloned().collect();
        let renewals = futures::future::join_all(keys.iter().map(|k| {
            let lease = by_name.get(stack_lease_name(k).as_str()).copied();
            self.renew(lease, reports.get(k))
        }))
        .await;
        for (k, r) in keys.iter().zip(renewals) {
            match r {
                Ok(true) => {
                    if let Some(o) = self.owned.get(k) {
                        o.check.renewed();
                    }
                }
                Ok(false) => {
                    if let Some(o) = self.owned.remove(k) {
                        tracing::warn!(stack = %o.location.file, key = %k, "the stack's lease is another replica's now; stopping its work");
                        o.check.lose();
                    }
                }
                // Unconfirmed past two thirds of the duration: the worker
                // pauses; a later renewal confirms it again.
                Err(e) => tracing::warn!(key = %k, "cannot renew the stack's lease: {e}"),
            }
        }

        let mut holders: BTreeMap<String, Holder> = BTreeMap::new();
        let mut view = ShardView::default();
        for key in stacks.keys() {
            let lease = by_name.get(stack_lease_name(key).as_str()).copied();
            let holder = if self.owned.contains_key(key) {
                Holder::Mine
            } else {
                match lease {
                    None => Holder::Free,
                    Some(l) if self.is_free(l) => Holder::Free,
                    Some(l) => Holder::Peer(holder_of(l).unwrap_or_default()),
                }
            };
            match &holder {
                Holder::Mine => {
                    view.holders.insert(key.clone(), self.identity.clone());
                }
                Holder::Peer(p) => {
                    view.holders.insert(key.clone(), p.clone());
                    let report = lease
                        .and_then(|l| l.metadata.annotations.as_ref())
                        .and_then(|a| a.get(REPORT_ANNOTATION))
                        .and_then(|t| crate::status::Reported::from_annotation(t));
                    if let Some(r) = report {
                        view.reported.insert(key.clone(), r);
                    }
                }
                Holder::Free => {}
            }
            holders.insert(key.clone(), holder);
        }
        // The first round only announces: peers starting at the same time
        // see each other before anyone takes stacks.
        let decision = if self.rounds > 1 {
            decide(&self.identity, &peers, &holders, busy)
        } else {
            Decision::default()
        };
        for key in &decision.take {
            let Some(location) = stacks.get(key) else {
                continue;
            };
            let lease = by_name.get(stack_lease_name(key).as_str()).copied();
            match self.take(location, lease).await {
                Ok(true) => {
                    tracing::info!(stack = %location.file, repository = %location.repository, key, "took the stack");
                    self.owned.insert(
                        key.clone(),
                        Owned {
                            check: LeaseCheck::new(self.duration * 2 / 3),
                            location: location.clone(),
                        },
                    );
                    view.holders.insert(key.clone(), self.identity.clone());
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(key, "cannot take the stack's lease: {e}"),
            }
        }
        // Held stacks the repositories no longer have: given up too.
        let mut release = decision.release;
        for k in self.owned.keys() {
            if !stacks.contains_key(k) && !release.contains(k) {
                release.push(k.clone());
            }
        }
        view.share = share(&self.identity, &peers, stacks.len());
        let mut counts: BTreeMap<String, usize> = peers.iter().map(|p| (p.clone(), 0)).collect();
        for h in view.holders.values() {
            if let Some(c) = counts.get_mut(h) {
                *c += 1;
            }
        }
        view.peers = counts.into_iter().collect();
        Ok((release, view))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shares_add_up_to_the_stacks() {
        for n in 0..40 {
            for p in 1..6 {
                let ps: Vec<String> = (0..p).map(|i| format!("r{i}")).collect();
                let total: usize = ps.iter().map(|me| share(me, &ps, n)).sum();
                assert_eq!(total, n, "{n} stacks, {p} peers");
                for me in &ps {
                    let s = share(me, &ps, n);
                    assert!(s == n / p || s == n / p + 1);
                }
            }
        }
    }

    fn stacks(spec: &[(&str, Holder)]) -> BTreeMap<String, Holder> {
        spec.iter()
            .map(|(k, h)| (k.to_string(), h.clone()))
            .collect()
    }

    /// Runs `decide` for every replica in turn until nothing changes;
    /// returns how many stacks each holds.
    fn settle(
        ps: &[String],
        n: usize,
        mut owner: BTreeMap<String, Option<String>>,
    ) -> BTreeMap<String, usize> {
        for key in (0..n).map(|i| format!("s{i}")) {
            owner.entry(key).or_insert(None);
        }
        for _ in 0..20 {
            let mut changed = false;
            for me in ps {
                let view: BTreeMap<String, Holder> = owner
                    .iter()
                    .map(|(k, o)| {
                        let h = match o {
                            None => Holder::Free,
                            Some(o) if o == me => Holder::Mine,
                            Some(o) if !ps.contains(o) => Holder::Free,
                            Some(o) => Holder::Peer(o.clone()),
                        };
                        (k.clone(), h)
                    })
                    .collect();
                let d = decide(me, ps, &view, &HashSet::new());
                for k in d.release {
                    owner.insert(k, None);
                    changed = true;
                }
                for k in d.take {
                    owner.insert(k, Some(me.clone()));
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut counts: BTreeMap<String, usize> = ps.iter().map(|p| (p.clone(), 0)).collect();
        for o in owner.values().flatten() {
            *counts.entry(o.clone()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn nine_stacks_spread_over_three_replicas_and_rebalance_after_a_loss_and_a_return() {
        let three = peers(&["a", "b", "c"]);
        let counts = settle(&three, 9, BTreeMap::new());
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), [3, 3, 3]);
        // c dies: its stacks become free and a, b take them.
        let two = peers(&["a", "b"]);
        let mut owner: BTreeMap<String, Option<String>> = BTreeMap::new();
        for i in 0..9 {
            owner.insert(format!("s{i}"), Some(three[i % 3].clone()));
        }
        let counts = settle(&two, 9, owner.clone());
        assert_eq!(counts["a"] + counts["b"], 9);
        assert!(counts["a"].abs_diff(counts["b"]) <= 1, "{counts:?}");
        // c comes back: a and b give up their extras, c takes them.
        let mut after: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (i, (k, o)) in owner.iter().enumerate() {
            let o = if o.as_deref() == Some("c") {
                Some(if i % 2 == 0 { "a" } else { "b" }.to_string())
            } else {
                o.clone()
            };
            after.insert(k.clone(), o);
        }
        let counts = settle(&three, 9, after);
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), [3, 3, 3]);
    }

    #[test]
    fn busy_stacks_are_not_given_up_and_nothing_is_taken_beyond_the_share() {
        let ps = peers(&["a", "b"]);
        let view = stacks(&[
            ("s0", Holder::Mine),
            ("s1", Holder::Mine),
            ("s2", Holder::Mine),
            ("s3", Holder::Free),
        ]);
        let busy: HashSet<String> = ["s0", "s1", "s2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(decide("a", &ps, &view, &busy), Decision::default());
        let d = decide("a", &ps, &view, &HashSet::new());
        assert_eq!((d.take.len(), d.release.len()), (0, 1));
        let seen_by_b = stacks(&[
            ("s0", Holder::Peer("a".into())),
            ("s1", Holder::Peer("a".into())),
            ("s2", Holder::Peer("a".into())),
            ("s3", Holder::Free),
        ]);
        let d = decide("b", &ps, &seen_by_b, &HashSet::new());
        assert_eq!(d.take, ["s3"], "b takes the free stack; a's are a's");
        let one = stacks(&[
            ("s0", Holder::Free),
            ("s1", Holder::Free),
            ("s2", Holder::Free),
        ]);
        let d = decide("b", &ps, &one, &HashSet::new());
        assert_eq!(
            d.take.len(),
            1,
            "b's share of 3 among 2 is 1 (a, first by name, has 2)"
        );
    }

    #[test]
    fn peers_prefer_different_stacks() {
        let keys: Vec<String> = (0..30).map(|i| format!("{i:016x}")).collect();
        let top = |me: &str| {
            let mut k = keys.clone();
            k.sort_by_key(|k| std::cmp::Reverse(affinity(k, me)));
            k.truncate(10);
            k
        };
        let (a, b) = (top("replica-a"), top("replica-b"));
        let common = a.iter().filter(|k| b.contains(k)).count();
        assert!(common < 10, "rendezvous ranks differ per replica");
    }

    #[test]
    fn lease_names_are_valid_object_names() {
        let n = member_lease_name("pod name with spaces/and slashes");
        assert!(n.starts_with("plimsoll-member-") && n.len() == 32, "{n}");
        assert!(n
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        assert_eq!(
            stack_lease_name("0123456789abcdef"),
            "plimsoll-stack-0123456789abcdef"
        );
    }
}
