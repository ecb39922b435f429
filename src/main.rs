//! The `plimsoll` command: glue between the command line and the crates.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use plimsoll_renderer::merge::MergeMode;
use plimsoll_renderer::yq::{self, Layer};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("merge") => cmd_merge(&args[1..]),
        _ => {
            eprintln!("usage: plimsoll merge [--mode MODE] FILE...");
            Ok(ExitCode::from(2))
        }
    }
}

fn cmd_merge(args: &[String]) -> anyhow::Result<ExitCode> {
    let mut mode = MergeMode::Replace;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mode" => {
                let m = it.next().context("--mode needs a value")?;
                mode = MergeMode::parse(m).with_context(|| format!("unknown merge mode {m:?}"))?;
            }
            _ => files.push(a.clone()),
        }
    }
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("cannot read {f}")))
        .collect::<anyhow::Result<_>>()?;
    let layers: Vec<Layer<'_>> = files
        .iter()
        .zip(&contents)
        .map(|(name, bytes)| Layer { name, bytes, mode })
        .collect();
    let out = yq::eval_all(&layers)?;
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
