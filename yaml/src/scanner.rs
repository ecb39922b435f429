//! The scanner: characters in, tokens and comment records out.
//!
//! It follows libyaml's design (simple keys, an indentation stack, BLOCK-END
//! tokens on dedent) and go-yaml v3's rules for where comments belong. Those
//! rules decide the head/line/foot placement of every comment in the output,
//! so they are reproduced faithfully, quirks included, rather than
//! redesigned: `Mark`s are signed and the comment look-ahead keeps go-yaml's
//! off-by-one line bookkeeping, because the byte-exact output depends on it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::chars::*;
use super::token::{Comment, Mark, ScalarStyle, Token, TokenKind};
use super::SyntaxError;

/// Upper bound on nested flow collections and block indentation levels.
pub const MAX_DEPTH: usize = 1000;

#[derive(Clone, Copy, Debug, Default)]
struct SimpleKey {
    possible: bool,
    required: bool,
    token_number: usize,
    mark: Mark,
}

type Result<T> = std::result::Result<T, SyntaxError>;

/// A multiplicative hasher for token numbers: the simple-key table is
/// touched for every scalar, and SipHash showed in profiles.
#[derive(Default)]
struct TokenNumberHasher(u64);

impl Hasher for TokenNumberHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type TokenMap = HashMap<usize, usize, BuildHasherDefault<TokenNumberHasher>>;

pub(crate) struct Scanner {
    buf: Vec<u8>,
    pos: usize,
    pub(crate) mark: Mark,
    newlines: i64,

    /// Queued tokens; `tokens[tokens_head]` is the next one for the parser.
    /// Consumed tokens are dropped from the front now and then.
    pub(crate) tokens: Vec<Token>,
    pub(crate) tokens_head: usize,
    /// Tokens handed to the parser so far (absolute token numbering).
    pub(crate) tokens_parsed: usize,
    pub(crate) token_available: bool,
    stream_start_produced: bool,
    pub(crate) stream_end_produced: bool,

    flow_level: i64,
    indent: i64,
    indents: Vec<i64>,
    simple_key_allowed: bool,
    simple_keys: Vec<SimpleKey>,
    simple_keys_by_tok: TokenMap,

    pub(crate) comments: Vec<Comment>,
    pub(crate) comments_head: usize,
}

fn err(mark: Mark, context: &str, problem: &str) -> SyntaxError {
    SyntaxError::new(mark, context, problem)
}

impl Scanner {
    pub(crate) fn new(input: &[u8]) -> Scanner {
        // The stream's byte order mark is the reader's, as in libyaml: it
        // takes no column (a BOM counted as one put the first key of a
        // mapping at column 1 and the next at 0).
        let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
        let mut buf = Vec::with_capacity(input.len() + 8);
        buf.extend_from_slice(input);
        buf.extend_from_slice(&[0u8; 8]);
        Scanner {
            buf,
            pos: 0,
            mark: Mark::default(),
            newlines: 0,
            tokens: Vec::new(),
            tokens_head: 0,
            tokens_parsed: 0,
            token_available: false,
            stream_start_produced: false,
            stream_end_produced: false,
            flow_level: 0,
            indent: 0,
            indents: Vec::new(),
            simple_key_allowed: false,
            simple_keys: Vec::new(),
            simple_keys_by_tok: TokenMap::default(),
            comments: Vec::new(),
            comments_head: 0,
        }
    }

    #[inline]
    fn c(&self, k: usize) -> u8 {
        at(&self.buf, self.pos + k)
    }

    #[inline]
    fn p(&self) -> usize {
        self.pos
    }

    fn skip(&mut self) {
        if !is_blank(&self.buf, self.pos) {
            self.newlines = 0;
        }
        self.mark.index += 1;
        self.mark.column += 1;
        self.pos += width(self.buf[self.pos]).max(1);
    }

    fn skip_line(&mut self) {
        if is_crlf(&self.buf, self.pos) {
            self.mark.index += 2;
            self.mark.column = 0;
            self.mark.line += 1;
            self.pos += 2;
            self.newlines += 1;
        } else if is_break(&self.buf, self.pos) {
            self.mark.index += 1;
            self.mark.column = 0;
            self.mark.line += 1;
            self.pos += width(self.buf[self.pos]).max(1);
            self.newlines += 1;
        }
    }

    fn read(&mut self, s: &mut Vec<u8>) {
        if !is_blank(&self.buf, self.pos) {
            self.newlines = 0;
        }
        let w = width(self.buf[self.pos]).max(1);
        s.extend_from_slice(&self.buf[self.pos..self.pos + w]);
        self.pos += w;
        self.mark.index += 1;
        self.mark.column += 1;
    }

    /// Reads up to (not including) the next line break or the end of input
    /// in one go: `read` for each character, without the per-character work.
    fn read_rest_of_line(&mut self, s: &mut Vec<u8>) {
        let start = self.pos;
        let mut chars = 0i64;
        let mut end = start;
        loop {
            let b = self.buf[end];
            if b == b'\n' || b == b'\r' || b == 0 || is_break(&self.buf, end) {
                break;
            }
            if b & 0xC0 != 0x80 {
                chars += 1;
            }
            end += 1;
        }
        if end == start {
            return;
        }
        if self.buf[start..end]
            .iter()
            .any(|&b| b != b' ' && b != b'\t')
        {
            self.newlines = 0;
        }
        s.extend_from_slice(&self.buf[start..end]);
        self.pos = end;
        self.mark.index += chars;
        self.mark.column += chars;
    }

    fn read_line(&mut self, s: &mut Vec<u8>) {
        let b0 = self.c(0);
        let b1 = self.c(1);
        let b2 = self.c(2);
        if b0 == b'\r' && b1 == b'\n' {
            s.push(b'\n');
            self.pos += 2;
            self.mark.index += 1;
        } else if b0 == b'\r' || b0 == b'\n' {
            s.push(b'\n');
            self.pos += 1;
        } else if b0 == 0xC2 && b1 == 0x85 {
            s.push(b'\n');
            self.pos += 2;
        } else if b0 == 0xE2 && b1 == 0x80 && (b2 == 0xA8 || b2 == 0xA9) {
            s.extend_from_slice(&self.buf[self.pos..self.pos + 3]);
            self.pos += 3;
        } else {
            return;
        }
        self.mark.index += 1;
        self.mark.column = 0;
        self.mark.line += 1;
        self.newlines += 1;
    }

    /// Makes sure a token is available at `tokens[tokens_head]`.
    pub(crate) fn fetch_more_tokens(&mut self) -> Result<()> {
        loop {
            // go-yaml keeps two tokens of look-ahead so that foot comments can
            // be attached to the token before them.
            if self.tokens_head + 2 < self.tokens.len() {
                match self.simple_keys_by_tok.get(&self.tokens_parsed).copied() {
                    None => break,
                    Some(idx) => {
                        if !self.simple_key_is_valid(idx)? {
                            break;
                        }
                    }
                }
            }
            self.fetch_next_token()?;
        }
        self.token_available = true;
        Ok(())
    }

    fn fetch_next_token(&mut self) -> Result<()> {
        if self.tokens_head > 256 {
            // Keep the two last consumed tokens: comment placement looks
            // back at them.
            let drop = self.tokens_head - 2;
            self.tokens.drain(..drop);
            self.tokens_head -= drop;
        }
        if !self.stream_start_produced {
            return self.fetch_stream_start();
        }
        let scan_mark = self.mark;
        self.scan_to_next_token()?;
        self.unroll_indent(self.mark.column, scan_mark);

        if is_z(&self.buf, self.p()) {
            return self.fetch_stream_end();
        }
        let c = self.c(0);
        if self.mark.column == 0 && c == b'%' {
            return self.fetch_directive();
        }
        if self.mark.column == 0 && is_blankz(&self.buf, self.p() + 3) {
            if c == b'-' && self.c(1) == b'-' && self.c(2) == b'-' {
                return self.fetch_document_indicator(TokenKind::DocumentStart);
            }
            if c == b'.' && self.c(1) == b'.' && self.c(2) == b'.' {
                return self.fetch_document_indicator(TokenKind::DocumentEnd);
            }
        }

        let mut comment_mark = self.mark;
        if let Some(last) = self.tokens.last() {
            if (self.flow_level == 0 && c == b':') || (self.flow_level > 0 && c == b',') {
                // Associate any following comments with the prior token.
                comment_mark = last.start;
            }
        }

        self.fetch_token_at(c)?;

        if self.tokens.last().map(|t| t.kind) == Some(TokenKind::BlockEntry) {
            // Sequence indicators alone have no line comments; it becomes a
            // head comment for whatever follows.
            return Ok(());
        }
        self.scan_line_comment(comment_mark)
    }

    fn fetch_token_at(&mut self, c: u8) -> Result<()> {
        let b = &self.buf;
        let p = self.pos;
        match c {
            b'[' => return self.fetch_flow_collection_start(TokenKind::FlowSequenceStart),
            b'{' => return self.fetch_flow_collection_start(TokenKind::FlowMappingStart),
            b']' => return self.fetch_flow_collection_end(TokenKind::FlowSequenceEnd),
            b'}' => return self.fetch_flow_collection_end(TokenKind::FlowMappingEnd),
            b',' => return self.fetch_flow_entry(),
            _ => {}
        }
        if c == b'-' && is_blankz(b, p + 1) {
            return self.fetch_block_entry();
        }
        if c == b'?' && (self.flow_level > 0 || is_blankz(b, p + 1)) {
            return self.fetch_key();
        }
        if c == b':' && (self.flow_level > 0 || is_blankz(b, p + 1)) {
            return self.fetch_value();
        }
        match c {
            b'*' => return self.fetch_anchor(TokenKind::Alias),
            b'&' => return self.fetch_anchor(TokenKind::Anchor),
            b'!' => return self.fetch_tag(),
            b'|' if self.flow_level == 0 => return self.fetch_block_scalar(true),
            b'>' if self.flow_level == 0 => return self.fetch_block_scalar(false),
            b'\'' => return self.fetch_flow_scalar(true),
            b'"' => return self.fetch_flow_scalar(false),
            _ => {}
        }
        let indicator = matches!(
            c,
            b'-' | b'?'
                | b':'
                | b','
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'#'
                | b'&'
                | b'*'
                | b'!'
                | b'|'
                | b'>'
                | b'\''
                | b'"'
                | b'%'
                | b'@'
                | b'`'
        );
        if !(is_blankz(b, p) || indicator)
            || (c == b'-' && !is_blank(b, p + 1))
            || (self.flow_level == 0 && (c == b'?' || c == b':') && !is_blankz(b, p + 1))
        {
            return self.fetch_plain_scalar();
        }
        Err(err(
            self.mark,
            "while scanning for the next token",
            "found character that cannot start any token",
        ))
    }

    fn simple_key_is_valid(&mut self, idx: usize) -> Result<bool> {
        let sk = self.simple_keys[idx];
        if !sk.possible {
            return Ok(false);
        }
        if sk.mark.line < self.mark.line || sk.mark.index + 1024 < self.mark.index {
            if sk.required {
                return Err(err(
                    sk.mark,
                    "while scanning a simple key",
                    "could not find expected ':'",
                ));
            }
            self.simple_keys[idx].possible = false;
            return Ok(false);
        }
        Ok(true)
    }

    fn save_simple_key(&mut self) -> Result<()> {
        let required = self.flow_level == 0 && self.indent == self.mark.column;
        if self.simple_key_allowed {
            let sk = SimpleKey {
                possible: true,
                required,
                token_number: self.next_token_number(),
                mark: self.mark,
            };
            self.remove_simple_key()?;
            let last = self.simple_keys.len() - 1;
            self.simple_keys[last] = sk;
            self.simple_keys_by_tok.insert(sk.token_number, last);
        }
        Ok(())
    }

    fn remove_simple_key(&mut self) -> Result<()> {
        let i = self.simple_keys.len() - 1;
        if self.simple_keys[i].possible {
            if self.simple_keys[i].required {
                return Err(err(
                    self.simple_keys[i].mark,
                    "while scanning a simple key",
                    "could not find expected ':'",
                ));
            }
            self.simple_keys[i].possible = false;
            let n = self.simple_keys[i].token_number;
            self.simple_keys_by_tok.remove(&n);
        }
        Ok(())
    }

    fn increase_flow_level(&mut self) -> Result<()> {
        self.simple_keys.push(SimpleKey {
            token_number: self.next_token_number(),
            mark: self.mark,
            ..SimpleKey::default()
        });
        self.flow_level += 1;
        if self.flow_level as usize > MAX_DEPTH {
            return Err(err(
                self.mark,
                "while increasing flow level",
                &format!("exceeded max depth of {MAX_DEPTH}"),
            ));
        }
        Ok(())
    }

    fn decrease_flow_level(&mut self) {
        if self.flow_level > 0 {
            self.flow_level -= 1;
            if let Some(last) = self.simple_keys.pop() {
                self.simple_keys_by_tok.remove(&last.token_number);
            }
        }
    }

    /// The number the next queued token will have.
    fn next_token_number(&self) -> usize {
        self.tokens_parsed + (self.tokens.len() - self.tokens_head)
    }

    /// Queues a token at `pos` (relative to the next token the parser gets)
    /// or at the end. A position that has already been consumed also means
    /// the end, as in go-yaml (it happens when a flow collection that was a
    /// possible simple key was handed out before its `:` arrived).
    fn insert_token(&mut self, pos: Option<i64>, token: Token) {
        match pos {
            Some(p) if p >= 0 => self.tokens.insert(self.tokens_head + p as usize, token),
            _ => self.tokens.push(token),
        }
    }

    fn roll_indent(
        &mut self,
        column: i64,
        number: Option<usize>,
        kind: TokenKind,
        mark: Mark,
    ) -> Result<()> {
        if self.flow_level > 0 {
            return Ok(());
        }
        if self.indent < column {
            self.indents.push(self.indent);
            self.indent = column;
            if self.indents.len() > MAX_DEPTH {
                return Err(err(
                    mark,
                    "while increasing indent level",
                    &format!("exceeded max depth of {MAX_DEPTH}"),
                ));
            }
            let token = Token {
                kind,
                start: mark,
                end: mark,
                ..Token::default()
            };
            let pos = number.map(|n| n as i64 - self.tokens_parsed as i64);
            self.insert_token(pos, token);
        }
        Ok(())
    }

    fn unroll_indent(&mut self, column: i64, scan_mark: Mark) {
        if self.flow_level > 0 {
            return;
        }
        let mut block_mark = scan_mark;
        block_mark.index -= 1;
        while self.indent > column {
            // Reposition the end token before foot comments that belong to
            // the parent block: search back for recent comments at the
            // indentation of the block that is ending now.
            let mut stop_index = block_mark.index;
            for comment in self.comments.iter().rev() {
                if comment.end_mark.index < stop_index {
                    break;
                }
                if comment.start_mark.column == self.indent + 1 {
                    block_mark = comment.start_mark;
                }
                stop_index = comment.scan_mark.index;
            }
            self.insert_token(
                None,
                Token {
                    kind: TokenKind::BlockEnd,
                    start: block_mark,
                    end: block_mark,
                    ..Token::default()
                },
            );
            self.indent = self.indents.pop().unwrap_or(-1);
        }
    }

    fn fetch_stream_start(&mut self) -> Result<()> {
        self.indent = -1;
        self.simple_keys.push(SimpleKey::default());
        self.simple_key_allowed = true;
        self.stream_start_produced = true;
        let m = self.mark;
        self.insert_token(
            None,
            Token {
                kind: TokenKind::StreamStart,
                start: m,
                end: m,
                ..Token::default()
            },
        );
        Ok(())
    }

    fn fetch_stream_end(&mut self) -> Result<()> {
        if self.mark.column != 0 {
            self.mark.column = 0;
            self.mark.line += 1;
        }
        self.unroll_indent(-1, self.mark);
        self.remove_simple_key()?;
        self.simple_key_allowed = false;
        let m = self.mark;
        self.insert_token(
            None,
            Token {
                kind: TokenKind::StreamEnd,
                start: m,
                end: m,
                ..Token::default()
            },
        );
        Ok(())
    }

    fn fetch_directive(&mut self) -> Result<()> {
        self.unroll_indent(-1, self.mark);
        self.remove_simple_key()?;
        self.simple_key_allowed = false;
        let token = self.scan_directive()?;
        self.insert_token(None, token);
        Ok(())
    }

    fn fetch_document_indicator(&mut self, kind: TokenKind) -> Result<()> {
        self.unroll_indent(-1, self.mark);
        self.remove_simple_key()?;
        self.simple_key_allowed = false;
        let start = self.mark;
        self.skip();
        self.skip();
        self.skip();
        let end = self.mark;
        self.insert_token(
            None,
            Token {
                kind,
                start,
                end,
                ..Token::default()
            },
        );
        Ok(())
    }

    fn fetch_flow_collection_start(&mut self, kind: TokenKind) -> Result<()> {
        self.save_simple_key()?;
        self.increase_flow_level()?;
        self.simple_key_allowed = true;
        self.push_simple_token(kind);
        Ok(())
    }

    fn fetch_flow_collection_end(&mut self, kind: TokenKind) -> Result<()> {
        self.remove_simple_key()?;
        self.decrease_flow_level();
        self.simple_key_allowed = false;
        self.push_simple_token(kind);
        Ok(())
    }

    fn fetch_flow_entry(&mut self) -> Result<()> {
        self.remove_simple_key()?;
        self.simple_key_allowed = true;
        self.push_simple_token(TokenKind::FlowEntry);
        Ok(())
    }

    /// Consumes one indicator character and queues a token for it.
    fn push_simple_token(&mut self, kind: TokenKind) {
        let start = self.mark;
        self.skip();
        let end = self.mark;
        self.insert_token(
            None,
            Token {
                kind,
                start,
                end,
                ..Token::default()
            },
        );
    }

    fn fetch_block_entry(&mut self) -> Result<()> {
        if self.flow_level == 0 {
            if !self.simple_key_allowed {
                return Err(err(
                    self.mark,
                    "",
                    "block sequence entries are not allowed in this context",
                ));
            }
            self.roll_indent(
                self.mark.column,
                None,
                TokenKind::BlockSequenceStart,
                self.mark,
            )?;
        }
        self.remove_simple_key()?;
        self.simple_key_allowed = true;
        self.push_simple_token(TokenKind::BlockEntry);
        Ok(())
    }

    fn fetch_key(&mut self) -> Result<()> {
        if self.flow_level == 0 {
            if !self.simple_key_allowed {
                return Err(err(
                    self.mark,
                    "",
                    "mapping keys are not allowed in this context",
                ));
            }
            self.roll_indent(
                self.mark.column,
                None,
                TokenKind::BlockMappingStart,
                self.mark,
            )?;
        }
        self.remove_simple_key()?;
        self.simple_key_allowed = self.flow_level == 0;
        self.push_simple_token(TokenKind::Key);
        Ok(())
    }

    fn fetch_value(&mut self) -> Result<()> {
        let idx = self.simple_keys.len() - 1;
        if self.simple_key_is_valid(idx)? {
            let sk = self.simple_keys[idx];
            self.insert_token(
                Some(sk.token_number as i64 - self.tokens_parsed as i64),
                Token {
                    kind: TokenKind::Key,
                    start: sk.mark,
                    end: sk.mark,
                    ..Token::default()
                },
            );
            self.roll_indent(
                sk.mark.column,
                Some(sk.token_number),
                TokenKind::BlockMappingStart,
                sk.mark,
            )?;
            self.simple_keys[idx].possible = false;
            self.simple_keys_by_tok.remove(&sk.token_number);
            self.simple_key_allowed = false;
        } else {
            if self.flow_level == 0 {
                if !self.simple_key_allowed {
                    return Err(err(
                        self.mark,
                        "",
                        "mapping values are not allowed in this context",
                    ));
                }
                self.roll_indent(
                    self.mark.column,
                    None,
                    TokenKind::BlockMappingStart,
                    self.mark,
                )?;
            }
            self.simple_key_allowed = self.flow_level == 0;
        }
        self.push_simple_token(TokenKind::Value);
        Ok(())
    }

    fn fetch_anchor(&mut self, kind: TokenKind) -> Result<()> {
        self.save_simple_key()?;
        self.simple_key_allowed = false;
        let token = self.scan_anchor(kind)?;
        self.insert_token(None, token);
        Ok(())
    }

    fn fetch_tag(&mut self) -> Result<()> {
        self.save_simple_key()?;
        self.simple_key_allowed = false;
        let token = self.scan_tag()?;
        self.insert_token(None, token);
        Ok(())
    }

    fn fetch_block_scalar(&mut self, literal: bool) -> Result<()> {
        self.remove_simple_key()?;
        self.simple_key_allowed = true;
        let token = self.scan_block_scalar(literal)?;
        self.insert_token(None, token);
        Ok(())
    }

    fn fetch_flow_scalar(&mut self, single: bool) -> Result<()> {
        self.save_simple_key()?;
        self.simple_key_allowed = false;
        let token = self.scan_flow_scalar(single)?;
        self.insert_token(None, token);
        Ok(())
    }

    fn fetch_plain_scalar(&mut self) -> Result<()> {
        self.save_simple_key()?;
        self.simple_key_allowed = false;
        let token = self.scan_plain_scalar()?;
        self.insert_token(None, token);
        Ok(())
    }

    fn scan_to_next_token(&mut self) -> Result<()> {
        let scan_mark = self.mark;
        loop {
            if self.mark.column == 0 && is_bom(&self.buf, self.p()) {
                self.skip();
            }
            while self.c(0) == b' '
                || ((self.flow_level > 0 || !self.simple_key_allowed) && self.c(0) == b'\t')
            {
                self.skip();
            }

            // A line comment under a sequence entry ("- # comment") that
            // looks like a header of the following content becomes a head
            // comment.
            if !self.comments.is_empty() && self.tokens.len() > 1 {
                let a = self.tokens[self.tokens.len() - 2].kind;
                let b = self.tokens[self.tokens.len() - 1].kind;
                let at_break = is_break(&self.buf, self.p());
                let mark = self.mark;
                let comment = self.comments.last_mut().expect("non-empty");
                if a == TokenKind::BlockSequenceStart
                    && b == TokenKind::BlockEntry
                    && !comment.line.is_empty()
                    && !at_break
                {
                    comment.head = std::mem::take(&mut comment.line);
                    if comment.start_mark.line == mark.line - 1 {
                        comment.token_mark = mark;
                    }
                }
            }

            if self.c(0) == b'#' {
                self.scan_comments(scan_mark);
            }

            if is_break(&self.buf, self.p()) {
                self.skip_line();
                if self.flow_level == 0 {
                    self.simple_key_allowed = true;
                }
            } else {
                break;
            }
        }
        Ok(())
    }

    fn scan_directive(&mut self) -> Result<Token> {
        let start = self.mark;
        self.skip();
        let name = self.scan_directive_name(start)?;
        let token = if name == b"YAML" {
            let (major, minor) = self.scan_version_directive_value(start)?;
            Token {
                kind: TokenKind::VersionDirective,
                start,
                end: self.mark,
                major,
                minor,
                ..Token::default()
            }
        } else if name == b"TAG" {
            let (handle, prefix) = self.scan_tag_directive_value(start)?;
            Token {
                kind: TokenKind::TagDirective,
                start,
                end: self.mark,
                value: handle,
                prefix,
                ..Token::default()
            }
        } else {
            return Err(err(
                start,
                "while scanning a directive",
                "found unknown directive name",
            ));
        };
        while is_blank(&self.buf, self.p()) {
            self.skip();
        }
        if self.c(0) == b'#' {
            // Comments after a directive are dropped, as in go-yaml.
            while !is_breakz(&self.buf, self.p()) {
                self.skip();
            }
        }
        if !is_breakz(&self.buf, self.p()) {
            return Err(err(
                start,
                "while scanning a directive",
                "did not find expected comment or line break",
            ));
        }
        if is_break(&self.buf, self.p()) {
            self.skip_line();
        }
        Ok(token)
    }

    fn scan_directive_name(&mut self, start: Mark) -> Result<Vec<u8>> {
        let mut s = Vec::new();
        while is_alpha(&self.buf, self.p()) {
            self.read(&mut s);
        }
        if s.is_empty() {
            return Err(err(
                start,
                "while scanning a directive",
                "could not find expected directive name",
            ));
        }
        if !is_blankz(&self.buf, self.p()) {
            return Err(err(
                start,
                "while scanning a directive",
                "found unexpected non-alphabetical character",
            ));
        }
        Ok(s)
    }

    fn scan_version_directive_value(&mut self, start: Mark) -> Result<(i8, i8)> {
        while is_blank(&self.buf, self.p()) {
            self.skip();
        }
        let major = self.scan_version_directive_number(start)?;
        if self.c(0) != b'.' {
            return Err(err(
                start,
                "while scanning a %YAML directive",
                "did not find expected digit or '.' character",
            ));
        }
        self.skip();
        let minor = self.scan_version_directive_number(start)?;
        Ok((major, minor))
    }

    fn scan_version_directive_number(&mut self, start: Mark) -> Result<i8> {
        let mut value: i8 = 0;
        let mut length = 0;
        while is_digit(&self.buf, self.p()) {
            length += 1;
            if length > 2 {
                return Err(err(
                    start,
                    "while scanning a %YAML directive",
                    "found extremely long version number",
                ));
            }
            value = value * 10 + (self.c(0) - b'0') as i8;
            self.skip();
        }
        if length == 0 {
            return Err(err(
                start,
                "while scanning a %YAML directive",
                "did not find expected version number",
            ));
        }
        Ok(value)
    }

    fn scan_tag_directive_value(&mut self, start: Mark) -> Result<(Vec<u8>, Vec<u8>)> {
        while is_blank(&self.buf, self.p()) {
            self.skip();
        }
        let handle = self.scan_tag_handle(true, start)?;
        if !is_blank(&self.buf, self.p()) {
            return Err(err(
                start,
                "while scanning a %TAG directive",
                "did not find expected whitespace",
            ));
        }
        while is_blank(&self.buf, self.p()) {
            self.skip();
        }
        let prefix = self.scan_tag_uri(true, &[], start)?;
        if !is_blankz(&self.buf, self.p()) {
            return Err(err(
                start,
                "while scanning a %TAG directive",
                "did not find expected whitespace or line break",
            ));
        }
        Ok((handle, prefix))
    }

    fn scan_anchor(&mut self, kind: TokenKind) -> Result<Token> {
        let start = self.mark;
        self.skip();
        let mut s = Vec::new();
        while is_alpha(&self.buf, self.p()) {
            self.read(&mut s);
        }
        let end = self.mark;
        let c = self.c(0);
        if s.is_empty()
            || !(is_blankz(&self.buf, self.p())
                || matches!(c, b'?' | b':' | b',' | b']' | b'}' | b'%' | b'@' | b'`'))
        {
            let context = if kind == TokenKind::Anchor {
                "while scanning an anchor"
            } else {
                "while scanning an alias"
            };
            return Err(err(
                start,
                context,
                "did not find expected alphabetic or numeric character",
            ));
        }
        Ok(Token {
            kind,
            start,
            end,
            value: s,
            ..Token::default()
        })
    }

    fn scan_tag(&mut self) -> Result<Token> {
        let start = self.mark;
        let mut handle;
        let suffix;
        if self.c(1) == b'<' {
            handle = Vec::new();
            self.skip();
            self.skip();
            suffix = self.scan_tag_uri(false, &[], start)?;
            if self.c(0) != b'>' {
                return Err(err(
                    start,
                    "while scanning a tag",
                    "did not find the expected '>'",
                ));
            }
            self.skip();
        } else {
            handle = self.scan_tag_handle(false, start)?;
            if handle.len() > 1 && handle[0] == b'!' && handle[handle.len() - 1] == b'!' {
                suffix = self.scan_tag_uri(false, &[], start)?;
            } else {
                let s = self.scan_tag_uri(false, &handle, start)?;
                handle = b"!".to_vec();
                if s.is_empty() {
                    // The '!' tag on its own.
                    suffix = handle;
                    handle = Vec::new();
                } else {
                    suffix = s;
                }
            }
        }
        if !is_blankz(&self.buf, self.p()) {
            return Err(err(
                start,
                "while scanning a tag",
                "did not find expected whitespace or line break",
            ));
        }
        Ok(Token {
            kind: TokenKind::Tag,
            start,
            end: self.mark,
            value: handle,
            suffix,
            ..Token::default()
        })
    }

    fn scan_tag_handle(&mut self, directive: bool, start: Mark) -> Result<Vec<u8>> {
        let context = if directive {
            "while parsing a %TAG directive"
        } else {
            "while parsing a tag"
        };
        if self.c(0) != b'!' {
            return Err(err(start, context, "did not find expected '!'"));
        }
        let mut s = Vec::new();
        self.read(&mut s);
        while is_alpha(&self.buf, self.p()) {
            self.read(&mut s);
        }
        if self.c(0) == b'!' {
            self.read(&mut s);
        } else if directive && s != b"!" {
            return Err(err(start, context, "did not find expected '!'"));
        }
        Ok(s)
    }

    fn scan_tag_uri(&mut self, directive: bool, head: &[u8], start: Mark) -> Result<Vec<u8>> {
        let mut s = Vec::new();
        let mut has_tag = !head.is_empty();
        if head.len() > 1 {
            s.extend_from_slice(&head[1..]);
        }
        loop {
            let c = self.c(0);
            let ok = is_alpha(&self.buf, self.p())
                || matches!(
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
                        | b'.'
                        | b'!'
                        | b'~'
                        | b'*'
                        | b'\''
                        | b'('
                        | b')'
                        | b'['
                        | b']'
                        | b'%'
                );
            if !ok {
                break;
            }
            if c == b'%' {
                self.scan_uri_escapes(directive, start, &mut s)?;
            } else {
                self.read(&mut s);
            }
            has_tag = true;
        }
        if !has_tag {
            let context = if directive {
                "while parsing a %TAG directive"
            } else {
                "while parsing a tag"
            };
            return Err(err(start, context, "did not find expected tag URI"));
        }
        Ok(s)
    }

    fn scan_uri_escapes(&mut self, directive: bool, start: Mark, s: &mut Vec<u8>) -> Result<()> {
        let context = if directive {
            "while parsing a %TAG directive"
        } else {
            "while parsing a tag"
        };
        let mut w = 1024usize;
        while w > 0 {
            if !(self.c(0) == b'%'
                && is_hex(&self.buf, self.p() + 1)
                && is_hex(&self.buf, self.p() + 2))
            {
                return Err(err(start, context, "did not find URI escaped octet"));
            }
            let octet =
                ((as_hex(&self.buf, self.p() + 1) << 4) + as_hex(&self.buf, self.p() + 2)) as u8;
            if w == 1024 {
                w = width(octet);
                if w == 0 {
                    return Err(err(
                        start,
                        context,
                        "found an incorrect leading UTF-8 octet",
                    ));
                }
            } else if octet & 0xC0 != 0x80 {
                return Err(err(
                    start,
                    context,
                    "found an incorrect trailing UTF-8 octet",
                ));
            }
            s.push(octet);
            self.skip();
            self.skip();
            self.skip();
            w -= 1;
        }
        Ok(())
    }

    fn scan_block_scalar(&mut self, literal: bool) -> Result<Token> {
        let start = self.mark;
        self.skip();
        let mut chomping = 0i32;
        let mut increment = 0i64;
        let c = self.c(0);
        if c == b'+' || c == b'-' {
            chomping = if c == b'+' { 1 } else { -1 };
            self.skip();
            if is_digit(&self.buf, self.p()) {
                if self.c(0) == b'0' {
                    return Err(err(
                        start,
                        "while scanning a block scalar",
                        "found an indentation indicator equal to 0",
                    ));
                }
                increment = i64::from(self.c(0) - b'0');
                self.skip();
            }
        } else if is_digit(&self.buf, self.p()) {
            if self.c(0) == b'0' {
                return Err(err(
                    start,
                    "while scanning a block scalar",
                    "found an indentation indicator equal to 0",
                ));
            }
            increment = i64::from(self.c(0) - b'0');
            self.skip();
            let c = self.c(0);
            if c == b'+' || c == b'-' {
                chomping = if c == b'+' { 1 } else { -1 };
                self.skip();
            }
        }
        while is_blank(&self.buf, self.p()) {
            self.skip();
        }
        if self.c(0) == b'#' {
            self.scan_line_comment(start)?;
            while !is_breakz(&self.buf, self.p()) {
                self.skip();
            }
        }
        if !is_breakz(&self.buf, self.p()) {
            return Err(err(
                start,
                "while scanning a block scalar",
                "did not find expected comment or line break",
            ));
        }
        if is_break(&self.buf, self.p()) {
            self.skip_line();
        }
        let mut end = self.mark;
        let mut indent = 0i64;
        if increment > 0 {
            indent = if self.indent >= 0 {
                self.indent + increment
            } else {
                increment
            };
        }
        let mut s = Vec::new();
        let mut leading_break = Vec::new();
        let mut trailing_breaks = Vec::new();
        self.scan_block_scalar_breaks(&mut indent, &mut trailing_breaks, start, &mut end)?;

        let mut leading_blank = false;
        while self.mark.column == indent && !is_z(&self.buf, self.p()) {
            let trailing_blank = is_blank(&self.buf, self.p());
            if !literal
                && !leading_blank
                && !trailing_blank
                && leading_break.first() == Some(&b'\n')
            {
                if trailing_breaks.is_empty() {
                    s.push(b' ');
                }
            } else {
                s.extend_from_slice(&leading_break);
            }
            leading_break.clear();
            s.extend_from_slice(&trailing_breaks);
            trailing_breaks.clear();
            leading_blank = is_blank(&self.buf, self.p());
            self.read_rest_of_line(&mut s);
            self.read_line(&mut leading_break);
            self.scan_block_scalar_breaks(&mut indent, &mut trailing_breaks, start, &mut end)?;
        }
        if chomping != -1 {
            s.extend_from_slice(&leading_break);
        }
        if chomping == 1 {
            s.extend_from_slice(&trailing_breaks);
        }
        Ok(Token {
            kind: TokenKind::Scalar,
            start,
            end,
            value: s,
            style: if literal {
                ScalarStyle::Literal
            } else {
                ScalarStyle::Folded
            },
            ..Token::default()
        })
    }

    fn scan_block_scalar_breaks(
        &mut self,
        indent: &mut i64,
        breaks: &mut Vec<u8>,
        start: Mark,
        end: &mut Mark,
    ) -> Result<()> {
        *end = self.mark;
        let mut max_indent = 0i64;
        loop {
            while (*indent == 0 || self.mark.column < *indent) && is_space(&self.buf, self.p()) {
                self.skip();
            }
            if self.mark.column > max_indent {
                max_indent = self.mark.column;
            }
            if (*indent == 0 || self.mark.column < *indent) && is_tab(&self.buf, self.p()) {
                return Err(err(
                    start,
                    "while scanning a block scalar",
                    "found a tab character where an indentation space is expected",
                ));
            }
            if !is_break(&self.buf, self.p()) {
                break;
            }
            self.read_line(breaks);
            *end = self.mark;
        }
        if *indent == 0 {
            *indent = max_indent.max(self.indent + 1).max(1);
        }
        Ok(())
    }

    fn at_document_indicator(&self) -> bool {
        self.mark.column == 0
            && ((self.c(0) == b'-' && self.c(1) == b'-' && self.c(2) == b'-')
                || (self.c(0) == b'.' && self.c(1) == b'.' && self.c(2) == b'.'))
            && is_blankz(&self.buf, self.p() + 3)
    }

    fn scan_flow_scalar(&mut self, single: bool) -> Result<Token> {
        let start = self.mark;
        self.skip();
        let mut s = Vec::new();
        let mut leading_break = Vec::new();
        let mut trailing_breaks = Vec::new();
        let mut whitespaces = Vec::new();
        loop {
            if self.at_document_indicator() {
                return Err(err(
                    start,
                    "while scanning a quoted scalar",
                    "found unexpected document indicator",
                ));
            }
            if is_z(&self.buf, self.p()) {
                return Err(err(
                    start,
                    "while scanning a quoted scalar",
                    "found unexpected end of stream",
                ));
            }
            let mut leading_blanks = false;
            while !is_blankz(&self.buf, self.p()) {
                let c = self.c(0);
                if single && c == b'\'' && self.c(1) == b'\'' {
                    s.push(b'\'');
                    self.skip();
                    self.skip();
                } else if (single && c == b'\'') || (!single && c == b'"') {
                    break;
                } else if !single && c == b'\\' && is_break(&self.buf, self.p() + 1) {
                    self.skip();
                    self.skip_line();
                    leading_blanks = true;
                    break;
                } else if !single && c == b'\\' {
                    let mut code_length = 0usize;
                    match self.c(1) {
                        b'0' => s.push(0),
                        b'a' => s.push(0x07),
                        b'b' => s.push(0x08),
                        b't' | b'\t' => s.push(0x09),
                        b'n' => s.push(0x0A),
                        b'v' => s.push(0x0B),
                        b'f' => s.push(0x0C),
                        b'r' => s.push(0x0D),
                        b'e' => s.push(0x1B),
                        b' ' => s.push(0x20),
                        b'"' => s.push(b'"'),
                        b'\'' => s.push(b'\''),
                        b'\\' => s.push(b'\\'),
                        b'N' => s.extend_from_slice(&[0xC2, 0x85]),
                        b'_' => s.extend_from_slice(&[0xC2, 0xA0]),
                        b'L' => s.extend_from_slice(&[0xE2, 0x80, 0xA8]),
                        b'P' => s.extend_from_slice(&[0xE2, 0x80, 0xA9]),
                        b'x' => code_length = 2,
                        b'u' => code_length = 4,
                        b'U' => code_length = 8,
                        _ => {
                            return Err(err(
                                start,
                                "while parsing a quoted scalar",
                                "found unknown escape character",
                            ));
                        }
                    }
                    self.skip();
                    self.skip();
                    if code_length > 0 {
                        let mut value: u32 = 0;
                        for k in 0..code_length {
                            if !is_hex(&self.buf, self.p() + k) {
                                return Err(err(
                                    start,
                                    "while parsing a quoted scalar",
                                    "did not find expected hexadecimal number",
                                ));
                            }
                            value = (value << 4) + as_hex(&self.buf, self.p() + k);
                        }
                        match char::from_u32(value) {
                            Some(ch) => {
                                let mut tmp = [0u8; 4];
                                s.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                            }
                            None => {
                                return Err(err(
                                    start,
                                    "while parsing a quoted scalar",
                                    "found invalid Unicode character escape code",
                                ));
                            }
                        }
                        for _ in 0..code_length {
                            self.skip();
                        }
                    }
                } else {
                    self.read(&mut s);
                }
            }
            let c = self.c(0);
            if (single && c == b'\'') || (!single && c == b'"') {
                break;
            }
            while is_blank(&self.buf, self.p()) || is_break(&self.buf, self.p()) {
                if is_blank(&self.buf, self.p()) {
                    if !leading_blanks {
                        self.read(&mut whitespaces);
                    } else {
                        self.skip();
                    }
                } else if !leading_blanks {
                    whitespaces.clear();
                    self.read_line(&mut leading_break);
                    leading_blanks = true;
                } else {
                    self.read_line(&mut trailing_breaks);
                }
            }
            if leading_blanks {
                if leading_break.first() == Some(&b'\n') {
                    if trailing_breaks.is_empty() {
                        s.push(b' ');
                    } else {
                        s.extend_from_slice(&trailing_breaks);
                    }
                } else {
                    s.extend_from_slice(&leading_break);
                    s.extend_from_slice(&trailing_breaks);
                }
                trailing_breaks.clear();
                leading_break.clear();
            } else {
                s.extend_from_slice(&whitespaces);
                whitespaces.clear();
            }
        }
        self.skip();
        Ok(Token {
            kind: TokenKind::Scalar,
            start,
            end: self.mark,
            value: s,
            style: if single {
                ScalarStyle::SingleQuoted
            } else {
                ScalarStyle::DoubleQuoted
            },
            ..Token::default()
        })
    }

    fn scan_plain_scalar(&mut self) -> Result<Token> {
        let mut s = Vec::with_capacity(32);
        let mut leading_break = Vec::new();
        let mut trailing_breaks = Vec::new();
        let mut whitespaces = Vec::new();
        let mut leading_blanks = false;
        let indent = self.indent + 1;
        let start = self.mark;
        let mut end = self.mark;
        loop {
            if self.at_document_indicator() {
                break;
            }
            if self.c(0) == b'#' {
                break;
            }
            while !is_blankz(&self.buf, self.p()) {
                let c = self.c(0);
                if (c == b':' && is_blankz(&self.buf, self.p() + 1))
                    || (self.flow_level > 0 && matches!(c, b',' | b'?' | b'[' | b']' | b'{' | b'}'))
                {
                    break;
                }
                if leading_blanks || !whitespaces.is_empty() {
                    if leading_blanks {
                        if leading_break.first() == Some(&b'\n') {
                            if trailing_breaks.is_empty() {
                                s.push(b' ');
                            } else {
                                s.extend_from_slice(&trailing_breaks);
                            }
                        } else {
                            s.extend_from_slice(&leading_break);
                            s.extend_from_slice(&trailing_breaks);
                        }
                        trailing_breaks.clear();
                        leading_break.clear();
                        leading_blanks = false;
                    } else {
                        s.extend_from_slice(&whitespaces);
                        whitespaces.clear();
                    }
                }
                // Copy the run of characters that cannot end the scalar.
                let start = self.pos;
                let mut at = start;
                let mut chars = 0i64;
                loop {
                    let b = self.buf[at];
                    if b == b' '
                        || b == b'\t'
                        || b == b'\n'
                        || b == b'\r'
                        || b == 0
                        || b == 0xC2
                        || b == 0xE2
                    {
                        if at == start {
                            // NEL, LS/PS or a non-break 0xC2/0xE2 lead byte:
                            // leave it to the exact per-character rules.
                            self.read(&mut s);
                        }
                        break;
                    }
                    if b == b':' && is_blankz(&self.buf, at + 1) {
                        break;
                    }
                    if self.flow_level > 0 && matches!(b, b',' | b'?' | b'[' | b']' | b'{' | b'}') {
                        break;
                    }
                    if b & 0xC0 != 0x80 {
                        chars += 1;
                    }
                    at += 1;
                }
                if at > start {
                    s.extend_from_slice(&self.buf[start..at]);
                    self.pos = at;
                    self.mark.index += chars;
                    self.mark.column += chars;
                    self.newlines = 0;
                }
                end = self.mark;
            }
            if !(is_blank(&self.buf, self.p()) || is_break(&self.buf, self.p())) {
                break;
            }
            while is_blank(&self.buf, self.p()) || is_break(&self.buf, self.p()) {
                if is_blank(&self.buf, self.p()) {
                    if leading_blanks && self.mark.column < indent && is_tab(&self.buf, self.p()) {
                        return Err(err(
                            start,
                            "while scanning a plain scalar",
                            "found a tab character that violates indentation",
                        ));
                    }
                    if !leading_blanks {
                        self.read(&mut whitespaces);
                    } else {
                        self.skip();
                    }
                } else if !leading_blanks {
                    whitespaces.clear();
                    self.read_line(&mut leading_break);
                    leading_blanks = true;
                } else {
                    self.read_line(&mut trailing_breaks);
                }
            }
            if self.flow_level == 0 && self.mark.column < indent {
                break;
            }
        }
        if leading_blanks {
            self.simple_key_allowed = true;
        }
        Ok(Token {
            kind: TokenKind::Scalar,
            start,
            end,
            value: s,
            style: ScalarStyle::Plain,
            ..Token::default()
        })
    }

    fn scan_line_comment(&mut self, token_mark: Mark) -> Result<()> {
        if self.newlines > 0 {
            return Ok(());
        }
        let mut start_mark = Mark::default();
        let mut text = Vec::new();
        let mut peek = 0usize;
        while peek < 512 {
            if is_blank(&self.buf, self.p() + peek) {
                peek += 1;
                continue;
            }
            if self.buf[self.p() + peek] == b'#' {
                let seen = self.mark.index + peek as i64;
                loop {
                    if is_breakz(&self.buf, self.p()) {
                        if self.mark.index >= seen {
                            break;
                        }
                        self.skip_line();
                    } else if self.mark.index >= seen {
                        if text.is_empty() {
                            start_mark = self.mark;
                        }
                        self.read_rest_of_line(&mut text);
                    } else {
                        self.skip();
                    }
                }
            }
            break;
        }
        if !text.is_empty() {
            self.comments.push(Comment {
                token_mark,
                start_mark,
                line: text,
                ..Comment::default()
            });
        }
        Ok(())
    }

    fn scan_comments(&mut self, mut scan_mark: Mark) {
        let mut token = &self.tokens[self.tokens.len() - 1];
        if token.kind == TokenKind::FlowEntry && self.tokens.len() > 1 {
            token = &self.tokens[self.tokens.len() - 2];
        }
        let token_kind = token.kind;
        let mut token_mark = token.start;
        let mut start_mark = Mark::default();
        let mut next_indent = self.indent.max(0);
        let mut recent_empty = false;
        let mut first_empty = self.newlines <= 1;
        let mut line = self.mark.line;
        let mut column = self.mark.column;
        let mut text: Vec<u8> = Vec::new();

        // The foot line is where a comment must start to still be a foot of
        // the prior content.
        let mut foot_line = -1;
        if scan_mark.line > 0 {
            foot_line = self.mark.line - self.newlines + 1;
            if self.newlines == 0 && self.mark.column > 1 {
                foot_line += 1;
            }
        }

        // `peek` is advanced at the end of every iteration, as in the
        // for-loop this mirrors; resetting it to 0 therefore resumes at 1.
        let mut peek: usize = 0;
        while peek < 512 {
            column += 1;
            let here = self.p() + peek;
            if is_blank(&self.buf, here) {
                peek += 1;
                continue;
            }
            let c = self.buf[here];
            let close_flow = self.flow_level > 0 && (c == b']' || c == b'}');
            if close_flow || is_breakz(&self.buf, here) {
                if close_flow || !recent_empty {
                    if close_flow
                        || (first_empty
                            && ((start_mark.line == foot_line && token_kind != TokenKind::Value)
                                || start_mark.column - 1 < next_indent))
                    {
                        // The first part of the comment is a foot of the
                        // prior token rather than a head of the next one.
                        if !text.is_empty() {
                            if start_mark.column - 1 < next_indent {
                                token_mark = start_mark;
                            }
                            let end = Mark {
                                index: self.mark.index + peek as i64,
                                line,
                                column,
                            };
                            self.comments.push(Comment {
                                scan_mark,
                                token_mark,
                                start_mark,
                                end_mark: end,
                                foot: std::mem::take(&mut text),
                                ..Comment::default()
                            });
                            scan_mark = end;
                            token_mark = scan_mark;
                        }
                    } else if !text.is_empty() && self.buf[here] != 0 {
                        text.push(b'\n');
                    }
                }
                if !is_break(&self.buf, here) {
                    break;
                }
                first_empty = false;
                recent_empty = true;
                column = 0;
                line += 1;
                peek += 1;
                continue;
            }

            if !text.is_empty()
                && (close_flow || (column - 1 < next_indent && column != start_mark.column))
            {
                // A comment at a different indentation is a foot of the
                // preceding data rather than a head of the upcoming one.
                let end = Mark {
                    index: self.mark.index + peek as i64,
                    line,
                    column,
                };
                self.comments.push(Comment {
                    scan_mark,
                    token_mark,
                    start_mark,
                    end_mark: end,
                    foot: std::mem::take(&mut text),
                    ..Comment::default()
                });
                scan_mark = end;
                token_mark = scan_mark;
            }

            if self.buf[here] != b'#' {
                break;
            }
            if text.is_empty() {
                start_mark = Mark {
                    index: self.mark.index + peek as i64,
                    line,
                    column,
                };
            } else {
                text.push(b'\n');
            }
            recent_empty = false;

            // Consume the comment line.
            let seen = self.mark.index + peek as i64;
            loop {
                if is_breakz(&self.buf, self.p()) {
                    if self.mark.index >= seen {
                        break;
                    }
                    self.skip_line();
                } else if self.mark.index >= seen {
                    self.read_rest_of_line(&mut text);
                } else {
                    self.skip();
                }
            }

            peek = 0;
            column = 0;
            line = self.mark.line;
            next_indent = self.indent.max(0);
            peek += 1;
        }

        if !text.is_empty() {
            self.comments.push(Comment {
                scan_mark,
                token_mark: start_mark,
                start_mark,
                end_mark: Mark {
                    index: self.mark.index + peek as i64 - 1,
                    line,
                    column,
                },
                head: text,
                ..Comment::default()
            });
        }
    }
}
