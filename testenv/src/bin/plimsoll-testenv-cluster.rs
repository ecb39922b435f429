//! Starts a test control plane and keeps it up (for poking at it by hand,
//! and for the teardown test): `plimsoll-testenv-cluster [SECONDS]`.
//! Prints KUBECONFIG=, HELM= and PIDS= lines once it is ready.

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let env = plimsoll_testenv::Env::discover().expect("provisioned test environment");
    let cp = plimsoll_testenv::ControlPlane::start(&env)
        .await
        .expect("control plane");
    println!("KUBECONFIG={}", cp.kubeconfig.display());
    println!("HELM={}", cp.helm.display());
    let pids: Vec<String> = cp.pids().iter().map(u32::to_string).collect();
    println!("PIDS={}", pids.join(","));
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
}
