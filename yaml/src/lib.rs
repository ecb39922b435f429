//! A YAML layer built for lossless layered rendering.
//!
//! The pipeline mirrors libyaml: [`scanner`] (characters to tokens, plus
//! comment records), [`parser`] (tokens to events, comments attached),
//! [`compose`] (events to [`Node`] trees), and back out through
//! [`emitter`] (nodes to events to text). Comment placement and output
//! formatting reproduce go-yaml v3, the library behind yq v4, because the
//! renderer's output must be byte-identical to yq's.
//!
//! Limits (see ARCHITECTURE.md): inputs larger than [`MAX_INPUT_BYTES`],
//! more than [`MAX_DOCUMENTS`] documents or [`MAX_NODES`] nodes in a file,
//! nesting deeper than [`scanner::MAX_DEPTH`], invalid UTF-8 and control
//! characters are refused. Aliases are never expanded while parsing or
//! merging; [`json`] expands them within its budget.

mod chars;
pub mod compose;
pub mod emitter;
pub mod json;
pub mod node;
mod parser;
pub mod resolve;
pub mod scanner;
mod token;

pub use node::{Kind, Node, Origin, Style};
pub use token::Mark;

/// Largest accepted input file.
pub const MAX_INPUT_BYTES: usize = 16 * 1024 * 1024;

/// Most documents one file may hold (16 MiB of `---\na: 1\n` would be
/// 1.6 million).
pub const MAX_DOCUMENTS: usize = 10_000;

/// Most nodes (scalars, collections, aliases) one file may hold: a map of
/// a million keys (two million nodes) fits, and the tree stays under about
/// 600 MB. Real values files hold thousands; a chart's rendered manifests
/// with its CRDs, a few hundred thousand.
pub const MAX_NODES: usize = 2_500_000;

/// The stack a thread needs to parse, merge, emit, convert and drop the
/// deepest input the limits allow ([`scanner::MAX_DEPTH`] and
/// [`json::MAX_EXPANDED_DEPTH`]); the tree walks recurse. Every thread
/// that handles YAML from a repository (the binary's main work, its
/// runtimes and pools) is given this much; a default 2 MiB thread
/// overflows at about 900 levels in a debug build.
pub const STACK_BYTES: usize = 64 * 1024 * 1024;

/// A malformed or refused input, with the one-based position of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl SyntaxError {
    pub(crate) fn new(mark: Mark, context: &str, problem: &str) -> SyntaxError {
        let message = if context.is_empty() {
            problem.to_string()
        } else {
            format!("{problem} ({context})")
        };
        SyntaxError {
            line: (mark.line.max(0) + 1) as usize,
            column: (mark.column.max(0) + 1) as usize,
            message,
        }
    }

    fn at(line: usize, column: usize, message: &str) -> SyntaxError {
        SyntaxError {
            line,
            column,
            message: message.to_string(),
        }
    }
}

/// Checks what the scanner must never see: oversized input, invalid UTF-8,
/// and characters YAML does not allow in a stream.
pub fn check_input(input: &[u8]) -> Result<(), SyntaxError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(SyntaxError::at(
            1,
            1,
            &format!(
                "file is larger than the {} MiB limit",
                MAX_INPUT_BYTES / (1024 * 1024)
            ),
        ));
    }
    let text = match std::str::from_utf8(input) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = position_of(input, e.valid_up_to());
            return Err(SyntaxError::at(line, column, "invalid UTF-8"));
        }
    };
    let bytes = text.as_bytes();
    let mut idx = 0;
    while idx < bytes.len() {
        let b = bytes[idx];
        // Fast path: printable ASCII, tab, LF, CR.
        if (0x20..0x7F).contains(&b) || b == b'\t' || b == b'\n' || b == b'\r' {
            idx += 1;
            continue;
        }
        let ch = text[idx..].chars().next().unwrap_or('\0');
        let allowed = ch == '\u{85}'
            || ('\u{A0}'..='\u{D7FF}').contains(&ch)
            || ('\u{E000}'..='\u{FFFD}').contains(&ch)
            || ch >= '\u{10000}';
        if !allowed {
            let (line, column) = position_of(input, idx);
            return Err(SyntaxError::at(
                line,
                column,
                &format!("control character U+{:04X} is not allowed", ch as u32),
            ));
        }
        idx += ch.len_utf8();
    }
    Ok(())
}

fn position_of(input: &[u8], offset: usize) -> (usize, usize) {
    let before = &input[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Parses every document of a stream. `layer` is recorded in each node's
/// [`Origin`].
pub fn parse_documents(input: &[u8], layer: u32) -> Result<Vec<Node>, SyntaxError> {
    check_input(input)?;
    parse_checked(input, layer)
}

/// [`parse_documents`] for input that already passed [`check_input`].
pub fn parse_checked(input: &[u8], layer: u32) -> Result<Vec<Node>, SyntaxError> {
    let mut composer = compose::Composer::new(input, layer);
    let mut docs = Vec::new();
    while let Some(doc) = composer.next_document()? {
        docs.push(doc);
    }
    Ok(docs)
}

/// Formats a node as one YAML document, go-yaml v3 style.
pub fn to_string(node: &Node, indent: usize) -> String {
    emitter::emit_document(node, indent)
}
