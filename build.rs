//! Link-time settings of the `plimsoll` binary only.
//!
//! Start-up is most of what a short command costs (`plimsoll merge` of a
//! real ThingPark chain is about 1 ms of work). As a position-independent
//! executable, the binary carries ~28,000 relative relocations: at every
//! start the dynamic loader writes them into ~116 pages of `.data.rel.ro`,
//! each a copy-on-write page fault — 0.4 ms, a fifth of that command. So
//! the binary is linked as a fixed-address executable (as Go links
//! kubectl, helm and flux by default), and those relocations are resolved
//! at link time. What this gives up is address randomisation of the
//! executable's own image (libraries, heap and stacks stay randomised);
//! the project's crates forbid `unsafe`. Packagers whose policy requires
//! PIE build with `PLIMSOLL_PIE=1`.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PLIMSOLL_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    if linux && x86_64 && std::env::var_os("PLIMSOLL_PIE").is_none() {
        println!("cargo:rustc-link-arg-bin=plimsoll=-no-pie");
    }
}
