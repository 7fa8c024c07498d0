//! The data export (POST /settings/privacy/export): what the ZIP holds, what it never holds, whose data
//! it holds, and when it is refused (signed out, sudo mode lapsed, rate limit, cross-site).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::sync::Arc;

use nestegg::routes::DATA_EXPORT;
use nestegg::server::clock::Clock as _;
use nestegg::server::entities::{
    account_token, backup_code, security_event, session, totp_credential, user,
};
use nestegg::server::services::totp::TotpSecret;
use reqwest::cookie::{CookieStore as _, Jar};
use sea_orm::{ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const SESSION_COOKIE: &str = "nestegg_session";
/// The fake clock starts on 2026-11-22, and no test moves it past midnight.
const FILE_NAME: &str = "nestegg-export-2026-11-22.zip";
const JSON_FILES: [&str; 6] = [
    "profile.json",
    "household.json",
    "consents.json",
    "sessions.json",
    "security_events.json",
    "emails.json",
];

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

/// A browser with its own cookie jar, kept so the test can read the session cookie it holds.
struct Browser {
    client: reqwest::Client,
    jar: Arc<Jar>,
    address: String,
}

impl Browser {
    fn new(app: &TestApp, user_agent: &str) -> Browser {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .user_agent(user_agent)
            .build()
            .expect("client");
        Browser {
            client,
            jar,
            address: app.address.clone(),
        }
    }

    async fn call(&self, function: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}/api/{function}", self.address))
            .header("origin", &self.address)
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .expect("request sent")
    }

    async fn sign_in(&self, email: &str, password: &str) -> reqwest::Response {
        self.call("sign_in", &[("email", email), ("password", password)])
            .await
    }

    /// The export form's post as the privacy page sends it (same origin, empty form).
    fn export_request(&self) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{DATA_EXPORT}", self.address))
            .header("origin", &self.address)
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("")
    }

    /// A client that is not a browser page (no `Accept: text/html`): refusals come back as JSON.
    async fn export(&self) -> reqwest::Response {
        self.export_request().send().await.expect("request sent")
    }

    /// A browser navigating with the form (no JavaScript): refusals redirect to a page.
    async fn export_from_page(&self) -> reqwest::Response {
        self.export_request()
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .send()
            .await
            .expect("request sent")
    }

    async fn export_status(&self) -> Value {
        ok_json(self.call("export_status", &[]).await).await
    }

    /// The session cookie's value as the browser holds (and sends) it.
    fn session_cookie(&self) -> String {
        let url: reqwest::Url = self.address.parse().expect("the app's address");
        let header = self.jar.cookies(&url).expect("cookies for the app");
        let header = header.to_str().expect("ASCII cookies").to_owned();
        header
            .split(';')
            .map(str::trim)
            .find_map(|c| c.strip_prefix(&format!("{SESSION_COOKIE}=")))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no session cookie in {header}"))
    }
}

/// A downloaded archive: its entry names in order, and each entry's text.
struct Export {
    names: Vec<String>,
    files: BTreeMap<String, String>,
}

impl Export {
    fn read(bytes: &[u8]) -> Export {
        let mut archive =
            zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a ZIP archive");
        let names: Vec<String> = archive
            .file_names()
            .map(|name| name.expect("a readable entry name").into_owned())
            .collect();
        let mut files = BTreeMap::new();
        for name in &names {
            let mut entry = archive.by_name(name).expect("a listed entry");
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("a UTF-8 entry");
            files.insert(name.clone(), text);
        }
        Export { names, files }
    }

    fn text(&self, name: &str) -> &str {
        self.files
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.names))
    }

    fn json(&self, name: &str) -> Value {
        serde_json::from_str(self.text(name))
            .unwrap_or_else(|err| panic!("{name} is not JSON ({err}): {}", self.text(name)))
    }

    /// Every file's uncompressed contents, one after the other.
    fn everything(&self) -> String {
        self.files
            .values()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn events(&self) -> Vec<Value> {
        self.json("security_events.json")
            .as_array()
            .cloned()
            .expect("security_events.json is an array")
    }
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Asserts a successful download and reads its archive.
async fn archive_of(response: reqwest::Response) -> Export {
    let status = response.status();
    let content_type = header(&response, "content-type");
    let bytes = response.bytes().await.expect("the whole body");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(content_type.as_deref(), Some("application/zip"));
    Export::read(&bytes)
}

async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

async fn assert_ok(response: reqwest::Response) {
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
}

/// Asserts a JSON refusal with `status` and error `code`; returns the body.
async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let actual = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(actual.as_u16(), status, "{body}");
    let error: Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not a JSON error: {body}"));
    assert_eq!(error["code"], code, "{body}");
    error
}

/// A refused export: the JSON error a server function would give, and no file.
async fn expect_refused_export(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/json")
    );
    assert!(header(&response, "content-disposition").is_none());
    expect_error(response, status, code).await
}

/// Registers `email` under `name` and confirms the address through the emailed link.
async fn register_named(app: &TestApp, email: &str, name: &str) {
    // The address may have had mail before (an invitation).
    let before = app.emails_to(email, 0).await.len();
    let response = app.register(email, name, PASSWORD).await;
    assert!(
        response.status().is_success() || response.status().is_redirection(),
        "{:?}",
        response.status()
    );
    let mail = app.emails_to(email, before + 1).await;
    let token = mail
        .iter()
        .find(|m| m.text.contains("/verify-email"))
        .expect("the confirmation email")
        .token(app, "/verify-email");
    assert_ok(app.call("verify_email", &[("token", &token)]).await).await;
}

/// A new browser signed in to `email` (password only).
async fn signed_in(app: &TestApp, email: &str, user_agent: &str) -> Browser {
    let browser = Browser::new(app, user_agent);
    assert_ok(browser.sign_in(email, PASSWORD).await).await;
    browser
}

async fn user_row(app: &TestApp, email: &str) -> user::Model {
    user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(&app.app_db)
        .await
        .unwrap()
        .expect("registered")
}

async fn exports_recorded(app: &TestApp, user_id: &str) -> i64 {
    app.count(&format!(
        "security_events WHERE kind = 'data_exported' AND user_id = '{user_id}'"
    ))
    .await
}

/// What turning on two-factor authentication left the test with.
struct TwoFactor {
    secret: TotpSecret,
    /// As the setup shows it, without the spaces.
    base32: String,
    backup_codes: Vec<String>,
}

fn code_now(app: &TestApp, secret: &TotpSecret) -> String {
    secret
        .code_at(app.clock.now().unix_timestamp() as u64)
        .expect("a code")
}

/// Turns on two-factor authentication for the signed-in `browser` (which must be in sudo mode), as
/// tests/api/mfa.rs does; moves the clock one TOTP step on so the next code is not a replay.
async fn enable_two_factor(app: &TestApp, browser: &Browser) -> TwoFactor {
    assert_ok(browser.call("start_two_factor_setup", &[]).await).await;
    let status = ok_json(browser.call("two_factor_status", &[]).await).await;
    let base32 = status["setup"]["manual_key"]
        .as_str()
        .unwrap_or_else(|| panic!("no setup in {status}"))
        .replace(' ', "");
    let secret = TotpSecret::from_base32(&base32).expect("a base32 secret");
    let code = code_now(app, &secret);
    let body = ok_json(
        browser
            .call("enable_two_factor", &[("code", code.as_str())])
            .await,
    )
    .await;
    let backup_codes: Vec<String> = body["codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no codes in {body}"))
        .iter()
        .map(|c| c.as_str().expect("a code is a string").to_owned())
        .collect();
    assert_eq!(backup_codes.len(), 10);
    app.clock.advance(time::Duration::seconds(30));
    TwoFactor {
        secret,
        base32,
        backup_codes,
    }
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["kind"].as_str().expect("every event has a kind"))
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// What the archive holds
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_archive_holds_every_kind_of_the_persons_data_with_the_right_headers() {
    let app = spawn_app().await;
    let email = "ada@example.org";
    register_named(&app, email, "Ada Quill").await;
    let ada = user_row(&app, email).await;
    let browser = Browser::new(&app, FIREFOX);

    // Activity, a minute apart so "oldest first" is visible in the times too.
    let failed = browser.sign_in(email, "not the password at all").await;
    assert_eq!(failed.status(), 400);
    app.clock.advance(time::Duration::minutes(1));
    assert_ok(browser.sign_in(email, PASSWORD).await).await;
    app.clock.advance(time::Duration::minutes(1));
    assert_ok(
        browser
            .call("change_display_name", &[("display_name", "Ada Lovelace")])
            .await,
    )
    .await;
    app.clock.advance(time::Duration::minutes(1));

    let response = browser.export().await;
    assert_eq!(
        header(&response, "content-disposition").as_deref(),
        Some(format!("attachment; filename=\"{FILE_NAME}\"").as_str())
    );
    assert_eq!(
        header(&response, "cache-control").as_deref(),
        Some("no-store")
    );
    let export = archive_of(response).await;

    let mut names = export.names.clone();
    names.sort();
    let mut expected: Vec<String> = JSON_FILES.iter().map(|f| (*f).to_owned()).collect();
    expected.push("README.txt".to_owned());
    expected.sort();
    assert_eq!(names, expected, "exactly these files");

    let readme = export.text("README.txt");
    for file in JSON_FILES {
        assert!(
            readme.contains(file),
            "README.txt describes {file}: {readme}"
        );
    }
    assert!(readme.contains(email), "{readme}");

    let profile = export.json("profile.json");
    assert_eq!(profile["id"], ada.id.as_str());
    assert_eq!(profile["email"], email);
    assert_eq!(
        profile["display_name"], "Ada Lovelace",
        "the name as it is now"
    );
    assert!(profile["email_confirmed_at"].is_string(), "{profile}");
    assert_eq!(profile["two_factor"]["enabled"], false);
    assert_eq!(profile["two_factor"]["backup_codes_remaining"], 0);
    assert!(profile.get("password_hash").is_none(), "{profile}");

    let consents = export.json("consents.json");
    let documents: BTreeSet<&str> = consents
        .as_array()
        .expect("consents.json is an array")
        .iter()
        .map(|c| {
            assert!(c["version"].as_i64().is_some_and(|v| v >= 1), "{c}");
            assert!(c["accepted_at"].is_string(), "{c}");
            c["document"].as_str().expect("a document")
        })
        .collect();
    assert!(documents.contains("terms"), "{consents}");
    assert!(documents.contains("privacy"), "{consents}");

    // The sessions, described without anything that could identify (or replay) one.
    let sessions = export.json("sessions.json");
    let sessions = sessions.as_array().expect("sessions.json is an array");
    assert!(!sessions.is_empty());
    let allowed: BTreeSet<&str> = ["browser", "ip", "signed_in_at", "last_active_at"].into();
    for entry in sessions {
        let keys: BTreeSet<&str> = entry
            .as_object()
            .expect("a session is an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, allowed, "no id, key or token field: {entry}");
    }
    assert!(
        sessions
            .iter()
            .any(|s| s["browser"] == "Firefox on Linux" && s["ip"] == "127.0.0.1"),
        "the current session: {sessions:?}"
    );
    let cookie = browser.session_cookie();
    assert!(!export.text("sessions.json").contains(&cookie));

    // The audit trail, oldest first, ending with this very export.
    let events = export.events();
    let kinds = kinds(&events);
    let position = |kind: &str| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("no {kind} event in {kinds:?}"))
    };
    assert!(
        position("sign_in_failed") < position("sign_in"),
        "{kinds:?}"
    );
    assert!(
        position("sign_in") < position("display_name_changed"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"data_exported"), "{kinds:?}");
    let sign_in = &events[position("sign_in")];
    assert_eq!(sign_in["details"]["method"], "password", "{sign_in}");
    assert_eq!(sign_in["ip"], "127.0.0.1");
    assert_eq!(sign_in["user_agent"], FIREFOX);
    let times: Vec<&str> = events
        .iter()
        .map(|e| e["at"].as_str().expect("a time"))
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "oldest first: {times:?}"
    );
    for event in &events {
        assert!(
            event["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{event}"
        );
    }

    let household = export.json("household.json");
    assert_eq!(household["your_role"], "owner", "{household}");
    let members = household["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{household}");
    assert_eq!(members[0]["email"], email);
    assert_eq!(members[0]["role"], "owner");
    assert_eq!(members[0]["display_name"], "Ada Lovelace");
    assert_eq!(household["invitations_you_sent"], serde_json::json!([]));

    // Emails: what was sent and when, never the text (it held the one-time link).
    let emails = export.json("emails.json");
    let emails = emails.as_array().expect("emails.json is an array");
    let verification = emails
        .iter()
        .find(|e| e["kind"] == "verify_email")
        .unwrap_or_else(|| panic!("no verification email in {emails:?}"));
    assert_eq!(verification["subject"], "Confirm your email for Nest Egg");
    assert!(verification["queued_at"].is_string());
    let email_fields: BTreeSet<&str> = ["kind", "subject", "status", "queued_at", "sent_at"].into();
    for entry in emails {
        let keys: BTreeSet<&str> = entry
            .as_object()
            .expect("an email is an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, email_fields, "no body: {entry}");
    }
    let emails_text = export.text("emails.json");
    assert!(!emails_text.contains("token="), "{emails_text}");
    assert!(!emails_text.contains("/verify-email"), "{emails_text}");
    assert!(!emails_text.contains(&app.address), "{emails_text}");
}

#[tokio::test]
async fn no_secret_of_the_account_is_anywhere_in_the_archive() {
    let app = crate::helpers::spawn_app_with(crate::helpers::without_redis).await;
    let email = "bea@example.org";
    app.register_verified(email, PASSWORD).await;
    let verification = app.emails_to(email, 1).await[0].clone();
    let verify_link = verification.link(&app, "/verify-email");
    let verify_token = verification.token(&app, "/verify-email");
    let browser = signed_in(&app, email, FIREFOX).await;
    let two_factor = enable_two_factor(&app, &browser).await;
    let status = browser.export_status().await;
    assert_eq!(status["with_code"], true, "{status}");
    assert_eq!(status["reauth_needed"], false, "{status}");

    let export = archive_of(browser.export().await).await;
    let profile = export.json("profile.json");
    assert_eq!(profile["two_factor"]["enabled"], true, "{profile}");
    assert!(profile["two_factor"]["enabled_at"].is_string(), "{profile}");
    assert_eq!(profile["two_factor"]["backup_codes_remaining"], 10);

    // What the server and the client know that must never leave in an export.
    let bea = user_row(&app, email).await;
    let mut needles = vec![
        ("the password", PASSWORD.to_owned()),
        ("the password hash", bea.password_hash.clone()),
        ("the verification link", verify_link),
        ("the verification token", verify_token),
        ("the TOTP secret", two_factor.base32.clone()),
        ("the TOTP secret", two_factor.base32.to_lowercase()),
    ];
    // The hash's last part alone (argon2 PHC: `$argon2id$v=19$m=…$salt$hash`).
    if let Some(digest) = bea
        .password_hash
        .rsplit('$')
        .next()
        .filter(|d| d.len() >= 16)
    {
        needles.push(("the password hash", digest.to_owned()));
    }
    let spaced = two_factor
        .base32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    needles.push(("the TOTP secret", spaced));
    for code in &two_factor.backup_codes {
        needles.push(("a backup code", code.clone()));
        needles.push(("a backup code", code.replace('-', "")));
    }
    // The cookie as sent, and the session id inside it (the signed cookie is a 44-character
    // base64 signature followed by the id).
    let cookie = browser.session_cookie();
    if let Some(id) = cookie.get(44..).filter(|id| id.len() >= 16) {
        needles.push(("the session id", id.to_owned()));
    }
    needles.push(("the session cookie", cookie));
    let sessions = session::Entity::find()
        .filter(session::Column::UserId.eq(bea.id.as_str()))
        .all(&app.app_db)
        .await
        .unwrap();
    assert!(!sessions.is_empty());
    for row in sessions {
        needles.push(("a session id hash", row.id_hash));
    }
    let tokens = account_token::Entity::find()
        .filter(account_token::Column::UserId.eq(bea.id.as_str()))
        .all(&app.app_db)
        .await
        .unwrap();
    assert!(!tokens.is_empty(), "the verification token's row");
    for row in tokens {
        needles.push(("an account token hash", row.token_hash));
    }
    let credential = totp_credential::Entity::find_by_id(bea.id.clone())
        .one(&app.app_db)
        .await
        .unwrap()
        .expect("a TOTP credential");
    needles.push(("the sealed TOTP secret", credential.secret));
    let codes = backup_code::Entity::find()
        .filter(backup_code::Column::UserId.eq(bea.id.as_str()))
        .all(&app.app_db)
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);
    for row in codes {
        needles.push(("a backup code hash", row.code_hash));
    }

    let everything = export.everything();
    assert!(
        everything.contains(email),
        "the check reads the real contents"
    );
    for (what, needle) in &needles {
        assert!(!needle.is_empty(), "{what}");
        assert!(
            !everything.contains(needle.as_str()),
            "the archive holds {what}"
        );
    }
}

#[tokio::test]
async fn the_archive_holds_nothing_of_anyone_else() {
    let app = spawn_app().await;
    let ada = "ada@example.org";
    let zeb = "zebulon.quartermaine@example.net";
    let zeb_agent = "ZebulonBrowser/7.7 (Quartermaine Edition)";
    register_named(&app, ada, "Ada Quill").await;
    register_named(&app, zeb, "Zebulon Quartermaine").await;
    let ada_id = user_row(&app, ada).await.id;
    let zeb_id = user_row(&app, zeb).await.id;

    // Zebulon's own activity: a failed and a successful sign-in, a new name, a reset email.
    let zeb_browser = Browser::new(&app, zeb_agent);
    assert_eq!(
        zeb_browser
            .sign_in(zeb, "wrong password here")
            .await
            .status(),
        400
    );
    assert_ok(zeb_browser.sign_in(zeb, PASSWORD).await).await;
    assert_ok(
        zeb_browser
            .call(
                "change_display_name",
                &[("display_name", "Zebulon Xanthippe")],
            )
            .await,
    )
    .await;
    assert_ok(
        zeb_browser
            .call("request_password_reset", &[("email", zeb)])
            .await,
    )
    .await;

    let ada_browser = signed_in(&app, ada, FIREFOX).await;
    let export = archive_of(ada_browser.export().await).await;
    let everything = export.everything();
    assert!(
        everything.contains(ada),
        "the check reads the real contents"
    );
    for needle in [
        zeb,
        "zebulon",
        "Quartermaine",
        "Xanthippe",
        zeb_agent,
        zeb_id.as_str(),
    ] {
        assert!(
            !everything.to_lowercase().contains(&needle.to_lowercase()),
            "Ada's archive mentions {needle}"
        );
    }

    // Exactly Ada's rows, no more: every event and email of hers, her household alone.
    let events = export.events();
    let ada_events = app
        .count(&format!("security_events WHERE user_id = '{ada_id}'"))
        .await;
    assert_eq!(events.len() as i64, ada_events);
    let emails = export.json("emails.json");
    let ada_emails = app
        .count(&format!("outbox_emails WHERE to_address = '{ada}'"))
        .await;
    assert_eq!(emails.as_array().map(Vec::len), Some(ada_emails as usize));
    let household = export.json("household.json");
    assert_eq!(household["members"].as_array().map(Vec::len), Some(1));
}

/// Registers `address` and moves its account elsewhere, freeing it. Returns the account's browser and
/// how many emails went to `address` meanwhile.
async fn free_address(app: &TestApp, address: &str) -> (Browser, usize) {
    register_named(app, address, "Val Before").await;
    let holder = signed_in(app, address, FIREFOX).await;
    assert_ok(
        holder
            .call("request_password_reset", &[("email", address)])
            .await,
    )
    .await;
    // Not a name that contains `address`: `emails_to` matches by containment.
    let (local, _) = address.split_once('@').expect("an address");
    let elsewhere = format!("{local}.moved@elsewhere.example");
    assert_ok(
        holder
            .call(
                "change_email",
                &[("password", PASSWORD), ("new_email", &elsewhere)],
            )
            .await,
    )
    .await;
    let token = app.emails_to(&elsewhere, 1).await[0].token(app, "/confirm-email-change");
    assert_ok(app.call("confirm_email_change", &[("token", &token)]).await).await;
    let previous = app
        .count(&format!("outbox_emails WHERE to_address = '{address}'"))
        .await;
    assert!(
        previous >= 3,
        "verification, reset and notice went to {address}"
    );
    (holder, previous as usize)
}

/// The kinds of the emails in `browser`'s archive, oldest first.
async fn email_kinds(browser: &Browser) -> Vec<String> {
    let emails = archive_of(browser.export().await).await.json("emails.json");
    emails
        .as_array()
        .expect("emails.json is an array")
        .iter()
        .map(|e| e["kind"].as_str().expect("a kind").to_owned())
        .collect()
}

/// The archive does not tell whether someone has an account at an address: asking to move to a free
/// address and to a taken one leave the same trace in it (a notice to the current address), since
/// the link to confirm a new address is listed only once the address is the account's.
#[tokio::test]
async fn the_archive_does_not_tell_whether_an_address_is_taken() {
    let app = spawn_app().await;
    register_named(&app, "tia@example.org", "Tia Taken").await;
    register_named(&app, "ash@example.org", "Ash Asker").await;
    let ash = signed_in(&app, "ash@example.org", FIREFOX).await;
    let change_to = |address: &'static str| {
        let ash = &ash;
        async move {
            assert_ok(
                ash.call(
                    "change_email",
                    &[("password", PASSWORD), ("new_email", address)],
                )
                .await,
            )
            .await;
        }
    };

    change_to("free@example.org").await;
    // The link went out, to the free address only.
    assert_eq!(app.emails_to("free@example.org", 1).await.len(), 1);
    let after_free = email_kinds(&ash).await;
    assert_eq!(
        after_free.last().map(String::as_str),
        Some("email_change_notice")
    );
    assert!(
        !after_free.iter().any(|kind| kind == "email_change_verify"),
        "{after_free:?}"
    );

    change_to("tia@example.org").await;
    let after_taken = email_kinds(&ash).await;
    let mut expected = after_free.clone();
    expected.push("email_change_notice".to_owned());
    assert_eq!(after_taken, expected);
}

/// Whoever gives an address up keeps her mail: what went to it is still in her archive.
#[tokio::test]
async fn emails_to_an_earlier_address_stay_in_the_archive() {
    let app = spawn_app().await;
    let (wes, _) = free_address(&app, "wes@example.org").await;
    assert_eq!(
        email_kinds(&wes).await,
        [
            "verify_email",
            "password_reset",
            "email_change_verify",
            "email_change_notice",
            "email_changed"
        ]
    );
}

/// Moving on again does not take the link that confirmed the address before out of the archive: the
/// account held that address.
#[tokio::test]
async fn the_link_that_confirmed_an_earlier_address_stays_after_moving_on() {
    let app = spawn_app().await;
    let (wes, _) = free_address(&app, "wes@example.org").await;
    let third = "wes.third@other.example";
    assert_ok(
        wes.call(
            "change_email",
            &[("password", PASSWORD), ("new_email", third)],
        )
        .await,
    )
    .await;
    let token = app.emails_to(third, 1).await[0].token(&app, "/confirm-email-change");
    assert_ok(app.call("confirm_email_change", &[("token", &token)]).await).await;
    assert_eq!(
        email_kinds(&wes).await,
        [
            "verify_email",
            "password_reset",
            "email_change_verify",
            "email_change_notice",
            "email_changed",
            "email_change_verify",
            "email_change_notice",
            "email_changed"
        ]
    );
}

/// An invitation belongs to no account when it is sent (whether its address has one is not looked
/// up): it is in the archive of whoever holds the address, if they held it then.
#[tokio::test]
async fn an_invitation_is_in_the_archive_of_whoever_held_the_address_then() {
    let app = spawn_app().await;
    register_named(&app, "ola@example.org", "Ola Owner").await;
    let ola = signed_in(&app, "ola@example.org", FIREFOX).await;
    let invited = "pia@example.org";
    invited_before_and_after_registering(&app, &ola, invited, "Pia Invited").await;

    let pia = signed_in(&app, invited, FIREFOX).await;
    assert_eq!(
        email_kinds(&pia).await,
        ["verify_email", "household_invitation"],
        "the invitation sent before she registered is not hers"
    );
}

#[tokio::test]
async fn operator_rights_and_the_invitations_to_the_address_are_in_the_archive() {
    let app = spawn_app_with(|v| {
        v.insert("ADMIN_EMAILS".into(), "ida@example.org".into());
    })
    .await;
    register_named(&app, "olaf@example.org", "Olaf Owner").await;
    let olaf = signed_in(&app, "olaf@example.org", FIREFOX).await;
    let ida = "ida@example.org";
    // The first invitation was sent before Ida had the address: not hers.
    invited_before_and_after_registering(&app, &olaf, ida, "Ida Invited").await;

    let export = archive_of(signed_in(&app, ida, FIREFOX).await.export().await).await;
    let profile = export.json("profile.json");
    assert_eq!(profile["operator"], true, "{profile}");
    assert!(profile["operator_granted_at"].is_null(), "{profile}");
    let household = export.json("household.json");
    let to_her = household["invitations_to_you"]
        .as_array()
        .expect("invitations_to_you is an array");
    assert_eq!(
        to_her.len(),
        1,
        "only the one since she holds the address: {household}"
    );
    assert_eq!(to_her[0]["household"], "Olaf Owner's household");
    assert_eq!(to_her[0]["status"], "waiting");
    assert!(
        to_her[0].get("email").is_none() && to_her[0].get("token_hash").is_none(),
        "{household}"
    );

    let olafs = archive_of(olaf.export().await).await.json("profile.json");
    assert_eq!(olafs["operator"], false, "{olafs}");

    // Someone who registered another person's address without confirming it learns nothing of the
    // households inviting its owner.
    let vic = "vic@example.org";
    let registered = app.register(vic, "Not Vic", PASSWORD).await;
    assert!(registered.status().is_success(), "{}", registered.status());
    app.clock.advance(time::Duration::minutes(1));
    assert_ok(olaf.call("invite_member", &[("email", vic)]).await).await;
    app.emails_to(vic, 2).await;
    let mallory = signed_in(&app, vic, FIREFOX).await;
    let archive = archive_of(mallory.export().await).await;
    let household = archive.json("household.json");
    assert_eq!(
        household["invitations_to_you"],
        serde_json::json!([]),
        "{household}"
    );
    let emails = archive.text("emails.json");
    assert!(!emails.contains("household_invitation"), "{emails}");
    assert!(emails.contains("verify_email"), "her own: {emails}");
}

/// `inviter` invites `address`; a minute later its owner registers it as `name` and confirms it; a
/// minute later `inviter` invites it again. Three emails to the address.
async fn invited_before_and_after_registering(
    app: &TestApp,
    inviter: &Browser,
    address: &str,
    name: &str,
) {
    assert_ok(inviter.call("invite_member", &[("email", address)]).await).await;
    app.emails_to(address, 1).await;
    app.clock.advance(time::Duration::minutes(1));
    let registered = app.register(address, name, PASSWORD).await;
    assert!(registered.status().is_success(), "{}", registered.status());
    let token = app
        .emails_to(address, 2)
        .await
        .iter()
        .find(|m| m.text.contains(name))
        .expect("the confirmation")
        .token(app, "/verify-email");
    assert_ok(app.call("verify_email", &[("token", &token)]).await).await;
    app.clock.advance(time::Duration::minutes(1));
    assert_ok(inviter.call("invite_member", &[("email", address)]).await).await;
    app.emails_to(address, 3).await;
}

/// An address freed by a change of address can be registered by someone else; the emails sent to it
/// before are its previous holder's (a reset requested, the change itself) and stay out of the
/// newcomer's archive.
#[tokio::test]
async fn emails_to_the_previous_holder_of_an_address_stay_out() {
    let app = spawn_app().await;
    let address = "val@example.org";
    let (_, previous) = free_address(&app, address).await;

    // Once it can no longer be put back on her account.
    app.clock.advance(time::Duration::days(8));
    let registered = app.register(address, "Nia Newcomer", PASSWORD).await;
    assert!(registered.status().is_success(), "{}", registered.status());
    let mail = app.emails_to(address, previous + 1).await;
    let token = mail
        .iter()
        .find(|m| m.text.contains("Nia Newcomer"))
        .expect("her confirmation")
        .token(&app, "/verify-email");
    assert_ok(app.call("verify_email", &[("token", &token)]).await).await;
    let nia = signed_in(&app, address, FIREFOX).await;
    assert_eq!(
        email_kinds(&nia).await,
        ["verify_email"],
        "the newcomer's own confirmation only"
    );
}

/// The same for an older account that moves to the freed address: the emails sent to it before the
/// move are not its own, though the account is older than they are. Its own confirmation link, sent
/// there before the move, is.
#[tokio::test]
async fn emails_to_an_address_before_an_account_moved_to_it_stay_out() {
    let app = spawn_app().await;
    register_named(&app, "kai@example.org", "Kai Earlier").await;
    let address = "uma@example.org";
    let (_, previous) = free_address(&app, address).await;

    app.clock.advance(time::Duration::minutes(5));
    let kai = signed_in(&app, "kai@example.org", FIREFOX).await;
    assert_ok(
        kai.call(
            "change_email",
            &[("password", PASSWORD), ("new_email", address)],
        )
        .await,
    )
    .await;
    let mail = app.emails_to(address, previous + 1).await;
    let token = mail
        .iter()
        .find(|m| m.text.contains("/confirm-email-change"))
        .expect("his confirmation link")
        .token(&app, "/confirm-email-change");
    assert_ok(app.call("confirm_email_change", &[("token", &token)]).await).await;
    assert_eq!(
        email_kinds(&kai).await,
        [
            "verify_email",
            "email_change_verify",
            "email_change_notice",
            "email_changed"
        ],
        "his own: at his first address, and the confirmation link at the new one"
    );
}

// ---------------------------------------------------------------------------------------------------
// When it is refused
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_export_needs_a_recently_entered_password() {
    let app = spawn_app().await;
    let email = "cy@example.org";
    app.register_verified(email, PASSWORD).await;
    let browser = signed_in(&app, email, FIREFOX).await;

    // Signing in counts as entering the password.
    let status = browser.export_status().await;
    assert_eq!(status["reauth_needed"], false, "{status}");
    assert_eq!(status["with_code"], false, "{status}");
    archive_of(browser.export().await).await;

    // Past SUDO_WINDOW_MINUTES (10), still well within the session's idle timeout.
    app.clock.advance(time::Duration::minutes(11));
    expect_refused_export(browser.export().await, 403, "reauth_required").await;
    let from_page = browser.export_from_page().await;
    assert_eq!(from_page.status(), 303);
    assert_eq!(
        header(&from_page, "location").as_deref(),
        Some("/settings/privacy?export=reauth")
    );
    assert_eq!(browser.export_status().await["reauth_needed"], true);

    // A wrong password changes nothing; the right one opens the window again.
    let wrong = browser
        .call(
            "confirm_password",
            &[("password", "not the password at all")],
        )
        .await;
    let error = expect_error(wrong, 400, "invalid_input").await;
    assert_eq!(error["field"], "password", "{error}");
    assert_eq!(browser.export_status().await["reauth_needed"], true);
    expect_refused_export(browser.export().await, 403, "reauth_required").await;

    assert_ok(
        browser
            .call("confirm_password", &[("password", PASSWORD)])
            .await,
    )
    .await;
    assert_eq!(browser.export_status().await["reauth_needed"], false);
    archive_of(browser.export().await).await;
}

#[tokio::test]
async fn with_two_factor_on_getting_the_export_back_takes_a_code_too() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_MFA_PER_MINUTE".into(), "1000".into());
    })
    .await;
    let email = "dee@example.org";
    app.register_verified(email, PASSWORD).await;
    let browser = signed_in(&app, email, FIREFOX).await;
    let two_factor = enable_two_factor(&app, &browser).await;

    app.clock.advance(time::Duration::minutes(11));
    expect_refused_export(browser.export().await, 403, "reauth_required").await;
    let status = browser.export_status().await;
    assert_eq!(status["reauth_needed"], true, "{status}");
    assert_eq!(status["with_code"], true, "{status}");

    let without_code = browser
        .call("confirm_password", &[("password", PASSWORD)])
        .await;
    let error = expect_error(without_code, 400, "invalid_input").await;
    assert_eq!(error["field"], "code", "{error}");
    expect_refused_export(browser.export().await, 403, "reauth_required").await;

    let code = code_now(&app, &two_factor.secret);
    assert_ok(
        browser
            .call(
                "confirm_password",
                &[("password", PASSWORD), ("code", code.as_str())],
            )
            .await,
    )
    .await;
    assert_eq!(browser.export_status().await["reauth_needed"], false);
    archive_of(browser.export().await).await;
}

#[tokio::test]
async fn signed_out_the_export_is_refused_and_a_page_is_sent_to_sign_in() {
    let app = spawn_app().await;
    let stranger = Browser::new(&app, FIREFOX);
    expect_refused_export(stranger.export().await, 401, "unauthenticated").await;
    let from_page = stranger.export_from_page().await;
    assert_eq!(from_page.status(), 303);
    assert_eq!(
        header(&from_page, "location").as_deref(),
        Some("/login?next=/settings/privacy")
    );

    // After signing out, the same.
    let email = "eve@example.org";
    app.register_verified(email, PASSWORD).await;
    let browser = signed_in(&app, email, FIREFOX).await;
    assert_ok(browser.call("sign_out", &[]).await).await;
    expect_refused_export(browser.export().await, 401, "unauthenticated").await;
    let eve = user_row(&app, email).await;
    assert_eq!(exports_recorded(&app, &eve.id).await, 0);
}

#[tokio::test]
async fn a_fourth_export_within_the_hour_is_rate_limited_for_that_account_only() {
    // Default settings: RATE_LIMIT_EXPORTS_PER_HOUR is 3.
    let app = spawn_app().await;
    let fay = "fay@example.org";
    let gus = "gus@example.org";
    app.register_verified(fay, PASSWORD).await;
    app.register_verified(gus, PASSWORD).await;
    let browser = signed_in(&app, fay, FIREFOX).await;
    for _ in 0..3 {
        archive_of(browser.export().await).await;
    }

    let refused = browser.export().await;
    let retry_after: u64 = header(&refused, "retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let error = expect_refused_export(refused, 429, "rate_limited").await;
    assert_eq!(error["retry_after_secs"], retry_after, "{error}");

    let from_page = browser.export_from_page().await;
    assert_eq!(from_page.status(), 303);
    let location = header(&from_page, "location").expect("a redirect");
    let wait = location
        .strip_prefix("/settings/privacy?export=rate_limited&retry_after=")
        .unwrap_or_else(|| panic!("{location}"));
    assert!(wait.parse::<u64>().is_ok_and(|w| w >= 1), "{location}");

    // The limit is per account: someone else on the same address is unaffected.
    let other = signed_in(&app, gus, FIREFOX).await;
    archive_of(other.export().await).await;
    let fay_id = user_row(&app, fay).await.id;
    assert_eq!(
        exports_recorded(&app, &fay_id).await,
        3,
        "refusals are not exports"
    );
}

#[tokio::test]
async fn every_successful_export_is_recorded_once_in_the_security_activity() {
    let app = spawn_app().await;
    let hal = "hal@example.org";
    let ivy = "ivy@example.org";
    app.register_verified(hal, PASSWORD).await;
    app.register_verified(ivy, PASSWORD).await;
    let hal_id = user_row(&app, hal).await.id;
    let ivy_id = user_row(&app, ivy).await.id;
    let browser = signed_in(&app, hal, FIREFOX).await;
    assert_eq!(exports_recorded(&app, &hal_id).await, 0);

    for expected in 1..=2 {
        let export = archive_of(browser.export().await).await;
        assert_eq!(exports_recorded(&app, &hal_id).await, expected);
        let exported = kinds(&export.events())
            .iter()
            .filter(|k| **k == "data_exported")
            .count();
        assert_eq!(exported as i64, expected, "the archive lists it too");
    }

    // A refused export is not one.
    app.clock.advance(time::Duration::minutes(11));
    expect_refused_export(browser.export().await, 403, "reauth_required").await;
    assert_eq!(exports_recorded(&app, &hal_id).await, 2);
    assert_eq!(exports_recorded(&app, &ivy_id).await, 0);
    assert_eq!(
        app.count("security_events WHERE kind = 'data_exported'")
            .await,
        2
    );
}

#[tokio::test]
async fn a_cross_site_post_gets_no_archive() {
    let app = spawn_app().await;
    let email = "jo@example.org";
    app.register_verified(email, PASSWORD).await;
    let jo_id = user_row(&app, email).await.id;
    let browser = signed_in(&app, email, FIREFOX).await;

    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let response = browser
            .client
            .post(app.url(DATA_EXPORT))
            .header(name, value)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{name}: {value}");
        assert_ne!(
            header(&response, "content-type").as_deref(),
            Some("application/zip")
        );
        assert!(header(&response, "content-disposition").is_none());
        let body = response.bytes().await.unwrap();
        assert!(!body.starts_with(b"PK"), "{name}: {value} got a ZIP");
        assert!(
            String::from_utf8_lossy(&body).contains("came from another website"),
            "{name}: {value}"
        );
    }
    assert_eq!(exports_recorded(&app, &jo_id).await, 0);

    // The same session, from our own page, gets it.
    archive_of(browser.export().await).await;
    assert_eq!(exports_recorded(&app, &jo_id).await, 1);
}

// ---------------------------------------------------------------------------------------------------
// A long history
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_long_security_history_is_exported_whole_across_many_pages() {
    const HISTORY: i64 = 5_000;
    let app = spawn_app().await;
    let email = "kai@example.org";
    app.register_verified(email, PASSWORD).await;
    let kai_id = user_row(&app, email).await.id;
    let browser = signed_in(&app, email, FIREFOX).await;

    // Ten 500-row pages' worth, numbered so gaps or repeats at page boundaries show.
    let now = app.clock.now().unix_timestamp();
    for start in (0..HISTORY).step_by(250) {
        let rows = (start..start + 250).map(|seq| security_event::ActiveModel {
            user_id: Set(Some(kai_id.clone())),
            kind: Set("sign_in_failed".to_owned()),
            ip: Set(Some("203.0.113.9".to_owned())),
            user_agent: Set(Some("HistoryBot/1.0".to_owned())),
            details: Set(serde_json::json!({ "seq": seq }).to_string()),
            created_at: Set(now),
            ..Default::default()
        });
        security_event::Entity::insert_many(rows)
            .exec_without_returning(&app.app_db)
            .await
            .unwrap();
    }

    let export = archive_of(browser.export().await).await;
    let events = export.events();
    assert!(events.len() as i64 >= HISTORY, "{}", events.len());
    let recorded = app
        .count(&format!("security_events WHERE user_id = '{kai_id}'"))
        .await;
    assert_eq!(events.len() as i64, recorded, "every row, once");
    let seqs: Vec<i64> = events
        .iter()
        .filter_map(|e| e["details"]["seq"].as_i64())
        .collect();
    assert_eq!(
        seqs,
        (0..HISTORY).collect::<Vec<_>>(),
        "in order, none lost"
    );
    assert_eq!(kinds(&events).last(), Some(&"data_exported"));
}

/// `from` invites `to`; returns the link's token.
async fn invitation_token(app: &TestApp, from: &Browser, to: &str) -> String {
    let before = app.emails_to(to, 0).await.len();
    assert_ok(from.call("invite_member", &[("email", to)]).await).await;
    app.emails_to(to, before + 1)
        .await
        .iter()
        .rev()
        .find(|m| m.text.contains("/household/join"))
        .expect("the invitation")
        .token(app, "/household/join")
}

/// Ana's household, with Ben in it and Kim invited (the token returned, unanswered); Ana hands it to
/// Ben and leaves. Four people register and sign in from one address: the limits are raised.
async fn invited_kim_then_left() -> (TestApp, Browser, Browser, String) {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_REGISTER_PER_HOUR".into(), "100".into());
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "100".into());
    })
    .await;
    register_named(&app, "ana@example.org", "Ana").await;
    register_named(&app, "ben@example.org", "Ben").await;
    let ana = signed_in(&app, "ana@example.org", FIREFOX).await;
    let to_ben = invitation_token(&app, &ana, "ben@example.org").await;
    let ben = signed_in(&app, "ben@example.org", FIREFOX).await;
    assert_ok(ben.call("accept_invitation", &[("token", &to_ben)]).await).await;
    let to_kim = invitation_token(&app, &ana, "kim@example.org").await;
    let ben_id = user_row(&app, "ben@example.org").await.id;
    app.clock.advance(time::Duration::minutes(1));
    assert_ok(ana.call("transfer_ownership", &[("id", &ben_id)]).await).await;
    assert_ok(ana.call("leave_household", &[]).await).await;
    (app, ana, ben, to_kim)
}

/// An invitation sent from a household the person has since left is listed as it stood when they
/// left: who joined that household afterwards, or what its new owner did, is not theirs to learn.
#[tokio::test]
async fn invitations_sent_from_a_household_left_since_keep_the_status_they_had_then() {
    let (app, ana, _ben, to_kim) = invited_kim_then_left().await;
    register_named(&app, "cal@example.org", "Cal").await;

    // Afterwards Kim registers and joins.
    app.clock.advance(time::Duration::minutes(1));
    register_named(&app, "kim@example.org", "Kim").await;
    let kim = signed_in(&app, "kim@example.org", FIREFOX).await;
    assert_ok(kim.call("accept_invitation", &[("token", &to_kim)]).await).await;
    // And later still Ana joins Cal's household: not the time she left Ben's.
    app.clock.advance(time::Duration::minutes(1));
    let cal = signed_in(&app, "cal@example.org", FIREFOX).await;
    let to_ana = invitation_token(&app, &cal, "ana@example.org").await;
    assert_ok(ana.call("accept_invitation", &[("token", &to_ana)]).await).await;

    let household = archive_of(ana.export().await).await.json("household.json");
    let statuses: Vec<(&str, &str)> = household["invitations_you_sent"]
        .as_array()
        .expect("invitations_you_sent is an array")
        .iter()
        .map(|i| {
            (
                i["email"].as_str().unwrap_or_default(),
                i["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("ben@example.org", "accepted"),
            ("kim@example.org", "waiting_when_you_left")
        ],
        "{household}"
    );
}

/// Someone who left a household, came back and left again sees what became of their invitations up
/// to their last departure: while back, they saw its members anyway.
#[tokio::test]
async fn invitations_of_a_household_left_twice_show_their_status_at_the_last_departure() {
    let (app, ana, ben, to_kim) = invited_kim_then_left().await;
    // Ben has her back.
    app.clock.advance(time::Duration::minutes(1));
    let back = invitation_token(&app, &ben, "ana@example.org").await;
    assert_ok(ana.call("accept_invitation", &[("token", &back)]).await).await;
    // While she is back, Kim joins; then Ana leaves again.
    app.clock.advance(time::Duration::minutes(1));
    register_named(&app, "kim@example.org", "Kim").await;
    let kim = signed_in(&app, "kim@example.org", FIREFOX).await;
    assert_ok(kim.call("accept_invitation", &[("token", &to_kim)]).await).await;
    app.clock.advance(time::Duration::minutes(1));
    assert_ok(ana.call("leave_household", &[]).await).await;

    let household = archive_of(ana.export().await).await.json("household.json");
    let to_kim = household["invitations_you_sent"]
        .as_array()
        .expect("invitations_you_sent is an array")
        .iter()
        .find(|i| i["email"] == "kim@example.org")
        .cloned()
        .expect("the invitation to Kim");
    assert_eq!(to_kim["status"], "accepted", "{household}");
}
