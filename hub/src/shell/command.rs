//! The shell's command language, as an operator types it:
//!
//! ```text
//! set ^Person(42)=$LB("Ada",36)      s ^X=1
//! get ^Person(42)                    write / w: the same, printed as KEY=VALUE
//! zwrite ^Person                     zw: every node of the subtree
//! kill ^Person(42)                   k: node and subtree
//! zkill ^Person(42)                  node only
//! data ^Person(42)                   $DATA: 0, 1, 10 or 11
//! order ^Person("")                  next subscript (order -1 ^X(5) goes back)
//! query ^Person                      next node with a value (query -1 goes back)
//! increment ^Counter [BY]            i
//! tstart | tcommit | trollback [1]   ts | tc | tro
//! lock ^X(1) [SECONDS] | unlock ^X(1)
//! ```
//!
//! Command words are case-insensitive; keys and values use the text form of
//! `redoubt_engine::model`.

use std::time::Duration;

use redoubt_engine::model::{parse_key, parse_value, Key, ModelError, Value};
use redoubt_engine::Direction;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Set(Key, Value),
    Get(Key),
    ZWrite(Key),
    Kill(Key),
    ZKill(Key),
    Data(Key),
    Order(Key, Direction),
    Query(Key, Direction),
    Increment(Key, i64),
    TStart,
    TCommit,
    TRollback { innermost_only: bool },
    Lock(Key, Duration),
    Unlock(Key),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("empty command")]
    Empty,
    #[error("unknown command {0:?}; try set, get, zwrite, kill, zkill, data, order, query, increment, tstart, tcommit, trollback, lock, unlock")]
    Unknown(String),
    #[error("{command}: {problem}")]
    Bad {
        command: &'static str,
        problem: String,
    },
    #[error("{0}")]
    Model(#[from] ModelError),
}

fn bad(command: &'static str, problem: impl Into<String>) -> ParseError {
    ParseError::Bad {
        command,
        problem: problem.into(),
    }
}

/// Splits `^X(1,"a=b")=VALUE` at the first `=` outside quotes and brackets.
fn split_assignment(text: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    let mut in_string = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => depth -= 1,
            '=' if !in_string && depth == 0 => return Some((&text[..i], &text[i + 1..])),
            _ => {}
        }
    }
    None
}

/// `KEY [NUMBER]`, splitting at the last space outside quotes/brackets.
fn key_and_number(text: &str) -> (&str, Option<&str>) {
    let mut depth = 0i32;
    let mut in_string = false;
    let mut split = None;
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => depth -= 1,
            ' ' | '\t' if !in_string && depth == 0 => split = Some(i),
            _ => {}
        }
    }
    match split {
        Some(i) if !text[i..].trim().is_empty() => (text[..i].trim(), Some(text[i..].trim())),
        _ => (text.trim(), None),
    }
}

fn direction(rest: &str) -> (Direction, &str) {
    match rest.strip_prefix("-1") {
        Some(r) if r.starts_with([' ', '\t']) => (Direction::Backward, r.trim()),
        _ => (
            Direction::Forward,
            rest.strip_prefix("1 ").unwrap_or(rest).trim(),
        ),
    }
}

pub fn parse(line: &str) -> Result<Command, ParseError> {
    let line = line.trim();
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let (word, rest) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    };
    let need_key = |command: &'static str, text: &str| -> Result<Key, ParseError> {
        if text.is_empty() {
            return Err(bad(command, "expected a key such as ^X(1)"));
        }
        Ok(parse_key(text)?)
    };
    Ok(match word.to_ascii_lowercase().as_str() {
        "set" | "s" => {
            let (k, v) = split_assignment(rest)
                .ok_or_else(|| bad("set", "expected KEY=VALUE, e.g. set ^X(1)=\"a\""))?;
            Command::Set(need_key("set", k.trim())?, parse_value(v)?)
        }
        "get" | "write" | "w" => Command::Get(need_key("get", rest)?),
        "zwrite" | "zw" => Command::ZWrite(need_key("zwrite", rest)?),
        "kill" | "k" => Command::Kill(need_key("kill", rest)?),
        "zkill" | "zk" => Command::ZKill(need_key("zkill", rest)?),
        "data" | "$data" | "$d" => Command::Data(need_key("data", rest)?),
        "order" | "$order" | "$o" => {
            let (dir, k) = direction(rest);
            let key = need_key("order", k)?;
            if key.subs.is_empty() {
                return Err(bad(
                    "order",
                    "the key needs a subscript, e.g. order ^X(\"\")",
                ));
            }
            Command::Order(key, dir)
        }
        "query" | "$query" | "$q" => {
            let (dir, k) = direction(rest);
            Command::Query(need_key("query", k)?, dir)
        }
        "increment" | "incr" | "i" | "$increment" | "$i" => {
            let (k, n) = key_and_number(rest);
            let by = match n {
                None => 1,
                Some(n) => n
                    .parse()
                    .map_err(|_| bad("increment", format!("{n:?} is not an integer")))?,
            };
            Command::Increment(need_key("increment", k)?, by)
        }
        "tstart" | "ts" => Command::TStart,
        "tcommit" | "tc" => Command::TCommit,
        "trollback" | "tro" => match rest {
            "" => Command::TRollback {
                innermost_only: false,
            },
            "1" => Command::TRollback {
                innermost_only: true,
            },
            other => {
                return Err(bad(
                    "trollback",
                    format!("expected nothing or 1, got {other:?}"),
                ))
            }
        },
        "lock" | "l" => {
            let (k, n) = key_and_number(rest);
            let secs: f64 = match n {
                None => 0.0,
                Some(n) => n
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| {
                        bad("lock", format!("timeout {n:?} is not a number of seconds"))
                    })?,
            };
            Command::Lock(need_key("lock", k)?, Duration::from_secs_f64(secs))
        }
        "unlock" => Command::Unlock(need_key("unlock", rest)?),
        other => return Err(ParseError::Unknown(other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(t: &str) -> Key {
        parse_key(t).unwrap()
    }

    #[test]
    fn parses_the_commands_people_type() {
        assert_eq!(
            parse(r#"set ^X(1,"a=b")=$LB("x=y",2)"#).unwrap(),
            Command::Set(k(r#"^X(1,"a=b")"#), parse_value(r#"$LB("x=y",2)"#).unwrap())
        );
        assert_eq!(
            parse("S ^myfirstglobal=\"congratulations\"").unwrap(),
            Command::Set(k("^myfirstglobal"), Value::Str("congratulations".into()))
        );
        assert_eq!(parse("w ^X(1)").unwrap(), Command::Get(k("^X(1)")));
        assert_eq!(
            parse("order -1 ^X(5)").unwrap(),
            Command::Order(k("^X(5)"), Direction::Backward)
        );
        assert_eq!(
            parse("order ^X(\"\")").unwrap(),
            Command::Order(k("^X(\"\")"), Direction::Forward)
        );
        assert_eq!(
            parse("increment ^C 5").unwrap(),
            Command::Increment(k("^C"), 5)
        );
        assert_eq!(
            parse("incr ^C(\"a b\")").unwrap(),
            Command::Increment(k("^C(\"a b\")"), 1)
        );
        assert_eq!(
            parse("trollback 1").unwrap(),
            Command::TRollback {
                innermost_only: true
            }
        );
        assert_eq!(
            parse("lock ^X(1) 2.5").unwrap(),
            Command::Lock(k("^X(1)"), Duration::from_millis(2500))
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(parse("  "), Err(ParseError::Empty));
        assert!(parse("frob ^X")
            .unwrap_err()
            .to_string()
            .starts_with("unknown command \"frob\""));
        assert!(parse("set ^X")
            .unwrap_err()
            .to_string()
            .contains("expected KEY=VALUE"));
        assert!(parse("get")
            .unwrap_err()
            .to_string()
            .contains("expected a key"));
        assert!(parse("order ^X")
            .unwrap_err()
            .to_string()
            .contains("needs a subscript"));
        assert!(parse("increment ^C x")
            .unwrap_err()
            .to_string()
            .contains("not an integer"));
        let e = parse("get ^X(1").unwrap_err().to_string();
        assert!(e.contains("column"), "{e}");
    }
}
