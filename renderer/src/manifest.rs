//! The release manifest: which chart version each platform release ships
//! (seed 001: "a ThingPark Enterprise release consists of 4 Helm Charts.
//! Upgrade must be done in the respect of version specified in Release
//! Manifest").
//!
//! Two forms, told apart by the file name:
//!
//! - TSV (`*.tsv`), the shape of ThingPark's release matrix: a header row
//!   `tag`, then columns; `commit` and `date` are ignored, every other
//!   column is a chart (a parenthesised note after the name is dropped:
//!   `thingpark-application-controllers(*enterprise-controllers before
//!   7.2.2)`); one row per release, its tag first.
//! - YAML (anything else):
//!
//!   ```yaml
//!   releases:
//!     - version: 7.3.6
//!       charts: {thingpark-data-controllers: 1.5.0, thingpark-data: 1.6.0}
//!   ```
//!
//! Every error names file:line:col. Nothing here does I/O.

use std::collections::BTreeMap;

use plimsoll_yaml::{self as yaml, Kind};

/// Columns of the TSV form that are not charts.
const NOT_CHARTS: [&str; 2] = ["commit", "date"];

/// Releases a manifest may list, and the charts of one: a manifest comes
/// from the repository and is untrusted.
pub const MAX_RELEASES: usize = 10_000;
pub const MAX_CHARTS: usize = 256;

/// One platform release: its tag and the chart version of each chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRelease {
    pub tag: String,
    pub charts: BTreeMap<String, String>,
    pub line: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The file, relative to the repository root.
    pub file: String,
    /// The charts it covers, in its order.
    pub charts: Vec<String>,
    pub releases: Vec<ManifestRelease>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ManifestError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl Manifest {
    /// Parses a manifest, TSV or YAML by its name.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if file.ends_with(".tsv") {
            parse_tsv(file, bytes)
        } else {
            parse_yaml(file, bytes)
        }
    }

    pub fn release(&self, tag: &str) -> Option<&ManifestRelease> {
        self.releases.iter().find(|r| r.tag == tag)
    }
}

/// A tag or chart version as it may appear: it is shown, compared and
/// passed to helm as `--version`'s value, so plain characters only.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('-')
        && !s.contains("..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

fn parse_tsv(file: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let err = |line: usize, column: usize, message: String| ManifestError {
        file: file.to_string(),
        line: line as u32,
        column: column as u32,
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        err(line, 1, "invalid UTF-8".into())
    })?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(err(
            1,
            1,
            "an empty manifest (a header row `tag<TAB>CHART...` first)".into(),
        ));
    };
    // Column index -> chart name, for the chart columns.
    let mut charts: Vec<(usize, String)> = Vec::new();
    let mut col = 1;
    for (i, cell) in header.split('\t').enumerate() {
        let name = cell.split('(').next().unwrap_or("").trim().to_string();
        if i == 0 {
            if name != "tag" {
                return Err(err(
                    1,
                    1,
                    format!("the header starts with {name:?}, not `tag`"),
                ));
            }
        } else if !name.is_empty() && !NOT_CHARTS.contains(&name.as_str()) {
            if !plain(&name) {
                return Err(err(
                    1,
                    col,
                    format!("chart column {name:?} is not a chart name"),
                ));
            }
            if charts.iter().any(|(_, c)| *c == name) {
                return Err(err(1, col, format!("chart column {name:?} appears twice")));
            }
            charts.push((i, name));
        }
        col += cell.chars().count() + 1;
    }
    if charts.is_empty() {
        return Err(err(1, 1, "the header names no chart column".into()));
    }
    if charts.len() > MAX_CHARTS {
        return Err(err(1, 1, format!("more than {MAX_CHARTS} chart columns")));
    }
    let mut releases: Vec<ManifestRelease> = Vec::new();
    for (n, row) in lines {
        let line = n + 1;
        let cells: Vec<&str> = row.split('\t').collect();
        let at = |i: usize| -> usize {
            cells[..i]
                .iter()
                .map(|c| c.chars().count() + 1)
                .sum::<usize>()
                + 1
        };
        let tag = cells[0].trim();
        if !plain(tag) {
            return Err(err(
                line,
                1,
                format!("release tag {tag:?} is not a version"),
            ));
        }
        if releases.iter().any(|r| r.tag == tag) {
            return Err(err(line, 1, format!("release {tag} appears twice")));
        }
        let mut versions = BTreeMap::new();
        for (i, chart) in &charts {
            let v = cells.get(*i).map(|c| c.trim()).unwrap_or("");
            let column = if *i < cells.len() {
                at(*i)
            } else {
                row.chars().count() + 1
            };
            if v.is_empty() {
                return Err(err(
                    line,
                    column,
                    format!("release {tag} has no version of chart {chart}"),
                ));
            }
            if !plain(v) {
                return Err(err(
                    line,
                    column,
                    format!("release {tag}: {v:?} is not a chart version"),
                ));
            }
            versions.insert(chart.clone(), v.to_string());
        }
        releases.push(ManifestRelease {
            tag: tag.to_string(),
            charts: versions,
            line: line as u32,
        });
        if releases.len() > MAX_RELEASES {
            return Err(err(line, 1, format!("more than {MAX_RELEASES} releases")));
        }
    }
    if releases.is_empty() {
        return Err(err(1, 1, "the manifest lists no release".into()));
    }
    Ok(Manifest {
        file: file.to_string(),
        charts: charts.into_iter().map(|(_, c)| c).collect(),
        releases,
    })
}

fn parse_yaml(file: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let err = |n: &yaml::Node, message: String| ManifestError {
        file: file.to_string(),
        line: n.origin.line,
        column: n.origin.column,
        message,
    };
    let docs = yaml::parse_documents(bytes, 0).map_err(|e| ManifestError {
        file: file.to_string(),
        line: e.line as u32,
        column: e.column as u32,
        message: e.message,
    })?;
    let Some(root) = docs.first() else {
        return Err(ManifestError {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: "an empty manifest".into(),
        });
    };
    let root = if root.kind == Kind::Document {
        root.content.first().unwrap_or(root)
    } else {
        root
    };
    let scalar = |n: &yaml::Node, what: &str| -> Result<String, ManifestError> {
        match n.kind {
            Kind::Scalar if !n.is_null() => Ok(n.value.clone()),
            _ => Err(err(n, format!("{what} must be a string"))),
        }
    };
    if root.kind != Kind::Mapping {
        return Err(err(
            root,
            "the manifest must be a mapping with `releases:`".into(),
        ));
    }
    for (k, _) in root.pairs() {
        if k.value != "releases" {
            return Err(err(
                k,
                format!("unknown field {:?} (expected: releases)", k.value),
            ));
        }
    }
    let list = root
        .get("releases")
        .ok_or_else(|| err(root, "the manifest has no `releases:`".into()))?;
    if list.kind != Kind::Sequence {
        return Err(err(list, "releases must be a sequence".into()));
    }
    let mut charts: Vec<String> = Vec::new();
    let mut releases: Vec<ManifestRelease> = Vec::new();
    for item in &list.content {
        if item.kind != Kind::Mapping {
            return Err(err(
                item,
                "a release must be a mapping (version, charts)".into(),
            ));
        }
        for (k, _) in item.pairs() {
            if k.value != "version" && k.value != "charts" {
                return Err(err(
                    k,
                    format!(
                        "unknown field {:?} in a release (expected: version, charts)",
                        k.value
                    ),
                ));
            }
        }
        let tag_node = item
            .get("version")
            .ok_or_else(|| err(item, "a release needs `version`".into()))?;
        let tag = scalar(tag_node, "version")?;
        if !plain(&tag) {
            return Err(err(
                tag_node,
                format!("release version {tag:?} is not a version"),
            ));
        }
        if releases.iter().any(|r| r.tag == tag) {
            return Err(err(tag_node, format!("release {tag} appears twice")));
        }
        let map = item
            .get("charts")
            .ok_or_else(|| err(item, format!("release {tag} needs `charts`")))?;
        if map.kind != Kind::Mapping {
            return Err(err(
                map,
                "charts must be a mapping of chart to version".into(),
            ));
        }
        let mut versions = BTreeMap::new();
        for (k, v) in map.pairs() {
            let version = scalar(v, "a chart version").map_err(|_| {
                err(
                    v,
                    format!("release {tag} has no version of chart {}", k.value),
                )
            })?;
            if !plain(&k.value) || !plain(&version) {
                return Err(err(
                    v,
                    format!(
                        "release {tag}: {}: {version:?} is not a chart version",
                        k.value
                    ),
                ));
            }
            if !charts.contains(&k.value) {
                charts.push(k.value.clone());
            }
            versions.insert(k.value.clone(), version);
        }
        releases.push(ManifestRelease {
            tag,
            charts: versions,
            line: tag_node.origin.line,
        });
        if releases.len() > MAX_RELEASES || charts.len() > MAX_CHARTS {
            return Err(err(
                item,
                format!("more than {MAX_RELEASES} releases or {MAX_CHARTS} charts"),
            ));
        }
    }
    // Every release names every chart.
    for (r, item) in releases.iter().zip(&list.content) {
        if let Some(missing) = charts.iter().find(|c| !r.charts.contains_key(*c)) {
            return Err(err(
                item,
                format!("release {} has no version of chart {missing}", r.tag),
            ));
        }
    }
    if releases.is_empty() {
        return Err(err(list, "the manifest lists no release".into()));
    }
    Ok(Manifest {
        file: file.to_string(),
        charts,
        releases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_thingpark_matrix_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/thingpark/release-matrix.tsv"
        );
        let m = Manifest::parse("release-matrix.tsv", &std::fs::read(path).unwrap()).unwrap();
        assert_eq!(
            m.charts,
            [
                "thingpark-data-controllers",
                "thingpark-data",
                "thingpark-application-controllers",
                "thingpark-enterprise"
            ]
        );
        let r = m.release("v7.3.6").unwrap();
        assert_eq!(r.charts["thingpark-enterprise"], "1.7.6");
        assert_eq!(m.release("main").unwrap().charts["thingpark-data"], "2.2.2");
    }

    #[test]
    fn errors_name_the_place() {
        let e = Manifest::parse("m.tsv", b"tag\tcommit\ta\tb\nv1\tx\t1.0.0\t\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 12), "{e}");
        assert!(e.message.contains("no version of chart b"), "{e}");
        let e = Manifest::parse("m.tsv", b"release\ta\n1\t1\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        let e = Manifest::parse("m.tsv", b"tag\ta\nv1\t1.0\nv1\t1.1\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("m.tsv:3:1: release v1 appears twice"),
            "{e}"
        );
        let e = Manifest::parse("m.tsv", b"tag\ta\nv1\t--set=x\n").unwrap_err();
        assert!(e.message.contains("not a chart version"), "{e}");
        let e = Manifest::parse(
            "m.yaml",
            b"releases:\n  - version: 1.0.0\n    charts: {a: 1.0.0, b: 2.0.0}\n  - version: 1.0.1\n    charts: {a: 1.0.1}\n",
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (4, "release 1.0.1 has no version of chart b"),
            "{e}"
        );
        let ok = Manifest::parse(
            "m.yaml",
            b"releases:\n  - version: 1.0.0\n    charts: {a: 1.0.0}\n  - version: 1.0.0a\n    charts: {a: 1.0.1}\n",
        )
        .unwrap();
        assert_eq!(ok.release("1.0.0a").unwrap().charts["a"], "1.0.1");
    }
}
