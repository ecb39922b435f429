//! Values documents as JSON, the way `yq -o json` types scalars.

use std::collections::HashMap;

use crate::resolve::resolve;
use crate::{Kind, Node};

/// Aliases expanded beyond this many nodes are refused (alias bombs).
pub const MAX_EXPANDED_NODES: usize = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("alias expansion exceeds {MAX_EXPANDED_NODES} nodes (an alias bomb?)")]
    TooLarge,
    #[error("alias *{0} refers to an unknown or enclosing anchor")]
    BadAlias(String),
}

/// Renders a node tree as pretty JSON (2-space indent).
pub fn to_json(root: &Node) -> Result<String, JsonError> {
    let mut anchors = HashMap::new();
    collect(root, &mut anchors);
    let mut out = String::new();
    let mut budget = MAX_EXPANDED_NODES;
    let mut stack = Vec::new();
    write(
        root.unwrap_document(),
        &anchors,
        &mut out,
        0,
        &mut budget,
        &mut stack,
    )?;
    out.push('\n');
    Ok(out)
}

fn collect<'n>(n: &'n Node, anchors: &mut HashMap<String, &'n Node>) {
    if !n.anchor.is_empty() {
        anchors.insert(n.anchor.clone(), n);
    }
    for c in &n.content {
        collect(c, anchors);
    }
}

fn write<'n>(
    n: &'n Node,
    anchors: &HashMap<String, &'n Node>,
    out: &mut String,
    depth: usize,
    budget: &mut usize,
    stack: &mut Vec<String>,
) -> Result<(), JsonError> {
    if *budget == 0 {
        return Err(JsonError::TooLarge);
    }
    *budget -= 1;
    let pad = |d: usize| "  ".repeat(d);
    match n.kind {
        Kind::Alias => {
            if stack.contains(&n.value) {
                return Err(JsonError::BadAlias(n.value.clone()));
            }
            let target = anchors
                .get(&n.value)
                .ok_or_else(|| JsonError::BadAlias(n.value.clone()))?;
            stack.push(n.value.clone());
            write(target, anchors, out, depth, budget, stack)?;
            stack.pop();
        }
        Kind::Mapping => {
            if n.content.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push_str("{\n");
            let mut first = true;
            for (k, v) in n.pairs() {
                if !first {
                    out.push_str(",\n");
                }
                first = false;
                out.push_str(&pad(depth + 1));
                string(&k.value, out);
                out.push_str(": ");
                write(v, anchors, out, depth + 1, budget, stack)?;
            }
            out.push('\n');
            out.push_str(&pad(depth));
            out.push('}');
        }
        Kind::Sequence => {
            if n.content.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push_str("[\n");
            for (i, c) in n.content.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                out.push_str(&pad(depth + 1));
                write(c, anchors, out, depth + 1, budget, stack)?;
            }
            out.push('\n');
            out.push_str(&pad(depth));
            out.push(']');
        }
        Kind::Document => match n.content.first() {
            Some(c) => write(c, anchors, out, depth, budget, stack)?,
            None => out.push_str("null"),
        },
        Kind::Scalar => scalar(n, out),
    }
    Ok(())
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
        assert_eq!(to_json(&docs[0]), Err(JsonError::TooLarge));
    }
}
