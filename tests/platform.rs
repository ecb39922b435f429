//! Platform releases (seed 001) as data: every move between two tags of
//! ThingPark's real release matrix (`fixtures/thingpark/release-matrix.tsv`),
//! planned from a cluster running the first tag's charts, and the outcome
//! in `fixtures/platform/thingpark-moves.txt` (`UPDATE_EXPECT=1` rewrites
//! it; review the diff). Spot checks state the vendor's rules by hand.

use std::collections::BTreeMap;
use std::path::Path;

use plimsoll_planner::platform::{MoveRefusal, Platform, PlatformRelease, PlatformVersion};
use plimsoll_renderer::manifest::Manifest;

mod support;

fn matrix() -> Platform {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/thingpark/release-matrix.tsv");
    let m = Manifest::parse("release-matrix.tsv", &std::fs::read(path).unwrap()).unwrap();
    Platform {
        manifest: m.file.clone(),
        releases: m
            .releases
            .iter()
            .map(|r| PlatformRelease {
                tag: r.tag.clone(),
                charts: r.charts.clone(),
            })
            .collect(),
        target: String::new(),
        // One Helm release per chart, named after it.
        charts: m.charts.iter().map(|c| (c.clone(), c.clone())).collect(),
    }
}

/// The cluster runs `from`'s charts; the plan asks for `to`.
fn outcome(p: &Platform, from: &BTreeMap<String, String>, to: &str) -> String {
    let p = Platform {
        target: to.to_string(),
        ..p.clone()
    };
    match p.plan_move(from) {
        Ok(m) => match m.from {
            Some(f) if f == m.to => "nothing to move".into(),
            Some(f) if m.completing => format!("ok: completes {f} -> {}", m.to),
            Some(f) => format!("ok: {f} -> {}", m.to),
            None => "ok: install".into(),
        },
        Err(MoveRefusal::Downgrade { from, .. }) => format!("refused: downgrade from {from}"),
        Err(MoveRefusal::MajorNotFromLatest { from, latest, .. }) => {
            format!("refused: major step from {from}, not from {latest}")
        }
        Err(MoveRefusal::Unordered { tag }) => format!("refused: {tag} is not a version"),
        Err(MoveRefusal::Mixed { .. }) => "refused: mixed".into(),
    }
}

fn charts_of(p: &Platform, tag: &str) -> BTreeMap<String, String> {
    p.releases
        .iter()
        .find(|r| r.tag == tag)
        .unwrap()
        .charts
        .clone()
}

#[test]
fn every_move_between_real_tags_follows_the_vendor_rules() {
    let p = matrix();
    let mut table = String::from("# from\tto\toutcome (the cluster runs from's charts)\n");
    for from in &p.releases {
        for to in &p.releases {
            table.push_str(&format!(
                "{}\t{}\t{}\n",
                from.tag,
                to.tag,
                outcome(&p, &from.charts, &to.tag)
            ));
        }
    }
    support::golden("platform", "thingpark-moves.txt", &table);

    // By hand, from the seed and the matrix.
    let at = |from: &str, to: &str| outcome(&p, &charts_of(&p, from), to);
    assert_eq!(at("v7.2.2", "v7.2.2a"), "ok: v7.2.2 -> v7.2.2a");
    assert_eq!(
        at("v7.2.2", "v7.2.2c"),
        "ok: v7.2.2 -> v7.2.2c",
        "hotfixes in any forward order"
    );
    assert_eq!(at("v7.2.2c", "v7.2.2"), "refused: downgrade from v7.2.2c");
    assert_eq!(
        at("v7.2.2c", "v7.3.1"),
        "ok: v7.2.2c -> v7.3.1",
        "a minor step"
    );
    assert_eq!(at("v7.1.3a", "v7.3.6"), "ok: v7.1.3a -> v7.3.6");
    // The 1.x tags are the platform's first numbering; 7.1.0 is 1.0.3's
    // commit, so a cluster on 1.0.3's charts already runs 7.1.0.
    assert_eq!(at("v1.0.3", "v7.1.0"), "nothing to move");
    assert_eq!(
        at("v1.0.2", "v7.1.1"),
        "refused: major step from v1.0.2, not from v1.1.1"
    );
    // 1.1.1 and 7.1.1 are one commit: the cluster is at 7.1.1.
    assert_eq!(at("v1.1.1", "v7.1.2"), "ok: v7.1.1 -> v7.1.2");
    // 7.3.4c and 7.3.6 ship the same charts: the cluster is at 7.3.6.
    assert_eq!(at("v7.3.4c", "v7.3.6"), "nothing to move");
    assert_eq!(at("v7.3.4", "main"), "refused: main is not a version");
}

#[test]
fn a_major_step_only_from_the_latest_release_of_the_previous_line() {
    // The matrix with an 8.0 line (the `main` row as 8.0.0, a hotfix).
    let mut p = matrix();
    let main = charts_of(&p, "main");
    p.releases.retain(|r| r.tag != "main");
    p.releases.push(PlatformRelease {
        tag: "8.0.0".into(),
        charts: main.clone(),
    });
    let mut hotfix = main.clone();
    hotfix.insert("thingpark-enterprise".into(), "2.0.1".into());
    p.releases.push(PlatformRelease {
        tag: "8.0.1".into(),
        charts: hotfix,
    });
    let at = |from: &str, to: &str| outcome(&p, &charts_of(&p, from), to);
    assert_eq!(at("v7.3.6", "8.0.0"), "ok: v7.3.6 -> 8.0.0");
    assert_eq!(at("v7.3.6", "8.0.1"), "ok: v7.3.6 -> 8.0.1");
    assert_eq!(
        at("v7.3.4", "8.0.0"),
        "refused: major step from v7.3.4, not from v7.3.6"
    );
    assert_eq!(
        at("v7.2.2c", "8.0.1"),
        "refused: major step from v7.2.2c, not from v7.3.6"
    );
    assert_eq!(
        at("v7.3.4c", "8.0.0"),
        "ok: v7.3.6 -> 8.0.0",
        "7.3.4c's charts are 7.3.6's"
    );
    assert_eq!(at("8.0.1", "8.0.0"), "refused: downgrade from 8.0.1");

    // Interrupted between 7.3.6 and 8.0.0: the data charts moved, the
    // application charts did not. Completing the move is allowed; going
    // anywhere else is refused, naming which chart is at which release.
    let mut mixed = charts_of(&p, "v7.3.6");
    for c in ["thingpark-data-controllers", "thingpark-data"] {
        mixed.insert(c.into(), main[c].clone());
    }
    assert_eq!(
        outcome(&p, &mixed, "8.0.0"),
        "ok: completes v7.3.6 -> 8.0.0"
    );
    assert_eq!(
        outcome(&p, &mixed, "8.0.1"),
        "ok: completes v7.3.6 -> 8.0.1"
    );
    let refused = Platform {
        target: "v7.3.6".into(),
        ..p.clone()
    }
    .plan_move(&mixed)
    .unwrap_err();
    let MoveRefusal::Mixed { charts } = refused else {
        panic!("{refused:?}")
    };
    assert!(
        charts.contains(&(
            "thingpark-data".to_string(),
            "2.2.2".to_string(),
            vec!["8.0.0".to_string(), "8.0.1".to_string()]
        )),
        "{charts:?}"
    );
    // Nothing installed yet: an install of any release.
    assert_eq!(outcome(&p, &BTreeMap::new(), "8.0.0"), "ok: install");
    assert!(PlatformVersion::parse("v7.3.6") < PlatformVersion::parse("8.0.0"));
}
