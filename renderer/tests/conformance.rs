//! Byte-for-byte conformance with yq (see fixtures/conformance/VERSION).
//!
//! Tests as data: every case directory holds its input layers `1.yaml ..
//! N.yaml` and yq's `expected.yaml`; one harness walks them all and reports
//! every failing case at once.

use std::path::{Path, PathBuf};

use plimsoll_renderer::yq::{eval_all, Layer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn merge_files(paths: &[PathBuf]) -> Result<String, String> {
    let contents: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).expect("read layer"))
        .collect();
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let layers: Vec<Layer<'_>> = names
        .iter()
        .zip(&contents)
        .map(|(name, bytes)| Layer {
            name,
            bytes,
            mode: Default::default(),
        })
        .collect();
    eval_all(&layers).map_err(|e| e.to_string())
}

/// Reports the first differing line of each failure.
fn describe(case: &str, got: &Result<String, String>, expected: &str) -> String {
    match got {
        Err(e) => format!("{case}: error {e}"),
        Ok(got) => {
            let line = got
                .lines()
                .zip(expected.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| got.lines().count().min(expected.lines().count()));
            format!(
                "{case}: first difference at line {}: got {:?}, expected {:?}",
                line + 1,
                got.lines().nth(line),
                expected.lines().nth(line)
            )
        }
    }
}

/// Every case of a corpus `fixtures/conformance/NAME` (`CASE/1.yaml ..
/// N.yaml`, `expected.yaml`, all exiting 0) matches yq byte for byte.
fn corpus_matches_yq(name: &str, count: usize) {
    let dir = fixtures().join("conformance").join(name);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures/conformance/{name}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), count, "the {name} corpus has {count} cases");
    let mut failures = Vec::new();
    for case in &cases {
        let mut layers: Vec<PathBuf> = (1..=9)
            .map(|i| case.join(format!("{i}.yaml")))
            .filter(|p| p.exists())
            .collect();
        layers.sort();
        let expected = std::fs::read_to_string(case.join("expected.yaml")).expect("expected.yaml");
        let got = merge_files(&layers);
        if got.as_deref() != Ok(expected.as_str()) {
            failures.push(describe(&case.display().to_string(), &got, &expected));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn random_cases_match_yq() {
    corpus_matches_yq("random", 400);
}

/// Blank lines where real values files have them: leading, after a
/// header comment block (`helm create`'s), between keys, trailing.
#[test]
fn random_cases_with_blank_lines_match_yq() {
    corpus_matches_yq("random-blank", 400);
}

/// A byte order mark, a `%YAML 1.2` directive (see the corpus README).
#[test]
fn fidelity_cases_match_yq() {
    corpus_matches_yq("fidelity", 2);
}

/// Every real values file of the shared fixtures, as first and as later
/// layer.
#[test]
fn real_files_match_yq() {
    corpus_matches_yq("real-files", 190);
}

#[test]
fn thingpark_chains_match_yq() {
    let root = fixtures();
    let index =
        std::fs::read_to_string(root.join("conformance/thingpark/cases.tsv")).expect("cases.tsv");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in index.lines().filter(|l| !l.trim().is_empty()) {
        let (out, ins) = line.split_once('\t').expect("OUTPUT<TAB>INPUTS");
        let layers: Vec<PathBuf> = ins.split_whitespace().map(|p| root.join(p)).collect();
        let expected = std::fs::read_to_string(root.join(out)).expect("expected output");
        let got = merge_files(&layers);
        if got.as_deref() != Ok(expected.as_str()) {
            failures.push(describe(out, &got, &expected));
        }
        n += 1;
    }
    assert_eq!(n, 72, "the ThingPark corpus has 72 chains");
    assert!(
        failures.is_empty(),
        "{} of {n} chains differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
