//! The chaos soak: three daemon replicas keep six stacks of stateful
//! releases (two StatefulSets with claims each) at a branch that moves at
//! random (volume growths, chart version bumps, value changes, and
//! changes that must be refused: a shrink, a downgrade, a commit that is
//! not YAML), while replicas are killed (SIGKILL) or stopped (SIGTERM) and
//! brought back, and the API server restarts. Then faults stop and the
//! fleet settles: every stack is at its last commit, or refused or
//! rejected as that commit deserves; no claim was lost or shrunk (watched
//! throughout); every StatefulSet delete the API server saw was an orphan
//! delete with a uid precondition and nothing deleted a claim or volume
//! (its audit log); every journal is complete. The counts of commits,
//! faults and outcomes are printed and kept in
//! `target/test-artifacts/chaos-soak-VERSION.txt`.
//!
//! `PLIMSOLL_SOAK_SECONDS` sets how long the faults go on (default 90, the
//! short version CI runs); the soak of the README runs 1,200:
//!
//! ```sh
//! PLIMSOLL_SOAK_SECONDS=1200 cargo nextest run --profile soak --test chaos_soak --no-capture
//! ```
//!
//! `PLIMSOLL_SOAK_SEED` replays a run (the seed is printed);
//! `PLIMSOLL_SOAK_API_RESTARTS=0` leaves API server restarts out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams};
use plimsoll_planner::state::quantity_bytes;
use plimsoll_testenv::{on_both_versions, Cluster, Env};

mod support;
use support::fleet::{FleetRepo, Replica};

const STACKS: usize = 6;
const VERSIONS: [&str; 4] = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"];
const REPLICAS: usize = 3;

/// xorshift64*: small, seeded, good enough to pick chaos.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// A stack's last good content.
#[derive(Clone, Debug)]
struct Good {
    version: usize,
    mariadb_gi: u64,
    mongo_gi: u64,
    cpu_m: u64,
}

/// What a stack's last commit was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    Grow,
    Bump,
    Values,
    Shrink,
    Downgrade,
    NotYaml,
}

impl Change {
    /// The state the stack must end in when this was its last commit.
    fn expected(self) -> &'static str {
        match self {
            Change::Grow | Change::Bump | Change::Values => "in-sync",
            Change::Shrink | Change::Downgrade => "refused",
            Change::NotYaml => "rejected",
        }
    }
}

fn ns(i: usize) -> String {
    format!("soak-s{i:02}")
}

/// Writes stack `i` with `good`, spoiled by `bad` when it is a change
/// that must be refused.
fn write_stack(repo: &FleetRepo, i: usize, good: &Good, bad: Option<Change>) {
    let mut g = good.clone();
    match bad {
        Some(Change::Shrink) => g.mariadb_gi -= 1,
        Some(Change::Downgrade) => g.version -= 1,
        _ => {}
    }
    let v = VERSIONS[g.version];
    repo.write(
        &format!("stacks/s{i:02}/plimsoll.yaml"),
        &format!(
            "name: s{i:02}\nreleases:\n  - name: data\n    chart: charts/test-data-{v}\n    version: {v}\n    namespace: {}\n    stage: data\n    layers: [stacks/s{i:02}/values.yaml]\n",
            ns(i)
        ),
    );
    let values = if bad == Some(Change::NotYaml) {
        "mariadb-galera: [this is not, yaml\n".to_string()
    } else {
        format!(
            "mariadb-galera:\n  replicaCount: 1\n  persistence: {{size: {}Gi}}\n  resources: {{requests: {{cpu: {}m, memory: 64Mi}}}}\n\
             mongo-replicaset:\n  replicaCount: 1\n  persistence: {{size: {}Gi}}\n",
            g.mariadb_gi, g.cpu_m, g.mongo_gi
        )
    };
    repo.write(&format!("stacks/s{i:02}/values.yaml"), &values);
}

/// What the soak saw go wrong while it ran (claims lost or shrunk).
#[derive(Default)]
struct Watch {
    /// uid → (namespace/name, largest request seen).
    claims: BTreeMap<String, (String, u128)>,
    violations: Vec<String>,
}

/// Watches every claim of the soak's namespaces: none may disappear or
/// have its request lowered.
async fn watch_claims(client: kube::Client, watch: Arc<Mutex<Watch>>) {
    let api: Api<PersistentVolumeClaim> = Api::all(client);
    loop {
        // The API server restarts now and then: a failed list is no news.
        if let Ok(list) = api.list(&ListParams::default()).await {
            let mut guard = watch.lock().unwrap();
            let w = &mut *guard;
            let mut seen = BTreeSet::new();
            for pvc in list.items {
                let ns = pvc.metadata.namespace.clone().unwrap_or_default();
                if !ns.starts_with("soak-") {
                    continue;
                }
                let uid = pvc.metadata.uid.clone().unwrap_or_default();
                let name = format!("{ns}/{}", pvc.metadata.name.clone().unwrap_or_default());
                let request = pvc
                    .spec
                    .as_ref()
                    .and_then(|s| s.resources.as_ref())
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                    .and_then(|q| quantity_bytes(&q.0))
                    .unwrap_or(0);
                seen.insert(uid.clone());
                let entry = w.claims.entry(uid).or_insert((name.clone(), request));
                if request < entry.1 {
                    let v = format!("{name}: request lowered from {} to {request}", entry.1);
                    w.violations.push(v);
                }
                entry.1 = entry.1.max(request);
            }
            let lost: Vec<String> = w
                .claims
                .iter()
                .filter(|(uid, _)| !seen.contains(*uid))
                .map(|(uid, (name, _))| format!("{name} (uid {uid}) disappeared"))
                .collect();
            w.violations.extend(lost);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The live state of stack `i`: (chart version, mariadb Gi, mongo Gi,
/// cpu m), from the StatefulSets and claims.
async fn live(client: &kube::Client, i: usize) -> Option<(String, u64, u64, u64)> {
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns(i));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns(i));
    let m = sts.get_opt("mariadb-galera").await.ok()??;
    let chart = m.metadata.labels.as_ref()?.get("helm.sh/chart")?.clone();
    let cpu = m.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("cpu")?
        .0
        .trim_end_matches('m')
        .parse()
        .ok()?;
    let size = |name: &str| {
        let pvcs = pvcs.clone();
        let name = name.to_string();
        async move {
            let p = pvcs.get_opt(&name).await.ok()??;
            let gi = 1u128 << 30;
            let cap = p
                .status?
                .capacity?
                .get("storage")
                .and_then(|q| quantity_bytes(&q.0))?;
            Some((cap / gi) as u64)
        }
    };
    Some((
        chart.trim_start_matches("test-data-").to_string(),
        size("data-mariadb-galera-0").await?,
        size("data-mongo-replicaset-0").await?,
        cpu,
    ))
}

/// The state and head of stack `i` on the replica holding it.
fn held_state(replicas: &[Replica], i: usize) -> Option<(String, String, String)> {
    let file = format!("stacks/s{i:02}/plimsoll.yaml");
    for r in replicas {
        let Some(v) = r.status_json() else { continue };
        for s in v["stacks"].as_array()? {
            if s["location"]["file"] == file.as_str() && s["mine"] == true {
                return Some((
                    r.identity.clone(),
                    s["state"].as_str()?.to_string(),
                    s["head"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    None
}

on_both_versions! {
async fn the_fleet_survives_chaos_and_loses_nothing() {
    let Some(env) = Env::require() else { return };
    let seconds: u64 = std::env::var("PLIMSOLL_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(90);
    let seed: u64 = std::env::var("PLIMSOLL_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    // API server restarts are among the faults unless
    // PLIMSOLL_SOAK_API_RESTARTS=0 (to tell their effects from the rest's).
    let api_restarts = std::env::var("PLIMSOLL_SOAK_API_RESTARTS").as_deref() != Ok("0");
    eprintln!("chaos soak: {seconds} s of faults, PLIMSOLL_SOAK_SEED={seed}, API server restarts: {api_restarts}");
    let mut rng = Rng(seed);
    let mut cluster = Cluster::start(&env, "soak").await.expect("control plane");
    let client = cluster.client.clone();
    for i in 0..STACKS {
        cluster.cp.namespace(&client, &ns(i)).await.unwrap();
    }

    // The repository: the data chart at four versions, six stacks.
    let repo = FleetRepo::new("soak", 0);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for v in VERSIONS {
        let dir = repo.path().join(format!("charts/test-data-{v}"));
        support::copy_dir(&root.join("fixtures/charts/test-data-1.0.0"), &dir);
        support::set_chart_version(&dir, v);
    }
    let mut good: Vec<Good> = (0..STACKS)
        .map(|_| Good { version: 0, mariadb_gi: 10, mongo_gi: 10, cpu_m: 100 })
        .collect();
    let mut last: Vec<Change> = vec![Change::Values; STACKS];
    // Each stack's good contents, oldest first, and the oldest of them it
    // may still be at: a stack whose last commit must be refused stays at
    // the state it was synced to, which is its last good commit's only if
    // the daemon saw that commit before the next (Argo CD and Flux do the
    // same: a broken head is reported, no older commit applied). The floor
    // is the newest good state seen live when a refused commit was made.
    let mut history: Vec<Vec<Good>> = good.iter().map(|g| vec![g.clone()]).collect();
    let mut floor: Vec<usize> = vec![0; STACKS];
    for (i, g) in good.iter().enumerate() {
        write_stack(&repo, i, g, None);
    }
    let mut head = repo.commit("six stacks");

    let watch = Arc::new(Mutex::new(Watch::default()));
    let watcher = tokio::spawn(watch_claims(client.clone(), watch.clone()));
    let logs = tempfile::tempdir().unwrap();
    let args = [
        "--interval", "30", "--lease-duration", "6", "--ready-timeout", "180",
        "--expansion-timeout", "180", "--helm-timeout", "180",
    ];
    let (kc, helm) = (cluster.cp.kubeconfig.clone(), cluster.cp.helm.clone());
    let start_replica = |id: &str| Replica::start(repo.path(), &kc, &helm, id, logs.path(), &args);
    let mut replicas: Vec<Replica> = (0..REPLICAS).map(|i| start_replica(&format!("r{i}"))).collect();
    let mut generation = [0u32; REPLICAS];
    // (slot, when to bring it back)
    let mut down: Vec<(usize, Instant)> = Vec::new();

    let mut commits: BTreeMap<Change, u32> = BTreeMap::new();
    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let chaos = Instant::now();
    let mut next_commit = Instant::now() + Duration::from_secs(rng.between(3, 8));
    let mut next_fault = Instant::now() + Duration::from_secs(rng.between(8, 15));
    while chaos.elapsed() < Duration::from_secs(seconds) {
        let now = Instant::now();
        // Replicas due back come back as new pods.
        let due: Vec<usize> = down.iter().filter(|(_, at)| *at <= now).map(|(s, _)| *s).collect();
        for slot in due {
            down.retain(|(s, _)| *s != slot);
            generation[slot] += 1;
            let id = format!("r{slot}-{}", generation[slot]);
            replicas.push(start_replica(&id));
            let idx = replicas.len() - 1;
            replicas.swap(slot, idx);
        }
        if now >= next_commit {
            let i = rng.below(STACKS as u64) as usize;
            let g = &mut good[i];
            let roll = rng.below(100);
            let change = match roll {
                0..=29 => Change::Grow,
                30..=44 if g.version + 1 < VERSIONS.len() => Change::Bump,
                45..=69 => Change::Values,
                70..=79 => Change::Shrink,
                80..=89 if g.version > 0 => Change::Downgrade,
                90..=99 => Change::NotYaml,
                _ => Change::Values,
            };
            match change {
                Change::Grow => {
                    if rng.below(2) == 0 { g.mariadb_gi += 1 } else { g.mongo_gi += 1 }
                }
                Change::Bump => g.version += 1,
                Change::Values => g.cpu_m = 100 + 10 * rng.below(20),
                _ => {}
            }
            let bad = (change.expected() != "in-sync").then_some(change);
            if bad.is_some() {
                if let Some((v, m, g2, c)) = live(&client, i).await {
                    if let Some(k) = history[i].iter().rposition(|h| {
                        (VERSIONS[h.version].to_string(), h.mariadb_gi, h.mongo_gi, h.cpu_m) == (v.clone(), m, g2, c)
                    }) {
                        floor[i] = floor[i].max(k);
                    }
                }
            } else {
                history[i].push(good[i].clone());
            }
            write_stack(&repo, i, &good[i], bad);
            head = repo.commit(&format!("s{i:02}: {change:?}"));
            last[i] = change;
            *commits.entry(change).or_default() += 1;
            next_commit = now + Duration::from_secs(rng.between(3, 10));
        }
        if now >= next_fault {
            let alive: Vec<usize> = (0..REPLICAS).filter(|s| !down.iter().any(|(d, _)| d == s)).collect();
            match rng.below(3) {
                0 | 1 if alive.len() >= 2 => {
                    let slot = alive[rng.below(alive.len() as u64) as usize];
                    if rng.below(2) == 0 {
                        replicas[slot].kill();
                        *faults.entry("replica killed (SIGKILL)").or_default() += 1;
                    } else {
                        replicas[slot].signal_term();
                        *faults.entry("replica stopped (SIGTERM)").or_default() += 1;
                    }
                    down.push((slot, now + Duration::from_secs(rng.between(2, 10))));
                }
                _ if api_restarts => {
                    let outage = Duration::from_secs(rng.between(1, 5));
                    cluster.cp.restart_apiserver(outage).await.expect("the API server restarts");
                    *faults.entry("API server restarted").or_default() += 1;
                }
                _ => {}
            }
            next_fault = Instant::now() + Duration::from_secs(rng.between(8, 20));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Faults stop; every replica runs; the fleet settles.
    for (slot, _) in std::mem::take(&mut down) {
        generation[slot] += 1;
        let id = format!("r{slot}-{}", generation[slot]);
        replicas.push(start_replica(&id));
        let idx = replicas.len() - 1;
        replicas.swap(slot, idx);
    }
    let settle = Instant::now();
    let mut outcome: BTreeMap<usize, String> = BTreeMap::new();
    let mut mismatches = Vec::new();
    let as_tuple = |g: &Good| (VERSIONS[g.version].to_string(), g.mariadb_gi, g.mongo_gi, g.cpu_m);
    while settle.elapsed() < Duration::from_secs(360) {
        mismatches.clear();
        for i in 0..STACKS {
            let g = &good[i];
            let want = as_tuple(g);
            let got = live(&client, i).await;
            let state = held_state(&replicas, i);
            let held_ok = state.as_ref().is_some_and(|(_, s, h)| s == last[i].expected() && *h == head);
            // With a refused head, an earlier good commit's state (never
            // older than the floor, never a mix) is what was synced.
            let earlier = last[i].expected() != "in-sync"
                && got.as_ref() != Some(&want)
                && history[i][floor[i]..].iter().any(|h| got.as_ref() == Some(&as_tuple(h)));
            if held_ok && got.as_ref() == Some(&want) {
                outcome.insert(i, last[i].expected().to_string());
            } else if held_ok && earlier {
                outcome.insert(i, format!("{} (at an earlier good commit: the last one came after its last sync)", last[i].expected()));
            } else {
                mismatches.push(format!("s{i:02}: want {want:?} {} at {}, live {got:?}, held {state:?}", last[i].expected(), &head[..12]));
            }
        }
        if mismatches.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settled_in = settle.elapsed();
    watcher.abort();
    let logs_text: Vec<(String, String)> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap_or_default()))
        .collect();
    let count = |what: &str| logs_text.iter().map(|(_, t)| t.matches(what).count()).sum::<usize>();

    // The report.
    let mut report = format!(
        "chaos soak on Kubernetes {}: {seconds} s of faults, seed {seed}, {STACKS} stacks, {REPLICAS} replicas\ncommits: {}\n",
        plimsoll_testenv::KubeVersion::current().as_str(),
        commits.values().sum::<u32>()
    );
    for (c, n) in &commits {
        report.push_str(&format!("  {c:?}: {n} (expected {})\n", c.expected()));
    }
    report.push_str(&format!("faults: {}\n", faults.values().sum::<u32>()));
    for (f, n) in &faults {
        report.push_str(&format!("  {f}: {n}\n"));
    }
    report.push_str(&format!(
        "outcomes after settling ({settled_in:?}): {}\n",
        (0..STACKS).map(|i| format!("s{i:02} {}", outcome.get(&i).map_or("NOT SETTLED", String::as_str))).collect::<Vec<_>>().join(", ")
    ));
    report.push_str(&format!(
        "daemon logs: {} syncs completed, {} plans resumed, {} refused, {} commits rejected, {} stacks taken, {} given up, {} lost to another replica\n",
        count("sync complete"),
        count("resuming plan"),
        count("the plan is refused"),
        count("the commit cannot be used"),
        count("took the stack"),
        count("gave the stack up"),
        count("is another replica's now"),
    ));
    let (claims_watched, violations) = {
        let w = watch.lock().unwrap();
        (w.claims.len(), w.violations.clone())
    };
    report.push_str(&format!(
        "claims watched: {claims_watched}, violations: {}\n",
        violations.len()
    ));
    let deletes = cluster.cp.audited_deletes();
    let sts_deletes: Vec<&serde_json::Value> = deletes
        .iter()
        .filter(|e| e["objectRef"]["resource"] == "statefulsets" && e["stage"] == "ResponseComplete")
        .collect();
    let data_deletes: Vec<&serde_json::Value> = deletes
        .iter()
        .filter(|e| ["persistentvolumeclaims", "persistentvolumes"].contains(&e["objectRef"]["resource"].as_str().unwrap_or("")))
        .collect();
    let not_orphan: Vec<String> = sts_deletes
        .iter()
        .filter(|e| {
            e["requestObject"]["propagationPolicy"] != "Orphan"
                || e["requestObject"]["preconditions"]["uid"].as_str().is_none_or(str::is_empty)
        })
        .map(|e| e.to_string())
        .collect();
    report.push_str(&format!(
        "API server audit: {} StatefulSet deletes ({} not orphan with a uid precondition), {} claim or volume deletes\n",
        sts_deletes.len(),
        not_orphan.len(),
        data_deletes.len()
    ));
    let mut journals = Vec::new();
    for i in 0..STACKS {
        let at = plimsoll_syncer::journal_store::JournalLocation::for_stack("plimsoll", &format!("s{i:02}"));
        let j = plimsoll_syncer::journal_store::load(&client, &at).await;
        journals.push(match j {
            Ok(Some(j)) => format!("s{i:02} {} ({} of {} steps)", j.status.as_str(), j.completed.len(), j.steps.len()),
            Ok(None) => format!("s{i:02} none"),
            Err(e) => format!("s{i:02} unreadable: {e}"),
        });
    }
    report.push_str(&format!("journals: {}\n", journals.join(", ")));
    eprintln!("{report}");
    let dir = root.join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("chaos-soak-{}.txt", plimsoll_testenv::KubeVersion::current().as_str())),
        &report,
    )
    .unwrap();

    let journals_complete = journals.iter().all(|j| j.contains(" succeeded ("));
    if !mismatches.is_empty() || !journals_complete || !violations.is_empty() {
        // The replicas' logs, for whoever looks next.
        for (name, text) in &logs_text {
            let _ = std::fs::write(dir.join(format!("chaos-soak-{}-{name}", plimsoll_testenv::KubeVersion::current().as_str())), text);
        }
    }
    assert!(mismatches.is_empty(), "not settled: {mismatches:#?}\n{report}");
    assert!(violations.is_empty(), "claims lost or shrunk: {violations:#?}");
    assert!(not_orphan.is_empty(), "StatefulSets deleted without orphan propagation: {not_orphan:#?}");
    assert!(data_deletes.is_empty(), "claims or volumes deleted: {data_deletes:#?}");
    assert!(journals_complete, "every journal complete: {journals:?}");
    // The chaos happened (an API server restart holds the loop while it
    // comes back, so the rates are lower than the schedule's).
    assert!(commits.values().sum::<u32>() >= (seconds / 20) as u32, "{report}");
    assert!(faults.values().sum::<u32>() >= (seconds / 45) as u32, "{report}");
}
}
