//! Tokenizer for the selector language.
//!
//! Turns the input into a flat token list ending in [`Tok::Eof`], each token tagged with the byte
//! offset where it starts. Like upstream, the lexer is context-sensitive in one place: right
//! after a label it only accepts an operator (`contains`, `starts with`, `ends with`, `not in`,
//! `in`, or the punctuation operators), so label-like words such as `in` are labels elsewhere.
//! Whitespace is space and tab only (upstream rejects newlines too).

use super::MAX_LABEL_LEN;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Label(String),
    Str(String),
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    In,
    NotIn,
    Not,
    Contains,
    StartsWith,
    EndsWith,
    All,
    Global,
    Has(String),
    LParen,
    RParen,
    And,
    Or,
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Label(l) => format!("label {l:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::Comma => "','".into(),
            Tok::Eq => "'=='".into(),
            Tok::Ne => "'!='".into(),
            Tok::In => "'in'".into(),
            Tok::NotIn => "'not in'".into(),
            Tok::Not => "'!'".into(),
            Tok::Contains => "'contains'".into(),
            Tok::StartsWith => "'starts with'".into(),
            Tok::EndsWith => "'ends with'".into(),
            Tok::All => "'all()'".into(),
            Tok::Global => "'global()'".into(),
            Tok::Has(l) => format!("'has({l})'"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::And => "'&&'".into(),
            Tok::Or => "'||'".into(),
            Tok::Eof => "end of selector".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    pub tok: Tok,
    /// Byte offset of the token's first character.
    pub pos: usize,
}

/// A tokenizer failure: byte offset and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LexError {
    pub pos: usize,
    pub message: String,
}

/// Whether `c` may appear in a label key (upstream's charset; covers `projectcalico.org/name`).
pub(super) fn is_label_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-')
}

/// Whether `s` is a label key the selector language can express.
pub fn is_valid_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_LABEL_LEN && s.bytes().all(is_label_byte)
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn skip_ws(&mut self) {
        while matches!(self.input.as_bytes().get(self.pos), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn err(&self, pos: usize, message: impl Into<String>) -> LexError {
        LexError {
            pos,
            message: message.into(),
        }
    }

    /// Consumes `word` if it is next and followed by a word boundary.
    fn eat_word(&mut self, word: &str) -> bool {
        let rest = self.rest();
        if rest.starts_with(word) && at_boundary(&rest[word.len()..]) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// Consumes `first` and `second` with optional blanks between (`starts with`, `startswith`).
    fn eat_two_words(&mut self, first: &str, second: &str) -> bool {
        let start = self.pos;
        if self.rest().starts_with(first) {
            self.pos += first.len();
            self.skip_ws();
            if self.eat_word(second) {
                return true;
            }
        }
        self.pos = start;
        false
    }

    /// Consumes a label key.
    fn label(&mut self) -> Result<String, LexError> {
        let start = self.pos;
        let len = self
            .rest()
            .bytes()
            .take_while(|&c| is_label_byte(c))
            .count();
        if len == 0 {
            return Err(self.err(
                start,
                "expected a label (letters, digits, '_', '.', '/', '-'), a quoted string, \
                 'has(', 'all()', 'global()', '!', or '('",
            ));
        }
        if len > MAX_LABEL_LEN {
            return Err(self.err(
                start,
                format!("label longer than {MAX_LABEL_LEN} characters"),
            ));
        }
        self.pos += len;
        Ok(self.input[start..self.pos].to_string())
    }

    /// Consumes `()` with optional blanks inside, after a function name.
    fn empty_call(&mut self, name: &str) -> Result<(), LexError> {
        self.skip_ws();
        if self.rest().starts_with(')') {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(self.pos, format!("expected ')' to close {name}(")))
        }
    }

    fn next(&mut self, after_label: bool) -> Result<Tok, LexError> {
        let start = self.pos;
        let Some(&c) = self.input.as_bytes().get(self.pos) else {
            return Ok(Tok::Eof);
        };
        let two = |lexer: &mut Self, pat: &str, tok: Tok, what: &str| {
            if lexer.rest().starts_with(pat) {
                lexer.pos += 2;
                Ok(tok)
            } else {
                Err(lexer.err(start, format!("expected '{pat}' ({what})")))
            }
        };
        match c {
            b'(' | b')' | b'{' | b'}' | b',' => {
                self.pos += 1;
                Ok(match c {
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b'{' => Tok::LBrace,
                    b'}' => Tok::RBrace,
                    _ => Tok::Comma,
                })
            }
            b'"' | b'\'' => {
                let body = &self.input[start + 1..];
                match body.find(c as char) {
                    Some(end) => {
                        self.pos = start + 1 + end + 1;
                        Ok(Tok::Str(body[..end].to_string()))
                    }
                    None => Err(self.err(
                        start,
                        format!("unterminated string: expected a closing {}", c as char),
                    )),
                }
            }
            b'=' => two(self, "==", Tok::Eq, "equality"),
            b'&' => two(self, "&&", Tok::And, "logical and"),
            b'|' => two(self, "||", Tok::Or, "logical or"),
            b'!' => {
                if self.rest().starts_with("!=") {
                    self.pos += 2;
                    Ok(Tok::Ne)
                } else {
                    self.pos += 1;
                    Ok(Tok::Not)
                }
            }
            _ if after_label => {
                if self.eat_word("contains") {
                    Ok(Tok::Contains)
                } else if self.eat_two_words("starts", "with") {
                    Ok(Tok::StartsWith)
                } else if self.eat_two_words("ends", "with") {
                    Ok(Tok::EndsWith)
                } else if self.eat_two_words("not", "in") {
                    Ok(Tok::NotIn)
                } else if self.eat_word("in") {
                    Ok(Tok::In)
                } else {
                    Err(self.err(
                        start,
                        "expected an operator after the label: ==, !=, in, not in, contains, \
                         starts with, ends with",
                    ))
                }
            }
            _ => {
                if self.rest().starts_with("has(") {
                    self.pos += 4;
                    self.skip_ws();
                    let label = self.label()?;
                    self.skip_ws();
                    self.empty_call("has")?;
                    Ok(Tok::Has(label))
                } else if self.rest().starts_with("all(") {
                    self.pos += 4;
                    self.empty_call("all").map(|()| Tok::All)
                } else if self.rest().starts_with("global(") {
                    self.pos += 7;
                    self.empty_call("global").map(|()| Tok::Global)
                } else {
                    self.label().map(Tok::Label)
                }
            }
        }
    }
}

fn at_boundary(rest: &str) -> bool {
    rest.bytes().next().is_none_or(|c| !is_label_byte(c))
}

/// Splits `input` into tokens; the last token is always [`Tok::Eof`].
pub(super) fn tokenize(input: &str) -> Result<Vec<Token>, LexError> {
    let mut lexer = Lexer { input, pos: 0 };
    let mut tokens: Vec<Token> = Vec::new();
    loop {
        lexer.skip_ws();
        let pos = lexer.pos;
        let after_label = matches!(
            tokens.last(),
            Some(Token {
                tok: Tok::Label(_),
                ..
            })
        );
        let tok = lexer.next(after_label)?;
        let eof = tok == Tok::Eof;
        tokens.push(Token { tok, pos });
        if eof {
            return Ok(tokens);
        }
    }
}
