//! Values documents as JSON, the way `yq -o json` types scalars.

use std::collections::HashMap;

use crate::resolve::resolve;
use crate::{Kind, Node};

/// The expansion budget: every path that expands aliases (JSON output,
/// the planner's values, drift, patches) stops past any of these, so that a
/// file within the input limit cannot cost more than a bounded amount of
/// memory and time however its aliases nest.
///
/// - nodes written, aliases counted at every use;
pub const MAX_EXPANDED_NODES: usize = 1_000_000;
/// - bytes of output (four times the largest input file);
pub const MAX_EXPANDED_BYTES: usize = 4 * crate::MAX_INPUT_BYTES;
/// - nesting depth after expansion (chained aliases multiply depth).
pub const MAX_EXPANDED_DEPTH: usize = 2_000;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The alias (or node) being expanded when the budget ran out.
    #[error("{line}:{column}: expanding aliases exceeds {limit} (an alias bomb?)")]
    TooLarge {
        layer: u32,
        line: u32,
        column: u32,
        limit: String,
    },
    #[error("{line}:{column}: alias *{name} refers to an unknown or enclosing anchor")]
    BadAlias {
        layer: u32,
        line: u32,
        column: u32,
        name: String,
    },
}

impl JsonError {
    /// The layer (merge input index) of the problem, `u32::MAX` unknown.
    pub fn layer(&self) -> u32 {
        match self {
            JsonError::TooLarge { layer, .. } | JsonError::BadAlias { layer, .. } => *layer,
        }
    }
}

/// Renders a node tree as pretty JSON (2-space indent), within the
/// expansion budget.
pub fn to_json(root: &Node) -> Result<String, JsonError> {
    let mut anchors = HashMap::new();
    collect(root, &mut anchors);
    let mut w = Writer {
        anchors,
        out: String::new(),
        nodes: 0,
        stack: Vec::new(),
        alias_at: None,
    };
    w.write(root.unwrap_document(), 0)?;
    w.out.push('\n');
    Ok(w.out)
}

fn collect<'n>(n: &'n Node, anchors: &mut HashMap<&'n str, &'n Node>) {
    if !n.anchor.is_empty() {
        anchors.insert(&n.anchor, n);
    }
    for c in &n.content {
        collect(c, anchors);
    }
}

struct Writer<'n> {
    anchors: HashMap<&'n str, &'n Node>,
    out: String,
    nodes: usize,
    /// Anchors being expanded (a cycle is refused).
    stack: Vec<&'n str>,
    /// The outermost alias being expanded: where a budget error points.
    alias_at: Option<&'n Node>,
}

impl<'n> Writer<'n> {
    fn too_large(&self, n: &Node, limit: String) -> JsonError {
        let at = self.alias_at.unwrap_or(n);
        JsonError::TooLarge {
            layer: at.origin.layer,
            line: at.origin.line,
            column: at.origin.column,
            limit,
        }
    }

    fn pad(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn write(&mut self, n: &'n Node, depth: usize) -> Result<(), JsonError> {
        self.nodes += 1;
        if self.nodes > MAX_EXPANDED_NODES {
            return Err(self.too_large(n, format!("{MAX_EXPANDED_NODES} nodes")));
        }
        if self.out.len() > MAX_EXPANDED_BYTES {
            return Err(self.too_large(
                n,
                format!("{} MiB of output", MAX_EXPANDED_BYTES / (1024 * 1024)),
            ));
        }
        if depth > MAX_EXPANDED_DEPTH {
            return Err(self.too_large(n, format!("a depth of {MAX_EXPANDED_DEPTH}")));
        }
        match n.kind {
            Kind::Alias => {
                let bad = || JsonError::BadAlias {
                    layer: n.origin.layer,
                    line: n.origin.line,
                    column: n.origin.column,
                    name: n.value.clone(),
                };
                if self.stack.contains(&n.value.as_str()) {
                    return Err(bad());
                }
                let target = *self.anchors.get(n.value.as_str()).ok_or_else(bad)?;
                self.stack.push(&n.value);
                let outermost = self.alias_at.is_none();
                if outermost {
                    self.alias_at = Some(n);
                }
                let r = self.write(target, depth);
                if outermost {
                    self.alias_at = None;
                }
                self.stack.pop();
                r?;
            }
            Kind::Mapping => {
                if n.content.is_empty() {
                    self.out.push_str("{}");
                    return Ok(());
                }
                self.out.push_str("{\n");
                let mut first = true;
                for (k, v) in n.pairs() {
                    if !first {
                        self.out.push_str(",\n");
                    }
                    first = false;
                    self.pad(depth + 1);
                    string(&k.value, &mut self.out);
                    self.out.push_str(": ");
                    self.write(v, depth + 1)?;
                }
                self.out.push('\n');
                self.pad(depth);
                self.out.push('}');
            }
            Kind::Sequence => {
                if n.content.is_empty() {
                    self.out.push_str("[]");
                    return Ok(());
                }
                self.out.push_str("[\n");
                for (i, c) in n.content.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(",\n");
                    }
                    self.pad(depth + 1);
                    self.write(c, depth + 1)?;
                }
                self.out.push('\n');
                self.pad(depth);
                self.out.push(']');
            }
            Kind::Document => match n.content.first() {
                Some(c) => self.write(c, depth)?,
                None => self.out.push_str("null"),
            },
            Kind::Scalar => scalar(n, &mut self.out),
        }
        Ok(())
    }
}

fn scalar(n: &Node, out: &mut String) {
    let tag = if n.tag.is_empty() {
        resolve(&n.value)
    } else {
        &*n.tag
    };
    match tag {
        "!!null" => out.push_str("null"),
        "!!bool" => out.push_str(if n.value.eq_ignore_ascii_case("true") {
            "true"
        } else {
            "false"
        }),
        "!!int" => match parse_int(&n.value) {
            Some(v) => out.push_str(&v.to_string()),
            None => string(&n.value, out),
        },
        "!!float" => match n.value.replace('_', "").parse::<f64>() {
            Ok(v) if v.is_finite() => {
                let s = n.value.replace('_', "");
                if s.contains(['e', 'E'])
                    || s.starts_with('.')
                    || s.starts_with("-.")
                    || s.starts_with('+')
                {
                    out.push_str(&format!("{v}"));
                } else {
                    out.push_str(&s);
                }
            }
            _ => string(&n.value, out),
        },
        _ => string(&n.value, out),
    }
}

fn parse_int(s: &str) -> Option<i128> {
    let s = s.replace('_', "");
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, s.strip_prefix('+').unwrap_or(&s).to_string()),
    };
    let v = if let Some(h) = body.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if let Some(o) = body.strip_prefix("0o") {
        i128::from_str_radix(o, 8).ok()?
    } else if let Some(b) = body.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i128::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_documents;

    #[test]
    fn types_scalars_like_yq() {
        let docs = parse_documents(
            b"a: 1\nb: 0x1F\nc: true\nd: ~\ne: \"5\"\nf: 1.5\nh: &y z\ng: [x, *y]\n",
            0,
        )
        .unwrap();
        let json = to_json(&docs[0]).unwrap();
        assert!(json.contains("\"a\": 1,"));
        assert!(json.contains("\"b\": 31,"));
        assert!(json.contains("\"c\": true,"));
        assert!(json.contains("\"d\": null,"));
        assert!(json.contains("\"e\": \"5\","));
        assert!(json.contains("\"f\": 1.5,"));
        assert!(json.contains("\"x\",\n    \"z\""));
    }

    #[test]
    fn refuses_alias_bombs() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        let docs = parse_documents(doc.as_bytes(), 0).unwrap();
        let e = to_json(&docs[0]).unwrap_err();
        assert!(matches!(e, JsonError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn refuses_one_large_string_aliased_many_times() {
        let mut doc = format!("s: &s {}\nl:\n", "x".repeat(1 << 20));
        for _ in 0..1000 {
            doc.push_str("  - *s\n");
        }
        let docs = parse_documents(doc.as_bytes(), 0).unwrap();
        let e = to_json(&docs[0]).unwrap_err();
        assert!(e.to_string().contains("MiB of output"), "{e}");
    }

    #[test]
    fn refuses_chained_deep_anchors() {
        let depth = 900;
        let mut doc = String::new();
        for i in 0..4 {
            let inner = if i == 0 {
                "x".to_string()
            } else {
                format!("*a{}", i - 1)
            };
            doc.push_str(&format!(
                "a{i}: &a{i} {}{inner}{}\n",
                "[".repeat(depth),
                "]".repeat(depth)
            ));
        }
        let docs = parse_documents(doc.as_bytes(), 0).unwrap();
        let e = to_json(&docs[0]).unwrap_err();
        assert!(e.to_string().contains("depth"), "{e}");
    }
}
