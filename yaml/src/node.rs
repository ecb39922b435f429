//! The values document model: a tree of nodes that keeps what the output
//! needs to look like the input (styles, tags, anchors, comments).

use std::borrow::Cow;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Document,
    Sequence,
    Mapping,
    Scalar,
    Alias,
}

/// Presentation flags, the same bits as go-yaml's `Style`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style(pub u8);

impl Style {
    pub const TAGGED: Style = Style(1);
    pub const DOUBLE_QUOTED: Style = Style(2);
    pub const SINGLE_QUOTED: Style = Style(4);
    pub const LITERAL: Style = Style(8);
    pub const FOLDED: Style = Style(16);
    pub const FLOW: Style = Style(32);

    pub fn has(self, other: Style) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_plain(self) -> bool {
        self.0 == 0
    }
}

/// Where a node came from: which layer (input file) and where in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// Index of the layer in the merge, or `u32::MAX` for synthesized nodes.
    pub layer: u32,
    /// One-based line and column; 0 when unknown.
    pub line: u32,
    pub column: u32,
}

impl Origin {
    pub const SYNTHESIZED: Origin = Origin {
        layer: u32::MAX,
        line: 0,
        column: 0,
    };
}

/// One node of a YAML document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    pub style: Style,
    /// Short tag (`!!str`, `!!map`, `!custom`), or empty for documents and
    /// aliases. Borrowed for the core schema's tags: no allocation.
    pub tag: Cow<'static, str>,
    /// Scalar value, or the anchor name an alias refers to.
    pub value: String,
    pub anchor: String,
    /// Children; for mappings, keys and values alternate.
    pub content: Vec<Node>,
    pub head_comment: String,
    pub line_comment: String,
    pub foot_comment: String,
    pub origin: Origin,
}

pub const STR_TAG: &str = "!!str";
pub const NULL_TAG: &str = "!!null";
pub const MAP_TAG: &str = "!!map";
pub const SEQ_TAG: &str = "!!seq";
pub const MERGE_TAG: &str = "!!merge";

impl Node {
    pub fn new(kind: Kind, tag: impl Into<Cow<'static, str>>) -> Node {
        Node {
            kind,
            style: Style::default(),
            tag: tag.into(),
            value: String::new(),
            anchor: String::new(),
            content: Vec::new(),
            head_comment: String::new(),
            line_comment: String::new(),
            foot_comment: String::new(),
            origin: Origin::SYNTHESIZED,
        }
    }

    pub fn scalar(tag: &'static str, value: &str) -> Node {
        let mut n = Node::new(Kind::Scalar, tag);
        n.value = value.to_string();
        n
    }

    /// The empty mapping yq's `ireduce ({}; ...)` starts from.
    pub fn empty_mapping() -> Node {
        Node::new(Kind::Mapping, MAP_TAG)
    }

    pub fn is_null(&self) -> bool {
        self.kind == Kind::Scalar && self.tag == NULL_TAG
    }

    /// The node below a document node, or the node itself.
    pub fn unwrap_document(&self) -> &Node {
        match self.kind {
            Kind::Document if !self.content.is_empty() => &self.content[0],
            _ => self,
        }
    }

    /// Key/value pairs of a mapping.
    pub fn pairs(&self) -> impl Iterator<Item = (&Node, &Node)> {
        self.content.chunks_exact(2).map(|kv| (&kv[0], &kv[1]))
    }

    /// The value under `key` in a mapping (the first match).
    pub fn get(&self, key: &str) -> Option<&Node> {
        if self.kind != Kind::Mapping {
            return None;
        }
        self.pairs().find(|(k, _)| k.value == key).map(|(_, v)| v)
    }

    /// Whether printing this tree certainly gives YAML that parses again:
    /// it has no alias (a merge can place one before its anchor) and no
    /// explicit tag (go-yaml can print a tag at column 0 after a line
    /// comment). Anything else the emitter prints re-parses (the
    /// `yaml_roundtrip` fuzz target checks it), so callers may skip the
    /// re-parse when this holds.
    pub fn prints_reparsable(&self) -> bool {
        self.kind != Kind::Alias
            && !self.style.has(Style::TAGGED)
            && self.content.iter().all(Node::prints_reparsable)
    }

    /// Counts the nodes of this subtree.
    pub fn size(&self) -> usize {
        1 + self.content.iter().map(Node::size).sum::<usize>()
    }
}
