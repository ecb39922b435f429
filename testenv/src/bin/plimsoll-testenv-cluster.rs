//! Starts a test control plane and keeps it up (for poking at it by hand,
//! and for the teardown test): `plimsoll-testenv-cluster [SECONDS]
//! [--with-stand-ins]`. With `--with-stand-ins` the node and storage
//! stand-ins run too (pods become ready, claims bound; namespace
//! `testenv`), as in the syncer's tests. Prints KUBECONFIG=, HELM=,
//! HELM_CLI= and PIDS= lines once ready.

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(600);
    let env = plimsoll_testenv::Env::discover().expect("provisioned test environment");
    // Kept alive until the end: dropping either stops it.
    let (cp, _cluster);
    let cp = if args.iter().any(|a| a == "--with-stand-ins") {
        _cluster = plimsoll_testenv::Cluster::start(&env, "testenv")
            .await
            .expect("cluster");
        &_cluster.cp
    } else {
        cp = plimsoll_testenv::ControlPlane::start(&env)
            .await
            .expect("control plane");
        &cp
    };
    println!("KUBECONFIG={}", cp.kubeconfig.display());
    println!("HELM={}", cp.helm.display());
    println!("HELM_CLI={}", cp.helm_cli.display());
    let pids: Vec<String> = cp.pids().iter().map(u32::to_string).collect();
    println!("PIDS={}", pids.join(","));
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
}
