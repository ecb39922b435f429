//! Starts a test control plane and keeps it up for a while (for poking at it
//! by hand): `cargo run -p plimsoll-testenv --example cluster -- SECONDS`.

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
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
}
