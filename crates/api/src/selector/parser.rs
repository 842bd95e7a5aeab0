//! Recursive-descent parser from tokens to [`Expr`].
//!
//! Grammar, lowest precedence first (upstream's):
//!
//! ```text
//! or   := and ( "||" and )*
//! and  := op ( "&&" op )*
//! op   := "!"* ( has(k) | all() | global() | "(" or ")"
//!             | k ("==" | "!=" | "contains" | "starts with" | "ends with") str
//!             | k ("in" | "not in") "{" [ str ("," str)* [","] ] "}" )
//! ```
//!
//! A run of `!` collapses to one negation or none, a one-element `&&`/`||` chain is its element,
//! and sets are sorted and de-duplicated, so the printer's output parses back to the same tree.
//! Parenthesis nesting is capped at [`MAX_DEPTH`] so untrusted input cannot exhaust the stack.

use std::collections::BTreeSet;

use super::lexer::{Tok, Token};
use super::{Expr, MAX_DEPTH};

/// A parse failure: byte offset and what was expected there.
pub(super) struct SyntaxError {
    pub pos: usize,
    pub message: String,
}

pub(super) struct Parser<'t> {
    tokens: &'t [Token],
    next: usize,
}

type Result<T> = std::result::Result<T, SyntaxError>;

impl<'t> Parser<'t> {
    /// `tokens` must end with [`Tok::Eof`] (as `tokenize` guarantees).
    pub(super) fn new(tokens: &'t [Token]) -> Self {
        Parser { tokens, next: 0 }
    }

    fn peek(&self) -> &'t Token {
        // The cursor never moves past the trailing Eof, which every consumer stops at; the
        // fallback only guards against a caller breaking that contract.
        const EOF: Token = Token {
            tok: Tok::Eof,
            pos: 0,
        };
        self.tokens
            .get(self.next)
            .or(self.tokens.last())
            .unwrap_or(&EOF)
    }

    fn bump(&mut self) -> &'t Token {
        let tok = self.peek();
        if tok.tok != Tok::Eof {
            self.next += 1;
        }
        tok
    }

    fn unexpected(&self, expected: &str) -> SyntaxError {
        let tok = self.peek();
        SyntaxError {
            pos: tok.pos,
            message: format!("expected {expected}, found {}", tok.tok.describe()),
        }
    }

    /// Parses a whole selector (the token list must not be just Eof).
    pub(super) fn parse_root(&mut self) -> Result<Expr> {
        let expr = self.parse_or(0)?;
        if self.peek().tok != Tok::Eof {
            return Err(self.unexpected("'&&', '||' or the end of the selector"));
        }
        Ok(expr)
    }

    fn parse_or(&mut self, depth: usize) -> Result<Expr> {
        let mut terms = vec![self.parse_and(depth)?];
        while self.peek().tok == Tok::Or {
            self.bump();
            terms.push(self.parse_and(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn parse_and(&mut self, depth: usize) -> Result<Expr> {
        let mut terms = vec![self.parse_op(depth)?];
        while self.peek().tok == Tok::And {
            self.bump();
            terms.push(self.parse_op(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn parse_op(&mut self, depth: usize) -> Result<Expr> {
        let mut negated = false;
        while self.peek().tok == Tok::Not {
            self.bump();
            negated = !negated;
        }
        let start = self.peek();
        let expr = match &start.tok {
            Tok::Has(label) => {
                self.bump();
                Expr::Has(label.clone())
            }
            Tok::All => {
                self.bump();
                Expr::All
            }
            Tok::Global => {
                self.bump();
                Expr::Global
            }
            Tok::LParen => {
                if depth >= MAX_DEPTH {
                    return Err(SyntaxError {
                        pos: start.pos,
                        message: format!(
                            "parentheses nested deeper than {MAX_DEPTH} levels; simplify the selector"
                        ),
                    });
                }
                self.bump();
                let inner = self.parse_or(depth + 1)?;
                if self.peek().tok != Tok::RParen {
                    return Err(self.unexpected("')'"));
                }
                self.bump();
                inner
            }
            Tok::Label(label) => {
                self.bump();
                self.parse_comparison(label.clone())?
            }
            _ => {
                return Err(self.unexpected(
                    "a label, 'has(', 'all()', 'global()', '!' or '(' to start an expression",
                ));
            }
        };
        Ok(if negated {
            Expr::Not(Box::new(expr))
        } else {
            expr
        })
    }

    fn parse_comparison(&mut self, label: String) -> Result<Expr> {
        let op = self.peek().tok.clone();
        let build: fn(String, String) -> Expr = match op {
            Tok::Eq => Expr::Eq,
            Tok::Ne => Expr::Ne,
            Tok::Contains => Expr::Contains,
            Tok::StartsWith => Expr::StartsWith,
            Tok::EndsWith => Expr::EndsWith,
            Tok::In | Tok::NotIn => {
                self.bump();
                let set = self.parse_set(&op)?;
                return Ok(if op == Tok::In {
                    Expr::In(label, set)
                } else {
                    Expr::NotIn(label, set)
                });
            }
            _ => {
                return Err(self.unexpected(&format!(
                    "an operator after label {label:?} (==, !=, in, not in, contains, starts with, \
                     ends with)"
                )));
            }
        };
        self.bump();
        match &self.peek().tok {
            Tok::Str(value) => {
                self.bump();
                Ok(build(label, value.clone()))
            }
            _ => Err(self.unexpected(&format!("a quoted string after {}", op.describe()))),
        }
    }

    fn parse_set(&mut self, op: &Tok) -> Result<BTreeSet<String>> {
        if self.peek().tok != Tok::LBrace {
            return Err(self.unexpected(&format!(
                "a set literal like {{\"a\", \"b\"}} after {}",
                op.describe()
            )));
        }
        self.bump();
        let mut set = BTreeSet::new();
        while let Tok::Str(value) = &self.peek().tok {
            self.bump();
            set.insert(value.clone());
            if self.peek().tok != Tok::Comma {
                break;
            }
            self.bump();
        }
        if self.peek().tok != Tok::RBrace {
            return Err(self.unexpected("a quoted string, ',' or '}' in the set"));
        }
        self.bump();
        Ok(set)
    }
}
