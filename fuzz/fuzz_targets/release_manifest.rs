//! Arbitrary bytes as a release manifest, in both forms (TSV and YAML):
//! refused with a position or accepted, never a panic or a hang; an
//! accepted manifest's tags and chart versions are plain (never a flag,
//! never a path), every release names every chart, and the platform move
//! between any two of its releases is decided without a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plimsoll_planner::platform::{Platform, PlatformRelease};
use plimsoll_renderer::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    for name in ["releases.tsv", "releases.yaml"] {
        match Manifest::parse(name, data) {
            Err(e) => assert!(e.line >= 1 && e.column >= 1, "{e}"),
            Ok(m) => {
                assert!(!m.releases.is_empty() && !m.charts.is_empty());
                for r in &m.releases {
                    assert!(!r.tag.starts_with('-') && !r.tag.contains('/'), "{}", r.tag);
                    assert_eq!(r.charts.len(), m.charts.len(), "{}", r.tag);
                    for v in r.charts.values() {
                        assert!(!v.starts_with('-') && !v.contains('/') && !v.contains(".."), "{v}");
                    }
                }
                let releases: Vec<PlatformRelease> = m
                    .releases
                    .iter()
                    .take(20)
                    .map(|r| PlatformRelease {
                        tag: r.tag.clone(),
                        charts: r.charts.clone(),
                    })
                    .collect();
                for from in &releases {
                    for to in &releases {
                        let p = Platform {
                            manifest: name.into(),
                            releases: releases.clone(),
                            target: to.tag.clone(),
                            charts: m.charts.iter().map(|c| (c.clone(), c.clone())).collect(),
                        };
                        let _ = p.plan_move(&from.charts);
                    }
                }
            }
        }
    }
});
