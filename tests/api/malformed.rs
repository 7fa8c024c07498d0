//! Malformed-input sweep: every server function (and the export form) gets thousands of generated
//! bodies, every page gets junk query strings. Nothing may answer 5xx or hang, every refusal must be
//! readable, and over-long passwords must be turned away before argon2 spends anything on them.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use nestegg::error::AppError;
use nestegg::routes;
use nestegg::server::services::password_policy::DEFAULT_MAX_LENGTH;

use crate::helpers::{TestApp, spawn_app_with};

/// A server function, its form, and the message expected next to the refusal.
type PasswordCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

const FORM: &str = "application/x-www-form-urlencoded";
const EMAIL: &str = "sweeper@example.org";
const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";
/// Longer than any honest answer takes: past this the server is treated as hung.
const PATIENCE: Duration = Duration::from_secs(10);
/// Limited, so SQLite and argon2 see load without the test becoming a benchmark.
const CONCURRENCY: usize = 8;
/// Junk bodies per server function; with ~40 functions that makes thousands of requests.
const PER_PATH: usize = 70;

/// Every limit the sweep would otherwise run into within seconds.
const RATE_LIMITS: [&str; 9] = [
    "RATE_LIMIT_API_PER_MINUTE",
    "RATE_LIMIT_PAGES_PER_MINUTE",
    "RATE_LIMIT_SIGN_IN_PER_MINUTE",
    "RATE_LIMIT_REGISTER_PER_HOUR",
    "RATE_LIMIT_RESET_PER_HOUR",
    "RATE_LIMIT_RESET_PER_ACCOUNT_PER_HOUR",
    "RATE_LIMIT_MFA_PER_MINUTE",
    "RATE_LIMIT_EXPORTS_PER_HOUR",
    "RATE_LIMIT_INVITATIONS_PER_HOUR",
];

/// Functions that end the session or destroy state: after them the rest of the sweep would only
/// exercise "please sign in".
const SKIPPED: [&str; 7] = [
    "sign_out",
    "delete_account",
    "revoke_other_sessions",
    "report_sign_in",
    "accept_terms",
    "leave_household",
    "cancel_sign_in",
];

/// Argument names the server functions really take.
const REAL_NAMES: [&str; 17] = [
    "email",
    "password",
    "display_name",
    "token",
    "code",
    "id",
    "name",
    "page",
    "new_password",
    "current_password",
    "confirm_email",
    "theme",
    "kind",
    "accept_terms",
    "accept_privacy",
    "next",
    "new_email",
];

const JUNK_NAMES: &[&str] = &[
    "",
    " ",
    "x",
    "EMAIL",
    "email ",
    "e-mail",
    "__proto__",
    "constructor",
    "password[]",
    "page[0]",
    "name.first",
    "\u{1F511}",
    "a\r\nb",
    "%",
    "&",
    "=",
    "\0",
];

/// Values: empty, out-of-range numbers, CR/LF and NUL, SQL, script, tricky Unicode, redirects.
/// The only valid address is the sweeper's own, so no probe can register and sign in to another
/// account and take the session over.
const PAYLOADS: &[&str] = &[
    "",
    " ",
    "-1",
    "0",
    "99999999999999999999",
    "18446744073709551616",
    "-9223372036854775809",
    "1e309",
    "NaN",
    "Infinity",
    "1.5",
    "0x1F",
    "true",
    "false",
    "on",
    "null",
    "undefined",
    "a\r\nSet-Cookie: x=1",
    "\r\n\r\n",
    "line\nbreak",
    "\0",
    "nul\0byte",
    "%00",
    "' OR 1=1 --",
    "1; DROP TABLE users;",
    "\" OR \"\"=\"",
    "admin'--",
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "javascript:alert(1)",
    "\u{202E}txt.exe",
    "\u{1F600}\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
    "e\u{301}\u{302}\u{303}\u{304}\u{305}\u{306}",
    "\u{FEFF}\u{200B}\u{200D}",
    "\u{FF25}\u{FF4D}\u{FF41}\u{FF49}\u{FF4C}\u{FF20}\u{FF58}",
    "//evil.example",
    "/\\evil.example",
    "https://evil.example/",
    "../../../etc/passwd",
    EMAIL,
    " SWEEPER@EXAMPLE.ORG ",
    "a@b",
    "@",
    "x@y@z",
    "dark",
    "light",
    "system",
    "purple",
    "{\"a\":1}",
    "[1,2,3]",
    "%",
    "%ZZ",
    "&",
    "=",
    "a=b&c=d",
    "[]",
    "\\",
    "\t",
    "\u{7f}",
    "\u{1b}[31mred",
];

/// Pasted into bodies as they are (not encoded): broken escapes, nesting, odd separators.
const RAW_FRAGMENTS: &[&str] = &[
    "x=%",
    "%",
    "%%",
    "%ZZ",
    "%0",
    "email=%00",
    "%00=%00",
    "=",
    "==",
    "&",
    "&&&",
    "=&=&=",
    "email",
    "email=",
    "=value",
    "email=a=b=c",
    "a[b][c]=d",
    "password=%F0%9F",
    "token=%E2%82%AC%",
    "next=%2F%2Fevil.example",
    "page=-1",
    "id=1%3B%20DROP%20TABLE%20users",
    "code=%0D%0ASet-Cookie:%20x=1",
    "+",
    "++=++",
    ";",
    "a;b=c",
    "theme=dark;theme=light",
    "\u{1F600}=\u{1F600}",
    "accept_terms",
    "accept_terms=on&accept_terms=off",
];

/// Byte sequences that are not UTF-8: lone continuation bytes, truncated, overlong, surrogates.
const BAD_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xa0\xa1",
    b"\xe2\x28\xa1",
    b"\xe2\x82",
    b"\xf0\x28\x8c\xbc",
    b"\xf8\xa1\xa1\xa1\xa1",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\x80",
];

/// The same, percent-encoded, so they only break after decoding.
const BAD_ENCODED: &[&str] = &[
    "%FF",
    "%FE%FF",
    "%C3%28",
    "%A0%A1",
    "%E2%28%A1",
    "%E2%82",
    "%F0%28%8C%BC",
    "%C0%AF",
    "%ED%A0%80",
    "%80",
    "%F4%90%80%80",
];

const ODD_TYPES: &[Option<&str>] = &[
    None,
    Some(""),
    Some("application/octet-stream"),
    Some("application/cbor"),
    Some("application/x-www-form-urlencoded; charset=utf-16"),
    Some("application/x-www-form-urlencoded; boundary=x; charset=\"\""),
    Some("APPLICATION/X-WWW-FORM-URLENCODED"),
    Some("text/html"),
    Some("*/*"),
    Some("garbage"),
    Some("application/json; charset=latin1"),
];

// ---------------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------------

/// xorshift64*: reproducible junk without a property-testing crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// A seed per path (FNV-1a), so each function gets its own but always the same junk.
fn seed_for(path: &str) -> u64 {
    path.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn field_name(rng: &mut Rng) -> String {
    if rng.chance(80) {
        rng.pick(&REAL_NAMES).to_owned()
    } else if rng.chance(15) {
        "n".repeat(300)
    } else {
        rng.pick(JUNK_NAMES).to_owned()
    }
}

fn random_text(rng: &mut Rng, max_len: usize) -> String {
    let len = rng.below(max_len + 1);
    (0..len)
        .map(|_| match rng.below(4) {
            0 => char::from(rng.below(0x80) as u8),
            1 => char::from_u32(rng.below(char::MAX as usize + 1) as u32).unwrap_or('\u{FFFD}'),
            2 => rng.pick(&[
                '<', '>', '&', '=', '%', '+', '\'', '"', '\\', '[', ']', '\r', '\n', '\0',
            ]),
            _ => char::from(b'a' + rng.below(26) as u8),
        })
        .collect()
}

/// A value that keeps a body small enough to hold many of them.
fn short_payload(rng: &mut Rng) -> String {
    if rng.chance(25) {
        random_text(rng, 24)
    } else {
        rng.pick(PAYLOADS).to_owned()
    }
}

/// Any value, now and then a very long one.
fn payload(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => "a".repeat(10_000),
        1 => "\u{e9}\u{1F600}\u{301}<>&=%+"
            .chars()
            .cycle()
            .take(2_000)
            .collect(),
        2 => random_text(rng, 40),
        _ => rng.pick(PAYLOADS).to_owned(),
    }
}

fn encoded_form(rng: &mut Rng, fields: usize) -> String {
    let mut pairs = Vec::with_capacity(fields);
    for _ in 0..fields {
        let name = field_name(rng);
        let value = payload(rng);
        pairs.push(format!("{}={}", enc(&name), enc(&value)));
    }
    pairs.join("&")
}

fn json_value(rng: &mut Rng, depth: usize) -> serde_json::Value {
    use serde_json::Value;
    let choice = if depth >= 3 {
        rng.below(5)
    } else {
        rng.below(7)
    };
    match choice {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => Value::from(rng.next_u64() as i64),
        // NaN and infinities become null: serde_json cannot write them.
        3 => Value::from(f64::from_bits(rng.next_u64())),
        4 => Value::String(short_payload(rng)),
        5 => {
            let items = rng.below(4);
            Value::Array((0..items).map(|_| json_value(rng, depth + 1)).collect())
        }
        _ => {
            let entries = rng.below(4);
            let mut map = serde_json::Map::new();
            for _ in 0..entries {
                let key = field_name(rng);
                let value = json_value(rng, depth + 1);
                map.insert(key, value);
            }
            Value::Object(map)
        }
    }
}

fn json_body(rng: &mut Rng) -> Vec<u8> {
    let value = match rng.below(5) {
        0 => serde_json::Value::Array(vec![json_value(rng, 0), json_value(rng, 0)]),
        1 => serde_json::Value::String(payload(rng)),
        _ => {
            let fields = rng.below(7);
            let mut map = serde_json::Map::new();
            for _ in 0..fields {
                let key = field_name(rng);
                let value = json_value(rng, 0);
                map.insert(key, value);
            }
            serde_json::Value::Object(map)
        }
    };
    let mut bytes = serde_json::to_vec(&value).expect("JSON");
    if rng.chance(20) {
        // Cut short, as a dropped connection or a careless client would send it.
        let keep = bytes.len() / 2;
        bytes.truncate(keep);
    }
    bytes
}

/// Kinds of junk, taken in turn so every function gets every kind.
const KINDS: usize = 14;

/// One generated body: what it is (for failure messages), its content type and its bytes.
fn junk_body(rng: &mut Rng, kind: usize) -> (&'static str, Option<&'static str>, Vec<u8>) {
    match kind {
        0 => {
            let fields = rng.below(7);
            (
                "random fields",
                Some(FORM),
                encoded_form(rng, fields).into_bytes(),
            )
        }
        1 => {
            // Every real argument (now and then one missing), so the checks behind decoding run.
            let missing = if rng.chance(50) {
                Some(rng.below(REAL_NAMES.len()))
            } else {
                None
            };
            let mut pairs = Vec::new();
            for (i, name) in REAL_NAMES.iter().enumerate() {
                if Some(i) != missing {
                    let value = short_payload(rng);
                    pairs.push(format!("{name}={}", enc(&value)));
                }
            }
            ("every real field", Some(FORM), pairs.join("&").into_bytes())
        }
        2 => {
            let parts = 1 + rng.below(8);
            let mut pieces = Vec::with_capacity(parts);
            for _ in 0..parts {
                if rng.chance(60) {
                    pieces.push(rng.pick(RAW_FRAGMENTS).to_owned());
                } else {
                    let name = rng.pick(&REAL_NAMES);
                    let value = short_payload(rng);
                    pieces.push(format!("{name}={value}"));
                }
            }
            let separator = rng.pick(&["&", "&&", ";", "\r\n", "&amp;"]);
            (
                "unencoded fragments",
                Some(FORM),
                pieces.join(separator).into_bytes(),
            )
        }
        3 => {
            let name = rng.pick(&REAL_NAMES);
            let times = 2 + rng.below(6);
            let mut pairs = Vec::with_capacity(times);
            for _ in 0..times {
                let value = short_payload(rng);
                pairs.push(format!("{name}={}", enc(&value)));
            }
            ("repeated keys", Some(FORM), pairs.join("&").into_bytes())
        }
        4 => {
            let name = rng.pick(&REAL_NAMES);
            let body = match rng.below(6) {
                0 => format!("{name}[a][b][c]=d"),
                1 => format!("{name}[]=1&{name}[]=2"),
                2 => format!("{name}[0]=x&{name}[1][y]=z"),
                3 => format!("{name}{}=1", "[a]".repeat(40)),
                4 => format!("{name}[=x&{name}]=&[[[]]]=1"),
                _ => format!("{name}[%5B]=1&{name}%5Bx%5D=2&{name}=plain"),
            };
            ("nested keys", Some(FORM), body.into_bytes())
        }
        5 => {
            let fields = 1 + rng.below(4);
            let mut body = Vec::new();
            for i in 0..fields {
                if i > 0 {
                    body.push(b'&');
                }
                body.extend_from_slice(rng.pick(&REAL_NAMES).as_bytes());
                if rng.chance(25) {
                    body.extend_from_slice(rng.pick(BAD_UTF8));
                }
                body.push(b'=');
                body.extend_from_slice(b"ok");
                body.extend_from_slice(rng.pick(BAD_UTF8));
                body.extend_from_slice(b"tail");
            }
            ("raw invalid UTF-8", Some(FORM), body)
        }
        6 => {
            let fields = 1 + rng.below(4);
            let mut pairs = Vec::with_capacity(fields);
            for _ in 0..fields {
                let name = rng.pick(&REAL_NAMES);
                let bad = rng.pick(BAD_ENCODED);
                if rng.chance(25) {
                    pairs.push(format!("{name}{bad}=x"));
                } else {
                    pairs.push(format!("{name}=x{bad}y"));
                }
            }
            (
                "encoded invalid UTF-8",
                Some(FORM),
                pairs.join("&").into_bytes(),
            )
        }
        7 => ("JSON sent as a form", Some(FORM), json_body(rng)),
        8 => ("JSON", Some("application/json"), json_body(rng)),
        9 => {
            let body = if rng.chance(50) {
                let fields = 1 + rng.below(4);
                encoded_form(rng, fields)
            } else {
                random_text(rng, 200)
            };
            ("text/plain", Some("text/plain"), body.into_bytes())
        }
        10 => {
            let name = rng.pick(&REAL_NAMES);
            let value = short_payload(rng);
            let content_type = rng.pick(&[
                "multipart/form-data; boundary=declared-boundary",
                "multipart/form-data",
                "multipart/form-data; boundary=\"\"",
            ]);
            let body = format!(
                "--actual-boundary\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n\
                 {value}\r\n--actual-boundary--\r\n"
            );
            (
                "multipart with a wrong boundary",
                Some(content_type),
                body.into_bytes(),
            )
        }
        11 => {
            let content_type = rng.pick(ODD_TYPES);
            let fields = 1 + rng.below(4);
            let body = encoded_form(rng, fields);
            (
                "an unexpected content type",
                content_type,
                body.into_bytes(),
            )
        }
        12 => {
            // Just under the body limit: the handlers themselves must cope with it.
            let name = rng.pick(&REAL_NAMES);
            let value = match rng.below(3) {
                0 => "x".repeat(60_000),
                1 => enc(&"\u{1F600}".repeat(5_000)),
                _ => enc(&"a\r\n".repeat(8_000)),
            };
            (
                "one huge field",
                Some(FORM),
                format!("{name}={value}").into_bytes(),
            )
        }
        _ => {
            if rng.chance(20) {
                ("an empty body", Some(FORM), Vec::new())
            } else {
                let len = rng.below(4096);
                let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                ("random bytes", Some(FORM), bytes)
            }
        }
    }
}

struct Probe {
    path: String,
    what: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    /// Over the body limit: must be refused with 413 before anything reads it.
    oversized: bool,
}

fn junk_probes(path: &str, limit: usize) -> Vec<Probe> {
    let mut rng = Rng::new(seed_for(path));
    let mut probes: Vec<Probe> = (0..PER_PATH)
        .map(|i| {
            let (what, content_type, body) = junk_body(&mut rng, i % KINDS);
            Probe {
                path: path.to_owned(),
                what,
                content_type,
                oversized: body.len() > limit,
                body,
            }
        })
        .collect();
    let mut body = b"email=".to_vec();
    body.resize(limit + 1, b'a');
    probes.push(Probe {
        path: path.to_owned(),
        what: "one byte over the body limit",
        content_type: Some(FORM),
        body,
        oversized: true,
    });
    probes
}

// ---------------------------------------------------------------------------------------------------
// Judging answers
// ---------------------------------------------------------------------------------------------------

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// Internals that must never reach a person: panics, database errors and queries, parser messages.
fn leak_in(text: &str) -> Option<&'static str> {
    let lower = text.to_lowercase();
    [
        "panicked",
        "sqlx",
        "stack",
        "at src/",
        "missing field",
        "unknown variant",
        "invalid digit",
    ]
    .into_iter()
    .find(|needle| lower.contains(*needle))
    .or_else(|| text.contains("SELECT").then_some("SELECT"))
}

/// Never a server fault; a refusal is an `AppError` (whose human message is its `Display`: the
/// `message` field for `invalid_input`, fixed text for the other codes) with the matching status.
fn judge(path: &str, status: u16, body: &[u8]) -> Result<(), String> {
    if status >= 500 {
        return Err(format!("{status}: {}", excerpt(body)));
    }
    if !(400..500).contains(&status) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(body);
    if let Some(leak) = leak_in(&text) {
        return Err(format!("{status} shows {leak:?}: {}", excerpt(body)));
    }
    if let Ok(error) = serde_json::from_slice::<AppError>(body) {
        if error.to_string().trim().is_empty() {
            return Err(format!("{status} {} without a message", error.code()));
        }
        if error.status() != status {
            return Err(format!("{status} carries {}", error.code()));
        }
        return Ok(());
    }
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(body)
        && object
            .get("message")
            .and_then(|m| m.as_str())
            .is_some_and(|m| !m.trim().is_empty())
    {
        return Ok(());
    }
    // A server function's caller (the browser's server-function client) reads only error objects,
    // even for what is turned away before the function runs. The data export is a plain download:
    // its edge refusals (body limit, CSRF, routing, method, media type) are plain text.
    match status {
        _ if path.starts_with("/api/") => Err(format!(
            "{status} is not an error object: {}",
            excerpt(body)
        )),
        413 if text.contains("Request too large") => Ok(()),
        403 | 404 | 405 | 415 => Ok(()),
        _ => Err(format!(
            "{status} is not an error object: {}",
            excerpt(body)
        )),
    }
}

/// Sends one probe as a same-origin page would and judges the answer. `Ok` is the status.
async fn send_probe(app: &TestApp, big: &reqwest::Client, probe: &Probe) -> Result<u16, String> {
    let client = if probe.oversized { big } else { &app.client };
    let mut request = client
        .post(app.url(&probe.path))
        .header("origin", app.address.as_str())
        .header("sec-fetch-site", "same-origin")
        .body(probe.body.clone());
    if let Some(content_type) = probe.content_type {
        request = request.header("content-type", content_type);
    }
    let exchange = async move {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    let label = || {
        format!(
            "POST {} [{}, {} bytes]",
            probe.path,
            probe.what,
            probe.body.len()
        )
    };
    let (status, body) = match tokio::time::timeout(PATIENCE, exchange).await {
        Err(_) => return Err(format!("{}: no answer within {PATIENCE:?}", label())),
        Ok(Err(err)) => return Err(format!("{}: {err}", label())),
        Ok(Ok(answer)) => answer,
    };
    if probe.oversized && status != 413 {
        return Err(format!("{}: {status} instead of 413", label()));
    }
    judge(&probe.path, status, &body).map_err(|why| format!("{}: {why}", label()))?;
    Ok(status)
}

fn report(failures: &[String], sent: usize) -> String {
    format!(
        "{} of {sent} requests went wrong, e.g.:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    )
}

async fn signed_in_app() -> TestApp {
    let app = spawn_app_with(|vars| {
        for name in RATE_LIMITS {
            vars.insert(name.into(), "1000000".into());
        }
        // An operator, so the admin functions and page run past their 404 too.
        vars.insert("ADMIN_EMAILS".into(), EMAIL.into());
    })
    .await;
    app.register_verified(EMAIL, PASSWORD).await;
    let response = app.sign_in(EMAIL, PASSWORD).await;
    assert_eq!(response.status(), 200, "sign in");
    app
}

// ---------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_server_function_survives_generated_junk() {
    let app = signed_in_app().await;
    let limit = app.settings.max_body_bytes;

    let mut paths: Vec<String> = leptos::server_fn::axum::server_fn_paths()
        .filter(|(_, method)| method.as_str() == "POST")
        .map(|(path, _)| path.to_owned())
        .filter(|path| {
            !path
                .rsplit('/')
                .next()
                .is_some_and(|name| SKIPPED.contains(&name))
        })
        .collect();
    paths.sort();
    paths.dedup();
    // An empty registry would make the sweep pass vacuously.
    for expected in [
        "/api/sign_in",
        "/api/register",
        "/api/theme",
        "/api/current_user",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} in {paths:?}"
        );
    }
    assert!(paths.len() >= 35, "{paths:?}");

    // A fresh connection for each oversized body: the server may close it after its 413.
    let big = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut failures = Vec::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();

    // The export form first and one at a time: only a few exports may stream at once (more are a
    // deliberate 503), and its archive grows with every event the sweep records.
    let exports = junk_probes(routes::DATA_EXPORT, limit);
    for probe in &exports {
        match send_probe(&app, &big, probe).await {
            Ok(status) => *statuses.entry(status).or_default() += 1,
            Err(why) => failures.push(why),
        }
    }

    let probes: Vec<Probe> = paths
        .iter()
        .flat_map(|path| junk_probes(path, limit))
        .collect();
    let sent = exports.len() + probes.len();
    let (app_ref, big_ref) = (&app, &big);
    let results: Vec<Result<u16, String>> = futures::stream::iter(probes.iter())
        .map(move |probe| send_probe(app_ref, big_ref, probe))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for result in results {
        match result {
            Ok(status) => *statuses.entry(status).or_default() += 1,
            Err(why) => failures.push(why),
        }
    }
    eprintln!("malformed-input sweep: {sent} requests, statuses {statuses:?}");

    assert!(failures.is_empty(), "{}", report(&failures, sent));
    assert!(sent >= 2000, "only {sent} requests");
    // Every path's one-byte-over body came back 413.
    assert!(
        statuses.get(&413).copied().unwrap_or(0) > paths.len(),
        "{statuses:?}"
    );

    // Still healthy, and still signed in.
    let ready = app.get(routes::HEALTH_READY).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let response = app.call("current_user", &[]).await;
    assert_eq!(response.status(), 200);
    let me: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(me["email"], EMAIL, "{me}");
}

/// The link the reset email carries, once the outbox has delivered it.
async fn reset_token(app: &TestApp) -> String {
    let prefix = format!("{}{}?token=", app.address, routes::RESET_PASSWORD);
    for _ in 0..100 {
        let mails = app.emails_to(EMAIL, 1).await;
        if let Some(mail) = mails.iter().find(|m| m.text.contains(&prefix)) {
            return mail.token(app, routes::RESET_PASSWORD);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no password-reset email reached {EMAIL}");
}

#[tokio::test]
async fn oversized_passwords_are_refused_before_any_hashing() {
    let app = spawn_app_with(|vars| {
        // Every refusal below counts toward the lock-out: it must not turn them into "locked".
        vars.insert("LOCKOUT_THRESHOLD".into(), "100".into());
        vars.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "100".into());
        vars.insert("RATE_LIMIT_REGISTER_PER_HOUR".into(), "100".into());
        vars.insert("RATE_LIMIT_MFA_PER_MINUTE".into(), "100".into());
    })
    .await;
    app.register_verified(EMAIL, PASSWORD).await;
    assert_eq!(app.sign_in(EMAIL, PASSWORD).await.status(), 200);
    // A live reset link, so reset_password gets as far as its password check.
    let response = app
        .call("request_password_reset", &[("email", EMAIL)])
        .await;
    assert_eq!(response.status(), 200);
    let token = reset_token(&app).await;

    let words = "glacier minnow ".chars().cycle();
    let just_over: String = words.clone().take(DEFAULT_MAX_LENGTH + 1).collect();
    let long: String = words.clone().take(20_000).collect();
    let huge: String = words.take(100_000).collect();
    let too_long_message = format!("at most {DEFAULT_MAX_LENGTH} characters");
    let too_long = too_long_message.as_str();
    let no_match = "don't match an account";
    let not_yours = "That is not your current password.";

    // Its own connections for the bodies over the limit, which the server may close after its 413.
    let big = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let before = app.state.hasher.computed();
    for password in [just_over.as_str(), long.as_str(), huge.as_str()] {
        let chars = password.chars().count();
        // Changing a password with the right current one would verify it (real argon2 work), so
        // the over-long one is always the current password there.
        let cases: [PasswordCase<'_>; 8] = [
            (
                "sign_in",
                vec![("email", "nobody@example.org"), ("password", password)],
                no_match,
            ),
            (
                "sign_in",
                vec![("email", EMAIL), ("password", password)],
                no_match,
            ),
            (
                "register",
                vec![
                    ("email", "newcomer@example.org"),
                    ("display_name", "New Comer"),
                    ("password", password),
                    ("accept_terms", "on"),
                    ("accept_privacy", "on"),
                ],
                too_long,
            ),
            (
                "reset_password",
                vec![("token", token.as_str()), ("password", password)],
                too_long,
            ),
            (
                "change_password",
                vec![
                    ("current_password", password),
                    ("new_password", "a brand new passphrase for 2027"),
                ],
                not_yours,
            ),
            ("confirm_password", vec![("password", password)], not_yours),
            (
                "change_email",
                vec![
                    ("password", password),
                    ("new_email", "elsewhere@example.org"),
                ],
                not_yours,
            ),
            (
                "delete_account",
                vec![("password", password), ("confirm_email", EMAIL)],
                not_yours,
            ),
        ];
        let oversized = password.len() > app.settings.max_body_bytes;
        let client = if oversized { &big } else { &app.client };
        for (function, form, expected) in cases {
            let response = client
                .post(app.url(&format!("/api/{function}")))
                .header("origin", app.address.as_str())
                .header("sec-fetch-site", "same-origin")
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap();
            let text = String::from_utf8_lossy(&body);
            if oversized {
                assert_eq!(status, 413, "{function} with {chars} chars: {text}");
            } else {
                assert_eq!(status, 400, "{function} with {chars} chars: {text}");
                assert!(
                    text.contains(expected),
                    "{function} with {chars} chars: {text}"
                );
            }
            judge("/api/", status, &body).unwrap_or_else(|why| panic!("{function}: {why}"));
        }
    }
    assert_eq!(
        app.state.hasher.computed(),
        before,
        "argon2 ran for a password over {DEFAULT_MAX_LENGTH} characters"
    );

    // The counter is real: an ordinary wrong password is verified.
    let response = app.sign_in(EMAIL, "an ordinary wrong password").await;
    assert_eq!(response.status(), 400);
    assert!(app.state.hasher.computed() > before);
    // And the account is untouched.
    assert_eq!(app.sign_in(EMAIL, PASSWORD).await.status(), 200);
}

/// Every page the app renders, plus one that does not exist.
const PAGES: &[&str] = &[
    routes::HOME,
    routes::SECURITY,
    routes::TERMS,
    routes::PRIVACY,
    routes::REGISTER,
    routes::REGISTER_DONE,
    routes::LOGIN,
    routes::VERIFY_EMAIL,
    routes::FORGOT_PASSWORD,
    routes::RESET_PASSWORD,
    routes::CONFIRM_EMAIL_CHANGE,
    routes::NOT_ME,
    routes::RESTORE_EMAIL,
    routes::SETTINGS_PROFILE,
    routes::SETTINGS_SECURITY,
    routes::SETTINGS_TWO_FACTOR,
    routes::SETTINGS_SESSIONS,
    routes::SETTINGS_ACTIVITY,
    routes::SETTINGS_ACCOUNT,
    routes::SETTINGS_PRIVACY,
    routes::ACCEPT_TERMS,
    routes::ACCOUNT_DELETED,
    routes::HOUSEHOLD,
    routes::HOUSEHOLD_JOIN,
    routes::ADMIN_SECURITY_STATUS,
    routes::LOGIN_TWO_FACTOR,
    "/no-such-page",
];

async fn get_page(client: &reqwest::Client, url: String) -> Result<u16, String> {
    let exchange = async {
        let response = client
            .get(url.as_str())
            .header("accept", "text/html")
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    let label = || url.chars().take(160).collect::<String>();
    match tokio::time::timeout(PATIENCE, exchange).await {
        Err(_) => Err(format!("GET {}: no answer within {PATIENCE:?}", label())),
        Ok(Err(err)) => Err(format!("GET {}: {err}", label())),
        Ok(Ok((status, body))) => {
            if status >= 500 {
                Err(format!("GET {}: {status}: {}", label(), excerpt(&body)))
            } else if String::from_utf8_lossy(&body).contains("panicked at") {
                Err(format!("GET {}: shows a panic", label()))
            } else {
                Ok(status)
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_with_junk_queries_never_fail() {
    let app = signed_in_app().await;
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let long = "a".repeat(5_000);
    let queries = [
        "token=<script>alert(1)</script>".to_owned(),
        "next=//evil.example".to_owned(),
        "next=https://evil.example/&reset=done".to_owned(),
        "next=/\\evil.example".to_owned(),
        "page=-1".to_owned(),
        "page=99999999999999999999".to_owned(),
        "page=NaN&page=1&page=".to_owned(),
        "%ZZ=%ZZ&token=%ZZ&next=%".to_owned(),
        "token=%FF%FE&email=%C3%28&page=%ED%A0%80".to_owned(),
        format!("token={long}"),
        format!("next=/{long}&email={long}"),
        "token=a%0D%0ASet-Cookie:%20x=1&next=%0D%0ALocation:%20//evil.example".to_owned(),
        "token=%00&done=%00&page=%00".to_owned(),
        "token=' OR 1=1 --&kind=1; DROP TABLE users;".to_owned(),
        "__err=garbage&__path=/api/sign_in".to_owned(),
        "__err=%7B%22code%22%3A%22internal%22%7D".to_owned(),
        "keep_email=%3Cscript%3E&keep_display_name=%E2%80%AE".to_owned(),
        "done=<script>&export=reauth&retry_after=99999999999999999999".to_owned(),
        "monthly=1e309&years=-1&rate=NaN".to_owned(),
        "a[b][c]=d&&&=&[]=".to_owned(),
        "\u{202E}=\u{1F600}&e\u{301}=x".to_owned(),
    ];
    // Signed in and signed out: the pages take different paths for each.
    let mut requests: Vec<(&reqwest::Client, String)> = Vec::new();
    for path in PAGES {
        for query in &queries {
            let url = format!("{}{path}?{query}", app.address);
            requests.push((&app.client, url.clone()));
            requests.push((&anonymous, url));
        }
    }
    let sent = requests.len();
    let results: Vec<Result<u16, String>> = futures::stream::iter(requests)
        .map(|(client, url)| get_page(client, url))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{}", report(&failures, sent));

    // The junk changed nothing for the signed-in browser.
    let response = app.call("current_user", &[]).await;
    assert_eq!(response.status(), 200);
    let me: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(me["email"], EMAIL, "{me}");
}
