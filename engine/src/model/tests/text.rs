//! The text form: round trips, canonical printing, and every error with
//! its message and column.

use proptest::prelude::*;

use super::strategies::{key, same_text_value, subscript, value};
use crate::model::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn key_text_round_trips(k in key()) {
        let text = k.to_string();
        let back = parse_key(&text)?;
        prop_assert_eq!(&back, &k, "{}", text);
        prop_assert_eq!(&back.to_string(), &text);
        prop_assert_eq!(text.parse::<Key>()?, k);
    }

    #[test]
    fn subscript_text_round_trips(s in subscript()) {
        let text = s.to_string();
        prop_assert_eq!(parse_subscript(&text)?, s, "{}", text);
    }

    #[test]
    fn value_text_round_trips(v in value()) {
        let text = v.to_string();
        let back = parse_value(&text)?;
        prop_assert!(same_text_value(&back, &v), "{:?} printed {} parsed {:?}", v, text, back);
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn float_text_is_shortest_and_exact(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        let text = Value::Float(x).to_string();
        prop_assert!(text.contains('.') || text.contains('e'), "{}", text);
        let back: f64 = text.parse().unwrap();
        prop_assert_eq!(back.to_bits(), x.to_bits(), "{}", text);
        // Same significant digits as Rust's shortest repr.
        let digits = |s: &str| -> String {
            let m = s.split('e').next().unwrap();
            m.chars().filter(char::is_ascii_digit).collect::<String>()
                .trim_matches('0').to_owned()
        };
        prop_assert_eq!(digits(&text), digits(&format!("{:e}", x)));
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in "[\\^A-Za-z0-9%.(),\"$ eE+\\-é]{0,24}") {
        let _ = parse_key(&text);
        let _ = parse_value(&text);
        let _ = parse_subscript(&text);
    }
}

fn key_text(text: &str) -> String {
    parse_key(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .to_string()
}

fn value_text(text: &str) -> String {
    parse_value(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .to_string()
}

#[test]
fn keys_parse_and_print() {
    let k = parse_key("^Person(42,\"email\")").unwrap();
    assert_eq!(
        k,
        Key::new("Person", vec![42.into(), "email".into()]).unwrap()
    );
    assert_eq!(key_text("^Person"), "^Person");
    assert_eq!(key_text("^X(-5,\"a\"\"b\")"), "^X(-5,\"a\"\"b\")");
    assert_eq!(
        parse_key("^X(\"a\"\"b\")").unwrap().subs,
        vec![Subscript::Str("a\"b".into())]
    );
    assert_eq!(key_text("^%sys(1)"), "^%sys(1)");
    assert_eq!(key_text("  ^A( 1 ,  \"x\" ,\n2 )  "), "^A(1,\"x\",2)");
    assert_eq!(key_text("^A(\"\")"), "^A(\"\")");
    assert_eq!(key_text("^A(\"(,)\")"), "^A(\"(,)\")");
    // Numeric subscripts are canonical numbers.
    assert_eq!(
        key_text("^A(2.0,2e0,-0,-0.0,007,1.50,0.5e1)"),
        "^A(2,2,0,0,7,1.5,5)"
    );
    assert_eq!(
        key_text("^A(1e3,12345678901234567.0)"),
        "^A(1000,12345678901234567)"
    );
    assert_eq!(
        key_text("^A(9223372036854775807.0,-9223372036854775808.0)"),
        "^A(9223372036854775807,-9223372036854775808)"
    );
    assert_eq!(
        key_text("^A(9223372036854775808.0)"),
        "^A(9.223372036854776e18)"
    );
    assert_eq!(
        key_text("^A(1e20,-2.5e-7,0.00001,1e-5)"),
        "^A(1e20,-2.5e-7,0.00001,0.00001)"
    );
}

#[test]
fn values_parse_and_print() {
    assert_eq!(parse_value("\"text\"").unwrap(), Value::Str("text".into()));
    assert_eq!(value_text("\"a\"\"b\""), "\"a\"\"b\"");
    assert_eq!(parse_value("42").unwrap(), Value::Int(42));
    assert_eq!(parse_value("-7").unwrap(), Value::Int(-7));
    assert_eq!(parse_value("3.5").unwrap(), Value::Float(3.5));
    assert_eq!(parse_value("1e10").unwrap(), Value::Float(1e10));
    assert_eq!(value_text("1e10"), "10000000000.0");
    assert_eq!(value_text("2.0"), "2.0");
    assert_eq!(value_text("1E+17"), "1e17");
    assert_eq!(value_text("-0.0"), "-0.0");
    assert_eq!(value_text("0.1"), "0.1");
    assert_eq!(value_text("0.000012"), "0.000012");
    assert_eq!(value_text("0.0000012"), "1.2e-6");
    assert_eq!(value_text("123456789012345678"), "123456789012345678");
    assert_eq!(value_text("123456789012345678.0"), "1.2345678901234568e17");
    assert_eq!(value_text("-9223372036854775808"), "-9223372036854775808");
    assert_eq!(
        parse_value("$LB(\"Ada\",36)").unwrap(),
        Value::List(vec![Value::Str("Ada".into()), Value::Int(36)])
    );
    assert_eq!(value_text("$lb( 1 , $listbuild(2) )"), "$LB(1,$LB(2))");
    assert_eq!(value_text("$LB()"), "$LB()");
    assert_eq!(value_text("$LB($LB(),$LB( ))"), "$LB($LB(),$LB())");
    assert_eq!(
        parse_value("$X\"00fF\"").unwrap(),
        Value::Bytes(vec![0x00, 0xff])
    );
    assert_eq!(value_text("$x\"00FF\""), "$X\"00ff\"");
    assert_eq!(value_text("$X\"\""), "$X\"\"");
    assert_eq!(value_text("$DOUBLE(\"inf\")"), "$DOUBLE(\"INF\")");
    assert_eq!(value_text("$double( \"-INF\" )"), "$DOUBLE(\"-INF\")");
    assert_eq!(value_text("$DOUBLE(\"NaN\")"), "$DOUBLE(\"NAN\")");
    assert_eq!(value_text("$DOUBLE(5)"), "5.0");
    // Strings hold anything but are printed raw.
    assert_eq!(value_text("\"line\nbreak\0nul\""), "\"line\nbreak\0nul\"");
}

/// Asserts that `result` is a syntax error with this message and column.
#[track_caller]
fn assert_syntax<T: std::fmt::Debug>(result: Result<T, ModelError>, what: &str, column: usize) {
    match result {
        Err(ModelError::Syntax {
            what: w,
            column: c,
            text,
        }) => {
            assert_eq!((w.as_str(), c), (what, column), "in {text}");
        }
        other => panic!("expected a syntax error {what:?} at column {column}, got {other:?}"),
    }
}

#[test]
fn key_errors_say_what_and_where() {
    // The message names the column and repeats the text.
    let err = parse_key("^Person(42,\"email\"").unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected ')' at column 19 in ^Person(42,\"email\""
    );

    assert_syntax(parse_key("^X(\"abc"), "unterminated string", 4);
    assert_syntax(parse_key("^X(1,\"a\"\"b)"), "unterminated string", 6);
    assert_syntax(parse_key("^X(1"), "expected ')'", 5);
    assert_syntax(
        parse_key("^X(1 2)"),
        "expected ',' or ')' after a subscript, found '2'",
        6,
    );
    assert_syntax(
        parse_key("^1X"),
        "bad global name \"1X\": it must start with a letter or '%'",
        2,
    );
    assert_syntax(
        parse_key("^A_B"),
        "unexpected '_' after the end of the key",
        3,
    );
    assert_syntax(
        parse_key("^A.(1)"),
        "bad global name \"A.\": it must not end with '.'",
        2,
    );
    assert_syntax(
        parse_key(&format!("^{}", "A".repeat(32))),
        &format!(
            "bad global name \"{}\": it is longer than 31 characters",
            "A".repeat(32)
        ),
        2,
    );
    assert_syntax(
        parse_key("^"),
        "expected a global name after '^', found the end of the text",
        2,
    );
    assert_syntax(
        parse_key("Person(1)"),
        "expected '^' to start a global reference, found 'P'",
        1,
    );
    assert_syntax(
        parse_key(""),
        "expected '^' to start a global reference, found the end of the text",
        1,
    );
    assert_syntax(
        parse_key("^X(1) junk"),
        "unexpected 'j' after the end of the key",
        7,
    );
    assert_syntax(
        parse_key("^X(1))"),
        "unexpected ')' after the end of the key",
        6,
    );
    assert_syntax(parse_key("^X()"), "empty subscript", 4);
    assert_syntax(parse_key("^X(1,,2)"), "empty subscript", 6);
    assert_syntax(parse_key("^X(1, )"), "empty subscript", 7);
    assert_syntax(
        parse_key("^X(abc)"),
        "expected a subscript (a number or a quoted string), found 'a'",
        4,
    );
    assert_syntax(
        parse_key("^X(99999999999999999999)"),
        "integer 99999999999999999999 out of range -9223372036854775808..=9223372036854775807 \
         (write 99999999999999999999.0 for a floating-point number)",
        4,
    );
    assert_syntax(
        parse_key("^X(1,1e400)"),
        "number 1e400 out of range for a 64-bit float",
        6,
    );
    assert_syntax(
        parse_key("^X(1e-400)"),
        "number 1e-400 out of range for a 64-bit float",
        4,
    );
    assert_syntax(
        parse_key("^X(-)"),
        "expected a digit after '-', found ')'",
        5,
    );
    assert_syntax(
        parse_key("^X(1.)"),
        "expected a digit after '.', found ')'",
        6,
    );
    assert_syntax(
        parse_key("^X(1e)"),
        "expected a digit in the exponent, found ')'",
        6,
    );
    // Columns count characters, not bytes.
    assert_syntax(
        parse_key("^X(\"é\",1 x)"),
        "expected ',' or ')' after a subscript, found 'x'",
        10,
    );
}

#[test]
fn value_errors_say_what_and_where() {
    assert_syntax(parse_value("\"abc"), "unterminated string", 1);
    assert_syntax(parse_value("$LB(1,\"x\""), "expected ')'", 10);
    assert_syntax(
        parse_value("$LB(1;2)"),
        "expected ',' or ')' after a list element, found ';'",
        6,
    );
    assert_syntax(parse_value("$LB(1,,2)"), "empty list element", 7);
    assert_syntax(parse_value("$LB(1,)"), "empty list element", 7);
    assert_syntax(
        parse_value("$LB"),
        "expected '(' after $LB, found the end of the text",
        4,
    );
    assert_syntax(
        parse_value("42 43"),
        "unexpected '4' after the end of the value",
        4,
    );
    assert_syntax(
        parse_value("12abc"),
        "unexpected 'a' after the end of the value",
        3,
    );
    assert_syntax(
        parse_value(""),
        "expected a value (string, number, $LB, $X or $DOUBLE), found the end of the text",
        1,
    );
    assert_syntax(
        parse_value("abc"),
        "expected a value (string, number, $LB, $X or $DOUBLE), found 'a'",
        1,
    );
    assert_syntax(
        parse_value("$FOO(1)"),
        "unknown function $FOO (expected $LB, $X or $DOUBLE)",
        1,
    );
    assert_syntax(
        parse_value("9223372036854775808"),
        "integer 9223372036854775808 out of range -9223372036854775808..=9223372036854775807 \
         (write 9223372036854775808.0 for a floating-point number)",
        1,
    );
    assert_syntax(
        parse_value("$LB(1e999)"),
        "number 1e999 out of range for a 64-bit float",
        5,
    );
    assert_syntax(parse_value("$X\"0g\""), "bad hex digit 'g' in $X", 5);
    assert_syntax(
        parse_value("$X\"abc\""),
        "odd number of hex digits in $X",
        6,
    );
    assert_syntax(
        parse_value("$X(\"00\")"),
        "expected '\"' after $X, found '('",
        3,
    );
    assert_syntax(
        parse_value("$DOUBLE(\"x\")"),
        "expected \"INF\", \"-INF\" or \"NAN\" in $DOUBLE",
        9,
    );
    assert_syntax(
        parse_value("$DOUBLE(1"),
        "expected ')', found the end of the text",
        10,
    );
    let deep = format!(
        "{}{}",
        "$LB(".repeat(MAX_LIST_NESTING + 1),
        ")".repeat(MAX_LIST_NESTING + 1)
    );
    assert_syntax(
        parse_value(&deep),
        "lists nested deeper than 64",
        4 * MAX_LIST_NESTING + 1,
    );
    let ok = format!(
        "{}{}",
        "$LB(".repeat(MAX_LIST_NESTING),
        ")".repeat(MAX_LIST_NESTING)
    );
    assert_eq!(parse_value(&ok).unwrap().nesting(), MAX_LIST_NESTING);
}
