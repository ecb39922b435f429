//! Hot paths of the renderer: parse + merge + emit of real ThingPark
//! chains, and the render of the bundled example.
//!
//! Run with `cargo bench -p plimsoll-renderer`. Inputs are read once up
//! front: the figures are CPU time, not disk time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use plimsoll_renderer::render;
use plimsoll_renderer::stack;
use plimsoll_renderer::yq::{eval_all, merge_layers_cached, print, Layer, ParseCache};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_all(paths: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    paths
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).expect("fixture")))
        .collect()
}

fn layers(files: &[(String, Vec<u8>)]) -> Vec<Layer<'_>> {
    files
        .iter()
        .map(|(name, bytes)| Layer {
            name,
            bytes,
            mode: Default::default(),
        })
        .collect()
}

fn merge(files: &[(String, Vec<u8>)]) -> String {
    eval_all(&layers(files)).expect("merge")
}

fn benches(c: &mut Criterion) {
    let tp = repo().join("fixtures/thingpark/main-1b4e0ed");
    let chain = read_all(&[
        tp.join("examples/hosting/amazon/values-storage.yaml"),
        tp.join("examples/hosting/amazon/values-lb.yaml"),
        tp.join("examples/priority-class/values-default-priority-class.yaml"),
        tp.join("values/sizing/values-l-segment.yaml"),
        tp.join("examples/customization/values-thingpark-stack.yaml"),
    ]);
    c.bench_function(
        "thingpark 8.0 l application chain (5 files, parse+merge+emit)",
        |b| b.iter(|| black_box(merge(black_box(&chain)))),
    );

    let fixtures = repo().join("fixtures");
    let index = std::fs::read_to_string(fixtures.join("conformance/thingpark/cases.tsv"))
        .expect("cases.tsv");
    let chains: Vec<Vec<(String, Vec<u8>)>> = index
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(_, ins)| {
            read_all(
                &ins.split_whitespace()
                    .map(|p| fixtures.join(p))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(chains.len(), 72);
    c.bench_function("all 72 thingpark conformance chains", |b| {
        b.iter(|| {
            for chain in &chains {
                black_box(merge(chain));
            }
        })
    });
    c.bench_function(
        "all 72 thingpark conformance chains, shared parse cache",
        |b| {
            b.iter(|| {
                // A fresh cache per iteration: each distinct file is parsed once
                // per run, as `plimsoll render` does across releases.
                let mut cache = ParseCache::default();
                for chain in &chains {
                    let layers: Vec<Layer<'_>> = chain
                        .iter()
                        .map(|(name, bytes)| Layer {
                            name,
                            bytes,
                            mode: Default::default(),
                        })
                        .collect();
                    let acc =
                        merge_layers_cached(&layers, &mut Vec::new(), &mut cache).expect("merge");
                    black_box(print(&acc));
                }
            })
        },
    );

    let stack_bytes = std::fs::read(repo().join("plimsoll.yaml")).expect("plimsoll.yaml");
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for dir in [
        "profiles",
        "overlays",
        "overlays/storage",
        "overlays/lb",
        "site",
    ] {
        for e in std::fs::read_dir(repo().join(dir)).expect("example dir") {
            let p = e.expect("entry").path();
            if p.is_file() {
                let rel = p
                    .strip_prefix(repo())
                    .expect("inside repo")
                    .display()
                    .to_string();
                files.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let read = |p: &str| {
        files
            .get(p)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, p.to_string()))
    };
    c.bench_function(
        "render bundled example (stack file + 4 releases + lock)",
        |b| {
            b.iter(|| {
                let st = stack::parse("plimsoll.yaml", &stack_bytes).expect("stack");
                let vars = st.assignments(&[]).expect("vars");
                let rendered = render::render(&st, &vars, &read).expect("render");
                black_box(render::lock_text(&rendered))
            })
        },
    );
}

/// Key lookup in merges is linear: a map of 100,000 keys merged over one
/// of the same keys (it was quadratic: 160k keys took 70 s).
fn wide_maps(c: &mut Criterion) {
    let text: String = (0..100_000).map(|i| format!("k{i}: {i}\n")).collect();
    let files = vec![
        ("a.yaml".to_string(), text.clone().into_bytes()),
        ("b.yaml".to_string(), text.into_bytes()),
    ];
    c.bench_function("merge two 100,000-key maps", |b| {
        b.iter(|| black_box(merge(&files)))
    });
}

criterion_group!(name = renderer; config = Criterion::default().sample_size(50); targets = benches);
criterion_group!(name = wide; config = Criterion::default().sample_size(10); targets = wide_maps);
criterion_main!(renderer, wide);
