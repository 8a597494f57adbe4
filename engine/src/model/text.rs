//! The text form of keys, subscripts and values: what people type at the
//! CLI and what tests write. Printing is canonical and parsing accepts what
//! printing produces, so `parse(print(x)) == x`.
//!
//! # Grammar
//!
//! ```text
//!     key       = ws '^' name [ '(' ws sub ws { ',' ws sub ws } ')' ] ws
//!     name      = ( letter | '%' ) { letter | digit | '.' }     1..=31, not ending in '.'
//!     sub       = string | number
//!     value     = ws item ws
//!     item      = string | number | list | bytes | double
//!     list      = '$LB(' ws [ item ws { ',' ws item ws } ] ')'    ($LISTBUILD also)
//!     bytes     = '$X"' { hexdigit hexdigit } '"'                 ($X"00ff")
//!     double    = '$DOUBLE(' ws ( string | number ) ws ')'       "INF" "-INF" "NAN"
//!     string    = '"' { any char but '"' | '""' } '"'             "a""b" is  a"b
//!     number    = [ '-' ] digits [ '.' digits ] [ ( 'e' | 'E' ) [ '+' | '-' ] digits ]
//!     ws        = { ' ' | '\t' | '\r' | '\n' }
//! ```
//!
//! Function names are case-insensitive (`$lb`, `$x`). Inside strings every
//! character stands for itself, newlines and NUL included.
//!
//! # Numbers
//!
//! * Values: a number without `.` or exponent is an [`Value::Int`] and must
//!   fit `i64`; with one it is a [`Value::Float`]: `42`, `-7`, `3.5`,
//!   `1e10`. Floats print as the shortest text that reads back to the same
//!   bits, always with `.` or `e` (`2.0`, `1e17`, `-0.0`); infinities and
//!   NaN print as `$DOUBLE("INF")`, `$DOUBLE("-INF")`, `$DOUBLE("NAN")`.
//! * Subscripts: the number's exact value decides. An exact integer in
//!   `i64` range is an `Int` whatever the spelling (`2.0`, `2e0` and `2`
//!   are all `^X(2)`); any other number becomes the nearest `f64` as a
//!   `Num`. Integers written without `.`/exponent must still fit `i64`.
//! * A number whose magnitude overflows `f64`, or that is non-zero but
//!   rounds to zero, is an error.

use std::fmt::{self, Display, Write};
use std::str::FromStr;

use super::global::GlobalName;
use super::key::{validate_global_name, Key};
use super::number::{classify_decimal, write_float, DecimalClass};
use super::subscript::Subscript;
use super::value::{Value, MAX_LIST_NESTING};
use super::ModelError;

/// Parses the text form of a key, e.g. `^Person(42,"email")`.
pub fn parse_key(text: &str) -> Result<Key, ModelError> {
    let mut p = Parser::new(text);
    p.skip_ws();
    let key = p.key()?;
    p.skip_ws();
    p.expect_end("the key")?;
    Ok(key)
}

/// Parses the text form of a value, e.g. `$LB("Ada",36)`.
pub fn parse_value(text: &str) -> Result<Value, ModelError> {
    let mut p = Parser::new(text);
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    p.expect_end("the value")?;
    Ok(v)
}

/// Parses the text form of one subscript, e.g. `42`, `-1.5` or `"email"`.
pub fn parse_subscript(text: &str) -> Result<Subscript, ModelError> {
    let mut p = Parser::new(text);
    p.skip_ws();
    let s = p.subscript()?;
    p.skip_ws();
    p.expect_end("the subscript")?;
    Ok(s)
}

impl FromStr for Key {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_key(s)
    }
}

impl FromStr for Value {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_value(s)
    }
}

impl FromStr for Subscript {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_subscript(s)
    }
}

fn write_quoted(f: &mut impl Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    let mut parts = s.split('"');
    if let Some(first) = parts.next() {
        f.write_str(first)?;
    }
    for part in parts {
        f.write_str("\"\"")?;
        f.write_str(part)?;
    }
    f.write_char('"')
}

impl Display for Subscript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subscript::Int(n) => write!(f, "{n}"),
            Subscript::Num(r) => write_float(f, r.get()),
            Subscript::Str(s) => write_quoted(f, s),
        }
    }
}

impl Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "^{}", self.global)?;
        if let Some((first, rest)) = self.subs.split_first() {
            write!(f, "({first}")?;
            for s in rest {
                write!(f, ",{s}")?;
            }
            f.write_char(')')?;
        }
        Ok(())
    }
}

impl Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write_quoted(f, s),
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) if x.is_nan() => f.write_str("$DOUBLE(\"NAN\")"),
            Value::Float(x) if x.is_infinite() => {
                let sign = if *x < 0.0 { "-" } else { "" };
                write!(f, "$DOUBLE(\"{sign}INF\")")
            }
            Value::Float(x) => write_float(f, *x),
            Value::Bytes(b) => {
                f.write_str("$X\"")?;
                for byte in b {
                    write!(f, "{byte:02x}")?;
                }
                f.write_char('"')
            }
            Value::List(items) => {
                f.write_str("$LB(")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(')')
            }
        }
    }
}

/// A scanned number literal (syntax only).
struct NumberToken<'a> {
    start: usize,
    text: &'a str,
    negative: bool,
    int_digits: &'a str,
    frac_digits: &'a str,
    exp: i64,
    /// Written with `.` or an exponent.
    is_float: bool,
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn err(&self, pos: usize, what: impl Into<String>) -> ModelError {
        ModelError::Syntax {
            what: what.into(),
            column: self.text[..pos].chars().count() + 1,
            text: self.text.to_owned(),
        }
    }

    /// `'x'` or `the end of the text`: what is at `pos`.
    fn describe(&self, pos: usize) -> String {
        match self.text[pos..].chars().next() {
            None => "the end of the text".to_owned(),
            Some(c) => format!("{c:?}"),
        }
    }

    /// `found 'x'` / `found the end of the text`.
    fn found(&self, pos: usize) -> String {
        format!("found {}", self.describe(pos))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn expect_end(&self, what: &str) -> Result<(), ModelError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(self.err(
                self.pos,
                format!(
                    "unexpected {} after the end of {what}",
                    self.describe(self.pos)
                ),
            ))
        }
    }

    fn key(&mut self) -> Result<Key, ModelError> {
        if self.peek() != Some(b'^') {
            return Err(self.err(
                self.pos,
                format!(
                    "expected '^' to start a global reference, {}",
                    self.found(self.pos)
                ),
            ));
        }
        self.pos += 1;
        let start = self.pos;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'%' || b == b'.')
        {
            self.pos += 1;
        }
        let name = &self.text[start..self.pos];
        if name.is_empty() {
            return Err(self.err(
                start,
                format!("expected a global name after '^', {}", self.found(start)),
            ));
        }
        if let Err(ModelError::BadGlobalName { reason, .. }) = validate_global_name(name) {
            return Err(self.err(start, format!("bad global name {name:?}: {reason}")));
        }
        let mut subs = Vec::new();
        if self.peek() == Some(b'(') {
            self.pos += 1;
            loop {
                self.skip_ws();
                if matches!(self.peek(), Some(b',' | b')')) {
                    return Err(self.err(self.pos, "empty subscript"));
                }
                subs.push(self.subscript()?);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b')') => {
                        self.pos += 1;
                        break;
                    }
                    None => return Err(self.err(self.pos, "expected ')'")),
                    Some(_) => {
                        return Err(self.err(
                            self.pos,
                            format!(
                                "expected ',' or ')' after a subscript, {}",
                                self.found(self.pos)
                            ),
                        ))
                    }
                }
            }
        }
        Ok(Key {
            global: GlobalName::new(name)?,
            subs,
        })
    }

    fn subscript(&mut self) -> Result<Subscript, ModelError> {
        match self.peek() {
            Some(b'"') => Ok(Subscript::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => {
                let tok = self.number()?;
                self.number_subscript(&tok)
            }
            _ => Err(self.err(
                self.pos,
                format!(
                    "expected a subscript (a number or a quoted string), {}",
                    self.found(self.pos)
                ),
            )),
        }
    }

    fn number_subscript(&self, tok: &NumberToken<'_>) -> Result<Subscript, ModelError> {
        match classify_decimal(tok.negative, tok.int_digits, tok.frac_digits, tok.exp) {
            DecimalClass::Int(n) => Ok(Subscript::Int(n)),
            DecimalClass::BigInt if !tok.is_float => Err(self.integer_out_of_range(tok)),
            DecimalClass::BigInt | DecimalClass::Fraction => {
                let x = self.float_of(tok)?;
                Subscript::from_f64(x).map_err(|e| self.err(tok.start, e.to_string()))
            }
        }
    }

    fn integer_out_of_range(&self, tok: &NumberToken<'_>) -> ModelError {
        self.err(
            tok.start,
            format!(
                "integer {} out of range {}..={} (write {}.0 for a floating-point number)",
                tok.text,
                i64::MIN,
                i64::MAX,
                tok.text
            ),
        )
    }

    /// The nearest `f64` to the literal; an error if it overflows or a
    /// non-zero literal underflows to zero.
    fn float_of(&self, tok: &NumberToken<'_>) -> Result<f64, ModelError> {
        let x: f64 = tok
            .text
            .parse()
            .map_err(|_| self.err(tok.start, format!("bad number {}", tok.text)))?;
        let nonzero = tok
            .int_digits
            .bytes()
            .chain(tok.frac_digits.bytes())
            .any(|d| d != b'0');
        if x.is_infinite() || (x == 0.0 && nonzero) {
            return Err(self.err(
                tok.start,
                format!("number {} out of range for a 64-bit float", tok.text),
            ));
        }
        Ok(x)
    }

    fn digits(&mut self) -> &'a str {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn number(&mut self) -> Result<NumberToken<'a>, ModelError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_digits = self.digits();
        if int_digits.is_empty() {
            return Err(self.err(
                self.pos,
                format!("expected a digit after '-', {}", self.found(self.pos)),
            ));
        }
        let mut frac_digits = "";
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            is_float = true;
            frac_digits = self.digits();
            if frac_digits.is_empty() {
                return Err(self.err(
                    self.pos,
                    format!("expected a digit after '.', {}", self.found(self.pos)),
                ));
            }
        }
        let mut exp = 0i64;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            is_float = true;
            let exp_negative = match self.peek() {
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            let exp_digits = self.digits();
            if exp_digits.is_empty() {
                return Err(self.err(
                    self.pos,
                    format!("expected a digit in the exponent, {}", self.found(self.pos)),
                ));
            }
            for d in exp_digits.bytes() {
                exp = exp.saturating_mul(10).saturating_add(i64::from(d - b'0'));
            }
            if exp_negative {
                exp = -exp;
            }
        }
        Ok(NumberToken {
            start,
            text: &self.text[start..self.pos],
            negative,
            int_digits,
            frac_digits,
            exp,
            is_float,
        })
    }

    /// A quoted string at `self.pos` (which holds the opening quote).
    fn string(&mut self) -> Result<String, ModelError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(q) = self.text[self.pos..].find('"') else {
                return Err(self.err(open, "unterminated string"));
            };
            out.push_str(&self.text[self.pos..self.pos + q]);
            self.pos += q + 1;
            if self.peek() == Some(b'"') {
                out.push('"');
                self.pos += 1;
            } else {
                return Ok(out);
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, ModelError> {
        match self.peek() {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => {
                let tok = self.number()?;
                self.number_value(&tok)
            }
            Some(b'$') => self.function(depth),
            _ => Err(self.err(
                self.pos,
                format!(
                    "expected a value (string, number, $LB, $X or $DOUBLE), {}",
                    self.found(self.pos)
                ),
            )),
        }
    }

    fn number_value(&self, tok: &NumberToken<'_>) -> Result<Value, ModelError> {
        if tok.is_float {
            Ok(Value::Float(self.float_of(tok)?))
        } else {
            tok.text
                .parse()
                .map(Value::Int)
                .map_err(|_| self.integer_out_of_range(tok))
        }
    }

    fn function(&mut self, depth: usize) -> Result<Value, ModelError> {
        let start = self.pos;
        self.pos += 1;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        let name = self.text[start + 1..self.pos].to_ascii_uppercase();
        match name.as_str() {
            "LB" | "LISTBUILD" => {
                if depth >= MAX_LIST_NESTING {
                    return Err(self.err(
                        start,
                        format!("lists nested deeper than {MAX_LIST_NESTING}"),
                    ));
                }
                self.open_paren(&name)?;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b')') {
                    self.pos += 1;
                    return Ok(Value::List(items));
                }
                loop {
                    self.skip_ws();
                    if matches!(self.peek(), Some(b',' | b')')) {
                        return Err(self.err(self.pos, "empty list element"));
                    }
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Value::List(items));
                        }
                        None => return Err(self.err(self.pos, "expected ')'")),
                        Some(_) => {
                            return Err(self.err(
                                self.pos,
                                format!(
                                    "expected ',' or ')' after a list element, {}",
                                    self.found(self.pos)
                                ),
                            ))
                        }
                    }
                }
            }
            "X" => {
                if self.peek() != Some(b'"') {
                    return Err(self.err(
                        self.pos,
                        format!("expected '\"' after $X, {}", self.found(self.pos)),
                    ));
                }
                let open = self.pos;
                let hex = self.string()?;
                decode_hex(&hex).map(Value::Bytes).map_err(|(i, what)| {
                    // No '"' can precede the first bad digit (a quote is
                    // itself bad), so the offset maps straight to the text.
                    self.err(open + 1 + i, what)
                })
            }
            "DOUBLE" => {
                self.open_paren(&name)?;
                self.skip_ws();
                let arg = self.pos;
                let x = match self.peek() {
                    Some(b'"') => {
                        let s = self.string()?;
                        match s.to_ascii_uppercase().as_str() {
                            "INF" | "+INF" => f64::INFINITY,
                            "-INF" => f64::NEG_INFINITY,
                            "NAN" => f64::NAN,
                            _ => {
                                return Err(self
                                    .err(arg, "expected \"INF\", \"-INF\" or \"NAN\" in $DOUBLE"))
                            }
                        }
                    }
                    Some(b'-' | b'0'..=b'9') => {
                        let tok = self.number()?;
                        self.float_of(&tok)?
                    }
                    _ => {
                        return Err(self.err(
                            arg,
                            format!(
                                "expected a number or \"INF\", \"-INF\", \"NAN\" in $DOUBLE, {}",
                                self.found(arg)
                            ),
                        ))
                    }
                };
                self.skip_ws();
                if self.peek() != Some(b')') {
                    return Err(
                        self.err(self.pos, format!("expected ')', {}", self.found(self.pos)))
                    );
                }
                self.pos += 1;
                Ok(Value::Float(x))
            }
            _ => Err(self.err(
                start,
                format!(
                    "unknown function ${} (expected $LB, $X or $DOUBLE)",
                    &self.text[start + 1..self.pos]
                ),
            )),
        }
    }

    fn open_paren(&mut self, name: &str) -> Result<(), ModelError> {
        if self.peek() == Some(b'(') {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(
                self.pos,
                format!("expected '(' after ${name}, {}", self.found(self.pos)),
            ))
        }
    }
}

/// Decodes hex digits; on error, the byte offset of the culprit.
fn decode_hex(hex: &str) -> Result<Vec<u8>, (usize, String)> {
    let digit = |i: usize, c: u8| {
        (c as char).to_digit(16).map(|d| d as u8).ok_or_else(|| {
            (
                i,
                format!(
                    "bad hex digit {:?} in $X",
                    hex[i..].chars().next().unwrap_or('?')
                ),
            )
        })
    };
    let b = hex.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 2);
    for (k, pair) in b.chunks(2).enumerate() {
        let i = 2 * k;
        let hi = digit(i, pair[0])?;
        let Some(&lo) = pair.get(1) else {
            return Err((i, "odd number of hex digits in $X".to_owned()));
        };
        out.push((hi << 4) | digit(i + 1, lo)?);
    }
    Ok(out)
}
