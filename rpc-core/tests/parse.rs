//! Every parsing edge case of the JSON-RPC 2.0 spec and of hostile input.

use bytes::Bytes;
use rpc_core::parse::{parse_message, parse_response, Incoming, InvalidCall, MessageError};
use rpc_core::{Id, Payload, Request};

fn parse(body: &str) -> Result<Incoming, MessageError> {
    parse_message(Bytes::copy_from_slice(body.as_bytes()), 100)
}

fn single(body: &str) -> Result<Request, InvalidCall> {
    match parse(body) {
        Ok(Incoming::Single(r)) => r,
        other => panic!("expected a single call, got {other:?}"),
    }
}

fn batch(body: &str) -> Vec<Result<Request, InvalidCall>> {
    match parse(body) {
        Ok(Incoming::Batch(items)) => items,
        other => panic!("expected a batch, got {other:?}"),
    }
}

fn invalid(body: &str) -> (String, i64) {
    let e = single(body).expect_err("should be invalid");
    (e.id.to_string(), e.error.code())
}

#[test]
fn spec_examples_positional_and_named_params() {
    let r = single(r#"{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}"#)
        .expect("valid");
    assert_eq!(r.method(), "subtract");
    assert_eq!(r.params().expect("params").as_bytes(), b"[42, 23]");
    assert_eq!(r.id(), Some(&Id::from(1u64)));

    let r = single(
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}"#,
    )
    .expect("valid");
    assert_eq!(
        r.params().expect("params").as_bytes(),
        br#"{"subtrahend": 23, "minuend": 42}"#
    );
}

#[test]
fn spec_example_notifications() {
    let r =
        single(r#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#).expect("valid");
    assert!(r.is_notification());
    let r = single(r#"{"jsonrpc": "2.0", "method": "foobar"}"#).expect("valid");
    assert!(r.is_notification());
    assert!(r.params().is_none());
}

#[test]
fn spec_example_invalid_json_is_parse_error() {
    let e = parse(r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#).unwrap_err();
    assert_eq!(e, MessageError::Parse);
    assert_eq!(e.to_error_object().code(), -32700);
    assert_eq!(e.http_status(), 400);
}

#[test]
fn spec_example_invalid_request_object() {
    assert_eq!(
        invalid(r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#),
        ("null".into(), -32600)
    );
}

#[test]
fn spec_example_batch_invalid_json() {
    let e = parse(
        r#"[
  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
  {"jsonrpc": "2.0", "method"
]"#,
    )
    .unwrap_err();
    assert_eq!(e, MessageError::Parse);
}

#[test]
fn spec_example_empty_batch() {
    let e = parse("[]").unwrap_err();
    assert_eq!(e, MessageError::EmptyBatch);
    assert_eq!(e.to_error_object().code(), -32600);
    assert_eq!(parse(" [ ] ").unwrap_err(), MessageError::EmptyBatch);
}

#[test]
fn spec_example_batch_of_non_objects() {
    let items = batch("[1]");
    assert_eq!(items.len(), 1);
    let items = batch("[1,2,3]");
    assert_eq!(items.len(), 3);
    for item in items {
        let e = item.expect_err("invalid");
        assert_eq!((e.id, e.error.code()), (Id::Null, -32600));
    }
}

#[test]
fn spec_example_mixed_batch_keeps_order_and_ids() {
    let items = batch(
        r#"[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"},
        {"jsonrpc": "1.0", "method": "old", "id": 10},
        {"jsonrpc": "2.0", "method": 5, "id": [1]},
        {"jsonrpc": "2.0", "method": 5, "id": 11}
    ]"#,
    );
    assert_eq!(items.len(), 9);
    assert_eq!(items[0].as_ref().expect("ok").method(), "sum");
    assert!(items[1].as_ref().expect("ok").is_notification());
    assert_eq!(
        items[2].as_ref().expect("ok").id().map(ToString::to_string),
        Some(r#""2""#.into())
    );
    let e = items[3].as_ref().expect_err("no method, no jsonrpc");
    assert_eq!((e.id.clone(), e.error.code()), (Id::Null, -32600));
    assert_eq!(items[4].as_ref().expect("ok").method(), "foo.get");
    assert_eq!(items[5].as_ref().expect("ok").method(), "get_data");
    // Invalid items keep their own id where it can be read.
    let e = items[6].as_ref().expect_err("wrong version");
    assert_eq!((e.id.to_string(), e.error.code()), ("10".into(), -32600));
    let e = items[7].as_ref().expect_err("array id");
    assert_eq!(e.id, Id::Null);
    let e = items[8].as_ref().expect_err("method not a string");
    assert_eq!((e.id.to_string(), e.error.code()), ("11".into(), -32600));
}

#[test]
fn wrong_or_missing_version() {
    assert_eq!(
        invalid(r#"{"jsonrpc":"1.0","method":"a","id":1}"#),
        ("1".into(), -32600)
    );
    assert_eq!(
        invalid(r#"{"jsonrpc":2.0,"method":"a","id":1}"#),
        ("1".into(), -32600)
    );
    assert_eq!(invalid(r#"{"method":"a","id":1}"#), ("1".into(), -32600));
    assert_eq!(
        invalid(r#"{"jsonrpc":null,"method":"a","id":"x"}"#),
        (r#""x""#.into(), -32600)
    );
}

#[test]
fn missing_or_non_string_method() {
    assert_eq!(invalid(r#"{"jsonrpc":"2.0","id":1}"#), ("1".into(), -32600));
    assert_eq!(
        invalid(r#"{"jsonrpc":"2.0","method":null,"id":1}"#),
        ("1".into(), -32600)
    );
    assert_eq!(
        invalid(r#"{"jsonrpc":"2.0","method":["a"],"id":1}"#),
        ("1".into(), -32600)
    );
    assert_eq!(
        invalid(r#"{"jsonrpc":"2.0","method":{},"id":1}"#),
        ("1".into(), -32600)
    );
    assert_eq!(
        invalid(r#"{"jsonrpc":"2.0","method":"","id":1}"#),
        ("1".into(), -32600)
    );
}

#[test]
fn escaped_method_names_are_decoded() {
    let r = single(r#"{"jsonrpc":"2.0","method":"eth\u005fcall","id":1}"#).expect("valid");
    assert_eq!(r.method(), "eth_call");
}

#[test]
fn ids_of_every_json_type() {
    for id in [
        "1",
        "-5",
        "1.0",
        "1e3",
        "0",
        "18446744073709551616",
        r#""abc""#,
        r#""a\u0041""#,
        "null",
    ] {
        let body = format!(r#"{{"jsonrpc":"2.0","method":"m","id":{id}}}"#);
        let r = single(&body).expect("valid id");
        assert_eq!(
            r.id().expect("has id").to_string(),
            id,
            "echoed byte for byte"
        );
    }
    for id in ["{}", "[]", "[1]", "true", "false", r#"{"a":1}"#] {
        let body = format!(r#"{{"jsonrpc":"2.0","method":"m","id":{id}}}"#);
        assert_eq!(invalid(&body), ("null".into(), -32600), "id {id}");
    }
}

#[test]
fn params_must_be_structured() {
    for p in ["1", r#""str""#, "true"] {
        let body = format!(r#"{{"jsonrpc":"2.0","method":"m","params":{p},"id":4}}"#);
        assert_eq!(invalid(&body), ("4".into(), -32602), "params {p}");
    }
    let r = single(r#"{"jsonrpc":"2.0","method":"m","params":null,"id":4}"#).expect("null params");
    assert!(r.params().is_none());
}

#[test]
fn unknown_fields_are_ignored_and_duplicates_rejected() {
    let r = single(r#"{"jsonrpc":"2.0","method":"m","id":1,"extra":{"x":[1]}}"#).expect("valid");
    assert_eq!(r.method(), "m");
    let (_, code) = invalid(r#"{"jsonrpc":"2.0","method":"m","method":"n","id":1}"#);
    assert_eq!(code, -32600);
}

#[test]
fn not_a_call() {
    for body in ["1", r#""x""#, "null", "true"] {
        let e = parse(body).unwrap_err();
        assert_eq!(e, MessageError::NotACall, "{body}");
        assert_eq!(e.to_error_object().code(), -32600);
    }
}

#[test]
fn garbage_and_truncation() {
    for body in [
        "",
        "   ",
        "{",
        "[",
        r#"{"jsonrpc":"2.0""#,
        "nul",
        "{]",
        "\u{feff}{}",
        "x",
    ] {
        assert_eq!(parse(body).unwrap_err(), MessageError::Parse, "{body:?}");
    }
}

#[test]
fn trailing_garbage_is_a_parse_error() {
    assert_eq!(
        parse(r#"{"jsonrpc":"2.0","method":"m","id":1} x"#).unwrap_err(),
        MessageError::Parse
    );
    assert_eq!(
        parse(r#"[{"jsonrpc":"2.0","method":"m","id":1}]]"#).unwrap_err(),
        MessageError::Parse
    );
    assert_eq!(
        parse(r#"{"jsonrpc":"2.0","method":"m","id":1}{"jsonrpc":"2.0","method":"m","id":2}"#)
            .unwrap_err(),
        MessageError::Parse
    );
    // Whitespace around the value is fine.
    single(" \n\t{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1}\r\n ").expect("valid");
}

#[test]
fn invalid_utf8_is_a_parse_error() {
    let mut body = br#"{"jsonrpc":"2.0","method":"m","params":[""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""],"id":1}"#);
    assert_eq!(
        parse_message(Bytes::from(body), 100).unwrap_err(),
        MessageError::Parse
    );

    let mut body = br#"{"jsonrpc":"2.0","method":"m"#.to_vec();
    body.push(0xc3);
    body.extend_from_slice(br#"","id":1}"#);
    assert_eq!(
        parse_message(Bytes::from(body), 100).unwrap_err(),
        MessageError::Parse
    );
}

#[test]
fn deeply_nested_params_do_not_overflow_the_stack() {
    for depth in [100, 10_000, 1_000_000] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","method":"m","params":{}{},"id":1}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        // Params are scanned, not built into a tree, so depth costs no stack:
        // the call is accepted and forwarded as it is.
        let r = single(&body).expect("deep params are valid JSON");
        assert_eq!(r.params().expect("params").len(), 2 * depth);
    }
}

#[test]
fn batch_limit_is_checked_before_items_are_parsed() {
    let item = r#"{"jsonrpc":"2.0","method":"m","id":1}"#;
    let body = format!("[{}]", vec![item; 101].join(","));
    let e = parse(&body).unwrap_err();
    assert_eq!(e, MessageError::BatchTooLarge { len: 101, max: 100 });
    assert_eq!(e.to_error_object().code(), -32014);
    assert_eq!(e.http_status(), 413);

    let body = format!("[{}]", vec![item; 100].join(","));
    assert_eq!(batch(&body).len(), 100);

    // Items past the limit are only counted, even when they are not calls.
    let body = format!("[{}]", vec!["0"; 100_000].join(","));
    assert_eq!(
        parse(&body).unwrap_err(),
        MessageError::BatchTooLarge {
            len: 100_000,
            max: 100
        }
    );
    // ... but the array must still be valid JSON.
    let body = format!("[{}", vec!["0"; 1000].join(","));
    assert_eq!(parse(&body).unwrap_err(), MessageError::Parse);
}

#[test]
fn params_are_zero_copy_slices_of_the_body() {
    let body = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"m","params":[1,2,3],"id":1}"#);
    let Ok(Incoming::Single(Ok(r))) = parse_message(body.clone(), 10) else {
        panic!("valid")
    };
    let params = r.params().expect("params");
    let offset = params.as_bytes().as_ptr() as usize - body.as_ptr() as usize;
    assert_eq!(&body[offset..offset + params.len()], b"[1,2,3]");
    // Cloning the request shares the params buffer.
    let clone = r.clone();
    assert_eq!(
        clone.params().expect("params").as_bytes().as_ptr(),
        params.as_bytes().as_ptr()
    );
}

#[test]
fn huge_method_names_are_parsed_without_panic() {
    let body = format!(
        r#"{{"jsonrpc":"2.0","method":"{}","id":1}}"#,
        "a".repeat(1 << 20)
    );
    assert_eq!(single(&body).expect("valid").method().len(), 1 << 20);
}

#[test]
fn requests_round_trip_through_the_writer() {
    let body = r#"{"jsonrpc":"2.0","id":"x\"y","method":"a\"b","params":{"k":[1,{"z":null}]}}"#;
    let r = single(body).expect("valid");
    assert_eq!(String::from_utf8(r.to_json()).expect("utf8"), body);
}

fn response(body: &'static str, wire_id: u64) -> Result<Payload, String> {
    parse_response(&Bytes::from_static(body.as_bytes()), &Id::from(wire_id))
}

#[test]
fn backend_responses_are_parsed_tolerantly() {
    let p = response(r#"{"jsonrpc":"2.0","id":7,"result":"0x1"}"#, 7).expect("ok");
    assert_eq!(
        p,
        Payload::Result(rpc_core::RawJson::from_static(r#""0x1""#).expect("json"))
    );
    // No jsonrpc, extra fields, error:null beside the result, padding.
    response(r#"  {"id":7,"result":null,"error":null,"extra":1}  "#, 7).expect("ok");
    let p = response(r#"{"jsonrpc":"2.0","id":7,"result":null}"#, 7).expect("ok");
    assert!(matches!(p, Payload::Result(r) if r.is_null()));
    // An error object, even under id null.
    let p = response(
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#,
        7,
    )
    .expect("ok");
    assert!(matches!(p, Payload::Error(e) if e.code() == -32700));
    let p = response(
        r#"{"jsonrpc":"2.0","id":7,"result":null,"error":{"code":3,"message":"reverted"}}"#,
        7,
    )
    .expect("ok");
    assert!(matches!(p, Payload::Error(e) if e.code() == 3));
}

#[test]
fn backend_responses_that_are_wrong_are_refused() {
    for (body, why) in [
        (
            r#"{"jsonrpc":"2.0","id":8,"result":1}"#,
            "id does not match",
        ),
        (r#"{"jsonrpc":"2.0","result":1}"#, "id does not match"),
        (
            r#"{"jsonrpc":"2.0","id":null,"result":1}"#,
            "id does not match",
        ),
        (r#"[{"jsonrpc":"2.0","id":7,"result":1}]"#, "batch"),
        (r#"{"jsonrpc":"2.0","id":7}"#, "neither"),
        (
            r#"{"jsonrpc":"2.0","id":7,"result":1,"error":{"code":1,"message":"x"}}"#,
            "both",
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"error":{"message":"no code"}}"#,
            "malformed error",
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"error":"text"}"#,
            "malformed error",
        ),
        ("<html>502 Bad Gateway</html>", "not a JSON-RPC response"),
        ("", "empty"),
        (r#"{"jsonrpc":"2.0","id":7,"result":[1,2"#, "malformed JSON"),
    ] {
        let reason = response(body, 7).expect_err(body);
        assert!(reason.contains(why), "{body}: {reason}");
    }
}
