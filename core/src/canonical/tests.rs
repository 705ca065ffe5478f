use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn canon(input: &str, mode: NonAscii) -> String {
    match CanonicalJson::parse(input.as_bytes()) {
        Ok(json) => json.to_string(mode),
        Err(error) => panic!("{input:?} did not parse: {error}"),
    }
}

#[test]
fn sorts_keys_recursively_and_compacts() {
    assert_eq!(
        canon(
            r#" { "b" : [ 1 , {"z":1,"a":2} ], "a" : null } "#,
            NonAscii::Escaped
        ),
        r#"{"a":null,"b":[1,{"a":2,"z":1}]}"#
    );
}

#[test]
fn duplicate_keys_keep_the_last_value() {
    assert_eq!(
        canon(r#"{"a":1,"b":2,"a":3}"#, NonAscii::Utf8),
        r#"{"a":3,"b":2}"#
    );
}

#[test]
fn numbers_follow_python() {
    let cases = [
            ("97.0", "97"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("1e2", "100"),
            ("1E20", "100000000000000000000"),
            ("1e300", "1000000000000000052504760255204420248704468581108159154915854115511802457988908195786371375080447864043704443832883878176942523235360430575644792184786706982848387200926575803737830233794788090059368953234970799945081119038967640880074652742780142494579258788820056842838115669472196386865459400540160"),
            ("123456789012345678901234567890", "123456789012345678901234567890"),
            ("0.1", "0.1"),
            ("-189.99241999999998", "-189.99241999999998"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("1.5e-7", "1.5e-07"),
            ("2.5E-100", "2.5e-100"),
            ("1e400", "Infinity"),
            ("-1e400", "-Infinity"),
            ("12.50", "12.5"),
        ];
    for (input, expected) in cases {
        assert_eq!(canon(input, NonAscii::Escaped), expected, "input {input}");
    }
}

#[test]
fn strings_escape_like_python() {
    let input = "\"Jos\u{e9} \u{1F600} \\u00e9 \\\" \\\\ \\/ \\n\\t\\u0001\u{7f}\"";
    assert_eq!(
        canon(input, NonAscii::Escaped),
        "\"Jos\\u00e9 \\ud83d\\ude00 \\u00e9 \\\" \\\\ / \\n\\t\\u0001\\u007f\""
    );
    assert_eq!(
        canon(input, NonAscii::Utf8),
        "\"Jos\u{e9} \u{1F600} \u{e9} \\\" \\\\ / \\n\\t\\u0001\u{7f}\""
    );
}

#[test]
fn keys_sort_by_code_point_after_unescaping() {
    assert_eq!(
        canon(
            r#"{"\u00e9":1,"z":2,"10":3,"9":4,"😀":5,"ﬀ":6}"#,
            NonAscii::Utf8
        ),
        "{\"10\":3,\"9\":4,\"z\":2,\"\u{e9}\":1,\"\u{fb00}\":6,\"\u{1F600}\":5}"
    );
}

#[test]
fn rejects_what_is_not_json() {
    for input in [
        "",
        "{",
        "{\"a\"}",
        "[1,]",
        "01",
        "1.",
        "-",
        "\"\u{1}\"",
        "{\"a\":1}x",
        "NaN",
        "\"\\x\"",
        "[1 2]",
        "tru",
    ] {
        assert!(
            CanonicalJson::parse(input.as_bytes()).is_err(),
            "accepted {input:?}"
        );
    }
    assert_eq!(
        CanonicalJson::parse(br#""\ud800""#).err(),
        Some(CanonicalError::LoneSurrogate { offset: 1 })
    );
    assert!(CanonicalJson::parse(b"\"\xff\"").is_err());
}

#[test]
fn refuses_deep_nesting_without_overflowing() {
    let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    assert_eq!(
        CanonicalJson::parse(deep.as_bytes()).err(),
        Some(CanonicalError::TooDeep)
    );
    let fine = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(CanonicalJson::parse(fine.as_bytes()).is_ok());
}

#[test]
fn setting_a_top_level_member_replaces_the_one_that_counts() {
    let mut doc = CanonicalJson::parse(br#"{"t":1,"b":[1.0],"t":2}"#).expect("json");
    assert!(doc.set_top_level_integer("t", "9"));
    assert!(doc.set_top_level_string("id", "evt_é".into()));
    assert_eq!(
        doc.to_string(NonAscii::Utf8),
        r#"{"b":[1],"id":"evt_é","t":9}"#
    );
    assert_eq!(doc.string_at(&["id"]), Some("evt_é"));
    let mut list = CanonicalJson::parse(b"[1]").expect("json");
    assert!(!list.set_top_level_integer("t", "9"));
    assert_eq!(list.to_string(NonAscii::Utf8), "[1]");
}

#[test]
fn descending_keeps_the_value_a_reader_keeps() {
    let mut doc =
        CanonicalJson::parse(br#"{"d":{"p":{"x":1}},"d":{"p":{"x":2},"s":"v"}}"#).expect("json");
    assert_eq!(doc.string_at(&["d", "s"]), Some("v"));
    assert_eq!(doc.string_at(&["d", "p"]), None, "not a string");
    assert!(!doc.descend(&["d", "missing"]));
    assert!(doc.descend(&["d", "p"]));
    assert_eq!(doc.to_string(NonAscii::Utf8), r#"{"x":2}"#);
}
