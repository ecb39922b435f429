//! Stand-ins for operators: background tasks that act on real custom
//! resources (their CRDs installed in the real API server) as the
//! upstream documentation says the operator does. Dropping the handle
//! stops it.
//!
//! - [`PravegaOperator`]: on a `spec.version` change, `Upgrading=True`
//!   with reason `Updating Segmentstore` and the number of upgraded
//!   segment stores as its message, one pod at a time; then
//!   `currentVersion` set and `Upgrading=False` (pravega-operator
//!   doc/upgrade-cluster.md, api/v1beta1/status.go). Told to fail, it
//!   reports `Error=True` with reason `UpgradeFailed` as the operator does.
//! - [`PerconaOperator`], [`StrimziOperator`]: keep and grow the claims
//!   their resources ask for.
//! - [`CstorOperator`]: a volume's replicas, one per pool of its
//!   `CStorVolumeConfig`, reconstructing and then Healthy (cstor-operators
//!   docs/volume/migration.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// A custom resource kind, for [`install_crd`] and its `Api`.
struct Kind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
}

impl Kind {
    fn api(&self, client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
        let ar = ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version: format!("{}/{}", self.group, self.version),
            kind: self.kind.into(),
            plural: self.plural.into(),
        };
        Api::namespaced_with(client.clone(), namespace, &ar)
    }
}

const PRAVEGA: Kind = Kind {
    group: "pravega.pravega.io",
    version: "v1beta1",
    kind: "PravegaCluster",
    plural: "pravegaclusters",
};

const PERCONA: Kind = Kind {
    group: "psmdb.percona.com",
    version: "v1",
    kind: "PerconaServerMongoDB",
    plural: "perconaservermongodbs",
};

/// Installs a CRD trimmed to what the stand-ins use (a structural schema
/// preserving `spec` and `status`, the status subresource) and waits until
/// it is served.
async fn install_crd(client: &kube::Client, k: &Kind) -> Result<(), kube::Error> {
    install_crd_with(
        client,
        k,
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    )
    .await
}

/// [`install_crd`] with a schema of its own for `spec`.
async fn install_crd_with(client: &kube::Client, k: &Kind, spec: Value) -> Result<(), kube::Error> {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{}", k.plural, k.group)},
        "spec": {"group": k.group, "scope": "Namespaced",
            "names": {"plural": k.plural, "singular": k.kind.to_lowercase(), "kind": k.kind},
            "versions": [{"name": k.version, "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": spec,
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    }))
    .expect("CRD object");
    match Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    let api = k.api(client, "default");
    for _ in 0..100 {
        if api.list(&ListParams::default()).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The PravegaCluster CRD (`spec.version` and the status subresource).
pub async fn install_pravega_crd(client: &kube::Client) -> Result<(), kube::Error> {
    install_crd(client, &PRAVEGA).await
}

pub fn pravega_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    PRAVEGA.api(client, namespace)
}

/// What the Pravega operator stand-in does.
#[derive(Clone, Debug)]
pub struct PravegaBehaviour {
    /// Time per upgraded segment store pod.
    pub pod_delay: Duration,
    /// Upgrades to this version fail (`UpgradeFailed`) after the first pod.
    pub fail_upgrade_to: Option<String>,
}

impl Default for PravegaBehaviour {
    fn default() -> PravegaBehaviour {
        PravegaBehaviour {
            pod_delay: Duration::from_millis(700),
            fail_upgrade_to: None,
        }
    }
}

pub struct PravegaOperator {
    pub behaviour: Arc<Mutex<PravegaBehaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PravegaOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An upgrade in progress: how many pods are done, since when.
struct Upgrade {
    target: String,
    done: i64,
    since: Instant,
}

impl PravegaOperator {
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        behaviour: PravegaBehaviour,
    ) -> PravegaOperator {
        let behaviour = Arc::new(Mutex::new(behaviour));
        let b = behaviour.clone();
        let api = pravega_api(&client, namespace);
        let task = tokio::spawn(async move {
            let mut upgrades: HashMap<String, Upgrade> = HashMap::new();
            loop {
                if let Ok(list) = api.list(&ListParams::default()).await {
                    let b = b.lock().map(|b| b.clone()).unwrap_or_default();
                    for cr in list {
                        let _ = reconcile(&api, &cr, &b, &mut upgrades).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        PravegaOperator { behaviour, task }
    }
}

fn condition(t: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({"type": t, "status": if status { "True" } else { "False" },
           "reason": reason, "message": message,
           "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()})
}

async fn set_status(
    api: &Api<DynamicObject>,
    name: &str,
    status: Value,
) -> Result<(), kube::Error> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .map(|_| ())
}

async fn reconcile(
    api: &Api<DynamicObject>,
    cr: &DynamicObject,
    b: &PravegaBehaviour,
    upgrades: &mut HashMap<String, Upgrade>,
) -> Result<(), kube::Error> {
    let name = cr.metadata.name.clone().unwrap_or_default();
    let want = cr.data["spec"]["version"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let replicas = cr.data["spec"]["pravega"]["segmentStoreReplicas"]
        .as_i64()
        .unwrap_or(3);
    let status = &cr.data["status"];
    let current = status["currentVersion"].as_str().unwrap_or("").to_string();
    let failed = status["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Error" && c["status"] == "True")
    });
    if current.is_empty() {
        // A new cluster: created at its version.
        return set_status(
            api,
            &name,
            json!({"currentVersion": want, "conditions": [
                condition("PodsReady", true, "", ""),
                condition("Upgrading", false, "", ""),
                condition("Error", false, "", "")]}),
        )
        .await;
    }
    if want == current {
        upgrades.remove(&name);
        return Ok(());
    }
    if failed && b.fail_upgrade_to.as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    let up = upgrades.entry(name.clone()).or_insert_with(|| Upgrade {
        target: want.clone(),
        done: 0,
        since: Instant::now(),
    });
    if up.target != want {
        *up = Upgrade {
            target: want.clone(),
            done: 0,
            since: Instant::now(),
        };
    }
    if up.since.elapsed() < b.pod_delay {
        if up.done == 0 {
            return set_status(
                api,
                &name,
                json!({"targetVersion": want, "conditions": [
                    condition("PodsReady", false, "", ""),
                    condition("Upgrading", true, "Updating Segmentstore", "0"),
                    condition("Error", false, "", "")]}),
            )
            .await;
        }
        return Ok(());
    }
    if b.fail_upgrade_to.as_deref() == Some(want.as_str()) {
        return set_status(
            api,
            &name,
            json!({"conditions": [
                condition("PodsReady", false, "", ""),
                condition("Upgrading", false, "", ""),
                condition("Error", true, "UpgradeFailed",
                    &format!("failed to sync segmentstore version. pod {name}-pravega-segmentstore-0 is restarting"))]}),
        )
        .await;
    }
    up.done += 1;
    up.since = Instant::now();
    if up.done < replicas {
        return set_status(
            api,
            &name,
            json!({"conditions": [
                condition("PodsReady", false, "", ""),
                condition("Upgrading", true, "Updating Segmentstore", &up.done.to_string()),
                condition("Error", false, "", "")]}),
        )
        .await;
    }
    upgrades.remove(&name);
    set_status(
        api,
        &name,
        json!({"currentVersion": want, "conditions": [
            condition("PodsReady", true, "", ""),
            condition("Upgrading", false, "", ""),
            condition("Error", false, "", "")]}),
    )
    .await
}

/// The PerconaServerMongoDB CRD.
pub async fn install_percona_crd(client: &kube::Client) -> Result<(), kube::Error> {
    install_crd(client, &PERCONA).await
}

pub fn percona_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    PERCONA.api(client, namespace)
}

/// What the Percona operator stand-in does.
#[derive(Clone, Debug, Default)]
pub struct PerconaBehaviour {
    /// Never grows the claims (an operator that stalls).
    pub stall_resize: bool,
}

/// The Percona Server for MongoDB operator, as far as volumes go: it keeps
/// `mongod-data-CR-REPLSET-N` claims at the size the resource asks, grows
/// them when the size grows and `spec.enableVolumeExpansion` is true
/// (percona k8spsmdb docs, scaling-storage-resize), never shrinks them,
/// and reports `status.state` `ready` once every claim has its size
/// (`initializing` before).
pub struct PerconaOperator {
    pub behaviour: Arc<Mutex<PerconaBehaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PerconaOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PerconaOperator {
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        behaviour: PerconaBehaviour,
    ) -> PerconaOperator {
        let behaviour = Arc::new(Mutex::new(behaviour));
        let b = behaviour.clone();
        let api = percona_api(&client, namespace);
        let ns = namespace.to_string();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = api.list(&ListParams::default()).await {
                    let b = b.lock().map(|b| b.clone()).unwrap_or_default();
                    for cr in list {
                        let _ = percona_reconcile(&client, &api, &ns, &cr, &b).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        PerconaOperator { behaviour, task }
    }
}

async fn percona_reconcile(
    client: &kube::Client,
    api: &Api<DynamicObject>,
    ns: &str,
    cr: &DynamicObject,
    b: &PerconaBehaviour,
) -> Result<(), kube::Error> {
    let name = cr.metadata.name.clone().unwrap_or_default();
    let grow = cr.data["spec"]["enableVolumeExpansion"].as_bool() == Some(true) && !b.stall_resize;
    let pvcs = Api::namespaced(client.clone(), ns);
    let mut settled = true;
    for rs in cr.data["spec"]["replsets"].as_array().into_iter().flatten() {
        let rs_name = rs["name"].as_str().unwrap_or("rs0");
        let pvc_spec = &rs["volumeSpec"]["persistentVolumeClaim"];
        let size = pvc_spec["resources"]["requests"]["storage"]
            .as_str()
            .unwrap_or("1Gi");
        let class = pvc_spec["storageClassName"].as_str().unwrap_or("");
        for i in 0..rs["size"].as_i64().unwrap_or(3) {
            let pvc = format!("mongod-data-{name}-{rs_name}-{i}");
            settled &= keep_claim(&pvcs, ns, &pvc, size, class, grow).await?;
        }
    }
    let state = if settled { "ready" } else { "initializing" };
    if cr.data["status"]["state"].as_str() != Some(state) {
        set_status(api, &name, json!({"state": state})).await?;
    }
    Ok(())
}

const STRIMZI: Kind = Kind {
    group: "kafka.strimzi.io",
    version: "v1beta2",
    kind: "Kafka",
    plural: "kafkas",
};

/// The Strimzi `Kafka` CRD.
pub async fn install_strimzi_crd(client: &kube::Client) -> Result<(), kube::Error> {
    install_crd(client, &STRIMZI).await
}

pub fn strimzi_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    STRIMZI.api(client, namespace)
}

/// Strimzi's cluster operator, as far as storage goes: it keeps the
/// brokers' claims (`data-CR-kafka-N`, or `data-ID-CR-kafka-N` with JBOD)
/// at the size `spec.kafka.storage` asks, grows them when it grows (the
/// class allowing expansion; documentation/modules/configuring/
/// proc-resizing-persistent-volumes.adoc), and reports the new generation
/// observed with `Ready=True` only once every claim has its size (the old
/// `observedGeneration` while it works).
pub struct StrimziOperator {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StrimziOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StrimziOperator {
    pub async fn start(client: kube::Client, namespace: &str) -> StrimziOperator {
        let api = strimzi_api(&client, namespace);
        let ns = namespace.to_string();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = api.list(&ListParams::default()).await {
                    for cr in list {
                        let _ = strimzi_reconcile(&client, &api, &ns, &cr).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        StrimziOperator { task }
    }
}

/// Keeps one claim at `size`: created when missing, grown when smaller;
/// `true` when its capacity is there.
async fn keep_claim(
    pvcs: &Api<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    ns: &str,
    name: &str,
    size: &str,
    class: &str,
    grow: bool,
) -> Result<bool, kube::Error> {
    use plimsoll_planner::state::quantity_bytes;
    let Some(p) = pvcs.get_opt(name).await? else {
        let pvc = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "resources": {"requests": {"storage": size}}}
        }))
        .expect("pvc");
        pvcs.create(&PostParams::default(), &pvc).await?;
        return Ok(false);
    };
    let quantity = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        q.map(|q| q.0.clone()).unwrap_or_default()
    };
    let request = quantity(
        p.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    );
    let capacity = quantity(
        p.status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage")),
    );
    let want = quantity_bytes(size);
    if grow && want > quantity_bytes(&request) {
        pvcs.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"resources": {"requests": {"storage": size}}}})),
        )
        .await?;
    }
    Ok(quantity_bytes(&capacity) >= want)
}

async fn strimzi_reconcile(
    client: &kube::Client,
    api: &Api<DynamicObject>,
    ns: &str,
    cr: &DynamicObject,
) -> Result<(), kube::Error> {
    let name = cr.metadata.name.clone().unwrap_or_default();
    let generation = cr.metadata.generation.unwrap_or(1);
    let kafka = &cr.data["spec"]["kafka"];
    let replicas = kafka["replicas"].as_i64().unwrap_or(1);
    let storage = &kafka["storage"];
    let mut claims: Vec<(String, String, String)> = Vec::new();
    match storage["type"].as_str() {
        Some("persistent-claim") => {
            for i in 0..replicas {
                claims.push((
                    format!("data-{name}-kafka-{i}"),
                    storage["size"].as_str().unwrap_or("1Gi").into(),
                    storage["class"].as_str().unwrap_or("").into(),
                ));
            }
        }
        Some("jbod") => {
            for v in storage["volumes"].as_array().into_iter().flatten() {
                let id = v["id"].as_i64().unwrap_or(0);
                for i in 0..replicas {
                    claims.push((
                        format!("data-{id}-{name}-kafka-{i}"),
                        v["size"].as_str().unwrap_or("1Gi").into(),
                        v["class"].as_str().unwrap_or("").into(),
                    ));
                }
            }
        }
        _ => {}
    }
    let pvcs = Api::namespaced(client.clone(), ns);
    let mut settled = true;
    for (pvc, size, class) in &claims {
        settled &= keep_claim(&pvcs, ns, pvc, size, class, true).await?;
    }
    let observed = cr.data["status"]["observedGeneration"].as_i64();
    if settled && observed != Some(generation) {
        set_status(
            api,
            &name,
            json!({"observedGeneration": generation,
                   "conditions": [condition("Ready", true, "", "")]}),
        )
        .await?;
    }
    Ok(())
}

const CSTOR_CVC: Kind = Kind {
    group: "cstor.openebs.io",
    version: "v1",
    kind: "CStorVolumeConfig",
    plural: "cstorvolumeconfigs",
};

const CSTOR_CVR: Kind = Kind {
    group: "cstor.openebs.io",
    version: "v1",
    kind: "CStorVolumeReplica",
    plural: "cstorvolumereplicas",
};

const CSTOR_VOLUME: Kind = Kind {
    group: "cstor.openebs.io",
    version: "v1",
    kind: "CStorVolume",
    plural: "cstorvolumes",
};

/// The cStor CRDs: `CStorVolumeConfig` (its `spec.policy.replicaPoolInfo`
/// structural, with the CVC webhook's rule of at most one replica change
/// per edit as a CRD validation rule, enforced by API servers from 1.25,
/// so by v1.32 and not by v1.20), `CStorVolumeReplica` and `CStorVolume`.
pub async fn install_cstor_crds(client: &kube::Client) -> Result<(), kube::Error> {
    let one_change = "size(self.replicaPoolInfo.filter(p, !oldSelf.replicaPoolInfo.exists(o, o.poolName == p.poolName))) \
         + size(oldSelf.replicaPoolInfo.filter(o, !self.replicaPoolInfo.exists(p, p.poolName == o.poolName))) <= 1";
    let spec = json!({
        "type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"policy": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": true,
            "required": ["replicaPoolInfo"],
            "properties": {"replicaPoolInfo": {
                "type": "array", "maxItems": 16,
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                          "required": ["poolName"],
                          "properties": {"poolName": {"type": "string", "maxLength": 253}}}}},
            "x-kubernetes-validations": [{
                "rule": one_change,
                "message": "only one replica can be added or removed in one edit (cStor CVC webhook)"}]}}
    });
    install_crd_with(client, &CSTOR_CVC, spec).await?;
    install_crd(client, &CSTOR_CVR).await?;
    install_crd(client, &CSTOR_VOLUME).await
}

pub fn cstor_cvc_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    CSTOR_CVC.api(client, namespace)
}

pub fn cstor_cvr_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    CSTOR_CVR.api(client, namespace)
}

pub fn cstor_volume_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    CSTOR_VOLUME.api(client, namespace)
}

/// What the cStor stand-in does.
#[derive(Clone, Debug)]
pub struct CstorBehaviour {
    /// How long a new replica reconstructs before it is Healthy.
    pub reconstruct: Duration,
}

impl Default for CstorBehaviour {
    fn default() -> CstorBehaviour {
        CstorBehaviour {
            reconstruct: Duration::from_millis(1500),
        }
    }
}

/// cStor's CVC controller and replicas, as the migration guide tells them:
/// a new volume gets a Healthy `CStorVolumeReplica` `<volume>-<pool>` per
/// pool of `spec.policy.replicaPoolInfo`, a `CStorVolume` `<volume>`, and
/// `status.phase` `Bound` with `status.poolInfo`. A pool added: its replica
/// is created `ReconstructingNewReplica` (not counted toward quorum) and
/// listed in `status.poolInfo` at once, Healthy after `reconstruct`. A pool
/// removed: its replica is deleted and unlisted, only while the
/// `CStorVolume` is Healthy (a quorum of Healthy replicas). More than one
/// change at a time is not acted on (the webhook refuses it).
pub struct CstorOperator {
    pub behaviour: Arc<Mutex<CstorBehaviour>>,
    /// Edits it did not act on: more than one replica change at once.
    pub refused: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CstorOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CstorOperator {
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        behaviour: CstorBehaviour,
    ) -> CstorOperator {
        let behaviour = Arc::new(Mutex::new(behaviour));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (b, r) = (behaviour.clone(), refused.clone());
        let ns = namespace.to_string();
        let task = tokio::spawn(async move {
            let mut since: HashMap<String, Instant> = HashMap::new();
            loop {
                let cvcs = cstor_cvc_api(&client, &ns);
                if let Ok(list) = cvcs.list(&ListParams::default()).await {
                    let b = b.lock().map(|b| b.clone()).unwrap_or_default();
                    for cvc in list {
                        let _ = cstor_reconcile(&client, &ns, &cvc, &b, &mut since, &r).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        CstorOperator {
            behaviour,
            refused,
            task,
        }
    }
}

async fn cstor_reconcile(
    client: &kube::Client,
    ns: &str,
    cvc: &DynamicObject,
    b: &CstorBehaviour,
    since: &mut HashMap<String, Instant>,
    refused: &Mutex<Vec<String>>,
) -> Result<(), kube::Error> {
    let name = cvc.metadata.name.clone().unwrap_or_default();
    let (cvcs, cvrs, volumes) = (
        cstor_cvc_api(client, ns),
        cstor_cvr_api(client, ns),
        cstor_volume_api(client, ns),
    );
    let wanted: Vec<String> = cvc.data["spec"]["policy"]["replicaPoolInfo"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["poolName"].as_str().map(str::to_string))
        .collect();
    let listed: Option<Vec<String>> = cvc.data["status"]["poolInfo"].as_array().map(|a| {
        a.iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect()
    });
    let replica = |pool: &str| format!("{name}-{pool}");
    let new_object = |kind: &Kind, object: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": format!("{}/{}", kind.group, kind.version), "kind": kind.kind,
            "metadata": {"name": object, "namespace": ns}, "spec": {}
        }))
        .expect("object")
    };
    async fn create(api: &Api<DynamicObject>, o: &DynamicObject) -> Result<(), kube::Error> {
        match api.create(&PostParams::default(), o).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
    let Some(mut listed) = listed else {
        // Provisioning: a Healthy replica on every pool, the volume, Bound.
        for pool in &wanted {
            create(&cvrs, &new_object(&CSTOR_CVR, &replica(pool))).await?;
            set_status(&cvrs, &replica(pool), json!({"phase": "Healthy"})).await?;
        }
        create(&volumes, &new_object(&CSTOR_VOLUME, &name)).await?;
        set_status(&volumes, &name, json!({"phase": "Healthy"})).await?;
        return set_status(&cvcs, &name, json!({"phase": "Bound", "poolInfo": wanted})).await;
    };
    // Reconstructed replicas become Healthy.
    let mut healthy = 0;
    for pool in &listed {
        let Some(cvr) = cvrs.get_opt(&replica(pool)).await? else {
            continue;
        };
        match cvr.data["status"]["phase"].as_str() {
            Some("Healthy") => healthy += 1,
            _ if since
                .get(&replica(pool))
                .is_none_or(|t| t.elapsed() >= b.reconstruct) =>
            {
                set_status(&cvrs, &replica(pool), json!({"phase": "Healthy"})).await?;
                since.remove(&replica(pool));
                healthy += 1;
            }
            _ => {}
        }
    }
    let volume_healthy = healthy * 2 > wanted.len().max(listed.len());
    set_status(
        &volumes,
        &name,
        json!({"phase": if volume_healthy { "Healthy" } else { "Degraded" }}),
    )
    .await?;
    let added: Vec<&String> = wanted.iter().filter(|p| !listed.contains(p)).collect();
    let removed: Vec<String> = listed
        .iter()
        .filter(|p| !wanted.contains(p))
        .cloned()
        .collect();
    if added.len() + removed.len() > 1 {
        let mut r = refused.lock().expect("refused");
        let what = format!("{name}: [{}] -> [{}]", listed.join(", "), wanted.join(", "));
        if !r.contains(&what) {
            r.push(what);
        }
        return Ok(());
    }
    if let Some(pool) = added.first() {
        create(&cvrs, &new_object(&CSTOR_CVR, &replica(pool))).await?;
        set_status(
            &cvrs,
            &replica(pool),
            json!({"phase": "ReconstructingNewReplica"}),
        )
        .await?;
        since.insert(replica(pool), Instant::now());
        listed.push((*pool).clone());
    }
    if let Some(pool) = removed.first() {
        if !volume_healthy {
            return Ok(());
        }
        match cvrs.delete(&replica(pool), &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
        listed.retain(|p| p != pool);
    }
    if !added.is_empty() || !removed.is_empty() {
        set_status(&cvcs, &name, json!({"phase": "Bound", "poolInfo": listed})).await?;
    }
    Ok(())
}
