//! Merges the files given on the command line N times (for profiling):
//! `cargo run --release -p plimsoll-renderer --example merge_loop -- N FILE...`

use plimsoll_renderer::yq::{eval_all, Layer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args[0].parse().expect("iterations");
    let files: Vec<(String, Vec<u8>)> = args[1..]
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).expect("read")))
        .collect();
    let layers: Vec<Layer<'_>> = files
        .iter()
        .map(|(name, bytes)| Layer {
            name,
            bytes,
            mode: Default::default(),
        })
        .collect();
    let mut total = 0;
    for _ in 0..n {
        total += eval_all(&layers).expect("merge").len();
    }
    println!("{total}");
}
