//! Inputs the fuzzer once crashed on (fixtures/fuzz-regressions/): each
//! must now parse and merge, or fail with a positioned error, and what is
//! emitted must parse again.

use std::path::Path;

use plimsoll_renderer::yq::{eval_all, Layer};
use plimsoll_yaml as yaml;

#[test]
fn fuzz_findings_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/fuzz-regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("fixtures/fuzz-regressions") {
        let data = std::fs::read(entry.expect("entry").path()).expect("read");
        let (a, b) = match data.iter().position(|&c| c == 0) {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (&data[..], &b""[..]),
        };
        if let Ok(docs) = yaml::parse_documents(a, 0) {
            for d in &docs {
                let text = yaml::to_string(d, 2);
                // With explicit tags go-yaml's (and so our) output may not
                // re-parse; see ARCHITECTURE.md.
                if !a.contains(&b'!') {
                    assert!(
                        yaml::parse_documents(text.as_bytes(), 0).is_ok(),
                        "re-parse of {text:?}"
                    );
                }
            }
        }
        let layers = [
            Layer {
                name: "a",
                bytes: a,
                mode: Default::default(),
            },
            Layer {
                name: "b",
                bytes: b,
                mode: Default::default(),
            },
        ];
        match eval_all(&layers) {
            Ok(out) => {
                assert!(data.contains(&b'!') || yaml::parse_documents(out.as_bytes(), 0).is_ok())
            }
            Err(e) => assert!(e.to_string().contains(':'), "positioned error: {e}"),
        }
        n += 1;
    }
    assert!(n >= 2);
}
