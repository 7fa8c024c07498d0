//! Households: invitations by email (single use, seven days, replaced by a new one, withdrawable),
//! what only owners may do, removing, handing on and leaving, and that ids from another household are
//! never found there.

use std::sync::atomic::Ordering;
use std::time::Duration;

use nestegg::server::config::Vars;
use nestegg::server::entities::{household, household_member, user};
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use serde_json::Value;

use crate::helpers::{Email, TestApp, spawn_app_with};
use crate::smtp_sink::SmtpSink;

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
/// Where an invitation's link points.
const JOIN: &str = "/household/join";
/// Distinctive parts of the two household emails' subjects.
const INVITED: &str = "invited to a household";
const REMOVED: &str = "removed from a household";
/// How long an invitation link works.
const INVITATION_TTL_SECS: i64 = 7 * 24 * 3600;
/// What a used, expired or withdrawn link answers.
const LINK_INVALID: &str = "expired or was already used";

async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

async fn spawn_with(customize: impl FnOnce(&mut Vars)) -> TestApp {
    spawn_app_with(move |v| {
        // Several people register and sign in from one address within seconds.
        v.insert("RATE_LIMIT_REGISTER_PER_HOUR".into(), "100".into());
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "1000".into());
        v.insert("RATE_LIMIT_API_PER_MINUTE".into(), "1000".into());
        customize(v);
    })
    .await
}

/// A browser with its own cookie jar (one per person).
struct Browser {
    client: reqwest::Client,
    address: String,
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .user_agent(FIREFOX)
                .build()
                .unwrap(),
            address: app.address.clone(),
        }
    }

    async fn signed_in(app: &TestApp, email: &str) -> Browser {
        let browser = Browser::new(app);
        let response = browser
            .call("sign_in", &[("email", email), ("password", PASSWORD)])
            .await;
        assert_eq!(response.status(), 200, "sign in as {email}");
        browser
    }

    async fn call(&self, function: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}/api/{function}", self.address))
            .header("origin", &self.address)
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Calls `function`, expecting success; its JSON answer (`null` for none).
    async fn ok(&self, function: &str, form: &[(&str, &str)]) -> Value {
        let response = self.call(function, form).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{function}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Calls `function`, expecting it to be refused with `status`; the JSON error.
    async fn refused(&self, function: &str, form: &[(&str, &str)], status: u16) -> Value {
        let response = self.call(function, form).await;
        let got = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(got, status, "{function}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn overview(&self) -> Value {
        self.ok("household_overview", &[]).await
    }
}

/// Registers `email` as `name` (so the household is "{name}'s household") and confirms the address.
async fn account(app: &TestApp, email: &str, name: &str) {
    let response = app.register(email, name, PASSWORD).await;
    assert!(
        response.status().is_success() || response.status().is_redirection(),
        "register {email}: {}",
        response.status()
    );
    let mail = app.emails_to(email, 1).await;
    let token = mail[0].token(app, "/verify-email");
    let response = app.call("verify_email", &[("token", token.as_str())]).await;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(
        status, 200,
        "verify {email}: {body}; token {token:?}; text {}",
        mail[0].text
    );
}

/// Emails to `to` whose subject contains `subject`, waiting for the outbox to deliver at least one.
async fn wait_for_mail(app: &TestApp, to: &str, subject: &str) -> Vec<Email> {
    for _ in 0..100 {
        let found: Vec<Email> = app
            .emails_to(to, 0)
            .await
            .into_iter()
            .filter(|m| m.subject.contains(subject))
            .collect();
        if !found.is_empty() {
            return found;
        }
        // The outbox delivers in the background.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no email about “{subject}” to {to}");
}

/// The tokens of every invitation link delivered to `to` so far.
async fn invitation_tokens(app: &TestApp, to: &str) -> Vec<String> {
    app.emails_to(to, 0)
        .await
        .into_iter()
        .filter(|m| m.subject.contains(INVITED))
        .map(|m| m.token(app, JOIN))
        .collect()
}

/// `owner` invites `email`; the token of the new link that arrives for it.
async fn invite(app: &TestApp, owner: &Browser, email: &str) -> String {
    let earlier = invitation_tokens(app, email).await;
    let sent = owner.ok("invite_member", &[("email", email)]).await;
    assert_eq!(sent, email);
    for _ in 0..100 {
        if let Some(token) = invitation_tokens(app, email)
            .await
            .into_iter()
            .find(|t| !earlier.contains(t))
        {
            return token;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no invitation arrived for {email}");
}

/// `owner` invites `email`, who signs in and accepts; their browser.
async fn join(app: &TestApp, owner: &Browser, email: &str) -> Browser {
    let token = invite(app, owner, email).await;
    let invitee = Browser::signed_in(app, email).await;
    invitee
        .ok("accept_invitation", &[("token", token.as_str())])
        .await;
    invitee
}

/// "email role" for every member, sorted (people who joined at the same instant have no set order).
fn roles(view: &Value) -> Vec<String> {
    let mut out: Vec<String> = view["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m["email"].as_str().unwrap_or_default(),
                m["role"].as_str().unwrap_or_default()
            )
        })
        .collect();
    out.sort();
    out
}

fn member(view: &Value, email: &str) -> Value {
    view["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["email"] == email)
        .unwrap_or_else(|| panic!("{email} is not in {view}"))
        .clone()
}

fn member_id(view: &Value, email: &str) -> String {
    member(view, email)["id"]
        .as_str()
        .expect("member id")
        .to_owned()
}

/// The addresses of the waiting invitations, sorted.
fn pending(view: &Value) -> Vec<String> {
    let mut out: Vec<String> = view["invitations"]
        .as_array()
        .expect("invitations")
        .iter()
        .map(|i| i["email"].as_str().unwrap_or_default().to_owned())
        .collect();
    out.sort();
    out
}

fn invitation_id(view: &Value, email: &str) -> String {
    view["invitations"]
        .as_array()
        .expect("invitations")
        .iter()
        .find(|i| i["email"] == email)
        .and_then(|i| i["id"].as_str())
        .unwrap_or_else(|| panic!("no invitation to {email} in {view}"))
        .to_owned()
}

fn message(error: &Value) -> &str {
    error["message"].as_str().unwrap_or_default()
}

async fn household_of(app: &TestApp, user_id: &str) -> String {
    household_member::Entity::find()
        .filter(household_member::Column::UserId.eq(user_id))
        .one(&app.app_db)
        .await
        .unwrap()
        .expect("a household")
        .household_id
}

async fn household_name(app: &TestApp, id: &str) -> String {
    household::Entity::find_by_id(id.to_owned())
        .one(&app.app_db)
        .await
        .unwrap()
        .expect("the household")
        .name
}

async fn events(app: &TestApp, kind: &str) -> i64 {
    app.count(&format!("security_events WHERE kind = '{kind}'"))
        .await
}

#[tokio::test]
async fn an_invited_person_joins_and_their_own_empty_household_goes() {
    let app = spawn().await;
    account(&app, "ana@example.org", "Ana").await;
    account(&app, "ben@example.org", "Ben").await;
    assert_eq!(app.count("households").await, 2);
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    let ana_id = member_id(&ana.overview().await, "ana@example.org");

    // The address is normalized, and the answer says where the invitation went.
    let sent = ana
        .ok("invite_member", &[("email", "  Ben@Example.org ")])
        .await;
    assert_eq!(sent, "ben@example.org");
    let mail = wait_for_mail(&app, "ben@example.org", INVITED).await;
    assert_eq!(mail.len(), 1);
    assert!(mail[0].text.contains("Ana invited you"), "{}", mail[0].text);
    assert!(mail[0].text.contains("Ana's household"), "{}", mail[0].text);
    let token = mail[0].token(&app, JOIN);
    assert_eq!(pending(&ana.overview().await), ["ben@example.org"]);

    // Whoever opens the link sees what it offers.
    let details = Browser::new(&app)
        .ok("invitation_details", &[("token", token.as_str())])
        .await;
    assert_eq!(details["household"], "Ana's household");
    assert_eq!(details["inviter"], "Ana");
    assert_eq!(details["email"], "ben@example.org");
    assert_eq!(details["expires"], "29 November 2026 at 12:00 UTC");
    assert!(details["leaving"].is_null(), "{details}");

    // Signed in, Ben is also told that his own household, where he is alone, will be deleted.
    let ben = Browser::signed_in(&app, "ben@example.org").await;
    let ben_id = member_id(&ben.overview().await, "ben@example.org");
    let ben_household = household_of(&app, &ben_id).await;
    let details = ben
        .ok("invitation_details", &[("token", token.as_str())])
        .await;
    let leaving = details["leaving"].as_str().unwrap_or_default();
    assert!(leaving.contains("Ben's household"), "{details}");
    assert!(leaving.contains("deleted"), "{details}");
    assert!(details["blocked"].is_null(), "{details}");

    ben.ok("accept_invitation", &[("token", token.as_str())])
        .await;
    let view = ben.overview().await;
    assert_eq!(view["name"], "Ana's household");
    assert_eq!(view["is_owner"], false);
    assert_eq!(
        roles(&view),
        ["ana@example.org owner", "ben@example.org member"]
    );
    assert_eq!(member(&view, "ben@example.org")["is_you"], true);
    assert_eq!(member(&view, "ana@example.org")["is_you"], false);
    assert!(pending(&view).is_empty(), "members see no invitations");
    let view = ana.overview().await;
    assert_eq!(
        roles(&view),
        ["ana@example.org owner", "ben@example.org member"]
    );
    assert!(pending(&view).is_empty(), "accepted, so no longer waiting");

    assert_eq!(
        app.count(&format!("households WHERE id = '{ben_household}'"))
            .await,
        0
    );
    assert_eq!(app.count("households").await, 1);
    assert_eq!(
        household_of(&app, &ben_id).await,
        household_of(&app, &ana_id).await
    );
    assert_eq!(
        app.count(&format!(
            "security_events WHERE kind = 'household_invitation_sent' AND user_id = '{ana_id}'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "security_events WHERE kind = 'household_joined' AND user_id = '{ben_id}'"
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn an_invitation_works_once_and_only_for_the_address_it_was_sent_to() {
    let app = spawn().await;
    account(&app, "ana@example.org", "Ana").await;
    account(&app, "ben@example.org", "Ben").await;
    account(&app, "cy@example.org", "Cy").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    let token = invite(&app, &ana, "ben@example.org").await;

    // Cy has the link but another address: told whom it is for, and nothing changes, even unused.
    let cy = Browser::signed_in(&app, "cy@example.org").await;
    let details = cy
        .ok("invitation_details", &[("token", token.as_str())])
        .await;
    let blocked = details["blocked"].as_str().unwrap_or_default();
    assert!(blocked.contains("ben@example.org"), "{details}");
    let refused = cy
        .refused("accept_invitation", &[("token", token.as_str())], 400)
        .await;
    assert!(message(&refused).contains("ben@example.org"), "{refused}");
    assert_eq!(roles(&cy.overview().await), ["cy@example.org owner"]);

    let ben = Browser::signed_in(&app, "ben@example.org").await;
    ben.ok("accept_invitation", &[("token", token.as_str())])
        .await;

    // Used up: not again, not its page, not by anyone else.
    let again = ben
        .refused("accept_invitation", &[("token", token.as_str())], 400)
        .await;
    assert!(message(&again).contains(LINK_INVALID), "{again}");
    let page = ben
        .refused("invitation_details", &[("token", token.as_str())], 400)
        .await;
    assert!(message(&page).contains(LINK_INVALID), "{page}");
    cy.refused("accept_invitation", &[("token", token.as_str())], 400)
        .await;

    assert_eq!(
        roles(&ana.overview().await),
        ["ana@example.org owner", "ben@example.org member"]
    );
    assert_eq!(roles(&cy.overview().await), ["cy@example.org owner"]);
    assert_eq!(events(&app, "household_joined").await, 1);
}

#[tokio::test]
async fn an_invitation_link_expires_after_seven_days() {
    let app = spawn().await;
    account(&app, "ana@example.org", "Ana").await;
    account(&app, "ben@example.org", "Ben").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    let late = invite(&app, &ana, "ben@example.org").await;

    app.clock
        .advance(time::Duration::seconds(INVITATION_TTL_SECS + 1));
    // Sessions idled out meanwhile: everyone signs in afresh.
    let ben = Browser::signed_in(&app, "ben@example.org").await;
    let page = ben
        .refused("invitation_details", &[("token", late.as_str())], 400)
        .await;
    assert!(message(&page).contains(LINK_INVALID), "{page}");
    ben.refused("accept_invitation", &[("token", late.as_str())], 400)
        .await;
    assert_eq!(roles(&ben.overview().await), ["ben@example.org owner"]);
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    assert!(
        pending(&ana.overview().await).is_empty(),
        "an expired invitation is no longer listed"
    );

    // A new invitation, accepted one second before it would expire.
    let timely = invite(&app, &ana, "ben@example.org").await;
    app.clock
        .advance(time::Duration::seconds(INVITATION_TTL_SECS - 1));
    let ben = Browser::signed_in(&app, "ben@example.org").await;
    ben.ok("accept_invitation", &[("token", timely.as_str())])
        .await;
    let view = ben.overview().await;
    assert_eq!(view["name"], "Ana's household");
    assert_eq!(
        roles(&view),
        ["ana@example.org owner", "ben@example.org member"]
    );
}

#[tokio::test]
async fn a_new_invitation_replaces_the_earlier_link_and_a_withdrawn_one_stops_working() {
    let app = spawn().await;
    account(&app, "ana@example.org", "Ana").await;
    account(&app, "ben@example.org", "Ben").await;
    account(&app, "cy@example.org", "Cy").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;

    let first = invite(&app, &ana, "ben@example.org").await;
    let second = invite(&app, &ana, "ben@example.org").await;
    assert_ne!(first, second);
    assert_eq!(
        pending(&ana.overview().await),
        ["ben@example.org"],
        "one waiting invitation per address"
    );
    let for_cy = invite(&app, &ana, "cy@example.org").await;
    assert_eq!(
        pending(&ana.overview().await),
        ["ben@example.org", "cy@example.org"]
    );

    // The replaced link neither opens nor works.
    let ben = Browser::signed_in(&app, "ben@example.org").await;
    let page = ben
        .refused("invitation_details", &[("token", first.as_str())], 400)
        .await;
    assert!(message(&page).contains(LINK_INVALID), "{page}");
    ben.refused("accept_invitation", &[("token", first.as_str())], 400)
        .await;

    // Withdrawn: off the list, and the link is dead.
    let cy_invitation = invitation_id(&ana.overview().await, "cy@example.org");
    ana.ok("revoke_invitation", &[("id", cy_invitation.as_str())])
        .await;
    assert_eq!(pending(&ana.overview().await), ["ben@example.org"]);
    // Only a waiting invitation can be withdrawn.
    ana.refused("revoke_invitation", &[("id", cy_invitation.as_str())], 404)
        .await;
    let cy = Browser::signed_in(&app, "cy@example.org").await;
    cy.refused("invitation_details", &[("token", for_cy.as_str())], 400)
        .await;
    cy.refused("accept_invitation", &[("token", for_cy.as_str())], 400)
        .await;
    assert_eq!(roles(&cy.overview().await), ["cy@example.org owner"]);

    // The newer link for Ben still works.
    ben.ok("accept_invitation", &[("token", second.as_str())])
        .await;
    assert_eq!(
        roles(&ana.overview().await),
        ["ana@example.org owner", "ben@example.org member"]
    );
    assert_eq!(events(&app, "household_invitation_sent").await, 3);
    assert_eq!(events(&app, "household_invitation_revoked").await, 1);
}

#[tokio::test]
async fn only_owners_manage_the_household_and_a_member_can_leave_it() {
    let app = spawn().await;
    account(&app, "ana@example.org", "Ana").await;
    account(&app, "ben@example.org", "Ben").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    let ben = join(&app, &ana, "ben@example.org").await;
    let ana_id = member_id(&ana.overview().await, "ana@example.org");

    for (function, form) in [
        ("invite_member", vec![("email", "cy@example.org")]),
        ("remove_member", vec![("id", ana_id.as_str())]),
        ("transfer_ownership", vec![("id", ana_id.as_str())]),
        ("rename_household", vec![("name", "Ben's now")]),
    ] {
        let refused = ben.refused(function, &form, 400).await;
        assert!(
            message(&refused).starts_with("Only an owner"),
            "{function}: {refused}"
        );
    }
    let view = ana.overview().await;
    assert_eq!(view["name"], "Ana's household");
    assert_eq!(
        roles(&view),
        ["ana@example.org owner", "ben@example.org member"]
    );
    assert!(pending(&view).is_empty());
    assert_eq!(
        app.count("household_invitations").await,
        1,
        "only the one Ben accepted"
    );

    // Leaving gives Ben a household of his own, which he owns.
    ben.ok("leave_household", &[]).await;
    let view = ben.overview().await;
    assert_eq!(view["name"], "Ben's household");
    assert_eq!(view["is_owner"], true);
    assert_eq!(roles(&view), ["ben@example.org owner"]);
    assert_eq!(roles(&ana.overview().await), ["ana@example.org owner"]);
    assert_eq!(app.count("households").await, 2);
    assert_eq!(events(&app, "household_left").await, 1);
}

/// "Leave" acts on the household the page showed: a person who joined another one since (in another
/// tab) does not leave the one they just joined.
#[tokio::test]
async fn leaving_is_refused_when_the_page_showed_another_household() {
    let app = spawn().await;
    account(&app, "ana@example.org", "Ana").await;
    account(&app, "ben@example.org", "Ben").await;
    account(&app, "cy@example.org", "Cy").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    let cy = Browser::signed_in(&app, "cy@example.org").await;
    let ben = join(&app, &ana, "ben@example.org").await;
    let shown = ben.overview().await["id"].as_str().unwrap().to_owned();

    let token = invite(&app, &cy, "ben@example.org").await;
    ben.ok("accept_invitation", &[("token", token.as_str())])
        .await;
    let departures = events(&app, "household_left").await;
    let refused = ben
        .refused(
            "leave_household",
            &[("shown_household", shown.as_str())],
            400,
        )
        .await;
    assert!(
        message(&refused).contains("changed a moment ago"),
        "{refused}"
    );
    let view = ben.overview().await;
    assert_eq!(view["name"], "Cy's household", "still where he just joined");
    assert_eq!(events(&app, "household_left").await, departures);

    let now_shown = view["id"].as_str().unwrap().to_owned();
    ben.ok(
        "leave_household",
        &[("shown_household", now_shown.as_str())],
    )
    .await;
    assert_eq!(ben.overview().await["name"], "Ben's household");

    // The owners saw him come and go, in their own activity.
    let page = [("page", "1")];
    let seen_by_ana = ana.ok("security_activity", &page).await.to_string();
    assert!(
        seen_by_ana.contains("Ben joined the household"),
        "{seen_by_ana}"
    );
    assert!(
        seen_by_ana.contains("Ben left the household"),
        "{seen_by_ana}"
    );
    let seen_by_cy = cy.ok("security_activity", &page).await.to_string();
    assert!(
        seen_by_cy.contains("Ben joined the household"),
        "{seen_by_cy}"
    );
    assert!(
        seen_by_cy.contains("Ben left the household"),
        "{seen_by_cy}"
    );
}

#[tokio::test]
async fn owners_remove_members_and_hand_on_ownership_and_the_last_owner_cannot_leave() {
    let app = spawn().await;
    account(&app, "ana@example.org", "Ana").await;
    account(&app, "ben@example.org", "Ben").await;
    account(&app, "cy@example.org", "Cy").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    let ben = join(&app, &ana, "ben@example.org").await;
    let cy = join(&app, &ana, "cy@example.org").await;
    let view = ana.overview().await;
    assert_eq!(
        roles(&view),
        [
            "ana@example.org owner",
            "ben@example.org member",
            "cy@example.org member"
        ]
    );
    let ben_id = member_id(&view, "ben@example.org");
    let cy_id = member_id(&view, "cy@example.org");

    // Removed, Ben owns a household of his own again and is told by email.
    ana.ok("remove_member", &[("id", ben_id.as_str())]).await;
    let view = ben.overview().await;
    assert_eq!(view["name"], "Ben's household");
    assert_eq!(view["is_owner"], true);
    assert_eq!(roles(&view), ["ben@example.org owner"]);
    let mail = wait_for_mail(&app, "ben@example.org", REMOVED).await;
    assert_eq!(mail.len(), 1);
    assert!(mail[0].text.contains("Ana's household"), "{}", mail[0].text);
    assert_eq!(
        roles(&ana.overview().await),
        ["ana@example.org owner", "cy@example.org member"]
    );
    assert_eq!(events(&app, "household_removed").await, 1);

    // Alone in his household, Ben has nothing to leave.
    let refused = ben.refused("leave_household", &[], 400).await;
    assert!(message(&refused).contains("only member"), "{refused}");

    // Ana is the only owner while Cy remains: she must hand it on first.
    let refused = ana.refused("leave_household", &[], 400).await;
    assert!(message(&refused).contains("only owner"), "{refused}");
    assert_eq!(
        roles(&cy.overview().await),
        ["ana@example.org owner", "cy@example.org member"]
    );

    ana.ok("transfer_ownership", &[("id", cy_id.as_str())])
        .await;
    let view = ana.overview().await;
    assert_eq!(view["is_owner"], false);
    assert_eq!(
        roles(&view),
        ["ana@example.org member", "cy@example.org owner"]
    );
    assert_eq!(cy.overview().await["is_owner"], true);
    assert_eq!(events(&app, "household_ownership_transferred").await, 1);

    // Now she may go; the household stays with Cy.
    ana.ok("leave_household", &[]).await;
    assert_eq!(roles(&cy.overview().await), ["cy@example.org owner"]);
    assert_eq!(roles(&ana.overview().await), ["ana@example.org owner"]);
}

#[tokio::test]
async fn joining_is_refused_when_the_household_left_behind_changed_since_the_page_loaded() {
    let app = spawn().await;
    account(&app, "ana@example.org", "Ana").await;
    account(&app, "kim@example.org", "Kim").await;
    account(&app, "bo@example.org", "Bo").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    let kim = join(&app, &ana, "kim@example.org").await;
    let ana_household =
        household_of(&app, &member_id(&ana.overview().await, "ana@example.org")).await;
    let bo = Browser::signed_in(&app, "bo@example.org").await;
    let token = invite(&app, &bo, "kim@example.org").await;

    // Kim opens Bo's invitation: joining would only take her out of Ana's household.
    let details = kim
        .ok("invitation_details", &[("token", token.as_str())])
        .await;
    assert!(
        details["leaving"]
            .as_str()
            .unwrap_or_default()
            .contains("other members stay"),
        "{details}"
    );
    let shown = details["shown_departure"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!shown.is_empty(), "{details}");

    // Meanwhile Ana hands the household to Kim and leaves: now joining would delete it.
    let kim_id = member_id(&ana.overview().await, "kim@example.org");
    ana.ok("transfer_ownership", &[("id", kim_id.as_str())])
        .await;
    ana.ok("leave_household", &[]).await;

    let refused = kim
        .refused(
            "accept_invitation",
            &[
                ("token", token.as_str()),
                ("shown_departure", shown.as_str()),
            ],
            400,
        )
        .await;
    assert!(
        message(&refused).contains("changed since this page was opened"),
        "{refused}"
    );
    assert!(message(&refused).contains("it is deleted"), "{refused}");
    // Nothing happened: Kim is still in the household, which still exists, and the link still works.
    assert_eq!(household_of(&app, &kim_id).await, ana_household);
    assert_eq!(roles(&kim.overview().await), ["kim@example.org owner"]);
    assert_eq!(
        events(&app, "household_joined").await,
        1,
        "only Kim's first join"
    );

    // Shown what joining does now, she accepts.
    let details = kim
        .ok("invitation_details", &[("token", token.as_str())])
        .await;
    assert!(
        details["leaving"]
            .as_str()
            .unwrap_or_default()
            .contains("it is deleted"),
        "{details}"
    );
    let shown_now = details["shown_departure"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(shown_now, shown);
    kim.ok(
        "accept_invitation",
        &[
            ("token", token.as_str()),
            ("shown_departure", shown_now.as_str()),
        ],
    )
    .await;
    assert_eq!(kim.overview().await["name"], "Bo's household");
    assert_eq!(
        app.count(&format!("households WHERE id = '{ana_household}'"))
            .await,
        0
    );
}

#[tokio::test]
async fn ids_from_another_household_are_not_found_and_change_nothing_there() {
    let app = spawn().await;
    for (email, name) in [
        ("ada@example.org", "Ada"),
        ("alf@example.org", "Alf"),
        ("bea@example.org", "Bea"),
        ("bud@example.org", "Bud"),
    ] {
        account(&app, email, name).await;
    }
    let ada = Browser::signed_in(&app, "ada@example.org").await;
    let _alf = join(&app, &ada, "alf@example.org").await;
    let bea = Browser::signed_in(&app, "bea@example.org").await;
    let _bud = join(&app, &bea, "bud@example.org").await;
    invite(&app, &bea, "carl@example.org").await;
    let ada_id = member_id(&ada.overview().await, "ada@example.org");
    let a_household = household_of(&app, &ada_id).await;

    // What Ada might tamper with, read from Bea's own page.
    let before = bea.overview().await;
    let bea_id = member_id(&before, "bea@example.org");
    let bud_id = member_id(&before, "bud@example.org");
    let carl_invitation = invitation_id(&before, "carl@example.org");
    let b_household = household_of(&app, &bea_id).await;
    assert_ne!(a_household, b_household);

    for (function, id) in [
        ("remove_member", &bud_id),
        ("transfer_ownership", &bea_id),
        ("transfer_ownership", &bud_id),
        ("revoke_invitation", &carl_invitation),
    ] {
        let refused = ada.refused(function, &[("id", id.as_str())], 404).await;
        assert_eq!(refused["code"], "not_found", "{function}");
    }
    assert_eq!(bea.overview().await, before, "Bea's household is unchanged");

    // A household id sent along is not read: Ada renames her own.
    ada.ok(
        "rename_household",
        &[
            ("name", "Ada & Alf"),
            ("household_id", b_household.as_str()),
        ],
    )
    .await;
    assert_eq!(household_name(&app, &a_household).await, "Ada & Alf");
    assert_eq!(household_name(&app, &b_household).await, "Bea's household");
    assert_eq!(bea.overview().await, before, "Bea's household is unchanged");

    // Ada's page shows her household and nothing of Bea's.
    let view = ada.overview().await;
    assert_eq!(view["name"], "Ada & Alf");
    assert_eq!(
        roles(&view),
        ["ada@example.org owner", "alf@example.org member"]
    );
    let text = view.to_string();
    for email in ["bea@example.org", "bud@example.org", "carl@example.org"] {
        assert!(!text.contains(email), "{email} in {text}");
    }
}

#[tokio::test]
async fn invitations_are_rate_limited_per_account() {
    let app = spawn_with(|v| {
        v.insert("RATE_LIMIT_INVITATIONS_PER_HOUR".into(), "2".into());
    })
    .await;
    account(&app, "ana@example.org", "Ana").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;

    ana.ok("invite_member", &[("email", "kim@example.org")])
        .await;
    ana.ok("invite_member", &[("email", "lou@example.org")])
        .await;
    let refused = ana
        .refused("invite_member", &[("email", "max@example.org")], 429)
        .await;
    assert_eq!(refused["code"], "rate_limited");
    assert_eq!(app.count("household_invitations").await, 2);
    assert_eq!(
        pending(&ana.overview().await),
        ["kim@example.org", "lou@example.org"]
    );
}

/// Sending an invitation again replaces it and mails the address again: three in 24 hours per address,
/// or an owner could fill any inbox. Refused invitations (a bad address, a refusal) spend no allowance.
#[tokio::test]
async fn one_address_gets_a_few_invitations_a_day_and_refusals_spend_nothing() {
    let app = spawn_with(|v| {
        v.insert("RATE_LIMIT_INVITATIONS_PER_HOUR".into(), "5".into());
    })
    .await;
    account(&app, "ana@example.org", "Ana").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    for _ in 0..6 {
        ana.refused("invite_member", &[("email", "not-an-email")], 400)
            .await;
        ana.refused("invite_member", &[("email", "ana@example.org")], 400)
            .await;
    }
    for _ in 0..3 {
        ana.ok("invite_member", &[("email", "kim@example.org")])
            .await;
    }
    let to_kim = "outbox_emails WHERE to_address = 'kim@example.org'";
    let mailed = app.count(to_kim).await;
    // The fourth to the same address, however it is written, is refused next to the field.
    let refused = ana
        .refused("invite_member", &[("email", " Kim@Example.org")], 400)
        .await;
    assert_eq!(refused["field"], "email", "{refused}");
    assert!(
        message(&refused).contains("3 times in the last 24 hours"),
        "{refused}"
    );
    // The live invitation is still the third one, and nothing more was mailed.
    assert_eq!(app.count(to_kim).await, mailed);
    assert_eq!(pending(&ana.overview().await), ["kim@example.org"]);
    assert_eq!(
        app.count("household_invitations WHERE revoked_at IS NULL")
            .await,
        1
    );
    // Other addresses are not affected, up to the hourly allowance (the refusals spent none of it).
    ana.ok("invite_member", &[("email", "lou@example.org")])
        .await;
    ana.ok("invite_member", &[("email", "max@example.org")])
        .await;
    let refused = ana
        .refused("invite_member", &[("email", "ned@example.org")], 429)
        .await;
    assert_eq!(refused["code"], "rate_limited");
    assert_eq!(
        app.count("household_invitations WHERE email = 'ned@example.org'")
            .await,
        0
    );
    // Another owner's count is their own.
    account(&app, "eve@example.org", "Eve").await;
    let eve = Browser::signed_in(&app, "eve@example.org").await;
    eve.ok("invite_member", &[("email", "kim@example.org")])
        .await;
}

/// The invitations go with a household that is deleted (Ana, alone in hers, joins another), but not
/// her count: a new household of her own does not give her three more.
#[tokio::test]
async fn the_count_per_address_outlives_the_household_it_was_sent_from() {
    let app = spawn_with(|v| {
        v.insert("RATE_LIMIT_REGISTER_PER_HOUR".into(), "100".into());
        v.insert("RATE_LIMIT_SIGN_IN_PER_MINUTE".into(), "100".into());
    })
    .await;
    account(&app, "ana@example.org", "Ana").await;
    account(&app, "bob@example.org", "Bob").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    for _ in 0..3 {
        ana.ok("invite_member", &[("email", "kim@example.org")])
            .await;
    }
    let bob = Browser::signed_in(&app, "bob@example.org").await;
    let ana = join(&app, &bob, "ana@example.org").await;
    assert_eq!(
        app.count("household_invitations WHERE email = 'kim@example.org'")
            .await,
        0,
        "gone with her household"
    );
    ana.ok("leave_household", &[]).await;
    let refused = ana
        .refused("invite_member", &[("email", "kim@example.org")], 400)
        .await;
    assert!(
        message(&refused).contains("3 times in the last 24 hours"),
        "{refused}"
    );
}

#[tokio::test]
async fn invalid_addresses_and_names_are_refused_next_to_their_field() {
    let app = spawn().await;
    account(&app, "ana@example.org", "Ana").await;
    account(&app, "ben@example.org", "Ben").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;

    let refused = ana
        .refused("invite_member", &[("email", "not-an-email")], 400)
        .await;
    assert_eq!(refused["field"], "email", "{refused}");
    // Her own address, however it is written.
    let refused = ana
        .refused("invite_member", &[("email", "Ana@Example.org")], 400)
        .await;
    assert_eq!(refused["field"], "email", "{refused}");
    assert!(message(&refused).contains("your own address"), "{refused}");
    // Someone already in the household.
    let _ben = join(&app, &ana, "ben@example.org").await;
    let refused = ana
        .refused("invite_member", &[("email", "ben@example.org")], 400)
        .await;
    assert_eq!(refused["field"], "email", "{refused}");
    assert!(message(&refused).contains("already a member"), "{refused}");

    let too_long = "x".repeat(81);
    for name in ["", "   ", too_long.as_str()] {
        let refused = ana
            .refused("rename_household", &[("name", name)], 400)
            .await;
        assert_eq!(refused["field"], "name", "{name:?}: {refused}");
    }
    assert_eq!(ana.overview().await["name"], "Ana's household");
    assert_eq!(
        app.count("household_invitations").await,
        1,
        "only Ben's, accepted"
    );
}

#[tokio::test]
async fn signed_out_visitors_have_no_household() {
    let app = spawn().await;
    let visitor = Browser::new(&app);
    let refused = visitor.refused("household_overview", &[], 401).await;
    assert_eq!(refused["code"], "unauthenticated");
    visitor
        .refused("invite_member", &[("email", "ana@example.org")], 401)
        .await;
    visitor
        .refused("accept_invitation", &[("token", "anything")], 401)
        .await;
    visitor.refused("leave_household", &[], 401).await;
}

#[tokio::test]
async fn signing_in_from_the_invitation_page_comes_back_to_it_without_the_token_anywhere() {
    // The database store: the test reads every stored session.
    let app = spawn_with(crate::helpers::without_redis).await;
    account(&app, "ann@example.org", "Ann").await;
    account(&app, "ben@example.org", "Ben").await;
    let ann = Browser::signed_in(&app, "ann@example.org").await;
    let token = invite(&app, &ann, "ben@example.org").await;

    // Ben opens the link signed out and chooses to sign in: the invitation is kept in his session.
    let ben = Browser::new(&app);
    let response = ben
        .call("remember_invitation", &[("token", token.as_str())])
        .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let stored: Vec<String> = nestegg::server::entities::session::Entity::find()
        .all(&app.app_db)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.data)
        .collect();
    assert!(
        stored.iter().all(|data| !data.contains(&token)),
        "the raw token is in a session"
    );

    let response = ben
        .call(
            "sign_in",
            &[("email", "ben@example.org"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(response.status(), 200);
    // Back on /household/join (no token in the URL): the page still knows the invitation.
    let details = ben.ok("invitation_details", &[("token", "")]).await;
    assert_eq!(details["household"], "Ann's household");
    ben.ok("accept_invitation", &[("token", "")]).await;
    assert_eq!(ben.overview().await["name"], "Ann's household");
    // Used up: neither the link nor the kept invitation works again.
    ben.refused("accept_invitation", &[("token", "")], 400)
        .await;
    ben.refused("accept_invitation", &[("token", token.as_str())], 400)
        .await;
    // A bad link is refused before anything is kept.
    Browser::new(&app)
        .refused("remember_invitation", &[("token", "not-a-token")], 400)
        .await;
}

#[tokio::test]
async fn an_unconfirmed_account_cannot_send_invitations() {
    let app = spawn().await;
    let response = app.register("cat@example.org", "Cat", PASSWORD).await;
    assert!(response.status().is_success() || response.status().is_redirection());
    let cat = Browser::signed_in(&app, "cat@example.org").await;
    cat.refused("invite_member", &[("email", "dan@example.org")], 403)
        .await;
    assert_eq!(
        app.count("household_invitations").await,
        0,
        "nothing was stored"
    );
}

#[tokio::test]
async fn a_removed_member_is_not_shown_the_owners_address_or_browser() {
    let app = spawn().await;
    account(&app, "ann@example.org", "Ann").await;
    account(&app, "ben@example.org", "Ben").await;
    let ann = Browser::signed_in(&app, "ann@example.org").await;
    let _ben = join(&app, &ann, "ben@example.org").await;
    let view = ann.overview().await;
    ann.ok(
        "remove_member",
        &[("id", member_id(&view, "ben@example.org").as_str())],
    )
    .await;
    let ben_id = member_id(&view, "ben@example.org");
    let rows = nestegg::server::entities::security_event::Entity::find()
        .filter(nestegg::server::entities::security_event::Column::UserId.eq(ben_id))
        .filter(nestegg::server::entities::security_event::Column::Kind.eq("household_removed"))
        .all(&app.app_db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].user_agent.as_deref(),
        Some(""),
        "the owner's browser leaked"
    );
}

// ---------------------------------------------------------------------------------------------------
// Invitation emails that have not gone out yet
// ---------------------------------------------------------------------------------------------------

/// An app whose SMTP server refuses mail (451) until told otherwise, so emails wait in the outbox.
async fn spawn_with_held_mail() -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    sink.failing.store(true, Ordering::SeqCst);
    let url = sink.url();
    let app = spawn_with(move |v| {
        v.insert("SMTP_URL".into(), url);
    })
    .await;
    (app, sink)
}

/// Registers `email` and confirms the address directly: its confirmation email is held too.
async fn confirmed_account(app: &TestApp, email: &str, name: &str) {
    let response = app.register(email, name, PASSWORD).await;
    assert!(response.status().is_success(), "register {email}");
    user::Entity::update_many()
        .col_expr(user::Column::EmailVerifiedAt, 0.into())
        .filter(user::Column::Email.eq(email))
        .exec(&app.app_db)
        .await
        .unwrap();
}

/// Waits until every waiting email has had its (refused) first attempt and no worker holds one: from
/// then on nothing is sent until the clock moves on, so what happens next cannot race a send.
async fn outbox_settled(app: &TestApp) {
    for _ in 0..200 {
        if app
            .count("outbox_emails WHERE status = 'pending' AND (attempts = 0 OR locked_until IS NOT NULL)")
            .await
            == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the outbox did not settle");
}

/// Lets the SMTP server take mail again and delivers everything waiting; the invitation links
/// delivered, by recipient.
async fn release_mail(app: &TestApp, sink: &SmtpSink) -> Vec<(String, String)> {
    // An attempt still under way when the clock moves on would be refused and then scheduled from
    // the new time, out of reach of the advance below.
    outbox_settled(app).await;
    sink.failing.store(false, Ordering::SeqCst);
    // Past the retry of an email however often it was refused (at most 12 min: under load the worker
    // may have tried more than twice), within the sessions' idle time.
    app.clock.advance(time::Duration::minutes(13));
    for _ in 0..800 {
        app.state.mail_wakeup.notify_one();
        if app.count("outbox_emails WHERE status = 'pending'").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(app.count("outbox_emails WHERE status = 'pending'").await, 0);
    sink.messages
        .lock()
        .await
        .iter()
        .map(|raw| crate::helpers::parse_email(raw))
        .filter(|m| m.subject.contains(INVITED))
        .map(|m| {
            let token = m.token(app, JOIN);
            (m.to, token)
        })
        .collect()
}

#[tokio::test]
async fn a_withdrawn_or_replaced_invitation_is_not_emailed_once_it_was_withdrawn() {
    let (app, sink) = spawn_with_held_mail().await;
    confirmed_account(&app, "ana@example.org", "Ana").await;
    confirmed_account(&app, "ben@example.org", "Ben").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;

    for to in ["ben@example.org", "ben@example.org", "cy@example.org"] {
        ana.ok("invite_member", &[("email", to)]).await;
        outbox_settled(&app).await;
    }
    let for_cy = invitation_id(&ana.overview().await, "cy@example.org");
    ana.ok("revoke_invitation", &[("id", for_cy.as_str())])
        .await;
    assert_eq!(pending(&ana.overview().await), ["ben@example.org"]);

    // Ben gets one invitation, with the link that works; Cy gets none.
    let delivered = release_mail(&app, &sink).await;
    let recipients: Vec<&str> = delivered.iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(recipients, ["ben@example.org"]);
    let ben = Browser::signed_in(&app, "ben@example.org").await;
    ben.ok("accept_invitation", &[("token", delivered[0].1.as_str())])
        .await;
    assert_eq!(
        roles(&ana.overview().await),
        ["ana@example.org owner", "ben@example.org member"]
    );
    let revoked = app
        .count("security_events WHERE kind = 'household_invitation_revoked' AND details LIKE '%\"email_withdrawn\":true%'")
        .await;
    assert_eq!(revoked, 1, "the trail says the email never went out");
}

#[tokio::test]
async fn an_invitation_email_that_failed_for_good_goes_with_the_withdrawn_invitation() {
    let (app, _sink) = spawn_with_held_mail().await;
    confirmed_account(&app, "ana@example.org", "Ana").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    ana.ok("invite_member", &[("email", "cy@example.org")])
        .await;
    outbox_settled(&app).await;
    // The worker gave up on it: an operator could send it again from the failed-email list.
    sea_orm::ConnectionTrait::execute_unprepared(
        &app.app_db,
        "UPDATE outbox_emails SET status = 'failed' WHERE to_address = 'cy@example.org'",
    )
    .await
    .unwrap();
    let for_cy = invitation_id(&ana.overview().await, "cy@example.org");
    ana.ok("revoke_invitation", &[("id", for_cy.as_str())])
        .await;
    assert_eq!(
        app.count("outbox_emails WHERE to_address = 'cy@example.org'")
            .await,
        0,
        "nothing left to retry"
    );
    let revoked = app
        .count("security_events WHERE kind = 'household_invitation_revoked' AND details LIKE '%\"email_withdrawn\":true%'")
        .await;
    assert_eq!(revoked, 1);
}

#[tokio::test]
async fn invitations_whose_emails_have_not_gone_out_go_with_the_inviters_account() {
    let (app, sink) = spawn_with_held_mail().await;
    for (email, name) in [
        ("ana@example.org", "Ana"),
        ("ben@example.org", "Ben"),
        ("eve@example.org", "Eve"),
        ("gus@example.org", "Gus"),
    ] {
        confirmed_account(&app, email, name).await;
    }
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    let eve = Browser::signed_in(&app, "eve@example.org").await;

    // Ben joins Ana's household and Gus Eve's, with the links as delivered.
    ana.ok("invite_member", &[("email", "ben@example.org")])
        .await;
    eve.ok("invite_member", &[("email", "gus@example.org")])
        .await;
    let delivered = release_mail(&app, &sink).await;
    let token_for = |to: &str| {
        delivered
            .iter()
            .find(|(recipient, _)| recipient == to)
            .map(|(_, token)| token.clone())
            .expect("an invitation")
    };
    let ben = Browser::signed_in(&app, "ben@example.org").await;
    ben.ok(
        "accept_invitation",
        &[("token", token_for("ben@example.org").as_str())],
    )
    .await;
    let gus = Browser::signed_in(&app, "gus@example.org").await;
    gus.ok(
        "accept_invitation",
        &[("token", token_for("gus@example.org").as_str())],
    )
    .await;

    // Ana's invitation to Cy and Eve's to Dee wait in the outbox. Ana hands her household on to Ben
    // and deletes her account; Eve hands hers on to Gus and leaves it, and Gus, alone in it, deletes
    // his account, which takes the household (and Eve's invitation) with it.
    sink.failing.store(true, Ordering::SeqCst);
    ana.ok("invite_member", &[("email", "cy@example.org")])
        .await;
    eve.ok("invite_member", &[("email", "dee@example.org")])
        .await;
    outbox_settled(&app).await;
    let ben_id = member_id(&ana.overview().await, "ben@example.org");
    ana.ok("transfer_ownership", &[("id", ben_id.as_str())])
        .await;
    assert_eq!(pending(&ben.overview().await), ["cy@example.org"]);
    let gus_id = member_id(&eve.overview().await, "gus@example.org");
    eve.ok("transfer_ownership", &[("id", gus_id.as_str())])
        .await;
    eve.ok("leave_household", &[]).await;
    assert_eq!(pending(&gus.overview().await), ["dee@example.org"]);
    for (browser, email) in [(&ana, "ana@example.org"), (&gus, "gus@example.org")] {
        let response = browser
            .call(
                "delete_account",
                &[
                    ("password", PASSWORD),
                    ("code", ""),
                    ("confirm_email", email),
                ],
            )
            .await;
        assert_eq!(response.status(), 200, "delete {email}");
    }

    let before = sink.messages.lock().await.len();
    let delivered = release_mail(&app, &sink).await;
    assert_eq!(
        delivered.len(),
        2,
        "only those delivered before: {delivered:?}"
    );
    let subjects: Vec<String> = sink.messages.lock().await[before..]
        .iter()
        .map(|raw| crate::helpers::parse_email(raw).subject)
        .collect();
    assert!(
        subjects.iter().all(|s| !s.contains(INVITED)),
        "{subjects:?}"
    );
    // Cy's invitation is gone from the household's list too: nobody holds its link.
    assert!(pending(&ben.overview().await).is_empty());
}

#[tokio::test]
async fn joining_another_household_withdraws_the_unsent_invitations_of_the_one_that_goes() {
    let (app, sink) = spawn_with_held_mail().await;
    confirmed_account(&app, "ana@example.org", "Ana").await;
    confirmed_account(&app, "eve@example.org", "Eve").await;
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    let eve = Browser::signed_in(&app, "eve@example.org").await;
    ana.ok("invite_member", &[("email", "eve@example.org")])
        .await;
    let delivered = release_mail(&app, &sink).await;

    // Eve invites Dee; the email waits when Eve joins Ana, and her own household goes.
    sink.failing.store(true, Ordering::SeqCst);
    eve.ok("invite_member", &[("email", "dee@example.org")])
        .await;
    outbox_settled(&app).await;
    eve.ok("accept_invitation", &[("token", delivered[0].1.as_str())])
        .await;
    let before = sink.messages.lock().await.len();
    release_mail(&app, &sink).await;
    let invitations = sink.messages.lock().await[before..]
        .iter()
        .filter(|raw| crate::helpers::parse_email(raw).subject.contains(INVITED))
        .count();
    assert_eq!(invitations, 0, "Dee's invitation to a household gone");
}

#[tokio::test]
async fn a_deleted_accounts_name_and_address_leave_the_others_activity() {
    use nestegg::server::entities::security_event;

    let app = spawn().await;
    for (email, name) in [
        ("ana@example.org", "Ana"),
        ("ben@example.org", "Benedikt"),
        ("cy@example.org", "Cyrano"),
    ] {
        account(&app, email, name).await;
    }
    let ana = Browser::signed_in(&app, "ana@example.org").await;
    let ben = join(&app, &ana, "ben@example.org").await;
    let ben_id = member_id(&ana.overview().await, "ben@example.org");
    let ana_id = member_id(&ana.overview().await, "ana@example.org");
    ana.ok("transfer_ownership", &[("id", ben_id.as_str())])
        .await;
    ben.ok("transfer_ownership", &[("id", ana_id.as_str())])
        .await;
    ana.ok("remove_member", &[("id", ben_id.as_str())]).await;
    let _cy = join(&app, &ana, "cy@example.org").await;
    let cy_id = member_id(&ana.overview().await, "cy@example.org");
    ana.ok("remove_member", &[("id", cy_id.as_str())]).await;

    let trail = || async {
        security_event::Entity::find()
            .filter(security_event::Column::UserId.eq(ana_id.as_str()))
            .all(&app.app_db)
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.kind, e.details))
            .collect::<Vec<_>>()
    };
    let before = trail().await;
    assert!(before.iter().any(|e| e.contains("Benedikt")), "{before:#?}");
    assert!(
        before.iter().any(|e| e.contains("ben@example.org")),
        "{before:#?}"
    );

    // Ben moves to another address first: the one he was invited at is his no longer, but was.
    let moved = "benedikt@new.example";
    ben.ok(
        "change_email",
        &[("password", PASSWORD), ("new_email", moved)],
    )
    .await;
    let token = app.emails_to(moved, 1).await[0].token(&app, "/confirm-email-change");
    let confirmed = app.call("confirm_email_change", &[("token", &token)]).await;
    assert_eq!(confirmed.status(), 200);
    let response = ben
        .call(
            "delete_account",
            &[("password", PASSWORD), ("confirm_email", moved)],
        )
        .await;
    assert_eq!(response.status(), 200);

    // Ana still sees what happened, without Ben: not his name, address or id.
    let after = trail().await;
    assert_eq!(after.len(), before.len(), "{after:#?}");
    for mention in ["Benedikt", "ben@example.org", ben_id.as_str()] {
        assert!(
            after.iter().all(|e| !e.contains(mention)),
            "{mention} in {after:#?}"
        );
    }
    // Cyrano, still here, is still named.
    assert!(after.iter().any(|e| e.contains("Cyrano")), "{after:#?}");
    assert!(
        after.iter().any(|e| e.contains("cy@example.org")),
        "{after:#?}"
    );
    let activity = ana
        .ok("security_activity", &[("page", "1")])
        .await
        .to_string();
    for described in [
        "Removed a member from the household",
        "Handed on ownership of the household",
        "Became an owner of the household",
        "Invited someone to the household",
        "Removed Cyrano from the household",
        "Someone joined the household",
        "Cyrano joined the household",
    ] {
        assert!(
            activity.contains(described),
            "{described} not in {activity}"
        );
    }
}

#[tokio::test]
async fn a_household_named_after_a_deleted_account_leaves_the_others_activity_under_that_name() {
    use nestegg::server::entities::security_event;

    let app = spawn().await;
    for (email, name) in [
        ("ana@example.org", "Ana"),
        ("ben@example.org", "Benedikt"),
        ("cy@example.org", "Cyrano"),
        ("bo@example.org", "Benedikt"),
        ("dee@example.org", "Dee"),
        ("fay@example.org", "Fay"),
        ("gil@example.org", "Fay"),
        ("hal@example.org", "Hal"),
    ] {
        account(&app, email, name).await;
    }
    async fn trail(app: &TestApp, email: &str) -> Vec<String> {
        let id = user::Entity::find_by_typed_email(email)
            .one(&app.app_db)
            .await
            .unwrap()
            .expect("the account")
            .id;
        security_event::Entity::find()
            .filter(security_event::Column::UserId.eq(id))
            .all(&app.app_db)
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.kind, e.details))
            .collect()
    }
    async fn deletes_account(browser: &Browser, email: &str) {
        let response = browser
            .call(
                "delete_account",
                &[("password", PASSWORD), ("confirm_email", email)],
            )
            .await;
        assert_eq!(response.status(), 200, "delete {email}");
    }
    async fn activity(browser: &Browser) -> String {
        browser
            .ok("security_activity", &[("page", "1")])
            .await
            .to_string()
    }

    // Ana stays in Benedikt's household and becomes its owner; Cyrano joins it and leaves.
    let ben = Browser::signed_in(&app, "ben@example.org").await;
    let ana = join(&app, &ben, "ana@example.org").await;
    let cy = join(&app, &ben, "cy@example.org").await;
    cy.ok("leave_household", &[]).await;
    let ana_id = member_id(&ben.overview().await, "ana@example.org");
    ben.ok("transfer_ownership", &[("id", ana_id.as_str())])
        .await;
    for email in ["ana@example.org", "cy@example.org"] {
        let before = trail(&app, email).await;
        assert!(
            before.iter().any(|e| e.contains("Benedikt's household")),
            "{before:#?}"
        );
    }
    // Another Benedikt's household, with Dee in it: nothing to do with the one who goes.
    let bo = Browser::signed_in(&app, "bo@example.org").await;
    let _dee = join(&app, &bo, "dee@example.org").await;
    deletes_account(&ben, "ben@example.org").await;
    let (ana_after, cy_after) = (
        trail(&app, "ana@example.org").await,
        trail(&app, "cy@example.org").await,
    );
    for after in [&ana_after, &cy_after] {
        assert!(after.iter().all(|e| !e.contains("Benedikt")), "{after:#?}");
    }
    assert!(
        ana_after.iter().any(|e| e.starts_with("household_joined")),
        "the event stays: {ana_after:#?}"
    );
    assert!(activity(&ana).await.contains("Joined a household"));
    assert!(activity(&cy).await.contains("Left a household"));
    assert_eq!(ana.overview().await["name"], "Our household");
    let dee_after = trail(&app, "dee@example.org").await;
    assert!(
        dee_after
            .iter()
            .any(|e| e.starts_with("household_joined") && e.contains("Benedikt's household")),
        "{dee_after:#?}"
    );

    // Gil is called Fay too: the household Fay leaves to him keeps its name, in Hal's trail as well.
    let fay = Browser::signed_in(&app, "fay@example.org").await;
    let gil = join(&app, &fay, "gil@example.org").await;
    let hal = join(&app, &fay, "hal@example.org").await;
    hal.ok("leave_household", &[]).await;
    let gil_id = member_id(&fay.overview().await, "gil@example.org");
    fay.ok("transfer_ownership", &[("id", gil_id.as_str())])
        .await;
    deletes_account(&fay, "fay@example.org").await;
    assert_eq!(gil.overview().await["name"], "Fay's household");
    let hal_after = trail(&app, "hal@example.org").await;
    assert!(
        hal_after
            .iter()
            .any(|e| e.starts_with("household_left") && e.contains("Fay's household")),
        "{hal_after:#?}"
    );
}
