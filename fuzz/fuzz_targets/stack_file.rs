//! Arbitrary bytes as a stack file (`plimsoll.yaml`): validation must
//! refuse or accept, never panic or hang, and say where.
//!
//! Invariants beyond "no panic, no hang":
//! - a refusal names a position (line and column from 1);
//! - an accepted stack holds only what validation promises: release names
//!   as Helm requires, no path leaving the repository, no value that helm
//!   could read as a flag.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plimsoll_renderer::stack;

fuzz_target!(|data: &[u8]| {
    match stack::parse("plimsoll.yaml", data) {
        Err(e) => assert!(e.line >= 1 && e.column >= 1, "{e}"),
        Ok(s) => {
            for r in &s.releases {
                assert!(!r.name.is_empty() && r.name.len() <= 53, "{}", r.name);
                assert!(!r.name.starts_with('-') && !r.chart.starts_with('-'));
                assert!(!r.version.starts_with('-'), "{}", r.version);
                for p in std::iter::once(&r.output).chain(r.layers.iter().map(|l| &l.path)) {
                    assert!(
                        !p.starts_with('/') && !p.split('/').any(|s| s == ".."),
                        "{p}"
                    );
                }
            }
            for v in &s.variables {
                for value in &v.allowed {
                    assert!(!value.contains('/') && !value.contains(".."), "{value}");
                }
            }
        }
    }
});
