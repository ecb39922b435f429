//! `yq eval-all '. as $item ireduce ({}; . * $item)' FILE...`, whole.
//!
//! On top of the merge this reproduces yq's reading and printing: the first
//! file's leading comment and `---` lines are kept aside and printed first
//! ("leading content"); later files' leading comments go through the YAML
//! parser and land on nodes; null documents are skipped; a document's foot
//! comment is kept aside and printed after the result.

use std::collections::HashMap;

use crate::merge::{multiply, Candidate, MergeError, MergeEvent, MergeMode};
use plimsoll_yaml::{self as yaml, Node, SyntaxError};

/// One input file of a merge.
#[derive(Clone, Copy, Debug)]
pub struct Layer<'a> {
    /// How the file is named in errors.
    pub name: &'a str,
    pub bytes: &'a [u8],
    pub mode: MergeMode,
}

/// Why a merge failed, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("{file}:{error}")]
    Syntax { file: String, error: SyntaxError },
    #[error("{file}: {error}")]
    Merge { file: String, error: MergeError },
}

const DOC_SEPARATOR_MARK: &str = "$yqDocSeperator$";

/// Splits yq's leading content off a file, as yq v4.30.8's YAML decoder
/// reads it (peeking four bytes at a time): blank lines, `---` lines (and
/// the `--- ` before content on the same line), comment lines (`^\s*#`)
/// and `%YAML` directive lines, until anything else.
pub fn split_leading_content(input: &[u8]) -> (String, &[u8]) {
    let mut out = String::new();
    let mut pos = 0;
    loop {
        if input.len() < pos + 4 {
            return (out, &input[pos..]);
        }
        let peek = &input[pos..pos + 4];
        let line_end = input[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |p| pos + p + 1);
        if peek[0] == b'\n' {
            out.push('\n');
            pos += 1;
        } else if peek == b"--- " || peek == b"---\n" {
            out.push_str(DOC_SEPARATOR_MARK);
            out.push('\n');
            pos += 4;
        } else if starts_with_comment(peek) || starts_with_directive(peek) {
            out.push_str(&String::from_utf8_lossy(&input[pos..line_end]));
            pos = line_end;
        } else {
            return (out, &input[pos..]);
        }
    }
}

/// `^\s*%YA`
fn starts_with_directive(b: &[u8]) -> bool {
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'))
        .unwrap_or(b.len());
    b[start..].starts_with(b"%YA")
}

/// `^\s*#`
fn starts_with_comment(b: &[u8]) -> bool {
    for &c in b {
        match c {
            b'#' => return true,
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => continue,
            _ => return false,
        }
    }
    false
}

/// Prints leading content the way yq's YAML encoder does.
pub fn print_leading_content(content: &str, out: &mut String) {
    let mut rest = content;
    loop {
        let (line, eof) = match rest.find('\n') {
            Some(i) => (&rest[..=i], false),
            None => (rest, true),
        };
        rest = &rest[line.len()..];
        if line.contains(DOC_SEPARATOR_MARK) {
            out.push_str("---\n");
        } else {
            if !line.is_empty()
                && line != "\n"
                && !line.starts_with('%')
                && !starts_with_comment(line.as_bytes())
            {
                out.push_str("# ");
            }
            out.push_str(line);
        }
        if eof {
            if !line.is_empty() {
                out.push('\n');
            }
            break;
        }
    }
}

/// Parsed layers, kept across merges: a file used by several releases (or
/// chains) is validated and parsed once per process.
#[derive(Default)]
pub struct ParseCache {
    entries: HashMap<u64, Vec<CachedLayer>>,
}

struct CachedLayer {
    first: bool,
    bytes: Vec<u8>,
    leading: String,
    docs: Vec<Node>,
}

/// FNV-1a over 8-byte words: a cheap content key (hits are confirmed by
/// comparing the bytes).
fn content_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = (h ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(0x100_0000_01b3);
    }
    for &b in chunks.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl ParseCache {
    /// The leading content and documents of a layer, parsed as the first
    /// file of a merge (`first`) or a later one.
    fn get(&mut self, layer: &Layer<'_>, idx: usize) -> Result<(String, Vec<Node>), LayerError> {
        let first = idx == 0;
        let key = content_hash(layer.bytes);
        if let Some(hit) = self.entries.get(&key).and_then(|v| {
            v.iter()
                .find(|c| c.first == first && c.bytes == layer.bytes)
        }) {
            let mut docs = hit.docs.clone();
            for d in &mut docs {
                set_layer(d, idx as u32);
            }
            return Ok((hit.leading.clone(), docs));
        }
        let (leading, docs) = parse_layer(layer, idx)?;
        self.entries.entry(key).or_default().push(CachedLayer {
            first,
            bytes: layer.bytes.to_vec(),
            leading: leading.clone(),
            docs: docs.clone(),
        });
        Ok((leading, docs))
    }
}

/// Records which layer a (cached) tree belongs to in this merge.
fn set_layer(n: &mut Node, layer: u32) {
    n.origin.layer = layer;
    for c in &mut n.content {
        set_layer(c, layer);
    }
}

fn parse_layer(layer: &Layer<'_>, idx: usize) -> Result<(String, Vec<Node>), LayerError> {
    yaml::check_input(layer.bytes).map_err(|e| LayerError::Syntax {
        file: layer.name.to_string(),
        error: e,
    })?;
    let (leading, body) = if idx == 0 {
        split_leading_content(layer.bytes)
    } else {
        (String::new(), layer.bytes)
    };
    let docs = yaml::parse_checked(body, idx as u32).map_err(|error| {
        // Positions are relative to the body; the leading content the first
        // file lost is whole lines.
        let skipped = layer.bytes[..layer.bytes.len() - body.len()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        LayerError::Syntax {
            file: layer.name.to_string(),
            error: SyntaxError {
                line: error.line + skipped,
                ..error
            },
        }
    })?;
    Ok((leading, docs))
}

/// Merges the documents of all layers in order. `events` collects what the
/// lints need.
pub fn merge_layers(
    layers: &[Layer<'_>],
    events: &mut Vec<(usize, MergeEvent)>,
) -> Result<Candidate, LayerError> {
    merge_impl(layers, events, None)
}

/// [`merge_layers`], reusing (and filling) a parse cache.
pub fn merge_layers_cached(
    layers: &[Layer<'_>],
    events: &mut Vec<(usize, MergeEvent)>,
    cache: &mut ParseCache,
) -> Result<Candidate, LayerError> {
    merge_impl(layers, events, Some(cache))
}

fn merge_impl(
    layers: &[Layer<'_>],
    events: &mut Vec<(usize, MergeEvent)>,
    mut cache: Option<&mut ParseCache>,
) -> Result<Candidate, LayerError> {
    let mut acc = Candidate::empty();
    for (idx, layer) in layers.iter().enumerate() {
        let (leading, docs) = match cache.as_deref_mut() {
            Some(c) => c.get(layer, idx)?,
            None => parse_layer(layer, idx)?,
        };
        let mut leading = leading.as_str();
        for mut node in docs {
            // yq's reader moves a document's foot comment aside as
            // "trailing content".
            let trailing_content = std::mem::take(&mut node.foot_comment);
            let doc = Candidate {
                node,
                leading_content: leading.to_string(),
                trailing_content,
            };
            let mut local = Vec::new();
            acc =
                multiply(acc, doc, layer.mode, &mut local).map_err(|error| LayerError::Merge {
                    file: layer.name.to_string(),
                    error,
                })?;
            events.extend(local.into_iter().map(|e| (idx, e)));
            leading = "";
        }
    }
    Ok(acc)
}

/// The text yq prints for a merge result.
pub fn print(result: &Candidate) -> String {
    print_with_indent(result, 2)
}

/// The text `yq -I INDENT` prints for a merge result.
pub fn print_with_indent(result: &Candidate, indent: usize) -> String {
    let mut out = String::new();
    print_leading_content(&result.leading_content, &mut out);
    out.push_str(&yaml::to_string(&result.node, indent));
    print_leading_content(&result.trailing_content, &mut out);
    out
}

/// Merge and print in one go.
pub fn eval_all(layers: &[Layer<'_>]) -> Result<String, LayerError> {
    let mut events = Vec::new();
    let result = merge_layers(layers, &mut events)?;
    Ok(print(&result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_content_stops_at_content() {
        let (lead, rest) = split_leading_content(b"# a\n---\n# b\nkey: 1\n");
        assert_eq!(lead, "# a\n$yqDocSeperator$\n# b\n");
        assert_eq!(rest, b"key: 1\n");
    }

    #[test]
    fn leading_content_printed_with_separator() {
        let mut out = String::new();
        print_leading_content("# a\n$yqDocSeperator$\n", &mut out);
        assert_eq!(out, "# a\n---\n");
    }
}
