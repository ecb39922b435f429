//! yq's own merge scenarios (fixtures/conformance/upstream-vectors.yaml,
//! category `merge`) that are a reduce over files: run through the
//! renderer with yq CLI semantics. Cases we deliberately differ on are
//! listed in `DIFFERS` with the reason; every other applicable case must
//! match byte for byte.

use std::path::Path;

use plimsoll_renderer::merge::MergeMode;
use plimsoll_renderer::yq::{merge_layers, print_with_indent, Layer};
use plimsoll_yaml::{self as yaml, Kind, Node};

/// Cases whose expected output we knowingly do not produce.
const DIFFERS: &[(&str, &str)] = &[
    (
        "operator_multiply_test.go scenario #6",
        "yq's unit-test harness splits the leading content off every file (EvaluateTogether=false); \
         `eval-all` splits it off the first file only, so the second file's `# here` and blank line \
         reach the parser (checked against the random-blank and real-files corpora made by yq \
         v4.30.8 itself)",
    ),
    (
        "explicit !!merge tag on << key is preserved through ireduce merge",
        "yq v4.53.4+ keeps an explicit `!!merge` tag on a `<<` key the merge creates; v4.30.8 creates \
         the key untagged and prints `<<:` (the vector's caveat documents the version dependence)",
    ),
];

fn field<'n>(case: &'n Node, key: &str) -> Option<&'n Node> {
    case.get(key)
}

fn text(case: &Node, key: &str) -> String {
    field(case, key)
        .map(|n| n.value.clone())
        .unwrap_or_default()
}

/// The reduce form of an expression, if it is one: the merge mode.
fn reduce_mode(expr: &str) -> Option<MergeMode> {
    let e: String = expr.split_whitespace().collect();
    match e.as_str() {
        ".as$itemireduce({};.*$item)" | "select(fi==0)*select(fi==1)" => Some(MergeMode::Replace),
        ".as$itemireduce({};.*+$item)" => Some(MergeMode::Append),
        ".as$itemireduce({};.*d$item)" => Some(MergeMode::ByIndex),
        _ => None,
    }
}

#[test]
fn upstream_reduce_vectors() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/conformance/upstream-vectors.yaml");
    let bytes = std::fs::read(path).expect("vectors");
    let docs = yaml::parse_documents(&bytes, 0).expect("the vectors file parses");
    let cases = docs[0].unwrap_document();
    assert_eq!(cases.kind, Kind::Sequence);
    let mut ran = 0;
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for case in &cases.content {
        if text(case, "category") != "merge" {
            continue;
        }
        let name = text(case, "name");
        let Some(mode) = reduce_mode(&text(case, "expression")) else {
            continue;
        };
        let indent: usize = text(case, "indent").parse().unwrap_or(2);
        let inputs: Vec<String> = field(case, "documents")
            .map(|d| d.content.iter().map(|n| n.value.clone()).collect())
            .unwrap_or_default();
        let names: Vec<String> = (0..inputs.len())
            .map(|i| format!("f{}.yml", i + 1))
            .collect();
        let layers: Vec<Layer<'_>> = names
            .iter()
            .zip(&inputs)
            .map(|(name, body)| Layer {
                name,
                bytes: body.as_bytes(),
                mode,
            })
            .collect();
        let got = merge_layers(&layers, &mut Vec::new()).map(|c| print_with_indent(&c, indent));
        let expected = text(case, "expected");
        ran += 1;
        let ok = got.as_deref().ok() == Some(expected.as_str());
        let known = DIFFERS.iter().find(|(n, _)| *n == name);
        match (ok, known) {
            (true, None) => {}
            (true, Some(_)) => failures.push(format!("{name}: listed in DIFFERS but now matches")),
            (false, Some(_)) => {}
            (false, None) => failures.push(format!(
                "{name}:\n--- got\n{got:?}\n--- expected\n{expected:?}"
            )),
        }
        report.push(format!("{} {name}", if ok { "match" } else { "differ" }));
    }
    assert!(ran >= 10, "ran {ran} reduce-shaped vectors");
    assert!(
        failures.is_empty(),
        "{}\n\nall:\n{}",
        failures.join("\n\n"),
        report.join("\n")
    );
}
