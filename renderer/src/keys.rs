//! The unknown-key lint: keys a layer sets that neither an earlier layer
//! nor the chart's default values define (typos such as `persistance`).
//!
//! Chart defaults come from a chart directory's files or a packaged chart
//! (`.tgz`), both handed over as bytes; subcharts' defaults are placed
//! under their names, as Helm does.

use std::io::Read;

use crate::merge::{multiply, Candidate, MergeMode};
use crate::render::{format_path, Lint, LintKind};
use plimsoll_yaml::{self as yaml, Kind, Node};

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("{0}: {1}")]
    Yaml(String, yaml::SyntaxError),
    #[error("cannot unpack chart archive: {0}")]
    Archive(String),
}

/// One chart's default values and its subcharts'.
#[derive(Clone, Debug, Default)]
pub struct ChartFiles {
    /// `values.yaml` of the chart.
    pub values: Option<Vec<u8>>,
    /// (subchart name, its files).
    pub subcharts: Vec<(String, ChartFiles)>,
}

/// Builds the defaults tree of a chart: its values with each subchart's
/// defaults under the subchart's name.
pub fn defaults(chart: &ChartFiles) -> Result<Node, ChartError> {
    let mut acc = Candidate::empty();
    for (name, sub) in &chart.subcharts {
        let sub_defaults = defaults(sub)?;
        let mut wrapper = Node::empty_mapping();
        wrapper.content.push(Node::scalar("!!str", name));
        wrapper.content.push(sub_defaults);
        acc = merge_node(acc, wrapper)?;
    }
    if let Some(v) = &chart.values {
        for doc in
            yaml::parse_documents(v, 0).map_err(|e| ChartError::Yaml("values.yaml".into(), e))?
        {
            acc = merge_node(acc, doc)?;
        }
    }
    Ok(acc.node)
}

fn merge_node(acc: Candidate, node: Node) -> Result<Candidate, ChartError> {
    let doc = Candidate {
        node,
        leading_content: String::new(),
        trailing_content: String::new(),
    };
    multiply(acc, doc, MergeMode::Replace, &mut Vec::new())
        .map_err(|e| ChartError::Archive(e.to_string()))
}

/// Largest unpacked chart archive read (a `.tgz` is untrusted input).
const MAX_UNPACKED: u64 = 256 * 1024 * 1024;

/// Reads a packaged chart (`helm package` output: gzip'd tar).
pub fn chart_from_tgz(bytes: &[u8]) -> Result<ChartFiles, ChartError> {
    let entries = tar_entries(bytes)?;
    // Paths look like CHART/values.yaml, CHART/charts/SUB/values.yaml,
    // CHART/charts/SUB.tgz.
    Ok(chart_from_entries(&entries, 1))
}

/// The `name` and `version` of a packaged chart's `Chart.yaml` (the
/// archive's top directory), to check that a repository served the chart
/// that was asked for.
pub fn chart_metadata(bytes: &[u8]) -> Result<(String, String), ChartError> {
    let entries = tar_entries(bytes)?;
    let (_, data) = entries
        .iter()
        .find(|(p, _)| p.len() == 2 && p[1] == "Chart.yaml")
        .ok_or_else(|| ChartError::Archive("the archive has no CHART/Chart.yaml".into()))?;
    let docs =
        yaml::parse_documents(data, 0).map_err(|e| ChartError::Yaml("Chart.yaml".into(), e))?;
    let root = docs
        .first()
        .map(Node::unwrap_document)
        .ok_or_else(|| ChartError::Archive("Chart.yaml is empty".into()))?;
    let field = |k: &str| {
        root.get(k)
            .filter(|n| n.kind == Kind::Scalar)
            .map(|n| n.value.clone())
            .ok_or_else(|| ChartError::Archive(format!("Chart.yaml has no {k}")))
    };
    Ok((field("name")?, field("version")?))
}

fn chart_from_entries(entries: &[Entry], depth: usize) -> ChartFiles {
    let mut chart = ChartFiles::default();
    let mut subs: Vec<String> = Vec::new();
    for (path, data) in entries {
        if path.len() == depth + 1 && path[depth] == "values.yaml" {
            chart.values = Some(data.clone());
        }
        if path.len() >= depth + 2 && path[depth] == "charts" {
            let sub = &path[depth + 1];
            if path.len() == depth + 2 && sub.ends_with(".tgz") {
                if let Ok(c) = chart_from_tgz(data) {
                    let name = sub.trim_end_matches(".tgz");
                    // Packaged subcharts are named NAME-VERSION.tgz.
                    let name = match name.rfind('-') {
                        Some(i) if name[i + 1..].starts_with(|c: char| c.is_ascii_digit()) => {
                            &name[..i]
                        }
                        _ => name,
                    };
                    chart.subcharts.push((name.to_string(), c));
                }
            } else if path.len() > depth + 2 && !subs.contains(sub) {
                subs.push(sub.clone());
            }
        }
    }
    for sub in subs {
        let inner: Vec<Entry> = entries
            .iter()
            .filter(|(p, _)| p.len() > depth + 2 && p[depth] == "charts" && p[depth + 1] == sub)
            .map(|(p, d)| (p[depth + 1..].to_vec(), d.clone()))
            .collect();
        chart.subcharts.push((sub, chart_from_entries(&inner, 1)));
    }
    chart
}

/// A file of an archive: path segments and contents.
type Entry = (Vec<String>, Vec<u8>);

/// Regular files of a gzip'd tar archive (GNU long names and PAX paths
/// included, as the `tar` crate reads them), paths split into segments;
/// at most [`MAX_UNPACKED`] bytes in all.
fn tar_entries(tgz: &[u8]) -> Result<Vec<Entry>, ChartError> {
    let err = |e: std::io::Error| ChartError::Archive(e.to_string());
    let gz = flate2::read::GzDecoder::new(tgz).take(MAX_UNPACKED);
    let mut archive = tar::Archive::new(gz);
    let mut out = Vec::new();
    for entry in archive.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let segs: Vec<String> = entry
            .path()
            .map_err(err)?
            .to_string_lossy()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(err)?;
        out.push((segs, data));
    }
    Ok(out)
}

/// Keys set by each layer that are defined neither by an earlier layer nor
/// by the chart defaults. `global` is free-form in Helm and never checked;
/// an empty or null default mapping accepts any key below it.
pub fn unknown_keys(
    release: &str,
    files: &[(String, Vec<u8>, MergeMode)],
    defaults: &Node,
) -> Result<Vec<Lint>, crate::yq::LayerError> {
    let mut lints = Vec::new();
    let mut acc = Candidate::empty();
    for (i, (path, bytes, mode)) in files.iter().enumerate() {
        let layer = [crate::yq::Layer {
            name: path,
            bytes,
            mode: *mode,
        }];
        let this = crate::yq::merge_layers(&layer, &mut Vec::new())?;
        let mut keys = Vec::new();
        check(
            &this.node,
            defaults.unwrap_document(),
            Some(acc.node.unwrap_document()),
            &mut keys,
            &mut lints,
            release,
            path,
        );
        // Advance the accumulator with this layer's documents.
        let docs = yaml::parse_documents(crate::yq::split_leading_content(bytes).1, i as u32)
            .unwrap_or_default();
        for doc in docs {
            let d = Candidate {
                node: doc,
                leading_content: String::new(),
                trailing_content: String::new(),
            };
            if let Ok(next) = multiply(acc.clone(), d, *mode, &mut Vec::new()) {
                acc = next;
            }
        }
    }
    Ok(lints)
}

fn check(
    layer: &Node,
    defaults: &Node,
    earlier: Option<&Node>,
    path: &mut Vec<String>,
    lints: &mut Vec<Lint>,
    release: &str,
    file: &str,
) {
    if layer.kind != Kind::Mapping {
        return;
    }
    let open_default = defaults.kind != Kind::Mapping || defaults.content.is_empty();
    for (k, v) in layer.pairs() {
        if path.is_empty() && k.value == "global" {
            continue;
        }
        let in_defaults = if open_default {
            None
        } else {
            defaults.get(&k.value)
        };
        let in_earlier = earlier
            .filter(|e| e.kind == Kind::Mapping)
            .and_then(|e| e.get(&k.value));
        path.push(k.value.clone());
        if open_default && defaults.kind == Kind::Mapping {
            // `key: {}` in the chart accepts anything below it.
        } else if in_defaults.is_none() && in_earlier.is_none() && defaults.kind == Kind::Mapping {
            lints.push(Lint {
                kind: LintKind::UnknownKey,
                release: release.to_string(),
                file: file.to_string(),
                line: k.origin.line,
                column: k.origin.column,
                message: format!(
                    "`{}` is not a key of the chart's values nor of an earlier layer (typo?)",
                    format_path(path)
                ),
            });
            path.pop();
            continue;
        }
        if let Some(d) = in_defaults {
            check(v, d, in_earlier, path, lints, release, file);
        } else if let Some(e) = in_earlier {
            // Defined only by an earlier layer: check below against it.
            let empty = Node::empty_mapping();
            check(v, &empty, Some(e), path, lints, release, file);
        }
        path.pop();
    }
}
