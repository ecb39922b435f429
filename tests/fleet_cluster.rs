//! The daemon as a fleet, on the real control plane: many stacks per
//! daemon (`stacks/*/plimsoll.yaml`), each with its own lease, journal,
//! metrics labels and backoff, so that a failing stack never delays the
//! others; and replicas sharing the stacks through Leases: three daemon
//! processes and nine stacks, one killed and brought back, every stack
//! kept synced, never worked on by two replicas at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use plimsoll_testenv::{on_both_versions, Cluster, Env};

mod support;
use support::fleet::{
    http_get, messages, now_seconds, overlaps, working_intervals, FleetRepo, Replica,
};

const NS: &str = "fleet";

async fn cluster() -> Option<Cluster> {
    let env = Env::require()?;
    Some(Cluster::start(&env, NS).await.expect("control plane"))
}

/// Waits up to `limit` for `ok`, polling every 200 ms.
async fn wait_until<F, Fut>(limit: Duration, mut ok: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn metric_lines(addr: &str, prefix: &str) -> Vec<String> {
    http_get(addr, "/metrics")
        .map(|(_, body)| {
            body.lines()
                .filter(|l| l.starts_with(prefix))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

on_both_versions! {
/// One daemon, four stacks in one repository. Stack s03's release goes to
/// a namespace that does not exist: its sync fails and is retried with its
/// own backoff (5 s, 10 s), while a new commit to s00 is synced at once.
/// Every stack's metrics carry its name. Two files declaring one stack
/// name are both refused (one journal and lease per name) until one is
/// renamed; a stack removed from the repository is given up.
async fn one_daemon_follows_many_stacks_and_a_failing_one_never_delays_the_others() {
    let Some(cluster) = cluster().await else { return };
    let repo = FleetRepo::new(NS, 3);
    repo.add_stack(3, "no-such-namespace");
    repo.commit("a stack whose namespace is missing");
    let logs = tempfile::tempdir().unwrap();
    let d = Replica::start(
        repo.path(),
        &cluster.cp.kubeconfig,
        &cluster.cp.helm,
        "solo",
        logs.path(),
        &["--interval", "300", "--lease-duration", "6"],
    );
    let client = cluster.client.clone();
    let all_v1 = || async {
        let m = messages(&client, NS).await;
        ["r00", "r01", "r02"].iter().all(|r| m.get(*r).map(String::as_str) == Some("v1"))
    };
    assert!(wait_until(Duration::from_secs(90), all_v1).await, "{}", d.log());
    // s03 fails and backs off, its own way.
    assert!(
        wait_until(Duration::from_secs(60), || async {
            d.log().contains("retrying in 10s (failure 2 in a row) stack=stacks/s03/plimsoll.yaml")
        })
        .await,
        "{}",
        d.log()
    );
    assert!(d.log().contains("retrying in 5s (failure 1 in a row) stack=stacks/s03/plimsoll.yaml"));
    // A commit to s00 while s03 waits for its next retry: synced at once.
    repo.set_message(0, "v2");
    repo.commit("s00 to v2");
    let committed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            messages(&client, NS).await.get("r00").map(String::as_str) == Some("v2")
        })
        .await,
        "{}",
        d.log()
    );
    let took = committed.elapsed();
    eprintln!("s00's commit synced after {took:?} while s03 was failing");
    assert!(took < Duration::from_secs(8), "s00 waited on s03: {took:?}");
    for s in ["s00", "s01", "s02"] {
        assert_eq!(
            metric_lines(&d.addr, &format!("plimsoll_synced_revision_info{{stack=\"{s}\"")).len(),
            1,
            "{s}"
        );
    }
    assert!(
        metric_lines(&d.addr, "plimsoll_steps_failed_total{stack=\"s03\",kind=\"helm-upgrade\"}").len() == 1,
        "{:?}",
        metric_lines(&d.addr, "plimsoll_steps_failed")
    );
    let (code, body) = http_get(&d.addr, "/readyz").unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("stack s03: the last sync failed"), "{body}");
    // The replica itself is ready: the chart's readiness probe, so that a
    // stack failing in git does not stall a rolling update of the daemon.
    let (code, body) = http_get(&d.addr, "/readyz/replica").unwrap();
    assert_eq!(code, 200, "{body}");
    // Each stack has its own journal.
    let journals: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "plimsoll");
    let names: BTreeSet<String> = journals
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    for s in ["s00", "s01", "s02", "s03"] {
        assert!(names.contains(&format!("plimsoll-journal-{s}")), "{names:?}");
    }

    // A second file named s01: both refused, s01's release left alone.
    repo.write(
        "stacks/copy/plimsoll.yaml",
        "name: s01\nreleases:\n  - {name: r01, chart: charts/cm, version: 1.0.0, namespace: fleet, stage: apps, layers: [stacks/s01/values.yaml]}\n",
    );
    repo.set_message(1, "v2");
    repo.commit("a copy of s01");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            let v = d.status_json().unwrap_or_default();
            let rejected: BTreeSet<String> = v["stacks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["state"] == "rejected")
                .map(|s| s["location"]["file"].as_str().unwrap_or("").to_string())
                .collect();
            rejected.contains("stacks/copy/plimsoll.yaml") && rejected.contains("stacks/s01/plimsoll.yaml")
        })
        .await,
        "{}",
        d.log()
    );
    assert!(d.log().contains("stack name \\\"s01\\\" is also declared by") || d.log().contains("stack name \"s01\" is also declared by"), "{}", d.log());
    assert_eq!(messages(&client, NS).await["r01"], "v1", "not synced while refused");
    // Renamed: s01 syncs again; the copy (a stack of its own now) too.
    repo.write(
        "stacks/copy/plimsoll.yaml",
        "name: copy\nreleases:\n  - {name: rcopy, chart: charts/cm, version: 1.0.0, namespace: fleet, stage: apps, layers: [stacks/s01/values.yaml]}\n",
    );
    repo.commit("rename the copy");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            let m = messages(&client, NS).await;
            m.get("r01").map(String::as_str) == Some("v2") && m.get("rcopy").map(String::as_str) == Some("v2")
        })
        .await,
        "{}",
        d.log()
    );
    // A stack removed from the repository: given up, its lease deleted,
    // its release left as it is.
    std::fs::remove_dir_all(repo.path().join("stacks/copy")).unwrap();
    repo.commit("remove the copy");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "plimsoll");
    let key = plimsoll_daemon::discover::StackLocation {
        repository: ".".into(),
        branch: "main".into(),
        file: "stacks/copy/plimsoll.yaml".into(),
    }
    .key();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            leases
                .get_opt(&format!("plimsoll-stack-{key}"))
                .await
                .is_ok_and(|l| l.is_none())
        })
        .await,
        "{}",
        d.log()
    );
    assert_eq!(messages(&client, NS).await["rcopy"], "v2", "nothing is uninstalled");
}
}

/// Who holds each stack's owner lease (key → holder).
async fn holders(client: &kube::Client) -> BTreeMap<String, String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "plimsoll");
    leases
        .list(&ListParams::default().labels("plimsoll.io/role=stack"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| {
            let key = l
                .metadata
                .name?
                .strip_prefix("plimsoll-stack-")?
                .to_string();
            let holder = l.spec?.holder_identity.filter(|h| !h.is_empty())?;
            Some((key, holder))
        })
        .collect()
}

fn counts(h: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for holder in h.values() {
        *c.entry(holder.clone()).or_insert(0) += 1;
    }
    c
}

on_both_versions! {
/// Three replicas share nine stacks, three each. One is killed (SIGKILL):
/// once its leases expire the two others take its stacks (five and four)
/// and a commit to every stack is synced; it comes back (a new pod) and
/// the stacks rebalance to three each, a further commit synced everywhere.
/// From the replicas' own logs: no stack was ever worked on by two
/// replicas at once; every lease was held by a live replica.
async fn three_replicas_share_nine_stacks_and_rebalance_when_one_dies_and_returns() {
    let Some(cluster) = cluster().await else { return };
    const STACKS: usize = 9;
    let repo = FleetRepo::new(NS, STACKS);
    let logs = tempfile::tempdir().unwrap();
    let args = ["--interval", "300", "--lease-duration", "6"];
    let start = |id: &str| {
        Replica::start(repo.path(), &cluster.cp.kubeconfig, &cluster.cp.helm, id, logs.path(), &args)
    };
    let mut replicas = vec![start("r0"), start("r1"), start("r2")];
    let client = cluster.client.clone();
    let all = |message: &'static str| {
        let client = client.clone();
        move || {
            let client = client.clone();
            async move {
                let m = messages(&client, NS).await;
                m.len() == STACKS && m.values().all(|v| v == message)
            }
        }
    };
    let describe = |replicas: &[Replica]| -> String {
        replicas.iter().map(|r| format!("--- {}\n{}", r.identity, r.log())).collect::<Vec<_>>().join("\n")
    };
    let started = Instant::now();
    assert!(wait_until(Duration::from_secs(120), all("v1")).await, "{}", describe(&replicas));
    let balanced = |want: Vec<usize>| {
        let client = client.clone();
        move || {
            let client = client.clone();
            let want = want.clone();
            async move {
                let mut c: Vec<usize> = counts(&holders(&client).await).values().copied().collect();
                c.sort();
                c == want
            }
        }
    };
    assert!(
        wait_until(Duration::from_secs(60), balanced(vec![3, 3, 3])).await,
        "{:?}\n{}",
        holders(&client).await,
        describe(&replicas)
    );
    eprintln!("nine stacks synced and spread 3/3/3 after {:?}", started.elapsed());
    // Each replica says the same as the leases.
    let h = holders(&client).await;
    for r in &replicas {
        let mut held = r.held().expect("status page");
        held.sort();
        let mut leased: Vec<String> = h.iter().filter(|(_, v)| **v == r.identity).map(|(k, _)| k.clone()).collect();
        leased.sort();
        assert_eq!(held, leased, "{}", r.identity);
        let owned = metric_lines(&r.addr, "plimsoll_owned_stacks ");
        assert_eq!(owned, ["plimsoll_owned_stacks 3"], "{}", r.identity);
    }
    // Each replica's page shows the whole fleet: the six stacks its peers
    // hold as their holders report them (through the leases), in sync.
    let fleet_wide = || {
        let replicas = &replicas;
        move || async move {
            replicas.iter().all(|r| {
                let v = r.status_json().unwrap_or_default();
                let stacks = v["stacks"].as_array().cloned().unwrap_or_default();
                let reported: Vec<&serde_json::Value> = stacks
                    .iter()
                    .filter(|x| x["mine"] == false)
                    .filter_map(|x| x.get("reported"))
                    .collect();
                reported.len() == STACKS - 3
                    && reported
                        .iter()
                        .all(|x| x["state"] == "in-sync" && x["synced"].is_string())
            })
        }
    };
    assert!(
        wait_until(Duration::from_secs(30), fleet_wide()).await,
        "{:?}",
        replicas[0].status_json()
    );

    // r2 dies.
    let killed_at = now_seconds();
    replicas[2].kill();
    for i in 0..STACKS {
        repo.set_message(i, "v2");
    }
    repo.commit("every stack to v2");
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(90), all("v2")).await, "{}", describe(&replicas));
    eprintln!("after the kill: every stack synced {:?} after the commit", t.elapsed());
    assert!(
        wait_until(Duration::from_secs(30), balanced(vec![4, 5])).await,
        "{:?}",
        holders(&client).await
    );
    let h = holders(&client).await;
    assert!(h.values().all(|x| x == "r0" || x == "r1"), "only live replicas hold stacks: {h:?}");
    assert_eq!(h.len(), STACKS);

    // It comes back as a new pod; the stacks rebalance.
    replicas.push(start("r2-again"));
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), balanced(vec![3, 3, 3])).await,
        "{:?}\n{}",
        holders(&client).await,
        describe(&replicas)
    );
    eprintln!("rebalanced 3/3/3 {:?} after the new replica started", t.elapsed());
    for i in 0..STACKS {
        repo.set_message(i, "v3");
    }
    repo.commit("every stack to v3");
    assert!(wait_until(Duration::from_secs(60), all("v3")).await, "{}", describe(&replicas));
    let h = holders(&client).await;
    assert!(h.values().all(|x| ["r0", "r1", "r2-again"].contains(&x.as_str())), "{h:?}");

    // A clean stop gives the stacks back at once: the others take them
    // well before the lease would expire.
    let t = Instant::now();
    let status = replicas[3].terminate().expect("stopped");
    assert!(status.success(), "{status:?}");
    assert!(
        wait_until(Duration::from_secs(30), balanced(vec![4, 5])).await,
        "{:?}",
        holders(&client).await
    );
    eprintln!("after a clean stop, taken over in {:?}", t.elapsed());

    // Never two at once, by the replicas' own logs.
    let end = now_seconds();
    let mut by_replica = BTreeMap::new();
    for r in &replicas {
        let until = if r.identity == "r2" { killed_at } else { end };
        by_replica.insert(r.identity.clone(), working_intervals(&r.log(), until));
    }
    let worked: usize = by_replica.values().map(|m| m.values().map(Vec::len).sum::<usize>()).sum();
    assert!(worked >= STACKS + 3 + 3, "stacks changed hands: {by_replica:?}");
    let o = overlaps(&by_replica);
    assert!(o.is_empty(), "a stack worked on by two replicas at once: {o:?}");
}
}

/// The overlap check reads the replicas' logs as they are written, and
/// finds two replicas working on one stack at once.
#[test]
fn the_overlap_check_finds_two_replicas_on_one_stack() {
    let a = "2026-12-06T19:00:00.000000Z  INFO plimsoll_daemon::worker: working on the stack stack=stacks/s00/plimsoll.yaml key=aaaa\n\
             2026-12-06T19:00:10.000000Z  INFO plimsoll_daemon::worker: stopped working on the stack stack=stacks/s00/plimsoll.yaml key=aaaa\n";
    let b_after = "2026-12-06T19:00:10.500000Z  INFO plimsoll_daemon::worker: working on the stack stack=stacks/s00/plimsoll.yaml key=aaaa\n";
    let b_during = "2026-12-06T19:00:09.000000Z  INFO plimsoll_daemon::worker: working on the stack stack=stacks/s00/plimsoll.yaml key=aaaa\n";
    let end = support::fleet::rfc3339_seconds("2026-12-06T19:01:00Z").unwrap();
    let check = |b: &str| {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), working_intervals(a, end));
        m.insert("b".to_string(), working_intervals(b, end));
        overlaps(&m)
    };
    assert!(check(b_after).is_empty());
    let o = check(b_during);
    assert_eq!(o.len(), 1, "{o:?}");
    assert!((o[0].3 - 1.0).abs() < 1e-6, "{o:?}");
}

on_both_versions! {
/// A commit touching every stack does not start every stack's syncs at
/// once: at most `--max-syncs` stacks sync together (a helm that logs its
/// upgrades counts them), the others wait, queued; all are synced.
async fn a_replica_syncs_at_most_max_syncs_stacks_at_once() {
    let Some(cluster) = cluster().await else { return };
    const STACKS: usize = 6;
    let repo = FleetRepo::new(NS, STACKS);
    // `helm upgrade ... -- NAME CHART`: logs its start and end, and takes
    // a second, so that overlaps show.
    let log = repo.path().join(".git/helm.log");
    let helm = repo.path().join(".git/logging-helm");
    std::fs::write(
        &helm,
        format!(
            "#!/bin/sh\nif [ \"$1\" = upgrade ]; then\n  echo \"start $(date +%s.%N)\" >> {log}\n  sleep 1\n  {real} \"$@\"; rc=$?\n  echo \"end $(date +%s.%N)\" >> {log}\n  exit $rc\nfi\nexec {real} \"$@\"\n",
            log = log.display(),
            real = cluster.cp.helm.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&helm).status().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let d = Replica::start(
        repo.path(),
        &cluster.cp.kubeconfig,
        &helm,
        "bounded",
        logs.path(),
        &["--interval", "300", "--lease-duration", "6", "--max-syncs", "2", "--concurrency", "1"],
    );
    let client = cluster.client.clone();
    assert!(
        wait_until(Duration::from_secs(120), || async {
            messages(&client, NS).await.len() == STACKS
        })
        .await,
        "{}",
        d.log()
    );
    // The last helm has written its ConfigMap; its end line follows.
    let ended = || std::fs::read_to_string(&log).unwrap_or_default().matches("end ").count();
    assert!(
        wait_until(Duration::from_secs(30), || async { ended() == STACKS }).await,
        "{}",
        d.log()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let events: Vec<(f64, i32)> = text
        .lines()
        .filter_map(|l| {
            let (kind, t) = l.split_once(' ')?;
            Some((t.parse::<f64>().ok()?, if kind == "start" { 1 } else { -1 }))
        })
        .collect();
    let most = support::most_at_once(events.clone());
    eprintln!("at most {most} helm upgrades at once for {STACKS} stacks");
    assert_eq!(events.len(), 2 * STACKS, "{text}");
    assert_eq!(most, 2, "two stacks at a time, and both slots used: {text}");
    assert!(d.log().contains("waiting for one of the --max-syncs slots"), "{}", d.log());
}
}
