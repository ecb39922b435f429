//! Times parse, merge and emit separately (for profiling):
//! `cargo run --release -p plimsoll-renderer --example stages -- N FILE...`

use std::time::Instant;

use plimsoll_renderer::merge::{multiply, Candidate, MergeMode};
use plimsoll_yaml as yaml;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args[0].parse().expect("iterations");
    let files: Vec<Vec<u8>> = args[1..]
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let t = Instant::now();
    for _ in 0..n {
        for f in &files {
            std::hint::black_box(yaml::check_input(f).is_ok());
        }
    }
    println!("check  {:?}", t.elapsed() / n as u32);
    let t = Instant::now();
    let mut docs = Vec::new();
    for _ in 0..n {
        docs = files
            .iter()
            .map(|f| yaml::parse_checked(f, 0).expect("parse"))
            .collect::<Vec<_>>();
    }
    println!("parse  {:?}", t.elapsed() / n as u32);
    let t = Instant::now();
    let mut acc = Candidate::empty();
    for _ in 0..n {
        acc = Candidate::empty();
        for d in docs.iter().flatten() {
            let c = Candidate {
                node: d.clone(),
                leading_content: String::new(),
                trailing_content: String::new(),
            };
            acc = multiply(acc, c, MergeMode::Replace, &mut Vec::new()).expect("merge");
        }
    }
    println!("merge+clone {:?}", t.elapsed() / n as u32);
    let t = Instant::now();
    for _ in 0..n {
        for d in docs.iter().flatten() {
            std::hint::black_box(d.clone());
        }
    }
    println!("clone  {:?}", t.elapsed() / n as u32);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(yaml::to_string(&acc.node, 2));
    }
    println!("emit   {:?}", t.elapsed() / n as u32);
}
