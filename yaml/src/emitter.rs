//! The emitter: node trees in, text out, formatted exactly as go-yaml v3
//! formats them (2-space indent, no line wrapping, sequences indented under
//! their key, comments re-attached head/line/foot).
//!
//! Structure follows libyaml's emitter: a serializer turns nodes into
//! events, and a state machine with a small look-ahead queue writes them.

use super::chars::*;
use super::compose::{long_tag, short_tag};
use super::node::{Kind, Node, Style, STR_TAG};
use super::parser::EventKind;
use super::resolve::resolve;
use super::token::ScalarStyle;

/// Renders one document (a document node, or any node, which is then
/// wrapped in an implicit document) the way `yaml.Encoder.Encode` does.
pub fn emit_document(node: &Node, indent: usize) -> String {
    let mut e = Emitter::new(indent);
    e.emit(Event {
        kind: EventKind::StreamStart,
        ..Event::default()
    });
    if node.kind == Kind::Document {
        e.serialize(node, "", false);
    } else {
        e.emit(Event {
            kind: EventKind::DocumentStart,
            implicit: true,
            ..Event::default()
        });
        e.serialize(node, "", false);
        e.emit(Event {
            kind: EventKind::DocumentEnd,
            implicit: true,
            ..Event::default()
        });
    }
    // The input is valid UTF-8 and the emitter only writes whole characters
    // or ASCII escapes.
    String::from_utf8(e.out).unwrap_or_default()
}

/// An event to emit; its text borrows from the node tree being written.
#[derive(Clone, Debug, Default)]
struct Event<'a> {
    kind: EventKind,
    anchor: &'a [u8],
    /// Full tag (`tag:yaml.org,2002:str`); owned when expanded from `!!`.
    tag: std::borrow::Cow<'a, [u8]>,
    value: &'a [u8],
    implicit: bool,
    quoted_implicit: bool,
    style: ScalarStyle,
    flow: bool,
    /// For collection starts: the collection has no entries. (libyaml
    /// learns this by queueing events; the serializer knows it.)
    empty: bool,
    head_comment: &'a [u8],
    line_comment: &'a [u8],
    foot_comment: &'a [u8],
    tail_comment: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    StreamStart,
    FirstDocumentStart,
    DocumentStart,
    DocumentContent,
    DocumentEnd,
    FlowSequenceFirstItem,
    FlowSequenceTrailItem,
    FlowSequenceItem,
    FlowMappingFirstKey,
    FlowMappingTrailKey,
    FlowMappingKey,
    FlowMappingSimpleValue,
    FlowMappingValue,
    BlockSequenceFirstItem,
    BlockSequenceItem,
    BlockMappingFirstKey,
    BlockMappingKey,
    BlockMappingSimpleValue,
    BlockMappingValue,
    End,
}

#[derive(Default)]
struct ScalarAnalysis<'a> {
    value: &'a [u8],
    multiline: bool,
    flow_plain_allowed: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
    style: ScalarStyle,
}

struct Emitter<'a> {
    out: Vec<u8>,
    best_indent: i64,
    best_width: i64,

    state: State,
    states: Vec<State>,
    indent: i64,
    indents: Vec<i64>,
    flow_level: i64,
    root_context: bool,
    sequence_context: bool,
    mapping_context: bool,
    simple_key_context: bool,
    line: i64,
    column: i64,
    whitespace: bool,
    indention: bool,
    open_ended: bool,
    space_above: bool,
    foot_indent: i64,

    anchor: &'a [u8],
    anchor_is_alias: bool,
    tag_handle: &'static [u8],
    tag_suffix: Vec<u8>,
    scalar: ScalarAnalysis<'a>,

    head_comment: &'a [u8],
    line_comment: &'a [u8],
    foot_comment: &'a [u8],
    tail_comment: &'a [u8],
    key_line_comment: &'a [u8],
}

const TAG_DIRECTIVES: [(&[u8], &[u8]); 2] = [(b"!", b"!"), (b"!!", b"tag:yaml.org,2002:")];

impl<'a> Emitter<'a> {
    fn new(indent: usize) -> Emitter<'a> {
        Emitter {
            out: Vec::new(),
            best_indent: indent as i64,
            best_width: i64::from(i32::MAX),
            state: State::StreamStart,
            states: Vec::new(),
            indent: -1,
            indents: Vec::new(),
            flow_level: 0,
            root_context: false,
            sequence_context: false,
            mapping_context: false,
            simple_key_context: false,
            line: 0,
            column: 0,
            whitespace: true,
            indention: true,
            open_ended: false,
            space_above: true,
            foot_indent: -1,
            anchor: &[],
            anchor_is_alias: false,
            tag_handle: &[],
            tag_suffix: Vec::new(),
            scalar: ScalarAnalysis::default(),
            head_comment: &[],
            line_comment: &[],
            foot_comment: &[],
            tail_comment: &[],
            key_line_comment: &[],
        }
    }

    // ---- serializer: nodes to events -------------------------------------

    fn serialize(&mut self, node: &'a Node, tail: &'a str, skip_foot: bool) {
        let stag = short_tag(&node.tag);
        let mut tag: &str = &node.tag;
        let mut force_quoting = false;
        if !tag.is_empty() && !node.style.has(Style::TAGGED) {
            if node.kind == Kind::Scalar {
                let quoted = Style(
                    Style::SINGLE_QUOTED.0
                        | Style::DOUBLE_QUOTED.0
                        | Style::LITERAL.0
                        | Style::FOLDED.0,
                );
                if stag == STR_TAG && node.style.has(quoted) {
                    tag = "";
                } else {
                    let rtag = resolve(&node.value);
                    if rtag == stag {
                        tag = "";
                    } else if stag == STR_TAG {
                        tag = "";
                        force_quoting = true;
                    }
                }
            } else {
                let rtag = match node.kind {
                    Kind::Mapping => "!!map",
                    Kind::Sequence => "!!seq",
                    _ => STR_TAG,
                };
                if rtag == stag {
                    tag = "";
                }
            }
        }
        let long = |t: &str| -> std::borrow::Cow<'a, [u8]> {
            if t.is_empty() {
                std::borrow::Cow::Borrowed(&[])
            } else {
                std::borrow::Cow::Owned(long_tag(t).into_bytes())
            }
        };
        let foot: &'a [u8] = if skip_foot {
            &[]
        } else {
            node.foot_comment.as_bytes()
        };
        match node.kind {
            Kind::Document => {
                self.emit(Event {
                    kind: EventKind::DocumentStart,
                    implicit: true,
                    head_comment: node.head_comment.as_bytes(),
                    ..Event::default()
                });
                for child in &node.content {
                    self.serialize(child, "", false);
                }
                self.emit(Event {
                    kind: EventKind::DocumentEnd,
                    implicit: true,
                    foot_comment: foot,
                    ..Event::default()
                });
            }
            Kind::Sequence => {
                self.emit(Event {
                    kind: EventKind::SequenceStart,
                    anchor: node.anchor.as_bytes(),
                    tag: long(tag),
                    implicit: tag.is_empty(),
                    flow: node.style.has(Style::FLOW),
                    empty: node.content.is_empty(),
                    head_comment: node.head_comment.as_bytes(),
                    ..Event::default()
                });
                for child in &node.content {
                    self.serialize(child, "", false);
                }
                self.emit(Event {
                    kind: EventKind::SequenceEnd,
                    line_comment: node.line_comment.as_bytes(),
                    foot_comment: foot,
                    ..Event::default()
                });
            }
            Kind::Mapping => {
                self.emit(Event {
                    kind: EventKind::MappingStart,
                    anchor: node.anchor.as_bytes(),
                    tag: long(tag),
                    implicit: tag.is_empty(),
                    flow: node.style.has(Style::FLOW),
                    empty: node.content.is_empty(),
                    tail_comment: tail.as_bytes(),
                    head_comment: node.head_comment.as_bytes(),
                    ..Event::default()
                });
                // A key's foot comment is printed after its value: carry it
                // to the next key (or the mapping end) as a tail.
                let mut tail: &'a str = "";
                for kv in node.content.chunks(2) {
                    let k = &kv[0];
                    self.serialize(k, tail, true);
                    tail = &k.foot_comment;
                    if let Some(v) = kv.get(1) {
                        self.serialize(v, "", false);
                    }
                }
                self.emit(Event {
                    kind: EventKind::MappingEnd,
                    tail_comment: tail.as_bytes(),
                    line_comment: node.line_comment.as_bytes(),
                    foot_comment: foot,
                    ..Event::default()
                });
            }
            Kind::Alias => {
                self.emit(Event {
                    kind: EventKind::Alias,
                    anchor: node.value.as_bytes(),
                    head_comment: node.head_comment.as_bytes(),
                    line_comment: node.line_comment.as_bytes(),
                    foot_comment: foot,
                    ..Event::default()
                });
            }
            Kind::Scalar => {
                let style = if node.style.has(Style::DOUBLE_QUOTED) {
                    ScalarStyle::DoubleQuoted
                } else if node.style.has(Style::SINGLE_QUOTED) {
                    ScalarStyle::SingleQuoted
                } else if node.style.has(Style::LITERAL) {
                    ScalarStyle::Literal
                } else if node.style.has(Style::FOLDED) {
                    ScalarStyle::Folded
                } else if node.value.contains('\n') {
                    ScalarStyle::Literal
                } else if force_quoting {
                    ScalarStyle::DoubleQuoted
                } else {
                    ScalarStyle::Plain
                };
                let implicit = tag.is_empty();
                self.emit(Event {
                    kind: EventKind::Scalar,
                    anchor: node.anchor.as_bytes(),
                    tag: long(tag),
                    value: node.value.as_bytes(),
                    implicit,
                    quoted_implicit: implicit,
                    style,
                    head_comment: node.head_comment.as_bytes(),
                    line_comment: node.line_comment.as_bytes(),
                    foot_comment: foot,
                    tail_comment: tail.as_bytes(),
                    ..Event::default()
                });
            }
        }
    }

    // ---- events ------------------------------------------------------------

    /// Writes one event. libyaml queues up to three events of look-ahead to
    /// learn whether a collection is empty; events here carry that.
    fn emit(&mut self, event: Event<'a>) {
        self.analyze_event(&event);
        self.state_machine(&event);
    }

    fn pop_state(&mut self) {
        self.state = self.states.pop().unwrap_or(State::End);
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { self.best_indent } else { 0 };
        } else if !indentless {
            if self.states.last() == Some(&State::BlockSequenceItem) {
                // The first indent inside a sequence just skips the "- ".
                self.indent += 2;
            } else {
                self.indent =
                    self.best_indent * ((self.indent + self.best_indent) / self.best_indent);
            }
        }
    }

    fn state_machine(&mut self, ev: &Event<'a>) {
        match self.state {
            State::StreamStart => self.emit_stream_start(ev),
            State::FirstDocumentStart => self.emit_document_start(ev, true),
            State::DocumentStart => self.emit_document_start(ev, false),
            State::DocumentContent => self.emit_document_content(ev),
            State::DocumentEnd => self.emit_document_end(ev),
            State::FlowSequenceFirstItem => self.emit_flow_sequence_item(ev, true, false),
            State::FlowSequenceTrailItem => self.emit_flow_sequence_item(ev, false, true),
            State::FlowSequenceItem => self.emit_flow_sequence_item(ev, false, false),
            State::FlowMappingFirstKey => self.emit_flow_mapping_key(ev, true, false),
            State::FlowMappingTrailKey => self.emit_flow_mapping_key(ev, false, true),
            State::FlowMappingKey => self.emit_flow_mapping_key(ev, false, false),
            State::FlowMappingSimpleValue => self.emit_flow_mapping_value(ev, true),
            State::FlowMappingValue => self.emit_flow_mapping_value(ev, false),
            State::BlockSequenceFirstItem => self.emit_block_sequence_item(ev, true),
            State::BlockSequenceItem => self.emit_block_sequence_item(ev, false),
            State::BlockMappingFirstKey => self.emit_block_mapping_key(ev, true),
            State::BlockMappingKey => self.emit_block_mapping_key(ev, false),
            State::BlockMappingSimpleValue => self.emit_block_mapping_value(ev, true),
            State::BlockMappingValue => self.emit_block_mapping_value(ev, false),
            State::End => {}
        }
    }

    fn emit_stream_start(&mut self, _ev: &Event<'a>) {
        if self.best_indent < 2 || self.best_indent > 9 {
            self.best_indent = 2;
        }
        self.indent = -1;
        self.line = 0;
        self.column = 0;
        self.whitespace = true;
        self.indention = true;
        self.space_above = true;
        self.foot_indent = -1;
        self.state = State::FirstDocumentStart;
    }

    fn emit_document_start(&mut self, ev: &Event<'a>, first: bool) {
        if ev.kind == EventKind::DocumentStart {
            let implicit = ev.implicit && first;
            if !implicit {
                self.write_indent();
                self.write_indicator(b"---", true, false, false);
                self.write_indent();
            }
            if !self.head_comment.is_empty() {
                self.process_head_comment();
                self.put_break();
            }
            self.state = State::DocumentContent;
            return;
        }
        if ev.kind == EventKind::StreamEnd {
            if self.open_ended {
                self.write_indicator(b"...", true, false, false);
                self.write_indent();
            }
            self.state = State::End;
        }
    }

    fn emit_document_content(&mut self, ev: &Event<'a>) {
        self.states.push(State::DocumentEnd);
        self.process_head_comment();
        self.emit_node(ev, true, false, false, false);
        self.process_line_comment();
        self.process_foot_comment();
    }

    fn emit_document_end(&mut self, ev: &Event<'a>) {
        if ev.kind != EventKind::DocumentEnd {
            return;
        }
        // Force document foot separation.
        self.foot_indent = 0;
        self.process_foot_comment();
        self.foot_indent = -1;
        self.write_indent();
        if !ev.implicit {
            self.write_indicator(b"...", true, false, false);
            self.write_indent();
        }
        self.state = State::DocumentStart;
    }

    fn has_trailing_comments(&self) -> bool {
        !self.line_comment.is_empty()
            || !self.foot_comment.is_empty()
            || !self.tail_comment.is_empty()
    }

    fn emit_flow_sequence_item(&mut self, ev: &Event<'a>, first: bool, trail: bool) {
        if first {
            self.write_indicator(b"[", true, true, false);
            self.increase_indent(true, false);
            self.flow_level += 1;
        }
        if ev.kind == EventKind::SequenceEnd {
            self.flow_level -= 1;
            self.pop_indent();
            if self.column == 0 {
                self.write_indent();
            }
            self.write_indicator(b"]", false, false, false);
            self.process_line_comment();
            self.process_foot_comment();
            self.pop_state();
            return;
        }
        if !first && !trail {
            self.write_indicator(b",", false, false, false);
        }
        self.process_head_comment();
        if self.column == 0 {
            self.write_indent();
        }
        if self.column > self.best_width {
            self.write_indent();
        }
        if self.has_trailing_comments() {
            self.states.push(State::FlowSequenceTrailItem);
        } else {
            self.states.push(State::FlowSequenceItem);
        }
        self.emit_node(ev, false, true, false, false);
        if self.has_trailing_comments() {
            self.write_indicator(b",", false, false, false);
        }
        self.process_line_comment();
        self.process_foot_comment();
    }

    fn emit_flow_mapping_key(&mut self, ev: &Event<'a>, first: bool, trail: bool) {
        if first {
            self.write_indicator(b"{", true, true, false);
            self.increase_indent(true, false);
            self.flow_level += 1;
        }
        if ev.kind == EventKind::MappingEnd {
            if (!self.head_comment.is_empty()
                || !self.foot_comment.is_empty()
                || !self.tail_comment.is_empty())
                && !first
                && !trail
            {
                self.write_indicator(b",", false, false, false);
            }
            self.process_head_comment();
            self.flow_level -= 1;
            self.pop_indent();
            self.write_indicator(b"}", false, false, false);
            self.process_line_comment();
            self.process_foot_comment();
            self.pop_state();
            return;
        }
        if !first && !trail {
            self.write_indicator(b",", false, false, false);
        }
        self.process_head_comment();
        if self.column == 0 {
            self.write_indent();
        }
        if self.column > self.best_width {
            self.write_indent();
        }
        if self.check_simple_key(ev) {
            self.states.push(State::FlowMappingSimpleValue);
            self.emit_node(ev, false, false, true, true);
            return;
        }
        self.write_indicator(b"?", true, false, false);
        self.states.push(State::FlowMappingValue);
        self.emit_node(ev, false, false, true, false);
    }

    fn emit_flow_mapping_value(&mut self, ev: &Event<'a>, simple: bool) {
        if simple {
            self.write_indicator(b":", false, false, false);
        } else {
            if self.column > self.best_width {
                self.write_indent();
            }
            self.write_indicator(b":", true, false, false);
        }
        if self.has_trailing_comments() {
            self.states.push(State::FlowMappingTrailKey);
        } else {
            self.states.push(State::FlowMappingKey);
        }
        self.emit_node(ev, false, false, true, false);
        if self.has_trailing_comments() {
            self.write_indicator(b",", false, false, false);
        }
        self.process_line_comment();
        self.process_foot_comment();
    }

    fn emit_block_sequence_item(&mut self, ev: &Event<'a>, first: bool) {
        if first {
            self.increase_indent(false, false);
        }
        if ev.kind == EventKind::SequenceEnd {
            self.pop_indent();
            self.pop_state();
            return;
        }
        self.process_head_comment();
        self.write_indent();
        self.write_indicator(b"-", true, false, true);
        self.states.push(State::BlockSequenceItem);
        self.emit_node(ev, false, true, false, false);
        self.process_line_comment();
        self.process_foot_comment();
    }

    fn emit_block_mapping_key(&mut self, ev: &Event<'a>, first: bool) {
        if first {
            self.increase_indent(false, false);
        }
        self.process_head_comment();
        if ev.kind == EventKind::MappingEnd {
            self.pop_indent();
            self.pop_state();
            return;
        }
        self.write_indent();
        if !self.line_comment.is_empty() {
            // A line comment on a key: keep it for after the value
            // indicator.
            self.key_line_comment = std::mem::take(&mut self.line_comment);
        }
        if self.check_simple_key(ev) {
            self.states.push(State::BlockMappingSimpleValue);
            self.emit_node(ev, false, false, true, true);
            return;
        }
        self.write_indicator(b"?", true, false, true);
        self.states.push(State::BlockMappingValue);
        self.emit_node(ev, false, false, true, false);
    }

    fn emit_block_mapping_value(&mut self, ev: &Event<'a>, simple: bool) {
        if simple {
            self.write_indicator(b":", false, false, false);
        } else {
            self.write_indent();
            self.write_indicator(b":", true, false, true);
        }
        if !self.key_line_comment.is_empty() {
            if ev.kind == EventKind::Scalar {
                if self.line_comment.is_empty() {
                    // The scalar has no line comment of its own: it takes the
                    // key's. Otherwise the key's is lost.
                    self.line_comment = std::mem::take(&mut self.key_line_comment);
                }
            } else if !ev.flow
                && (ev.kind == EventKind::MappingStart || ev.kind == EventKind::SequenceStart)
            {
                // An indented block follows: write the comment now.
                std::mem::swap(&mut self.line_comment, &mut self.key_line_comment);
                self.process_line_comment();
                std::mem::swap(&mut self.line_comment, &mut self.key_line_comment);
            }
        }
        self.states.push(State::BlockMappingKey);
        self.emit_node(ev, false, false, true, false);
        self.process_line_comment();
        self.process_foot_comment();
    }

    fn emit_node(
        &mut self,
        ev: &Event<'a>,
        root: bool,
        sequence: bool,
        mapping: bool,
        simple_key: bool,
    ) {
        self.root_context = root;
        self.sequence_context = sequence;
        self.mapping_context = mapping;
        self.simple_key_context = simple_key;
        match ev.kind {
            EventKind::Alias => {
                self.process_anchor();
                self.pop_state();
            }
            EventKind::Scalar => {
                self.select_scalar_style(ev);
                self.process_anchor();
                self.process_tag();
                self.increase_indent(true, false);
                self.process_scalar();
                self.pop_indent();
                self.pop_state();
            }
            EventKind::SequenceStart => {
                self.process_anchor();
                self.process_tag();
                if self.flow_level > 0 || ev.flow || ev.empty {
                    self.state = State::FlowSequenceFirstItem;
                } else {
                    self.state = State::BlockSequenceFirstItem;
                }
            }
            EventKind::MappingStart => {
                self.process_anchor();
                self.process_tag();
                if self.flow_level > 0 || ev.flow || ev.empty {
                    self.state = State::FlowMappingFirstKey;
                } else {
                    self.state = State::BlockMappingFirstKey;
                }
            }
            _ => {}
        }
    }

    fn check_simple_key(&self, ev: &Event<'a>) -> bool {
        let len = match ev.kind {
            EventKind::Alias => self.anchor.len(),
            EventKind::Scalar => {
                if self.scalar.multiline {
                    return false;
                }
                self.anchor.len()
                    + self.tag_handle.len()
                    + self.tag_suffix.len()
                    + self.scalar.value.len()
            }
            EventKind::SequenceStart | EventKind::MappingStart => {
                if !ev.empty {
                    return false;
                }
                self.anchor.len() + self.tag_handle.len() + self.tag_suffix.len()
            }
            _ => return false,
        };
        if len <= 1024 {
            return true;
        }
        if len > 4096 {
            return false;
        }
        let chars = |b: &[u8]| String::from_utf8_lossy(b).chars().count();
        let n = chars(self.anchor)
            + chars(self.tag_handle)
            + chars(&self.tag_suffix)
            + if ev.kind == EventKind::Scalar {
                chars(self.scalar.value)
            } else {
                0
            };
        n <= 1024
    }

    fn select_scalar_style(&mut self, ev: &Event<'a>) {
        let no_tag = self.tag_handle.is_empty() && self.tag_suffix.is_empty();
        let mut style = ev.style;
        if style == ScalarStyle::Any {
            style = ScalarStyle::Plain;
        }
        if self.simple_key_context && self.scalar.multiline {
            style = ScalarStyle::DoubleQuoted;
        }
        if style == ScalarStyle::Plain {
            if (self.flow_level > 0 && !self.scalar.flow_plain_allowed)
                || (self.flow_level == 0 && !self.scalar.block_plain_allowed)
            {
                style = ScalarStyle::SingleQuoted;
            }
            if self.scalar.value.is_empty() && (self.flow_level > 0 || self.simple_key_context) {
                style = ScalarStyle::SingleQuoted;
            }
            if no_tag && !ev.implicit {
                style = ScalarStyle::SingleQuoted;
            }
        }
        if style == ScalarStyle::SingleQuoted && !self.scalar.single_quoted_allowed {
            style = ScalarStyle::DoubleQuoted;
        }
        if (style == ScalarStyle::Literal || style == ScalarStyle::Folded)
            && (!self.scalar.block_allowed || self.flow_level > 0 || self.simple_key_context)
        {
            style = ScalarStyle::DoubleQuoted;
        }
        if no_tag && !ev.quoted_implicit && style != ScalarStyle::Plain {
            self.tag_handle = b"!";
        }
        self.scalar.style = style;
    }

    fn process_anchor(&mut self) {
        if self.anchor.is_empty() {
            return;
        }
        let c: &[u8] = if self.anchor_is_alias { b"*" } else { b"&" };
        self.write_indicator(c, true, false, false);
        let a = std::mem::take(&mut self.anchor);
        self.write_all(a);
        self.anchor = a;
        self.whitespace = false;
        self.indention = false;
    }

    fn process_tag(&mut self) {
        if self.tag_handle.is_empty() && self.tag_suffix.is_empty() {
            return;
        }
        if !self.tag_handle.is_empty() {
            let h = self.tag_handle;
            self.write_tag_handle(h);
            if !self.tag_suffix.is_empty() {
                let s = self.tag_suffix.clone();
                self.write_tag_content(&s, false);
            }
        } else {
            self.write_indicator(b"!<", true, false, false);
            let s = self.tag_suffix.clone();
            self.write_tag_content(&s, false);
            self.write_indicator(b">", false, false, false);
        }
    }

    fn process_scalar(&mut self) {
        let value = std::mem::take(&mut self.scalar.value);
        let allow_breaks = !self.simple_key_context;
        match self.scalar.style {
            ScalarStyle::Plain | ScalarStyle::Any => self.write_plain_scalar(value, allow_breaks),
            ScalarStyle::SingleQuoted => self.write_single_quoted_scalar(value, allow_breaks),
            ScalarStyle::DoubleQuoted => self.write_double_quoted_scalar(value, allow_breaks),
            ScalarStyle::Literal => self.write_literal_scalar(value),
            ScalarStyle::Folded => self.write_folded_scalar(value),
        }
        self.scalar.value = value;
    }

    fn process_head_comment(&mut self) {
        if !self.tail_comment.is_empty() {
            self.write_indent();
            let c = std::mem::take(&mut self.tail_comment);
            self.write_comment(c);
            self.foot_indent = self.indent.max(0);
        }
        if self.head_comment.is_empty() {
            return;
        }
        self.write_indent();
        let c = std::mem::take(&mut self.head_comment);
        self.write_comment(c);
    }

    fn process_line_comment(&mut self) {
        if self.line_comment.is_empty() {
            return;
        }
        if !self.whitespace {
            self.put(b' ');
        }
        let c = std::mem::take(&mut self.line_comment);
        self.write_comment(c);
    }

    fn process_foot_comment(&mut self) {
        if self.foot_comment.is_empty() {
            return;
        }
        self.write_indent();
        let c = std::mem::take(&mut self.foot_comment);
        self.write_comment(c);
        self.foot_indent = self.indent.max(0);
    }

    /// Points the emitter's pending comments, anchor and value at the
    /// event's.
    fn analyze_event(&mut self, ev: &Event<'a>) {
        self.anchor = &[];
        self.anchor_is_alias = false;
        self.tag_handle = &[];
        self.tag_suffix.clear();
        self.scalar.value = &[];
        if !ev.head_comment.is_empty() {
            self.head_comment = ev.head_comment;
        }
        if !ev.line_comment.is_empty() {
            self.line_comment = ev.line_comment;
        }
        if !ev.foot_comment.is_empty() {
            self.foot_comment = ev.foot_comment;
        }
        if !ev.tail_comment.is_empty() {
            self.tail_comment = ev.tail_comment;
        }
        match ev.kind {
            EventKind::Alias => {
                self.anchor = ev.anchor;
                self.anchor_is_alias = true;
            }
            EventKind::Scalar => {
                self.anchor = ev.anchor;
                if !ev.tag.is_empty() && !ev.implicit && !ev.quoted_implicit {
                    self.analyze_tag(&ev.tag);
                }
                self.analyze_scalar(ev.value);
            }
            EventKind::SequenceStart | EventKind::MappingStart => {
                self.anchor = ev.anchor;
                if !ev.tag.is_empty() && !ev.implicit {
                    self.analyze_tag(&ev.tag);
                }
            }
            _ => {}
        }
    }

    fn analyze_tag(&mut self, tag: &[u8]) {
        for (handle, prefix) in TAG_DIRECTIVES {
            if tag.starts_with(prefix) {
                self.tag_handle = handle;
                self.tag_suffix = tag[prefix.len()..].to_vec();
                return;
            }
        }
        self.tag_suffix = tag.to_vec();
    }

    fn analyze_scalar(&mut self, value: &'a [u8]) {
        self.analyze_scalar_flags(value);
        self.scalar.value = value;
    }

    fn analyze_scalar_flags(&mut self, value: &[u8]) {
        let s = &mut self.scalar;
        if value.is_empty() {
            s.multiline = false;
            s.flow_plain_allowed = false;
            s.block_plain_allowed = true;
            s.single_quoted_allowed = true;
            s.block_allowed = false;
            return;
        }
        let mut block_indicators = false;
        let mut flow_indicators = false;
        let mut line_breaks = false;
        let mut special_characters = false;
        let mut tab_characters = false;
        let mut leading_space = false;
        let mut leading_break = false;
        let mut trailing_space = false;
        let mut trailing_break = false;
        let mut break_space = false;
        let mut space_break = false;
        let mut previous_space = false;
        let mut previous_break = false;

        if value.len() >= 3 && (value.starts_with(b"---") || value.starts_with(b"...")) {
            block_indicators = true;
            flow_indicators = true;
        }
        let mut preceded_by_whitespace = true;
        let mut i = 0;
        while i < value.len() {
            let w = width(value[i]).max(1);
            let followed_by_whitespace = i + w >= value.len() || is_blank(value, i + w);
            let c = value[i];
            if i == 0 {
                match c {
                    b'#' | b',' | b'[' | b']' | b'{' | b'}' | b'&' | b'*' | b'!' | b'|' | b'>'
                    | b'\'' | b'"' | b'%' | b'@' | b'`' => {
                        flow_indicators = true;
                        block_indicators = true;
                    }
                    b'?' | b':' => {
                        flow_indicators = true;
                        if followed_by_whitespace {
                            block_indicators = true;
                        }
                    }
                    b'-' if followed_by_whitespace => {
                        flow_indicators = true;
                        block_indicators = true;
                    }
                    _ => {}
                }
            } else {
                match c {
                    b',' | b'?' | b'[' | b']' | b'{' | b'}' => flow_indicators = true,
                    b':' => {
                        flow_indicators = true;
                        if followed_by_whitespace {
                            block_indicators = true;
                        }
                    }
                    b'#' if preceded_by_whitespace => {
                        flow_indicators = true;
                        block_indicators = true;
                    }
                    _ => {}
                }
            }
            if c == b'\t' {
                tab_characters = true;
            } else if !is_printable(value, i) {
                special_characters = true;
            }
            if is_space(value, i) {
                if i == 0 {
                    leading_space = true;
                }
                if i + w == value.len() {
                    trailing_space = true;
                }
                if previous_break {
                    break_space = true;
                }
                previous_space = true;
                previous_break = false;
            } else if is_break(value, i) {
                line_breaks = true;
                if i == 0 {
                    leading_break = true;
                }
                if i + w == value.len() {
                    trailing_break = true;
                }
                if previous_space {
                    space_break = true;
                }
                previous_space = false;
                previous_break = true;
            } else {
                previous_space = false;
                previous_break = false;
            }
            preceded_by_whitespace = is_blankz(value, i);
            i += w;
        }
        s.multiline = line_breaks;
        s.flow_plain_allowed = true;
        s.block_plain_allowed = true;
        s.single_quoted_allowed = true;
        s.block_allowed = true;
        if leading_space || leading_break || trailing_space || trailing_break {
            s.flow_plain_allowed = false;
            s.block_plain_allowed = false;
        }
        if trailing_space {
            s.block_allowed = false;
        }
        if break_space {
            s.flow_plain_allowed = false;
            s.block_plain_allowed = false;
            s.single_quoted_allowed = false;
        }
        if space_break || tab_characters || special_characters {
            s.flow_plain_allowed = false;
            s.block_plain_allowed = false;
            s.single_quoted_allowed = false;
        }
        if space_break || special_characters {
            s.block_allowed = false;
        }
        if line_breaks {
            s.flow_plain_allowed = false;
            s.block_plain_allowed = false;
        }
        if flow_indicators {
            s.flow_plain_allowed = false;
        }
        if block_indicators {
            s.block_plain_allowed = false;
        }
    }

    // ---- writers -----------------------------------------------------------

    fn put(&mut self, c: u8) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push(b'\n');
        if self.column == 0 {
            self.space_above = true;
        }
        self.column = 0;
        self.line += 1;
        self.indention = true;
    }

    /// Writes one character of `s` at `*i`.
    fn write(&mut self, s: &[u8], i: &mut usize) {
        let w = width(s[*i]).max(1);
        let end = (*i + w).min(s.len());
        self.out.extend_from_slice(&s[*i..end]);
        self.column += 1;
        *i = end;
    }

    fn write_all(&mut self, s: &[u8]) {
        let mut i = 0;
        while i < s.len() {
            self.write(s, &mut i);
        }
    }

    fn write_break(&mut self, s: &[u8], i: &mut usize) {
        if s[*i] == b'\n' {
            self.put_break();
            *i += 1;
        } else {
            self.write(s, i);
            if self.column == 0 {
                self.space_above = true;
            }
            self.column = 0;
            self.line += 1;
            self.indention = true;
        }
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        if self.foot_indent == indent {
            self.put_break();
        }
        while self.column < indent {
            self.put(b' ');
        }
        self.whitespace = true;
        self.space_above = false;
        self.foot_indent = -1;
    }

    fn write_indicator(
        &mut self,
        indicator: &[u8],
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(b' ');
        }
        self.write_all(indicator);
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
        self.open_ended = false;
    }

    fn write_tag_handle(&mut self, value: &[u8]) {
        if !self.whitespace {
            self.put(b' ');
        }
        self.write_all(value);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_tag_content(&mut self, value: &[u8], need_whitespace: bool) {
        if need_whitespace && !self.whitespace {
            self.put(b' ');
        }
        let mut i = 0;
        while i < value.len() {
            let c = value[i];
            let must_write = matches!(
                c,
                b';' | b'/'
                    | b'?'
                    | b':'
                    | b'@'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b','
                    | b'_'
                    | b'.'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b'['
                    | b']'
            ) || is_alpha(value, i);
            if must_write {
                self.write(value, &mut i);
            } else {
                let w = width(c).max(1);
                for _ in 0..w {
                    let octet = value[i];
                    i += 1;
                    self.put(b'%');
                    let hex = b"0123456789ABCDEF";
                    self.put(hex[(octet >> 4) as usize]);
                    self.put(hex[(octet & 0x0F) as usize]);
                }
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    /// Writes a run of non-break characters in one go.
    fn write_run(&mut self, run: &[u8]) {
        self.out.extend_from_slice(run);
        self.column += run.iter().filter(|&&b| b & 0xC0 != 0x80).count() as i64;
    }

    fn write_plain_scalar(&mut self, value: &[u8], allow_breaks: bool) {
        if !value.is_empty() && !self.whitespace {
            self.put(b' ');
        }
        // Without line breaks, and with wrapping off (best width is
        // unbounded), the loop below writes the value as it is.
        if self.column <= self.best_width
            && !value
                .iter()
                .any(|&b| b == b'\n' || b == b'\r' || b == 0xC2 || b == 0xE2)
        {
            self.write_run(value);
            if !value.is_empty() {
                self.whitespace = false;
                self.indention = false;
            }
            self.indention = false;
            if self.root_context {
                self.open_ended = true;
            }
            return;
        }
        let mut spaces = false;
        let mut breaks = false;
        let mut i = 0;
        while i < value.len() {
            if is_space(value, i) {
                if allow_breaks
                    && !spaces
                    && self.column > self.best_width
                    && !is_space(value, i + 1)
                {
                    self.write_indent();
                    i += 1;
                } else {
                    self.write(value, &mut i);
                }
                spaces = true;
            } else if is_break(value, i) {
                if !breaks && value[i] == b'\n' {
                    self.put_break();
                }
                self.write_break(value, &mut i);
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.write(value, &mut i);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        if !value.is_empty() {
            self.whitespace = false;
        }
        self.indention = false;
        if self.root_context {
            self.open_ended = true;
        }
    }

    fn write_single_quoted_scalar(&mut self, value: &[u8], allow_breaks: bool) {
        self.write_indicator(b"'", true, false, false);
        let mut spaces = false;
        let mut breaks = false;
        let mut i = 0;
        while i < value.len() {
            if is_space(value, i) {
                if allow_breaks
                    && !spaces
                    && self.column > self.best_width
                    && i > 0
                    && i < value.len() - 1
                    && !is_space(value, i + 1)
                {
                    self.write_indent();
                    i += 1;
                } else {
                    self.write(value, &mut i);
                }
                spaces = true;
            } else if is_break(value, i) {
                if !breaks && value[i] == b'\n' {
                    self.put_break();
                }
                self.write_break(value, &mut i);
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if value[i] == b'\'' {
                    self.put(b'\'');
                }
                self.write(value, &mut i);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.write_indicator(b"'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double_quoted_scalar(&mut self, value: &[u8], allow_breaks: bool) {
        let mut spaces = false;
        self.write_indicator(b"\"", true, false, false);
        let mut i = 0;
        while i < value.len() {
            if !is_printable(value, i)
                || is_bom(value, i)
                || is_break(value, i)
                || value[i] == b'"'
                || value[i] == b'\\'
            {
                let octet = value[i];
                let (w, mut v): (usize, u32) = if octet & 0x80 == 0 {
                    (1, u32::from(octet & 0x7F))
                } else if octet & 0xE0 == 0xC0 {
                    (2, u32::from(octet & 0x1F))
                } else if octet & 0xF0 == 0xE0 {
                    (3, u32::from(octet & 0x0F))
                } else {
                    (4, u32::from(octet & 0x07))
                };
                for k in 1..w {
                    v = (v << 6) + (u32::from(at(value, i + k)) & 0x3F);
                }
                i += w;
                self.put(b'\\');
                let simple = match v {
                    0x00 => Some(b'0'),
                    0x07 => Some(b'a'),
                    0x08 => Some(b'b'),
                    0x09 => Some(b't'),
                    0x0A => Some(b'n'),
                    0x0B => Some(b'v'),
                    0x0C => Some(b'f'),
                    0x0D => Some(b'r'),
                    0x1B => Some(b'e'),
                    0x22 => Some(b'"'),
                    0x5C => Some(b'\\'),
                    0x85 => Some(b'N'),
                    0xA0 => Some(b'_'),
                    0x2028 => Some(b'L'),
                    0x2029 => Some(b'P'),
                    _ => None,
                };
                match simple {
                    Some(c) => self.put(c),
                    None => {
                        let (c, digits) = if v <= 0xFF {
                            (b'x', 2)
                        } else if v <= 0xFFFF {
                            (b'u', 4)
                        } else {
                            (b'U', 8)
                        };
                        self.put(c);
                        let hex = b"0123456789ABCDEF";
                        for k in (0..digits).rev() {
                            self.put(hex[((v >> (k * 4)) & 0x0F) as usize]);
                        }
                    }
                }
                spaces = false;
            } else if is_space(value, i) {
                if allow_breaks
                    && !spaces
                    && self.column > self.best_width
                    && i > 0
                    && i < value.len() - 1
                {
                    self.write_indent();
                    if is_space(value, i + 1) {
                        self.put(b'\\');
                    }
                    i += 1;
                } else {
                    self.write(value, &mut i);
                }
                spaces = true;
            } else {
                self.write(value, &mut i);
                spaces = false;
            }
        }
        self.write_indicator(b"\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_block_scalar_hints(&mut self, value: &[u8]) {
        if is_space(value, 0) || is_break(value, 0) {
            let hint = [b'0' + self.best_indent as u8];
            self.write_indicator(&hint, false, false, false);
        }
        self.open_ended = false;
        let mut chomp: Option<u8> = None;
        if value.is_empty() {
            chomp = Some(b'-');
        } else {
            let mut i = value.len() - 1;
            while i > 0 && value[i] & 0xC0 == 0x80 {
                i -= 1;
            }
            if !is_break(value, i) {
                chomp = Some(b'-');
            } else if i == 0 {
                chomp = Some(b'+');
                self.open_ended = true;
            } else {
                i -= 1;
                while i > 0 && value[i] & 0xC0 == 0x80 {
                    i -= 1;
                }
                if is_break(value, i) {
                    chomp = Some(b'+');
                    self.open_ended = true;
                }
            }
        }
        if let Some(c) = chomp {
            self.write_indicator(&[c], false, false, false);
        }
    }

    fn write_literal_scalar(&mut self, value: &[u8]) {
        self.write_indicator(b"|", true, false, false);
        self.write_block_scalar_hints(value);
        self.process_line_comment();
        self.whitespace = true;
        let mut breaks = true;
        let mut i = 0;
        while i < value.len() {
            if is_break(value, i) {
                self.write_break(value, &mut i);
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.write(value, &mut i);
                self.indention = false;
                breaks = false;
            }
        }
    }

    fn write_folded_scalar(&mut self, value: &[u8]) {
        self.write_indicator(b">", true, false, false);
        self.write_block_scalar_hints(value);
        self.process_line_comment();
        self.whitespace = true;
        let mut breaks = true;
        let mut leading_spaces = true;
        let mut i = 0;
        while i < value.len() {
            if is_break(value, i) {
                if !breaks && !leading_spaces && value[i] == b'\n' {
                    let mut k = 0;
                    while is_break(value, k) {
                        k += width(value[k]).max(1);
                    }
                    if !is_blankz(value, k) {
                        self.put_break();
                    }
                }
                self.write_break(value, &mut i);
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                    leading_spaces = is_blank(value, i);
                }
                if !breaks
                    && is_space(value, i)
                    && !is_space(value, i + 1)
                    && self.column > self.best_width
                {
                    self.write_indent();
                    i += 1;
                } else {
                    self.write(value, &mut i);
                }
                self.indention = false;
                breaks = false;
            }
        }
    }

    fn write_comment(&mut self, comment: &[u8]) {
        let mut breaks = false;
        let mut pound = false;
        let mut i = 0;
        while i < comment.len() {
            if is_break(comment, i) {
                self.write_break(comment, &mut i);
                breaks = true;
                pound = false;
            } else {
                if breaks {
                    self.write_indent();
                }
                if !pound {
                    if comment[i] != b'#' {
                        self.put(b'#');
                        self.put(b' ');
                    }
                    pound = true;
                }
                // The rest of the line at once.
                let mut end = i;
                while end < comment.len() && !is_break(comment, end) {
                    end += 1;
                }
                self.write_run(&comment[i..end]);
                i = end;
                self.indention = false;
                breaks = false;
            }
        }
        if !breaks {
            self.put_break();
        }
        self.whitespace = true;
    }
}
