//! The parser: tokens in, events out, with the comments the scanner found
//! attached to the events that own them (go-yaml v3's placement rules).

use super::scanner::Scanner;
use super::token::{Mark, ScalarStyle, TokenKind};
use super::SyntaxError;

type Result<T> = std::result::Result<T, SyntaxError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum EventKind {
    #[default]
    None,
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    Alias,
    Scalar,
    SequenceStart,
    SequenceEnd,
    MappingStart,
    MappingEnd,
    TailComment,
}

/// The fields of a token the parser branches on.
#[derive(Clone, Copy, Debug)]
struct TokenHead {
    kind: TokenKind,
    start: Mark,
    end: Mark,
    style: ScalarStyle,
    major: i8,
    minor: i8,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Event {
    pub kind: EventKind,
    pub start: Mark,
    /// End of the event's text; kept for spans in diagnostics.
    #[allow(dead_code)]
    pub end: Mark,
    pub anchor: Vec<u8>,
    pub tag: Vec<u8>,
    pub value: Vec<u8>,
    /// libyaml's implicit-tag flags; the composer resolves tags itself.
    #[allow(dead_code)]
    pub implicit: bool,
    #[allow(dead_code)]
    pub quoted_implicit: bool,
    pub style: ScalarStyle,
    /// For collection start events: flow style.
    pub flow: bool,
    pub head_comment: Vec<u8>,
    pub line_comment: Vec<u8>,
    pub foot_comment: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    StreamStart,
    ImplicitDocumentStart,
    DocumentStart,
    DocumentContent,
    DocumentEnd,
    BlockNode,
    BlockSequenceFirstEntry,
    BlockSequenceEntry,
    IndentlessSequenceEntry,
    BlockMappingFirstKey,
    BlockMappingKey,
    BlockMappingValue,
    FlowSequenceFirstEntry,
    FlowSequenceEntry,
    FlowSequenceEntryMappingKey,
    FlowSequenceEntryMappingValue,
    FlowSequenceEntryMappingEnd,
    FlowMappingFirstKey,
    FlowMappingKey,
    FlowMappingValue,
    FlowMappingEmptyValue,
    End,
}

pub(crate) struct Parser {
    scanner: Scanner,
    state: State,
    states: Vec<State>,
    marks: Vec<Mark>,
    tag_directives: Vec<(Vec<u8>, Vec<u8>)>,
    head_comment: Vec<u8>,
    line_comment: Vec<u8>,
    foot_comment: Vec<u8>,
    tail_comment: Vec<u8>,
    stem_comment: Vec<u8>,
}

fn perr(mark: Mark, problem: &str) -> SyntaxError {
    SyntaxError::new(mark, "", problem)
}

impl Parser {
    pub(crate) fn new(input: &[u8]) -> Parser {
        Parser {
            scanner: Scanner::new(input),
            state: State::StreamStart,
            states: Vec::new(),
            marks: Vec::new(),
            tag_directives: Vec::new(),
            head_comment: Vec::new(),
            line_comment: Vec::new(),
            foot_comment: Vec::new(),
            tail_comment: Vec::new(),
            stem_comment: Vec::new(),
        }
    }

    /// The next token (without its text, see [`Parser::take_text`]), with
    /// the comments that precede it unfolded into the parser's pending
    /// head/line/foot comments.
    fn peek_token(&mut self) -> Result<TokenHead> {
        if !self.scanner.token_available {
            self.scanner.fetch_more_tokens()?;
        }
        let t = &self.scanner.tokens[self.scanner.tokens_head];
        let token = TokenHead {
            kind: t.kind,
            start: t.start,
            end: t.end,
            style: t.style,
            major: t.major,
            minor: t.minor,
        };
        self.unfold_comments(&token);
        Ok(token)
    }

    /// Takes the value, suffix and prefix of the peeked token, which is
    /// about to be skipped.
    fn take_text(&mut self) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let t = &mut self.scanner.tokens[self.scanner.tokens_head];
        (
            std::mem::take(&mut t.value),
            std::mem::take(&mut t.suffix),
            std::mem::take(&mut t.prefix),
        )
    }

    fn unfold_comments(&mut self, token: &TokenHead) {
        let sc = &mut self.scanner;
        while sc.comments_head < sc.comments.len()
            && token.start.index >= sc.comments[sc.comments_head].token_mark.index
        {
            let comment = &mut sc.comments[sc.comments_head];
            if !comment.head.is_empty() {
                if token.kind == TokenKind::BlockEnd {
                    // No heads on ends: keep it for a follow-up token.
                    break;
                }
                if !self.head_comment.is_empty() {
                    self.head_comment.push(b'\n');
                }
                self.head_comment.extend_from_slice(&comment.head);
            }
            if !comment.foot.is_empty() {
                if !self.foot_comment.is_empty() {
                    self.foot_comment.push(b'\n');
                }
                self.foot_comment.extend_from_slice(&comment.foot);
            }
            if !comment.line.is_empty() {
                if !self.line_comment.is_empty() {
                    self.line_comment.push(b'\n');
                }
                self.line_comment.extend_from_slice(&comment.line);
            }
            *comment = Default::default();
            sc.comments_head += 1;
        }
    }

    fn skip_token(&mut self) {
        let sc = &mut self.scanner;
        sc.token_available = false;
        sc.stream_end_produced = sc.tokens[sc.tokens_head].kind == TokenKind::StreamEnd;
        sc.tokens_head += 1;
        sc.tokens_parsed += 1;
    }

    fn set_event_comments(&mut self, event: &mut Event) {
        event.head_comment = std::mem::take(&mut self.head_comment);
        event.line_comment = std::mem::take(&mut self.line_comment);
        event.foot_comment = std::mem::take(&mut self.foot_comment);
        self.tail_comment.clear();
        self.stem_comment.clear();
    }

    fn pop_state(&mut self) -> State {
        self.states.pop().unwrap_or(State::End)
    }

    /// The next event; `None` after the end of the stream.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event>> {
        if self.scanner.stream_end_produced || self.state == State::End {
            return Ok(None);
        }
        let ev = match self.state {
            State::StreamStart => self.parse_stream_start()?,
            State::ImplicitDocumentStart => self.parse_document_start(true)?,
            State::DocumentStart => self.parse_document_start(false)?,
            State::DocumentContent => self.parse_document_content()?,
            State::DocumentEnd => self.parse_document_end()?,
            State::BlockNode => self.parse_node(true, false)?,
            State::BlockSequenceFirstEntry => self.parse_block_sequence_entry(true)?,
            State::BlockSequenceEntry => self.parse_block_sequence_entry(false)?,
            State::IndentlessSequenceEntry => self.parse_indentless_sequence_entry()?,
            State::BlockMappingFirstKey => self.parse_block_mapping_key(true)?,
            State::BlockMappingKey => self.parse_block_mapping_key(false)?,
            State::BlockMappingValue => self.parse_block_mapping_value()?,
            State::FlowSequenceFirstEntry => self.parse_flow_sequence_entry(true)?,
            State::FlowSequenceEntry => self.parse_flow_sequence_entry(false)?,
            State::FlowSequenceEntryMappingKey => self.parse_flow_sequence_entry_mapping_key()?,
            State::FlowSequenceEntryMappingValue => {
                self.parse_flow_sequence_entry_mapping_value()?
            }
            State::FlowSequenceEntryMappingEnd => self.parse_flow_sequence_entry_mapping_end()?,
            State::FlowMappingFirstKey => self.parse_flow_mapping_key(true)?,
            State::FlowMappingKey => self.parse_flow_mapping_key(false)?,
            State::FlowMappingValue => self.parse_flow_mapping_value(false)?,
            State::FlowMappingEmptyValue => self.parse_flow_mapping_value(true)?,
            State::End => return Ok(None),
        };
        Ok(Some(ev))
    }

    fn parse_stream_start(&mut self) -> Result<Event> {
        let token = self.peek_token()?;
        if token.kind != TokenKind::StreamStart {
            return Err(perr(token.start, "did not find expected <stream-start>"));
        }
        self.state = State::ImplicitDocumentStart;
        self.skip_token();
        Ok(Event {
            kind: EventKind::StreamStart,
            start: token.start,
            end: token.end,
            ..Event::default()
        })
    }

    fn parse_document_start(&mut self, implicit: bool) -> Result<Event> {
        let mut token = self.peek_token()?;
        if !implicit {
            while token.kind == TokenKind::DocumentEnd {
                self.skip_token();
                token = self.peek_token()?;
            }
        }
        if implicit
            && !matches!(
                token.kind,
                TokenKind::VersionDirective
                    | TokenKind::TagDirective
                    | TokenKind::DocumentStart
                    | TokenKind::StreamEnd
            )
        {
            self.process_directives()?;
            self.states.push(State::DocumentEnd);
            self.state = State::BlockNode;
            let mut head_comment = Vec::new();
            if !self.head_comment.is_empty() {
                // Split the header at its last empty line: the part before
                // goes to the document, the rest to the first node.
                let hc = &self.head_comment;
                let mut i = hc.len() - 1;
                while i > 0 {
                    if hc[i] == b'\n' {
                        if i == hc.len() - 1 {
                            head_comment = hc[..i].to_vec();
                            self.head_comment = hc[i + 1..].to_vec();
                            break;
                        } else if hc[i - 1] == b'\n' {
                            head_comment = hc[..i - 1].to_vec();
                            self.head_comment = hc[i + 1..].to_vec();
                            break;
                        }
                    }
                    i -= 1;
                }
            }
            return Ok(Event {
                kind: EventKind::DocumentStart,
                start: token.start,
                end: token.end,
                head_comment,
                implicit: true,
                ..Event::default()
            });
        }
        if token.kind != TokenKind::StreamEnd {
            let start = token.start;
            self.process_directives()?;
            let token = self.peek_token()?;
            if token.kind != TokenKind::DocumentStart {
                return Err(perr(token.start, "did not find expected <document start>"));
            }
            self.states.push(State::DocumentEnd);
            self.state = State::DocumentContent;
            self.skip_token();
            return Ok(Event {
                kind: EventKind::DocumentStart,
                start,
                end: token.end,
                implicit: false,
                ..Event::default()
            });
        }
        self.state = State::End;
        self.skip_token();
        Ok(Event {
            kind: EventKind::StreamEnd,
            start: token.start,
            end: token.end,
            ..Event::default()
        })
    }

    fn parse_document_content(&mut self) -> Result<Event> {
        let token = self.peek_token()?;
        if matches!(
            token.kind,
            TokenKind::VersionDirective
                | TokenKind::TagDirective
                | TokenKind::DocumentStart
                | TokenKind::DocumentEnd
                | TokenKind::StreamEnd
        ) {
            self.state = self.pop_state();
            return Ok(empty_scalar(token.start));
        }
        self.parse_node(true, false)
    }

    fn parse_document_end(&mut self) -> Result<Event> {
        let token = self.peek_token()?;
        let start = token.start;
        let mut end = token.start;
        let mut implicit = true;
        if token.kind == TokenKind::DocumentEnd {
            end = token.end;
            self.skip_token();
            implicit = false;
        }
        self.tag_directives.clear();
        self.state = State::DocumentStart;
        let mut ev = Event {
            kind: EventKind::DocumentEnd,
            start,
            end,
            implicit,
            ..Event::default()
        };
        self.set_event_comments(&mut ev);
        if !ev.head_comment.is_empty() && ev.foot_comment.is_empty() {
            ev.foot_comment = std::mem::take(&mut ev.head_comment);
        }
        Ok(ev)
    }

    fn parse_node(&mut self, block: bool, indentless_sequence: bool) -> Result<Event> {
        let mut token = self.peek_token()?;
        if token.kind == TokenKind::Alias {
            self.state = self.pop_state();
            let (value, _, _) = self.take_text();
            let mut ev = Event {
                kind: EventKind::Alias,
                start: token.start,
                end: token.end,
                anchor: value,
                ..Event::default()
            };
            self.set_event_comments(&mut ev);
            self.skip_token();
            return Ok(ev);
        }
        let mut start = token.start;
        let mut end = token.start;
        let mut tag_token = false;
        let mut tag_handle = Vec::new();
        let mut tag_suffix = Vec::new();
        let mut anchor = Vec::new();
        let mut tag_mark = Mark::default();
        if token.kind == TokenKind::Anchor {
            anchor = self.take_text().0;
            start = token.start;
            end = token.end;
            self.skip_token();
            token = self.peek_token()?;
            if token.kind == TokenKind::Tag {
                tag_token = true;
                (tag_handle, tag_suffix, _) = self.take_text();
                tag_mark = token.start;
                end = token.end;
                self.skip_token();
                token = self.peek_token()?;
            }
        } else if token.kind == TokenKind::Tag {
            tag_token = true;
            (tag_handle, tag_suffix, _) = self.take_text();
            start = token.start;
            tag_mark = token.start;
            end = token.end;
            self.skip_token();
            token = self.peek_token()?;
            if token.kind == TokenKind::Anchor {
                anchor = self.take_text().0;
                end = token.end;
                self.skip_token();
                token = self.peek_token()?;
            }
        }

        let mut tag = Vec::new();
        if tag_token {
            if tag_handle.is_empty() {
                tag = tag_suffix;
            } else {
                match self.tag_directives.iter().find(|(h, _)| *h == tag_handle) {
                    Some((_, prefix)) => {
                        tag = prefix.clone();
                        tag.extend_from_slice(&tag_suffix);
                    }
                    None => {
                        let _ = start;
                        return Err(perr(
                            tag_mark,
                            "while parsing a node: found undefined tag handle",
                        ));
                    }
                }
            }
        }

        let implicit = tag.is_empty();
        if indentless_sequence && token.kind == TokenKind::BlockEntry {
            self.state = State::IndentlessSequenceEntry;
            return Ok(Event {
                kind: EventKind::SequenceStart,
                start,
                end: token.end,
                anchor,
                tag,
                implicit,
                flow: false,
                ..Event::default()
            });
        }
        if token.kind == TokenKind::Scalar {
            let mut plain_implicit = false;
            let mut quoted_implicit = false;
            if (tag.is_empty() && token.style == ScalarStyle::Plain) || tag == b"!" {
                plain_implicit = true;
            } else if tag.is_empty() {
                quoted_implicit = true;
            }
            self.state = self.pop_state();
            let (value, _, _) = self.take_text();
            let mut ev = Event {
                kind: EventKind::Scalar,
                start,
                end: token.end,
                anchor,
                tag,
                value,
                implicit: plain_implicit,
                quoted_implicit,
                style: token.style,
                ..Event::default()
            };
            self.set_event_comments(&mut ev);
            self.skip_token();
            return Ok(ev);
        }
        if token.kind == TokenKind::FlowSequenceStart || token.kind == TokenKind::FlowMappingStart {
            let seq = token.kind == TokenKind::FlowSequenceStart;
            self.state = if seq {
                State::FlowSequenceFirstEntry
            } else {
                State::FlowMappingFirstKey
            };
            let mut ev = Event {
                kind: if seq {
                    EventKind::SequenceStart
                } else {
                    EventKind::MappingStart
                },
                start,
                end: token.end,
                anchor,
                tag,
                implicit,
                flow: true,
                ..Event::default()
            };
            self.set_event_comments(&mut ev);
            return Ok(ev);
        }
        if block
            && (token.kind == TokenKind::BlockSequenceStart
                || token.kind == TokenKind::BlockMappingStart)
        {
            let seq = token.kind == TokenKind::BlockSequenceStart;
            self.state = if seq {
                State::BlockSequenceFirstEntry
            } else {
                State::BlockMappingFirstKey
            };
            let mut ev = Event {
                kind: if seq {
                    EventKind::SequenceStart
                } else {
                    EventKind::MappingStart
                },
                start,
                end: token.end,
                anchor,
                tag,
                implicit,
                flow: false,
                ..Event::default()
            };
            if !self.stem_comment.is_empty() {
                ev.head_comment = std::mem::take(&mut self.stem_comment);
            }
            return Ok(ev);
        }
        if !anchor.is_empty() || !tag.is_empty() {
            self.state = self.pop_state();
            return Ok(Event {
                kind: EventKind::Scalar,
                start,
                end,
                anchor,
                tag,
                implicit,
                quoted_implicit: false,
                style: ScalarStyle::Plain,
                ..Event::default()
            });
        }
        let context = if block {
            "while parsing a block node"
        } else {
            "while parsing a flow node"
        };
        Err(SyntaxError::new(
            token.start,
            context,
            "did not find expected node content",
        ))
    }

    fn parse_block_sequence_entry(&mut self, first: bool) -> Result<Event> {
        if first {
            let token = self.peek_token()?;
            self.marks.push(token.start);
            self.skip_token();
        }
        let mut token = self.peek_token()?;
        if token.kind == TokenKind::BlockEntry {
            let mark = token.end;
            let prior_head_len = self.head_comment.len();
            self.skip_token();
            self.split_stem_comment(prior_head_len)?;
            token = self.peek_token()?;
            if token.kind != TokenKind::BlockEntry && token.kind != TokenKind::BlockEnd {
                self.states.push(State::BlockSequenceEntry);
                return self.parse_node(true, false);
            }
            self.state = State::BlockSequenceEntry;
            return Ok(empty_scalar(mark));
        }
        if token.kind == TokenKind::BlockEnd {
            self.state = self.pop_state();
            self.marks.pop();
            self.skip_token();
            return Ok(Event {
                kind: EventKind::SequenceEnd,
                start: token.start,
                end: token.end,
                ..Event::default()
            });
        }
        self.marks.pop();
        Err(SyntaxError::new(
            token.start,
            "while parsing a block collection",
            "did not find expected '-' indicator",
        ))
    }

    fn parse_indentless_sequence_entry(&mut self) -> Result<Event> {
        let mut token = self.peek_token()?;
        if token.kind == TokenKind::BlockEntry {
            let mark = token.end;
            let prior_head_len = self.head_comment.len();
            self.skip_token();
            self.split_stem_comment(prior_head_len)?;
            token = self.peek_token()?;
            if !matches!(
                token.kind,
                TokenKind::BlockEntry | TokenKind::Key | TokenKind::Value | TokenKind::BlockEnd
            ) {
                self.states.push(State::IndentlessSequenceEntry);
                return self.parse_node(true, false);
            }
            self.state = State::IndentlessSequenceEntry;
            return Ok(empty_scalar(mark));
        }
        self.state = self.pop_state();
        Ok(Event {
            kind: EventKind::SequenceEnd,
            start: token.start,
            end: token.start,
            ..Event::default()
        })
    }

    /// When a collection starts under a sequence entry, the comment before
    /// the entry belongs to the collection as a whole (the "stem").
    fn split_stem_comment(&mut self, stem_len: usize) -> Result<()> {
        if stem_len == 0 {
            return Ok(());
        }
        let token = self.peek_token()?;
        if token.kind != TokenKind::BlockSequenceStart && token.kind != TokenKind::BlockMappingStart
        {
            return Ok(());
        }
        self.stem_comment = self.head_comment[..stem_len].to_vec();
        if self.head_comment.len() == stem_len {
            self.head_comment.clear();
        } else {
            self.head_comment = self.head_comment[stem_len + 1..].to_vec();
        }
        Ok(())
    }

    fn parse_block_mapping_key(&mut self, first: bool) -> Result<Event> {
        if first {
            let token = self.peek_token()?;
            self.marks.push(token.start);
            self.skip_token();
        }
        let mut token = self.peek_token()?;
        if !self.tail_comment.is_empty() {
            return Ok(Event {
                kind: EventKind::TailComment,
                start: token.start,
                end: token.end,
                foot_comment: std::mem::take(&mut self.tail_comment),
                ..Event::default()
            });
        }
        if token.kind == TokenKind::Key {
            let mark = token.end;
            self.skip_token();
            token = self.peek_token()?;
            if !matches!(
                token.kind,
                TokenKind::Key | TokenKind::Value | TokenKind::BlockEnd
            ) {
                self.states.push(State::BlockMappingValue);
                return self.parse_node(true, true);
            }
            self.state = State::BlockMappingValue;
            return Ok(empty_scalar(mark));
        }
        if token.kind == TokenKind::BlockEnd {
            self.state = self.pop_state();
            self.marks.pop();
            let mut ev = Event {
                kind: EventKind::MappingEnd,
                start: token.start,
                end: token.end,
                ..Event::default()
            };
            self.set_event_comments(&mut ev);
            self.skip_token();
            return Ok(ev);
        }
        self.marks.pop();
        Err(SyntaxError::new(
            token.start,
            "while parsing a block mapping",
            "did not find expected key",
        ))
    }

    fn parse_block_mapping_value(&mut self) -> Result<Event> {
        let mut token = self.peek_token()?;
        if token.kind == TokenKind::Value {
            let mark = token.end;
            self.skip_token();
            token = self.peek_token()?;
            if !matches!(
                token.kind,
                TokenKind::Key | TokenKind::Value | TokenKind::BlockEnd
            ) {
                self.states.push(State::BlockMappingKey);
                return self.parse_node(true, true);
            }
            self.state = State::BlockMappingKey;
            return Ok(empty_scalar(mark));
        }
        self.state = State::BlockMappingKey;
        Ok(empty_scalar(token.start))
    }

    fn parse_flow_sequence_entry(&mut self, first: bool) -> Result<Event> {
        if first {
            let token = self.peek_token()?;
            self.marks.push(token.start);
            self.skip_token();
        }
        let mut token = self.peek_token()?;
        if token.kind != TokenKind::FlowSequenceEnd {
            if !first {
                if token.kind == TokenKind::FlowEntry {
                    self.skip_token();
                    token = self.peek_token()?;
                } else {
                    self.marks.pop();
                    return Err(SyntaxError::new(
                        token.start,
                        "while parsing a flow sequence",
                        "did not find expected ',' or ']'",
                    ));
                }
            }
            if token.kind == TokenKind::Key {
                self.state = State::FlowSequenceEntryMappingKey;
                self.skip_token();
                return Ok(Event {
                    kind: EventKind::MappingStart,
                    start: token.start,
                    end: token.end,
                    implicit: true,
                    flow: true,
                    ..Event::default()
                });
            } else if token.kind != TokenKind::FlowSequenceEnd {
                self.states.push(State::FlowSequenceEntry);
                return self.parse_node(false, false);
            }
        }
        self.state = self.pop_state();
        self.marks.pop();
        let mut ev = Event {
            kind: EventKind::SequenceEnd,
            start: token.start,
            end: token.end,
            ..Event::default()
        };
        self.set_event_comments(&mut ev);
        self.skip_token();
        Ok(ev)
    }

    fn parse_flow_sequence_entry_mapping_key(&mut self) -> Result<Event> {
        let token = self.peek_token()?;
        if !matches!(
            token.kind,
            TokenKind::Value | TokenKind::FlowEntry | TokenKind::FlowSequenceEnd
        ) {
            self.states.push(State::FlowSequenceEntryMappingValue);
            return self.parse_node(false, false);
        }
        let mark = token.end;
        self.skip_token();
        self.state = State::FlowSequenceEntryMappingValue;
        Ok(empty_scalar(mark))
    }

    fn parse_flow_sequence_entry_mapping_value(&mut self) -> Result<Event> {
        let mut token = self.peek_token()?;
        if token.kind == TokenKind::Value {
            self.skip_token();
            token = self.peek_token()?;
            if token.kind != TokenKind::FlowEntry && token.kind != TokenKind::FlowSequenceEnd {
                self.states.push(State::FlowSequenceEntryMappingEnd);
                return self.parse_node(false, false);
            }
        }
        self.state = State::FlowSequenceEntryMappingEnd;
        Ok(empty_scalar(token.start))
    }

    fn parse_flow_sequence_entry_mapping_end(&mut self) -> Result<Event> {
        let token = self.peek_token()?;
        self.state = State::FlowSequenceEntry;
        Ok(Event {
            kind: EventKind::MappingEnd,
            start: token.start,
            end: token.start,
            ..Event::default()
        })
    }

    fn parse_flow_mapping_key(&mut self, first: bool) -> Result<Event> {
        if first {
            let token = self.peek_token()?;
            self.marks.push(token.start);
            self.skip_token();
        }
        let mut token = self.peek_token()?;
        if token.kind != TokenKind::FlowMappingEnd {
            if !first {
                if token.kind == TokenKind::FlowEntry {
                    self.skip_token();
                    token = self.peek_token()?;
                } else {
                    self.marks.pop();
                    return Err(SyntaxError::new(
                        token.start,
                        "while parsing a flow mapping",
                        "did not find expected ',' or '}'",
                    ));
                }
            }
            if token.kind == TokenKind::Key {
                self.skip_token();
                token = self.peek_token()?;
                if !matches!(
                    token.kind,
                    TokenKind::Value | TokenKind::FlowEntry | TokenKind::FlowMappingEnd
                ) {
                    self.states.push(State::FlowMappingValue);
                    return self.parse_node(false, false);
                }
                self.state = State::FlowMappingValue;
                return Ok(empty_scalar(token.start));
            } else if token.kind != TokenKind::FlowMappingEnd {
                self.states.push(State::FlowMappingEmptyValue);
                return self.parse_node(false, false);
            }
        }
        self.state = self.pop_state();
        self.marks.pop();
        let mut ev = Event {
            kind: EventKind::MappingEnd,
            start: token.start,
            end: token.end,
            ..Event::default()
        };
        self.set_event_comments(&mut ev);
        self.skip_token();
        Ok(ev)
    }

    fn parse_flow_mapping_value(&mut self, empty: bool) -> Result<Event> {
        let mut token = self.peek_token()?;
        if empty {
            self.state = State::FlowMappingKey;
            return Ok(empty_scalar(token.start));
        }
        if token.kind == TokenKind::Value {
            self.skip_token();
            token = self.peek_token()?;
            if token.kind != TokenKind::FlowEntry && token.kind != TokenKind::FlowMappingEnd {
                self.states.push(State::FlowMappingKey);
                return self.parse_node(false, false);
            }
        }
        self.state = State::FlowMappingKey;
        Ok(empty_scalar(token.start))
    }

    fn process_directives(&mut self) -> Result<()> {
        let mut seen_version = false;
        let mut token = self.peek_token()?;
        let mut own: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        while token.kind == TokenKind::VersionDirective || token.kind == TokenKind::TagDirective {
            if token.kind == TokenKind::VersionDirective {
                if seen_version {
                    return Err(perr(token.start, "found duplicate %YAML directive"));
                }
                if token.major != 1 || token.minor != 1 {
                    return Err(perr(token.start, "found incompatible YAML document"));
                }
                seen_version = true;
            } else {
                let (handle, _, prefix) = self.take_text();
                if own.iter().any(|(h, _)| *h == handle) {
                    return Err(perr(token.start, "found duplicate %TAG directive"));
                }
                own.push((handle, prefix));
            }
            self.skip_token();
            token = self.peek_token()?;
        }
        self.tag_directives.extend(own);
        for (h, p) in [
            (&b"!"[..], &b"!"[..]),
            (&b"!!"[..], &b"tag:yaml.org,2002:"[..]),
        ] {
            if !self.tag_directives.iter().any(|(x, _)| x == h) {
                self.tag_directives.push((h.to_vec(), p.to_vec()));
            }
        }
        Ok(())
    }
}

fn empty_scalar(mark: Mark) -> Event {
    Event {
        kind: EventKind::Scalar,
        start: mark,
        end: mark,
        implicit: true,
        style: ScalarStyle::Plain,
        ..Event::default()
    }
}
