//! The status page as data: each `fixtures/status/NAME.json` (a
//! `FleetStatus`, what `/status.json` serves) renders to `NAME.html`, and
//! to JSON that reads back as the same status. `UPDATE_EXPECT=1` rewrites
//! the expected files (review the diff).

use std::path::Path;

use plimsoll_daemon::status::{to_html, to_json, FleetStatus};

#[test]
fn pages_render_as_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/status");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "no cases in {}", dir.display());
    for input in entries {
        let text = std::fs::read_to_string(&input).unwrap();
        let status: FleetStatus =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let json = to_json(&status);
        let back: FleetStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back, status, "{} does not round-trip", input.display());
        let html = to_html(&status, 3);
        let expected = input.with_extension("html");
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&input, &json).unwrap();
            std::fs::write(&expected, &html).unwrap();
        }
        let want = std::fs::read_to_string(&expected)
            .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_EXPECT=1", expected.display()));
        assert_eq!(html, want, "differs from {}", expected.display());
        // Whatever a repository puts in names and messages stays text.
        assert!(!html.contains("<script"), "{}", input.display());
    }
}
