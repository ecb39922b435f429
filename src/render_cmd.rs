//! The commands that need no cluster: `merge`, `render`, `explain`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use plimsoll_renderer::keys;
use plimsoll_renderer::merge::MergeMode;
use plimsoll_renderer::render::{self, Rendered};
use plimsoll_renderer::yq::{self, Layer};
use plimsoll_syncer::source::repo_reader;

use crate::output;
use crate::{Common, Format};

pub fn merge(mode: MergeMode, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|f| {
            plimsoll_syncer::source::read_input(f)
                .with_context(|| format!("cannot read {}", f.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let layers: Vec<Layer<'_>> = names
        .iter()
        .zip(&contents)
        .map(|(name, bytes)| Layer { name, bytes, mode })
        .collect();
    let merged = yq::merge_layers(&layers, &mut Vec::new())?;
    let out = yq::print(&merged);
    // Print what yq prints, but say so when that is not valid YAML (only
    // aliases and explicit tags can make it so; without them the re-parse
    // is skipped, it would cost a third of the command).
    let reparsed = if merged.node.prints_reparsable() {
        Ok(())
    } else {
        plimsoll_yaml::parse_documents(out.as_bytes(), 0).map(drop)
    };
    if let Err(e) = reparsed {
        eprintln!(
            "warning: the merged output does not parse again ({e}); yq prints the same, \
             and Helm could not read it (an alias before its anchor?)"
        );
    }
    std::io::stdout().write_all(out.as_bytes())?;
    // The process ends next: freeing the trees one node at a time would
    // cost a tenth of the command.
    std::mem::forget((merged, contents));
    Ok(ExitCode::SUCCESS)
}

fn planned_outputs(
    rendered: &Rendered,
    repo: &Path,
    out: Option<&Path>,
    format: Format,
) -> anyhow::Result<Vec<output::Output>> {
    let mut outputs = Vec::new();
    for r in &rendered.releases {
        let (rel_path, text) = match format {
            Format::Yaml => (r.output_path.clone(), r.text.clone()),
            Format::Json => {
                let p = Path::new(&r.output_path)
                    .with_extension("json")
                    .display()
                    .to_string();
                let text = r.values_json()?;
                (p, text)
            }
        };
        outputs.push(output::Output {
            path: place(repo, out, &rel_path),
            text,
        });
    }
    outputs.push(output::Output {
        path: place(repo, out, &rendered.lock_path),
        text: render::lock_text(rendered),
    });
    Ok(outputs)
}

/// Where an output path (relative to the repository, under the stack's
/// output directory) goes when `--out` overrides that directory.
fn place(repo: &Path, out: Option<&Path>, rel: &str) -> PathBuf {
    match out {
        Some(dir) => dir.join(Path::new(rel).file_name().unwrap_or_default()),
        None => repo.join(rel),
    }
}

pub fn render(
    common: &Common,
    out: Option<&Path>,
    check: bool,
    format: Format,
    strict: bool,
    strict_keys: bool,
) -> anyhow::Result<ExitCode> {
    let (stack, vars) = common.source().load_stack()?;
    let read = repo_reader(&common.repo);
    let rendered = render::render(&stack, &vars, &read)?;

    let mut lints: Vec<render::Lint> = rendered
        .releases
        .iter()
        .flat_map(|r| r.lints.clone())
        .collect();
    if strict_keys {
        for r in &rendered.releases {
            match plimsoll_syncer::source::chart_defaults(&common.repo, &r.release.chart)? {
                Some(defaults) => {
                    let files = render::load_layers(&r.release, &vars, &read)?;
                    lints.extend(keys::unknown_keys(&r.release.name, &files, &defaults)?);
                }
                None => eprintln!(
                    "note: release {}: chart {} is not available locally; unknown keys not checked",
                    r.release.name, r.release.chart
                ),
            }
        }
    }
    let level = if strict { "error" } else { "warning" };
    for l in &lints {
        eprintln!("{level}: {l}");
    }
    if strict && !lints.is_empty() {
        eprintln!(
            "error: {} lint finding(s) with --strict; nothing written",
            lints.len()
        );
        return Ok(ExitCode::from(1));
    }

    let outputs = planned_outputs(&rendered, &common.repo, out, format)?;
    let mut targets = std::collections::HashSet::new();
    for o in &outputs {
        if !targets.insert(o.path.clone()) {
            bail!(
                "two outputs go to {} (with --out, outputs keep only their file names); nothing is written",
                o.path.display()
            );
        }
    }
    let within = out.is_none().then_some(common.repo.as_path());
    if check {
        return check_outputs(&outputs, &common.repo, out, &rendered);
    }
    output::write_all_atomically(&outputs, within)?;
    for o in &outputs {
        println!("wrote {}", o.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `render --check`: every output as rendered, none a symlink (never
/// followed), and no output left from a release that was removed (named
/// by the lock file on disk).
fn check_outputs(
    outputs: &[output::Output],
    repo: &Path,
    out: Option<&Path>,
    rendered: &Rendered,
) -> anyhow::Result<ExitCode> {
    let mut stale = 0;
    for o in outputs {
        let is_link = std::fs::symlink_metadata(&o.path)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if is_link {
            println!("symlink (not followed): {}", o.path.display());
            stale += 1;
            continue;
        }
        match std::fs::read(&o.path) {
            Ok(disk) if disk == o.text.as_bytes() => {}
            Ok(_) => {
                println!("stale: {}", o.path.display());
                stale += 1;
            }
            Err(_) => {
                println!("missing: {}", o.path.display());
                stale += 1;
            }
        }
    }
    let lock = place(repo, out, &rendered.lock_path);
    for (release, path) in leftovers(&lock, rendered) {
        let at = place(repo, out, &path);
        if std::fs::symlink_metadata(&at).is_ok() {
            println!(
                "left over: {} (release {release} is no longer in the stack; remove it)",
                at.display()
            );
            stale += 1;
        }
    }
    if stale > 0 {
        eprintln!("{stale} output(s) out of date: run `plimsoll render` and commit the result");
        return Ok(ExitCode::from(1));
    }
    println!("up to date: {} file(s)", outputs.len());
    Ok(ExitCode::SUCCESS)
}

/// Outputs the lock file on disk records for releases that the render no
/// longer has: `(release, output path)`. Nothing when there is no lock
/// file, or it is a symlink, or it does not parse.
fn leftovers(lock: &Path, rendered: &Rendered) -> Vec<(String, String)> {
    let is_file = std::fs::symlink_metadata(lock).is_ok_and(|m| m.is_file());
    let Some(bytes) = is_file
        .then(|| plimsoll_syncer::source::read_input(lock).ok())
        .flatten()
    else {
        return Vec::new();
    };
    let Ok(docs) = plimsoll_yaml::parse_documents(&bytes, 0) else {
        return Vec::new();
    };
    let current: std::collections::HashSet<Option<String>> = rendered
        .releases
        .iter()
        .map(|r| render::normalize(&r.output_path))
        .collect();
    let mut out = Vec::new();
    let root = docs.first().map(plimsoll_yaml::Node::unwrap_document);
    let releases = root.and_then(|r| r.get("releases"));
    for r in releases.map(|r| r.content.as_slice()).unwrap_or_default() {
        let (Some(name), Some(path)) = (r.get("name"), r.get("output")) else {
            continue;
        };
        // Only paths inside the repository are ever looked at.
        let normalized = render::normalize(&path.value);
        if normalized.is_some() && !current.contains(&normalized) {
            out.push((name.value.clone(), normalized.unwrap_or_default()));
        }
    }
    out
}

pub fn explain(common: &Common, release: &str, path: &str) -> anyhow::Result<ExitCode> {
    let (stack, vars) = common.source().load_stack()?;
    let Some(rel) = stack.release(release) else {
        let names: Vec<&str> = stack.releases.iter().map(|r| r.name.as_str()).collect();
        bail!("no release {release:?} (releases: {})", names.join(", "));
    };
    let keys = render::parse_path(path);
    let read = repo_reader(&common.repo);
    let steps = render::explain(rel, &vars, &read, &keys)?;
    let mut out = std::io::stdout().lock();
    let Some(last) = steps.last() else {
        writeln!(out, "{path}: not set by any layer of {release}")?;
        return Ok(ExitCode::from(1));
    };
    match &last.value {
        Some(v) => writeln!(out, "{path} = {}", indent_block(v))?,
        None => writeln!(out, "{path} is absent from the rendered values")?,
    }
    writeln!(out, "  set by {}:{}", last.file, last.line)?;
    for s in steps.iter().rev().skip(1) {
        let what = match &s.value {
            Some(v) => indent_block(v),
            None => "(absent)".to_string(),
        };
        writeln!(out, "  overrode {what}  ({}:{})", s.file, s.line)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn indent_block(v: &str) -> String {
    if v.contains('\n') {
        format!("\n    {}", v.replace('\n', "\n    "))
    } else {
        v.to_string()
    }
}
