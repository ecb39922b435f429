//! The composer: events in, node trees out (one per document), moving foot
//! comments the way go-yaml v3 does so that they print where they were.

use std::collections::HashSet;

use super::node::{Kind, Node, Origin, Style, MAP_TAG, MERGE_TAG, SEQ_TAG, STR_TAG};
use super::parser::{Event, EventKind, Parser};
use super::resolve::resolve;
use super::token::ScalarStyle;
use super::SyntaxError;

type Result<T> = std::result::Result<T, SyntaxError>;

/// Turns a full tag (`tag:yaml.org,2002:str`) into its short form (`!!str`).
pub fn short_tag(tag: &str) -> String {
    match tag.strip_prefix("tag:yaml.org,2002:") {
        Some(rest) => format!("!!{rest}"),
        None => tag.to_string(),
    }
}

/// Turns a short tag (`!!str`) into its full form.
pub fn long_tag(tag: &str) -> String {
    match tag.strip_prefix("!!") {
        Some(rest) => format!("tag:yaml.org,2002:{rest}"),
        None => tag.to_string(),
    }
}

pub(crate) struct Composer {
    parser: Parser,
    event: Option<Event>,
    anchors: HashSet<String>,
    layer: u32,
    started: bool,
    documents: usize,
    nodes: usize,
}

fn text(b: &[u8]) -> String {
    // Input was validated as UTF-8 and the scanner only splits at character
    // boundaries, so this never replaces anything.
    String::from_utf8_lossy(b).into_owned()
}

/// Like [`text`], moving the bytes instead of copying them.
fn into_text(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Composer {
    pub(crate) fn new(input: &[u8], layer: u32) -> Composer {
        Composer {
            parser: Parser::new(input),
            event: None,
            anchors: HashSet::new(),
            layer,
            started: false,
            documents: 0,
            nodes: 0,
        }
    }

    fn peek(&mut self) -> Result<EventKind> {
        if self.event.is_none() {
            self.event = self.parser.next_event()?;
        }
        Ok(self.event.as_ref().map_or(EventKind::StreamEnd, |e| e.kind))
    }

    fn take(&mut self) -> Result<Event> {
        self.peek()?;
        Ok(self.event.take().unwrap_or_default())
    }

    /// The next document of the stream, or `None` at its end.
    pub(crate) fn next_document(&mut self) -> Result<Option<Node>> {
        if !self.started {
            self.started = true;
            if self.peek()? == EventKind::StreamStart {
                self.take()?;
            }
        }
        match self.peek()? {
            EventKind::StreamEnd | EventKind::None => Ok(None),
            EventKind::DocumentStart => {
                self.documents += 1;
                if self.documents > crate::MAX_DOCUMENTS {
                    return Err(SyntaxError::new(
                        self.mark(),
                        "",
                        &format!("more than {} documents in one file", crate::MAX_DOCUMENTS),
                    ));
                }
                let mut ev = self.take()?;
                let mut doc = self.node(&mut ev, Kind::Document, "", "", String::new());
                let child = self.parse()?;
                doc.content.push(child);
                if self.peek()? == EventKind::DocumentEnd {
                    let end = self.take()?;
                    doc.foot_comment = into_text(end.foot_comment);
                }
                self.anchors.clear();
                Ok(Some(doc))
            }
            _ => Err(SyntaxError::new(self.mark(), "", "expected a document")),
        }
    }

    fn mark(&self) -> super::token::Mark {
        self.event.as_ref().map(|e| e.start).unwrap_or_default()
    }

    fn node(
        &self,
        ev: &mut Event,
        kind: Kind,
        default_tag: &'static str,
        tag: &str,
        value: String,
    ) -> Node {
        let mut style = Style::default();
        let tag: std::borrow::Cow<'static, str> = if !tag.is_empty() && tag != "!" {
            style = Style::TAGGED;
            match tag.strip_prefix("tag:yaml.org,2002:") {
                Some(rest) => format!("!!{rest}").into(),
                None => tag.to_string().into(),
            }
        } else if !default_tag.is_empty() {
            default_tag.into()
        } else if kind == Kind::Scalar {
            resolve(&value).into()
        } else {
            "".into()
        };
        let mut n = Node::new(kind, tag);
        n.style = style;
        n.value = value;
        n.head_comment = into_text(std::mem::take(&mut ev.head_comment));
        n.line_comment = into_text(std::mem::take(&mut ev.line_comment));
        n.foot_comment = into_text(std::mem::take(&mut ev.foot_comment));
        n.origin = Origin {
            layer: self.layer,
            line: (ev.start.line + 1) as u32,
            column: (ev.start.column + 1) as u32,
        };
        n
    }

    fn parse(&mut self) -> Result<Node> {
        self.nodes += 1;
        if self.nodes > crate::MAX_NODES {
            return Err(SyntaxError::new(
                self.mark(),
                "",
                &format!("more than {} nodes in one file", crate::MAX_NODES),
            ));
        }
        match self.peek()? {
            EventKind::Scalar => self.scalar(),
            EventKind::Alias => self.alias(),
            EventKind::MappingStart => self.mapping(),
            EventKind::SequenceStart => self.sequence(),
            other => Err(SyntaxError::new(
                self.mark(),
                "",
                &format!("unexpected {other:?} event"),
            )),
        }
    }

    fn alias(&mut self) -> Result<Node> {
        let mut ev = self.take()?;
        let name = into_text(std::mem::take(&mut ev.anchor));
        if !self.anchors.contains(&name) {
            return Err(SyntaxError::new(
                ev.start,
                "",
                &format!("unknown anchor '{name}' referenced"),
            ));
        }
        Ok(self.node(&mut ev, Kind::Alias, "", "", name))
    }

    fn anchor(&mut self, n: &mut Node, ev: &Event) {
        if !ev.anchor.is_empty() {
            n.anchor = text(&ev.anchor);
            self.anchors.insert(n.anchor.clone());
        }
    }

    fn scalar(&mut self) -> Result<Node> {
        let mut ev = self.take()?;
        let style = match ev.style {
            ScalarStyle::DoubleQuoted => Style::DOUBLE_QUOTED,
            ScalarStyle::SingleQuoted => Style::SINGLE_QUOTED,
            ScalarStyle::Literal => Style::LITERAL,
            ScalarStyle::Folded => Style::FOLDED,
            _ => Style::default(),
        };
        let value = into_text(std::mem::take(&mut ev.value));
        let default_tag = if style.is_plain() {
            if value == "<<" {
                MERGE_TAG
            } else {
                ""
            }
        } else {
            STR_TAG
        };
        let tag = text(&ev.tag);
        let mut n = self.node(&mut ev, Kind::Scalar, default_tag, &tag, value);
        n.style.0 |= style.0;
        self.anchor(&mut n, &ev);
        Ok(n)
    }

    fn sequence(&mut self) -> Result<Node> {
        let mut ev = self.take()?;
        let tag = text(&ev.tag);
        let mut n = self.node(&mut ev, Kind::Sequence, SEQ_TAG, &tag, String::new());
        if ev.flow {
            n.style.0 |= Style::FLOW.0;
        }
        self.anchor(&mut n, &ev);
        while self.peek()? != EventKind::SequenceEnd {
            let child = self.parse()?;
            n.content.push(child);
        }
        let end = self.take()?;
        n.line_comment = into_text(end.line_comment);
        n.foot_comment = into_text(end.foot_comment);
        Ok(n)
    }

    fn mapping(&mut self) -> Result<Node> {
        let mut ev = self.take()?;
        let tag = text(&ev.tag);
        let mut n = self.node(&mut ev, Kind::Mapping, MAP_TAG, &tag, String::new());
        let block = !ev.flow;
        if ev.flow {
            n.style.0 |= Style::FLOW.0;
        }
        self.anchor(&mut n, &ev);
        while self.peek()? != EventKind::MappingEnd {
            let mut k = self.parse()?;
            if block && !k.foot_comment.is_empty() && n.content.len() >= 2 {
                // A foot comment on a key is the foot of the prior value,
                // being dedented.
                let prior = n.content.len() - 2;
                n.content[prior].foot_comment = std::mem::take(&mut k.foot_comment);
            }
            let mut v = self.parse()?;
            if k.foot_comment.is_empty() && !v.foot_comment.is_empty() {
                k.foot_comment = std::mem::take(&mut v.foot_comment);
            }
            if self.peek()? == EventKind::TailComment {
                let tail = self.take()?;
                if k.foot_comment.is_empty() {
                    k.foot_comment = into_text(tail.foot_comment);
                }
            }
            n.content.push(k);
            n.content.push(v);
        }
        let end = self.take()?;
        n.line_comment = into_text(end.line_comment);
        n.foot_comment = into_text(end.foot_comment);
        if !n.style.has(Style::FLOW) && !n.foot_comment.is_empty() && n.content.len() > 1 {
            let last_key = n.content.len() - 2;
            n.content[last_key].foot_comment = std::mem::take(&mut n.foot_comment);
        }
        Ok(n)
    }
}
