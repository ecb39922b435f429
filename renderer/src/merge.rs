//! yq's `*` merge of two values documents.
//!
//! yq merges by walking every node of the right side in document order and
//! assigning it to the same path on the left: mappings merge their
//! attributes (comments, anchor, style when the left has none), scalars,
//! aliases and sequences replace the left node, missing keys are appended.
//! The attribute rules decide how the output looks (a double-quoted value
//! stays double-quoted when a later layer sets a plain string there), so
//! they are reproduced as yq v4.30 has them.

use plimsoll_yaml::node::{Kind, Node, Origin, Style, MAP_TAG, MERGE_TAG, NULL_TAG};
use plimsoll_yaml::resolve::resolve;

/// How sequences of one layer combine with what earlier layers built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MergeMode {
    /// yq `*`: a sequence replaces the earlier one whole.
    #[default]
    Replace,
    /// yq `*+`: sequences are appended to the earlier ones.
    Append,
    /// yq `*d`: sequences merge element by element, by index.
    ByIndex,
}

impl MergeMode {
    pub fn parse(s: &str) -> Option<MergeMode> {
        match s {
            "replace" | "*" => Some(MergeMode::Replace),
            "append" | "*+" => Some(MergeMode::Append),
            "by-index" | "deep" | "*d" => Some(MergeMode::ByIndex),
            _ => None,
        }
    }
}

/// A merge that yq itself refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("Cannot multiply {left} with {right}")]
    CannotMultiply { left: String, right: String },
    #[error("{left} cannot be added to a !!seq at {path}")]
    CannotAppend { left: String, path: String },
}

/// Something a layer did that is legal but usually a mistake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeEvent {
    /// A null erased a non-empty mapping or sequence built by earlier layers.
    NullClobber {
        path: Vec<String>,
        at: Origin,
        erased_keys: Vec<String>,
        erased_origin: Origin,
    },
    /// A mapping became a scalar or sequence, or the reverse.
    TypeChange {
        path: Vec<String>,
        at: Origin,
        from: &'static str,
        to: &'static str,
        from_origin: Origin,
    },
}

/// The accumulated result of a reduce: a node plus yq's "leading content"
/// (the first file's header comments and `---` lines) and "trailing
/// content" (a document's foot comment, printed after it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub node: Node,
    pub leading_content: String,
    pub trailing_content: String,
}

impl Candidate {
    /// The `{}` that `ireduce ({}; . * $item)` starts from.
    pub fn empty() -> Candidate {
        Candidate {
            node: Node::empty_mapping(),
            leading_content: String::new(),
            trailing_content: String::new(),
        }
    }
}

/// `acc * doc` as yq evaluates it, `doc` being a document node read from
/// a file, with the leading and trailing content yq's reader gave it.
/// Both sides are consumed: nothing is deep-copied.
pub fn multiply(
    acc: Candidate,
    doc: Candidate,
    mode: MergeMode,
    events: &mut Vec<MergeEvent>,
) -> Result<Candidate, MergeError> {
    let Candidate {
        node: doc,
        leading_content: doc_lead,
        trailing_content: doc_trail,
    } = doc;
    // Comments are taken before the document is unwrapped: the document's
    // own head comment becomes the result's unless the left has one.
    let keep_left_head = !acc.node.head_comment.is_empty() || !acc.leading_content.is_empty();
    let keep_left_foot = !acc.node.foot_comment.is_empty() || !acc.trailing_content.is_empty();
    let mut doc = doc;
    let (head, foot) = (
        std::mem::take(&mut doc.head_comment),
        std::mem::take(&mut doc.foot_comment),
    );
    let rhs = match doc.kind {
        Kind::Document if !doc.content.is_empty() => doc.content.swap_remove(0),
        _ => doc,
    };
    if rhs.tag == NULL_TAG {
        return Ok(acc);
    }
    let lhs = &acc.node;
    let mergeable = matches!(
        (lhs.kind, rhs.kind),
        (Kind::Mapping, Kind::Mapping) | (Kind::Sequence, Kind::Sequence)
    ) || (lhs.tag == NULL_TAG
        && matches!(rhs.kind, Kind::Mapping | Kind::Sequence));
    if !mergeable {
        return Err(MergeError::CannotMultiply {
            left: lhs.tag.to_string(),
            right: rhs.tag.to_string(),
        });
    }
    let mut out = acc;
    if !keep_left_head {
        out.node.head_comment = head;
        out.leading_content = doc_lead;
    }
    if !keep_left_foot {
        out.node.foot_comment = foot;
        out.trailing_content = doc_trail;
    }
    let mut path = Vec::new();
    apply(&mut out.node, rhs, mode, &mut path, events)?;
    Ok(out)
}

/// Assigns `r` onto `t` (same path on both sides), then its children.
fn apply(
    t: &mut Node,
    mut r: Node,
    mode: MergeMode,
    path: &mut Vec<String>,
    events: &mut Vec<MergeEvent>,
) -> Result<(), MergeError> {
    let is_seq = r.kind == Kind::Sequence;
    observe(t, &r, path, events);
    if mode == MergeMode::Append && is_seq {
        return add_assign(t, r, path);
    }
    if r.kind == Kind::Mapping || (mode == MergeMode::ByIndex && is_seq) {
        update_attributes_from(t, &r);
    } else {
        // Scalars, aliases and (replace mode) sequences replace the left
        // node whole; yq then visits the copied elements, which changes
        // nothing.
        update_from(t, r);
        return Ok(());
    }
    let children = std::mem::take(&mut r.content);
    match r.kind {
        Kind::Mapping => {
            let mut index = KeyIndex::of(t, children.len() / 2);
            let mut it = children.into_iter();
            while let (Some(mut k), Some(v)) = (it.next(), it.next()) {
                let found = index.find_or_create(t, &k.value);
                if k.tag != MERGE_TAG {
                    let last = found.len().saturating_sub(1);
                    for (n, &i) in found.iter().enumerate() {
                        let key = if n == last {
                            // The value keeps only what the path needs.
                            let mut kk = std::mem::replace(&mut k, Node::new(Kind::Scalar, ""));
                            k.value = kk.value.clone();
                            kk.content.clear();
                            kk
                        } else {
                            k.clone()
                        };
                        update_from(&mut t.content[i], key);
                    }
                }
                let last = found.len().saturating_sub(1);
                let mut v = Some(v);
                for (n, i) in found.into_iter().enumerate() {
                    let value = if n == last {
                        v.take().expect("value used once")
                    } else {
                        v.clone().expect("value")
                    };
                    path.push(std::mem::take(&mut k.value));
                    apply(&mut t.content[i + 1], value, mode, path, events)?;
                    k.value = path.pop().unwrap_or_default();
                }
            }
        }
        Kind::Sequence if t.kind == Kind::Sequence => {
            for (idx, e) in children.into_iter().enumerate() {
                while t.content.len() <= idx {
                    if t.content.is_empty() {
                        t.style = Style::default();
                    }
                    t.content.push(Node::scalar(NULL_TAG, "null"));
                }
                path.push(idx.to_string());
                apply(&mut t.content[idx], e, mode, path, events)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

fn kind_name(n: &Node) -> &'static str {
    match n.kind {
        Kind::Mapping => "map",
        Kind::Sequence => "sequence",
        Kind::Alias => "alias",
        Kind::Document => "document",
        Kind::Scalar if n.tag == NULL_TAG => "null",
        Kind::Scalar => "scalar",
    }
}

/// Records the suspicious assignments the lints report.
fn observe(t: &Node, r: &Node, path: &[String], events: &mut Vec<MergeEvent>) {
    if path.is_empty() || t.origin == Origin::SYNTHESIZED {
        return;
    }
    let t_collection = matches!(t.kind, Kind::Mapping | Kind::Sequence);
    if r.kind == Kind::Scalar && r.tag == NULL_TAG {
        if t_collection && !t.content.is_empty() {
            let erased_keys = match t.kind {
                Kind::Mapping => t.pairs().map(|(k, _)| k.value.clone()).collect(),
                _ => (0..t.content.len()).map(|i| format!("[{i}]")).collect(),
            };
            events.push(MergeEvent::NullClobber {
                path: path.to_vec(),
                at: r.origin,
                erased_keys,
                erased_origin: t.origin,
            });
        }
        return;
    }
    if t.kind == Kind::Scalar && t.tag == NULL_TAG {
        return;
    }
    let t_map = t.kind == Kind::Mapping;
    let r_map = r.kind == Kind::Mapping;
    if t_map != r_map && !(t.kind == Kind::Alias || r.kind == Kind::Alias) {
        events.push(MergeEvent::TypeChange {
            path: path.to_vec(),
            at: r.origin,
            from: kind_name(t),
            to: kind_name(r),
            from_origin: t.origin,
        });
    }
}

/// Where the keys of a mapping are, so that merging a map of n keys into
/// one of m costs O(n + m), not O(n·m) (a 1M-key map merges in seconds).
/// Small maps are scanned: hashing costs more than it saves there.
enum KeyIndex {
    Scan,
    Hashed(std::collections::HashMap<String, Vec<usize>>),
}

impl KeyIndex {
    const HASH_FROM: usize = 32;

    fn of(t: &Node, incoming: usize) -> KeyIndex {
        // The left side grows by the right's new keys: both count.
        if t.kind != Kind::Mapping || t.content.len() / 2 + incoming < Self::HASH_FROM {
            return KeyIndex::Scan;
        }
        let mut map: std::collections::HashMap<String, Vec<usize>> =
            std::collections::HashMap::with_capacity(t.content.len() / 2);
        for i in (0..t.content.len()).step_by(2) {
            map.entry(t.content[i].value.clone()).or_default().push(i);
        }
        KeyIndex::Hashed(map)
    }

    /// [`find_or_create_key`], keeping the index current (keys are only
    /// ever appended).
    fn find_or_create(&mut self, t: &mut Node, key: &str) -> Vec<usize> {
        match self {
            KeyIndex::Scan => find_or_create_key(t, key),
            KeyIndex::Hashed(map) => {
                if let Some(found) = map.get(key) {
                    return found.clone();
                }
                let found = find_or_create_key_absent(t, key);
                map.insert(key.to_string(), found.clone());
                found
            }
        }
    }
}

/// Indices of the keys in mapping `t` equal to `key`, appending a
/// `key: null` entry when there is none.
///
/// Keys match literally. (yq v4.30 matched `*` and `?` in the right side's
/// keys as globs, so a key such as `"*.example.org"` overwrote every
/// sibling; later yq versions match literally, and so do we.)
fn find_or_create_key(t: &mut Node, key: &str) -> Vec<usize> {
    if t.kind != Kind::Mapping {
        return Vec::new();
    }
    let found: Vec<usize> = (0..t.content.len())
        .step_by(2)
        .filter(|&i| t.content[i].value == key)
        .collect();
    if !found.is_empty() {
        return found;
    }
    find_or_create_key_absent(t, key)
}

/// Appends `key: null` to mapping `t`, where `key` is known to be absent.
fn find_or_create_key_absent(t: &mut Node, key: &str) -> Vec<usize> {
    if t.kind != Kind::Mapping {
        return Vec::new();
    }
    if t.content.is_empty() {
        t.style = Style::default();
    }
    // yq v4.30 creates the key untagged; the key's own visit then copies
    // the tag, except for `<<` merge keys, which are not visited and so
    // print as a plain `<<`.
    t.content.push(Node::scalar("", key));
    t.content.push(Node::scalar(NULL_TAG, "null"));
    vec![t.content.len() - 2]
}

/// The tag yq guesses for a node, for deciding whether a new value keeps
/// the old one's quoting style.
fn guess_tag(n: &Node) -> &str {
    if n.tag.starts_with("!!") || n.value.is_empty() {
        return &n.tag;
    }
    resolve(&n.value)
}

/// yq's `UpdateFrom`: replace value and content, keep the left's style
/// unless the type changed or the left had none.
fn update_from(t: &mut Node, mut r: Node) {
    if (t.kind != Kind::Scalar && t.content.is_empty()) || guess_tag(t) != guess_tag(&r) {
        t.style = r.style;
    }
    t.content = std::mem::take(&mut r.content);
    t.kind = r.kind;
    t.value = std::mem::take(&mut r.value);
    t.origin = r.origin;
    update_attributes_from(t, &r);
}

/// yq's `UpdateAttributesFrom`: kind, tag (custom tags stay), anchor,
/// style when the left has none, and non-empty comments.
fn update_attributes_from(t: &mut Node, r: &Node) {
    if t.kind != r.kind {
        t.content.clear();
        t.value.clear();
        t.origin = r.origin;
    } else if t.kind == Kind::Mapping && t.origin == Origin::SYNTHESIZED {
        t.origin = r.origin;
    }
    t.kind = r.kind;
    if t.tag.starts_with("!!") || t.tag.is_empty() {
        t.tag = r.tag.clone();
    }
    if r.kind == Kind::Alias && !r.value.is_empty() {
        // An alias's value is the anchor it names (already moved over by
        // `update_from`, which empties `r.value`).
        t.value = r.value.clone();
    }
    t.anchor = r.anchor.clone();
    if t.style.is_plain() {
        t.style = r.style;
    }
    if !r.foot_comment.is_empty() {
        t.foot_comment = r.foot_comment.clone();
    }
    if !r.head_comment.is_empty() {
        t.head_comment = r.head_comment.clone();
    }
    if !r.line_comment.is_empty() {
        t.line_comment = r.line_comment.clone();
    }
}

/// yq's `*+` on a sequence: append to an existing sequence, set a missing
/// one.
fn add_assign(t: &mut Node, r: Node, path: &[String]) -> Result<(), MergeError> {
    match t.kind {
        Kind::Sequence => {
            if t.content.is_empty() {
                t.style = r.style;
            }
            t.content.extend(r.content);
            Ok(())
        }
        Kind::Scalar if t.tag == NULL_TAG => {
            update_from(t, r);
            Ok(())
        }
        _ => Err(MergeError::CannotAppend {
            left: if t.kind == Kind::Mapping {
                MAP_TAG.to_string()
            } else {
                t.tag.to_string()
            },
            path: path.join("."),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plimsoll_yaml::{parse_documents, to_string};

    fn doc(text: &str) -> Candidate {
        Candidate {
            node: parse_documents(text.as_bytes(), 0).unwrap().remove(0),
            leading_content: String::new(),
            trailing_content: String::new(),
        }
    }

    fn merge(texts: &[&str], mode: MergeMode) -> String {
        let mut acc = Candidate::empty();
        for t in texts {
            acc = multiply(acc, doc(t), mode, &mut Vec::new()).unwrap();
        }
        to_string(&acc.node, 2)
    }

    #[test]
    fn keys_match_literally_not_as_globs() {
        let out = merge(
            &[
                "hosts:\n  a.example.org: 1\n  \"*.example.org\": 2\n",
                "hosts:\n  \"*.example.org\": 3\n",
            ],
            MergeMode::Replace,
        );
        assert_eq!(out, "hosts:\n  a.example.org: 1\n  \"*.example.org\": 3\n");
    }

    #[test]
    fn sequence_modes() {
        let a = "l: [1, 2, 3]\nm:\n  - x: 1\n    y: 1\n";
        let b = "l: [9]\nm:\n  - x: 2\n";
        assert_eq!(merge(&[a, b], MergeMode::Replace), "l: [9]\nm:\n  - x: 2\n");
        assert_eq!(
            merge(&[a, b], MergeMode::Append),
            "l: [1, 2, 3, 9]\nm:\n  - x: 1\n    y: 1\n  - x: 2\n"
        );
        assert_eq!(
            merge(&[a, b], MergeMode::ByIndex),
            "l: [9, 2, 3]\nm:\n  - x: 2\n    y: 1\n"
        );
    }

    #[test]
    fn quoting_style_of_the_left_is_kept_for_same_typed_values() {
        assert_eq!(
            merge(&["a: \"x\"\nb: '1'\n", "a: y\nb: 2\n"], MergeMode::Replace),
            "a: \"y\"\nb: 2\n"
        );
    }

    #[test]
    fn nested_null_erases_and_is_reported() {
        let mut events = Vec::new();
        let acc = multiply(
            Candidate::empty(),
            doc("a:\n  b: 1\n  c: 2\n"),
            MergeMode::Replace,
            &mut events,
        )
        .unwrap();
        let acc = multiply(acc, doc("a:\n"), MergeMode::Replace, &mut events).unwrap();
        assert_eq!(to_string(&acc.node, 2), "a:\n");
        match &events[..] {
            [MergeEvent::NullClobber {
                path, erased_keys, ..
            }] => {
                assert_eq!(path, &["a".to_string()]);
                assert_eq!(erased_keys, &["b".to_string(), "c".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }
}
