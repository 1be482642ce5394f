//! The fast path agrees with the streaming parser on every answer: the same
//! orders, page and error object when it parses, an error when it does not.

use super::*;
use crate::certcentral::orders::OrderList;

/// A reader that hands out `step` bytes per call, to cut tokens anywhere.
struct Trickle<'a> {
    text: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.text.len());
        buf[..n].copy_from_slice(&self.text[..n]);
        self.text = &self.text[n..];
        Ok(n)
    }
}

type Seen = Result<
    (
        Vec<(i64, Option<i64>, String)>,
        Option<super::super::pages::Page>,
    ),
    String,
>;

fn seen(result: Result<Answer, String>, statuses: Statuses) -> Seen {
    result.map(|a| {
        let page = a.page;
        let list = OrderList::new(a.orders, statuses).to_changes();
        let orders = list
            .into_iter()
            .map(|c| (c.order_id, c.certificate_id, c.status.to_string()))
            .collect();
        (orders, page)
    })
}

fn fast(text: &[u8], step: usize) -> Seen {
    let mut statuses = Statuses::default();
    let r = parse_from(Trickle { text, step }, &mut statuses);
    seen(r, statuses)
}

fn slow(text: &[u8]) -> Seen {
    let mut statuses = Statuses::default();
    let r = parse_streamed(text, &mut statuses);
    seen(r, statuses)
}

const VALID: &[&str] = &[
    r#"{"orders":[]}"#,
    r#" { "orders" : [ ] } "#,
    r#"{"orders":[{"order_id":265,"certificate_id":112233,"status":"Issued"},{"order_id":264,"status":"canceled","x":[1,{"y":"\"]}"}]}],"page":{"total":2,"limit":2,"offset":0}}"#,
    "{\n \"orders\": [\n  {\"order_id\": 1, \"status\": \"a\\\"b\"} ,\n  {\"status\":\"x\", \"order_id\": 2, \"certificate_id\": null}\n ],\n \"extra\": \"]\" \n}\n",
    r#"{"page":{"total":1,"limit":1,"offset":0},"orders":[{"order_id":5,"status":"pending"}]}"#,
    r#"{"orders":[{"order_id":1,"status":"x"}],"errors":[{"code":"c","message":"m"}]}"#,
    r#"{"errors":[{"code":"invalid_api_key","message":"no"}]}"#,
];

const INVALID: &[&str] = &[
    "",
    "  ",
    "[]",
    r#"{"orders":null}"#,
    r#"{"orders":[5]}"#,
    r#"{"orders":[{"order_id":1,"status":"x"},]}"#,
    r#"{"orders":[{"order_id":1,"status":"x"} {"order_id":2,"status":"x"}]}"#,
    r#"{"orders":[{"order_id":1,"status":"x"}"#,
    r#"{"orders":[{"order_id":1,"status":"x"#,
    r#"{"orders":[{"order_id":1,"status":"x"}]"#,
    r#"{"orders":[{"order_id":1,"status":"x"}],}"#,
    r#"{"orders":[{"order_id":1,"status":"x"}]} trailing"#,
    r#"{"orders":[{"order_id":1,"status":"x"}],"orders":[]}"#,
    r#"{"orders":[{"order_id":"1","status":"x"}]}"#,
    r#"{"orders":[{"order_id":1,"status":"x"]}"#,
    r#"{"orders":[{"order_id":1,"status":"x"}}"#,
    r#"{"orders":[{"order_id":1,"status":"x"},{"order_id":2,"status":"y","order_id":3}]}"#,
    r#"{"orders":[{"order_id":1,"status":"x"}],"page":{"total":"ten"}}"#,
    r#"{"orders":[tru]}"#,
    r#"{"orders":[{"order_id":1,"status":"x\u12"}]}"#,
];

#[test]
fn every_answer_reads_as_the_streaming_parser_reads_it() {
    for body in VALID.iter().chain(INVALID) {
        let expected = slow(body.as_bytes());
        for step in [1, 2, 3, 7, 64, 1 << 20] {
            let got = fast(body.as_bytes(), step);
            match (&expected, &got) {
                (Ok(e), Ok(g)) => assert_eq!(e, g, "{body:?} in steps of {step}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{body:?} in steps of {step}: streaming {expected:?}, fast {got:?}"),
            }
        }
    }
    for body in VALID {
        assert!(slow(body.as_bytes()).is_ok(), "{body}");
    }
    for body in INVALID {
        assert!(slow(body.as_bytes()).is_err(), "{body}");
    }
}

#[test]
fn a_large_answer_is_cut_across_read_blocks() {
    let mut text = String::from(r#"{"orders":["#);
    for i in 1..=20_000 {
        if i > 1 {
            text.push(',');
        }
        let status = ["issued", "pending", "needs_approval"][i % 3];
        text.push_str(&format!(
            r#"{{"order_id":{i},"certificate_id":{},"status":"{status}","note":"{}"}}"#,
            i + 100,
            "\\\"]}".repeat(i % 5)
        ));
    }
    text.push_str(r#"],"page":{"total":20000,"limit":20000,"offset":0}}"#);
    assert!(text.len() > 4 * BLOCK);
    let expected = slow(text.as_bytes()).unwrap();
    assert_eq!(expected.0.len(), 20_000);
    for step in [1000, 4096 + 17, 1 << 20] {
        assert_eq!(fast(text.as_bytes(), step).unwrap(), expected, "{step}");
    }
}

#[test]
fn a_long_run_of_whitespace_first_goes_to_the_streaming_parser() {
    let body = format!("{}{}", " ".repeat(PREFIX_LIMIT + 10), VALID[2]);
    let got = fast(body.as_bytes(), 4096).unwrap();
    assert_eq!(got, slow(body.as_bytes()).unwrap());
    assert_eq!(got.0.len(), 2);
    let blank = " ".repeat(PREFIX_LIMIT * 2);
    assert_eq!(
        parse_from(blank.as_bytes(), &mut Statuses::default()).unwrap_err(),
        "empty body"
    );
}

#[test]
fn errors_in_the_list_name_the_order_and_its_byte() {
    let body = r#"{"orders":[{"order_id":1,"status":"x"},{"order_id":"12","status":"x"}]}"#;
    let e = fast(body.as_bytes(), 5).unwrap_err();
    assert!(
        e.contains("orders[1].order_id: expected a positive integer, got the string \"12\""),
        "{e}"
    );
    let start = body.find(r#"{"order_id":"12""#).unwrap();
    assert!(e.contains(&format!("the order at byte {start} ")), "{e}");
    let e = fast(br#"{"orders":[{"order_id":1,"status":"x"},[7]]}"#, 3).unwrap_err();
    assert!(
        e.contains("invalid type: sequence, expected orders[1] to be an order object"),
        "{e}"
    );
    let e = fast(br#"{"orders":[{"order_id":1,"status":"x"}"#, 3).unwrap_err();
    assert!(e.contains("EOF"), "{e}");
    let e = fast(br#"{"orders":[],"orders":[]}"#, 3).unwrap_err();
    assert!(e.contains("duplicate field `orders`"), "{e}");
}

/// What `plain_order` makes of one element, as (order id, certificate,
/// status name, length); `None` when it leaves the element to serde.
fn plain(element: &str) -> Option<(i64, Option<i64>, String, usize)> {
    let mut statuses = Statuses::default();
    let (order, len) = plain_order(element.as_bytes(), &mut statuses)?;
    let name = statuses.name(order.status).to_string();
    Some((order.order_id, order.certificate_id(), name, len))
}

#[test]
fn the_plain_reader_takes_what_certcentral_sends_in_any_spacing_and_order() {
    type Expected = (i64, Option<i64>, &'static str);
    let cases: &[(&str, Expected)] = &[
        (
            r#"{"order_id":265,"certificate_id":112233,"status":"issued"}"#,
            (265, Some(112233), "issued"),
        ),
        (
            "{ \"status\" :\t\"Issued \" ,\n\"order_id\"\r: 7 }",
            (7, None, "issued"),
        ),
        (
            r#"{"certificate_id":null,"order_id":123456789012345678,"status":"révoqué"}"#,
            // Statuses are normalized as serde's path does it.
            (123456789012345678, None, "r%C3%A9voqu%C3%A9"),
        ),
    ];
    for (element, (id, certificate, status)) in cases {
        let text = format!("{element},{{\"order_id\":1}}");
        assert_eq!(
            plain(&text),
            Some((*id, *certificate, status.to_string(), element.len())),
            "{element}"
        );
    }
}

#[test]
fn the_plain_reader_leaves_everything_else_to_serde() {
    for element in [
        r#"{"order_id":1,"status":"a\"b"}"#,
        r#"{"order_id":1,"status":"\u0069ssued"}"#,
        "{\"order_id\":1,\"status\":\"a\tb\"}",
        r#"{"order_\u0069d":1,"status":"x"}"#,
        r#"{"order_id":0,"status":"x"}"#,
        r#"{"order_id":01,"status":"x"}"#,
        r#"{"order_id":-1,"status":"x"}"#,
        r#"{"order_id":1.0,"status":"x"}"#,
        r#"{"order_id":1e3,"status":"x"}"#,
        r#"{"order_id":1234567890123456789,"status":"x"}"#,
        r#"{"order_id":"1","status":"x"}"#,
        r#"{"order_id":null,"status":"x"}"#,
        r#"{"order_id":1,"certificate_id":0,"status":"x"}"#,
        r#"{"order_id":1,"certificate_id":nul,"status":"x"}"#,
        r#"{"order_id":1,"certificate_id":nullx,"status":"x"}"#,
        r#"{"order_id":1,"status":" "}"#,
        r#"{"order_id":1,"status":""}"#,
        r#"{"order_id":1,"status":5}"#,
        r#"{"order_id":1}"#,
        r#"{"status":"x"}"#,
        r#"{"order_id":1,"status":"x","note":"n"}"#,
        r#"{"order_id":1,"order_id":2,"status":"x"}"#,
        r#"{"order_id":1,"status":"x",}"#,
        r#"{}"#,
        r#"[1,2]"#,
    ] {
        assert_eq!(plain(element), None, "{element}");
    }
    let invalid_utf8 = b"{\"order_id\":1,\"status\":\"\xff\"}";
    assert!(plain_order(invalid_utf8, &mut Statuses::default()).is_none());
    // Cut anywhere, an element is left for when more of the answer is read.
    let whole = r#"{"order_id":265,"certificate_id":112233,"status":"issued"}"#;
    for cut in 0..whole.len() {
        assert_eq!(plain(&whole[..cut]), None, "{}", &whole[..cut]);
    }
}

mod generated {
    use super::*;
    use proptest::prelude::*;

    const IDS: &[&str] = &[
        "1",
        "42",
        "265",
        "0",
        "007",
        "-5",
        "1.0",
        "1e3",
        "12345678901234567",
        "123456789012345678",
        "1234567890123456789",
        "9223372036854775807",
        "99999999999999999999",
        "null",
        "\"12\"",
        "true",
        "[1]",
    ];
    const STATUSES: &[&str] = &[
        "\"issued\"",
        "\"Issued \"",
        "\"pending\"",
        "\"  \"",
        "\"\"",
        "\"a\\\"b\"",
        "\"\\u0069ssued\"",
        "\"révoqué\"",
        "\"x\ty\"",
        "5",
        "null",
        "{}",
    ];
    const SPACES: &[&str] = &["", "", "", " ", "\n  ", "\t", "\r\n"];

    /// One element: some of the three keys (one possibly twice), maybe an
    /// unknown one, in any order, with any spacing.
    fn element() -> impl Strategy<Value = String> {
        (
            proptest::sample::select(IDS),
            proptest::option::of(proptest::sample::select(IDS)),
            proptest::sample::select(STATUSES),
            proptest::collection::vec(proptest::sample::select(SPACES), 16),
            any::<[bool; 4]>(),
            any::<u32>(),
        )
            .prop_map(
                |(id, certificate, status, ws, [drop_id, drop_status, extra, twice], order)| {
                    let mut fields = Vec::new();
                    if !drop_id {
                        fields.push(format!("\"order_id\"{}:{}{id}", ws[0], ws[1]));
                    }
                    if let Some(c) = certificate {
                        fields.push(format!("\"certificate_id\"{}:{}{c}", ws[2], ws[3]));
                    }
                    if !drop_status {
                        fields.push(format!("\"status\"{}:{}{status}", ws[4], ws[5]));
                    }
                    if extra {
                        fields.push(format!("\"note\"{}:{}[1,\"]\"]", ws[6], ws[7]));
                    }
                    if twice && !fields.is_empty() {
                        let again = fields[order as usize % fields.len()].clone();
                        fields.push(again);
                    }
                    let n = fields.len().max(1);
                    fields.rotate_left(order as usize % n);
                    let body: Vec<String> = fields
                        .iter()
                        .enumerate()
                        .map(|(i, f)| format!("{}{f}{}", ws[8 + i % 4], ws[12 + i % 4]))
                        .collect();
                    format!("{{{}}}", body.join(","))
                },
            )
    }

    proptest! {
        /// Whatever the elements, the answer reads as the streaming parser
        /// reads it; and an element the plain reader takes, serde takes the
        /// same way.
        #[test]
        fn plain_elements_read_as_serde_reads_them(a in element(), b in element()) {
            let body = format!("{{\"orders\":[{a},{b}]}}");
            let expected = slow(body.as_bytes());
            for step in [1, 7, 1 << 20] {
                let got = fast(body.as_bytes(), step);
                match (&expected, &got) {
                    (Ok(e), Ok(g)) => prop_assert_eq!(e, g, "{} in steps of {}", body, step),
                    (Err(_), Err(_)) => {}
                    _ => prop_assert!(false, "{body:?} in steps of {step}: streaming {expected:?}, fast {got:?}"),
                }
            }
            for element in [&a, &b] {
                if let Some((id, certificate, status, len)) = plain(element) {
                    prop_assert_eq!(len, element.len());
                    let alone = slow(format!("{{\"orders\":[{element}]}}").as_bytes());
                    prop_assert_eq!(alone, Ok((vec![(id, certificate, status)], None)), "{}", element);
                }
            }
        }
    }
}
