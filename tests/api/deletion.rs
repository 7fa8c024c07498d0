//! Deleting an account: what goes (counted in every table), what stays, and when it is refused.

use nestegg::server::entities::{household_member, user};
use nestegg::server::services::totp::TotpSecret;
use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _,
};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const PASSWORD: &str = "glacier Minnow 47 paperclip orbit";

/// Every table holding account data, with how to count one user's rows in it.
const PER_USER: &[(&str, &str)] = &[
    ("users", "id = '{id}'"),
    ("household_members", "user_id = '{id}'"),
    ("consents", "user_id = '{id}'"),
    ("account_tokens", "user_id = '{id}'"),
    ("security_events", "user_id = '{id}'"),
    ("sessions", "user_id = '{id}'"),
    ("totp_credentials", "user_id = '{id}'"),
    ("backup_codes", "user_id = '{id}'"),
    (
        "outbox_emails",
        "(user_id = '{id}' OR to_address = '{email}') AND kind <> 'account_deleted'",
    ),
];

async fn user_id(app: &TestApp, email: &str) -> String {
    user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(&app.app_db)
        .await
        .unwrap()
        .expect("registered")
        .id
}

async fn household_of(app: &TestApp, id: &str) -> String {
    household_member::Entity::find()
        .filter(household_member::Column::UserId.eq(id))
        .one(&app.app_db)
        .await
        .unwrap()
        .expect("a household")
        .household_id
}

async fn rows_of(app: &TestApp, id: &str, email: &str) -> Vec<(&'static str, i64)> {
    let mut counts = vec![];
    for (table, filter) in PER_USER {
        let filter = filter.replace("{id}", id).replace("{email}", email);
        counts.push((*table, app.count(&format!("{table} WHERE {filter}")).await));
    }
    counts
}

/// Moves `id` into `household` (a person belongs to one household; the one of their own, now empty,
/// goes), as accepting an invitation does.
async fn join(app: &TestApp, household: &str, id: &str, role: &str) {
    let own = household_of(app, id).await;
    household_member::Entity::delete_many()
        .filter(household_member::Column::UserId.eq(id))
        .exec(&app.app_db)
        .await
        .unwrap();
    nestegg::server::entities::household::Entity::delete_by_id(own)
        .exec(&app.app_db)
        .await
        .unwrap();
    household_member::ActiveModel {
        household_id: Set(household.to_owned()),
        user_id: Set(id.to_owned()),
        role: Set(role.to_owned()),
        joined_at: Set(0),
    }
    .insert(&app.app_db)
    .await
    .unwrap();
}

async fn delete(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    app.call("delete_account", form).await
}

async fn body(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn a_sole_member_takes_their_household_and_every_row_with_them() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_MFA_PER_MINUTE".into(), "1000".into());
    })
    .await;
    app.register_verified("ana@example.org", PASSWORD).await;
    app.register_verified("bob@example.org", PASSWORD).await;
    let ana = user_id(&app, "ana@example.org").await;
    let bob = user_id(&app, "bob@example.org").await;
    let ana_household = household_of(&app, &ana).await;
    app.sign_in("ana@example.org", PASSWORD).await;
    let bob_before = rows_of(&app, &bob, "bob@example.org").await;
    assert!(
        rows_of(&app, &ana, "ana@example.org")
            .await
            .iter()
            .any(|(_, n)| *n > 0)
    );

    // Refused, with the reason next to the field, and nothing deleted.
    let wrong_email = delete(
        &app,
        &[
            ("password", PASSWORD),
            ("confirm_email", "someone@example.org"),
        ],
    )
    .await;
    assert_eq!(wrong_email.status(), 400);
    assert_eq!(body(wrong_email).await["field"], "confirm_email");
    let wrong_password = delete(
        &app,
        &[
            ("password", "not my password"),
            ("confirm_email", "ana@example.org"),
        ],
    )
    .await;
    assert_eq!(wrong_password.status(), 400);
    assert_eq!(body(wrong_password).await["field"], "password");
    assert_eq!(app.count(&format!("users WHERE id = '{ana}'")).await, 1);

    let done = app
        .post_same_origin("/api/delete_account")
        .header("user-agent", "AnasBrowser/1.0")
        .form(&[("password", PASSWORD), ("confirm_email", "Ana@Example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    assert_eq!(
        done.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/goodbye")
    );

    for (table, count) in rows_of(&app, &ana, "ana@example.org").await {
        assert_eq!(count, 0, "{table} still holds Ana's rows");
    }
    assert_eq!(
        app.count(&format!("households WHERE id = '{ana_household}'"))
            .await,
        0
    );
    assert_eq!(
        rows_of(&app, &bob, "bob@example.org").await,
        bob_before,
        "Bob untouched"
    );

    // A pseudonymous trace stays; a receipt went out; the browser is signed out.
    assert_eq!(
        app.count("security_events WHERE kind = 'account_deleted' AND user_id IS NULL")
            .await,
        1
    );
    assert_eq!(
        app.count("security_events WHERE kind = 'account_deleted' AND user_agent = ''")
            .await,
        1,
        "recorded without the request's browser (AnasBrowser/1.0)"
    );
    let trail = app
        .count(&format!("security_events WHERE details LIKE '%{ana}%'"))
        .await;
    assert_eq!(trail, 0, "the trail does not name the deleted account");
    // The confirmation link, then the receipt.
    let mail = app.emails_to("ana@example.org", 2).await;
    assert!(
        mail.iter()
            .any(|m| m.subject == "Your Nest Egg account was deleted")
    );
    let me = app.call("current_user", &[]).await.text().await.unwrap();
    assert_eq!(me, "null");
    let again = app.sign_in("ana@example.org", PASSWORD).await;
    assert_eq!(again.status(), 400);
}

/// An address passes on: the mail an account got at the address it had before a change is still its
/// own and goes with it, while what went to that address since (its new holder's) stays.
#[tokio::test]
async fn mail_to_an_earlier_address_goes_too_and_its_new_holders_stays() {
    let app = spawn_app().await;
    app.register_verified("cai@example.org", PASSWORD).await;
    let cai = user_id(&app, "cai@example.org").await;
    assert_eq!(app.sign_in("cai@example.org", PASSWORD).await.status(), 200);
    let moved = "moved.cai@elsewhere.example";
    let change = app
        .call(
            "change_email",
            &[("password", PASSWORD), ("new_email", moved)],
        )
        .await;
    assert_eq!(change.status(), 200);
    let token = app.emails_to(moved, 1).await[0].token(&app, "/confirm-email-change");
    let confirm = app.call("confirm_email_change", &[("token", &token)]).await;
    assert_eq!(confirm.status(), 200);
    assert_eq!(app.call("sign_out", &[]).await.status(), 200);
    let earlier =
        format!("outbox_emails WHERE to_address = 'cai@example.org' AND user_id = '{cai}'");
    assert!(
        app.count(&earlier).await >= 2,
        "her confirmation and the notice of the change"
    );

    // The freed address is taken by someone else, once it can no longer be put back on her account.
    app.clock.advance(time::Duration::days(8));
    let registered = app
        .register("cai@example.org", "Cy Newcomer", PASSWORD)
        .await;
    assert!(registered.status().is_success(), "{}", registered.status());
    let newcomer = user_id(&app, "cai@example.org").await;
    let newcomers = format!("outbox_emails WHERE user_id = '{newcomer}'");
    assert_eq!(app.count(&newcomers).await, 1, "his confirmation");

    assert_eq!(app.sign_in(moved, PASSWORD).await.status(), 200);
    let done = delete(&app, &[("password", PASSWORD), ("confirm_email", moved)]).await;
    assert_eq!(done.status(), 200);
    assert_eq!(
        app.count(&format!("outbox_emails WHERE user_id = '{cai}'"))
            .await,
        0
    );
    assert_eq!(
        app.count("outbox_emails WHERE to_address = 'cai@example.org'")
            .await,
        1,
        "only the newcomer's mail is left at the address she had"
    );
    assert_eq!(app.count(&newcomers).await, 1);
}

#[tokio::test]
async fn a_member_leaves_a_shared_household_which_stays_with_the_others() {
    let app = spawn_app().await;
    app.register_verified("cy@example.org", PASSWORD).await;
    app.register_verified("dee@example.org", PASSWORD).await;
    let cy = user_id(&app, "cy@example.org").await;
    let dee = user_id(&app, "dee@example.org").await;
    let shared = household_of(&app, &cy).await;
    join(&app, &shared, &dee, "member").await;

    app.sign_in("dee@example.org", PASSWORD).await;
    let done = delete(
        &app,
        &[("password", PASSWORD), ("confirm_email", "dee@example.org")],
    )
    .await;
    assert_eq!(done.status(), 200);
    assert_eq!(
        app.count(&format!("households WHERE id = '{shared}'"))
            .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "household_members WHERE household_id = '{shared}'"
        ))
        .await,
        1,
        "only Cy is left"
    );
    assert_eq!(app.count(&format!("users WHERE id = '{dee}'")).await, 0);
    assert_eq!(app.count("households").await, 1);
    // Named after Cy, who is called "Test Person" as Dee was: the name stays.
    assert_eq!(
        app.count(&format!(
            "households WHERE id = '{shared}' AND name = 'Test Person''s household'"
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn invitations_that_are_over_go_with_the_address_and_waiting_ones_stay_their_senders() {
    use nestegg::server::entities::household_invitation;
    let app = spawn_app().await;
    app.register_verified("cy@example.org", PASSWORD).await;
    let registered = nestegg::server::clock::Clock::now(&app.clock).unix_timestamp();
    app.clock.advance(time::Duration::minutes(1));
    app.register_verified("dee@example.org", PASSWORD).await;
    let joined = registered + 60;
    // Dee moves to a new address three minutes later; another person may take her old one after.
    app.clock.advance(time::Duration::minutes(3));
    app.sign_in("dee@example.org", PASSWORD).await;
    let asked = app
        .call(
            "change_email",
            &[("password", PASSWORD), ("new_email", "dee@new.example")],
        )
        .await;
    assert_eq!(asked.status(), 200);
    let token = app.emails_to("dee@new.example", 1).await[0].token(&app, "/confirm-email-change");
    let confirmed = app.call("confirm_email_change", &[("token", &token)]).await;
    assert_eq!(confirmed.status(), 200);
    let moved = joined + 180;
    app.clock.advance(time::Duration::minutes(1));
    let now = moved + 60;
    let cy = user_id(&app, "cy@example.org").await;
    let household = household_of(&app, &cy).await;
    // (address, sent at, accepted at, withdrawn at, expires in seconds)
    let invitations = [
        // Hers: accepted while she held the address (sent before she registered, as when one joins
        // by invitation), and ones never accepted that were sent to her addresses while she held
        // them.
        ("dee@example.org", registered, Some(joined), None, 3600),
        ("dee@example.org", moved - 1, None, Some(now), 3600),
        ("dee@new.example", moved, None, None, -60),
        // Waiting: Cy's.
        ("dee@new.example", now, None, None, 3600),
        // Someone else's: accepted after she left the address (though sent while she held it),
        // sent before she held it or after she left it and never accepted, another address.
        ("dee@example.org", moved - 1, Some(now), None, 3600),
        ("dee@example.org", registered, None, Some(now), 3600),
        ("dee@example.org", moved + 1, None, None, -60),
        ("eve@example.org", joined, Some(now), None, 3600),
    ];
    for (i, (email, sent_at, accepted_at, revoked_at, expires_in)) in
        invitations.into_iter().enumerate()
    {
        household_invitation::ActiveModel {
            id: Set(format!("invitation-{i}")),
            household_id: Set(household.clone()),
            email: Set(email.to_owned()),
            invited_by: Set(Some(cy.clone())),
            token_hash: Set(format!("hash-{i}")),
            created_at: Set(sent_at),
            expires_at: Set(now + expires_in),
            accepted_at: Set(accepted_at),
            revoked_at: Set(revoked_at),
            message_id: Set(None),
        }
        .insert(&app.app_db)
        .await
        .unwrap();
    }
    let done = delete(
        &app,
        &[("password", PASSWORD), ("confirm_email", "dee@new.example")],
    )
    .await;
    assert_eq!(done.status(), 200);
    let mut left: Vec<String> = household_invitation::Entity::find()
        .all(&app.app_db)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "invitation-3",
            "invitation-4",
            "invitation-5",
            "invitation-6",
            "invitation-7"
        ],
        "the waiting one (Cy's) and other people's stay"
    );
}

#[tokio::test]
async fn the_last_owner_of_a_shared_household_is_asked_to_hand_it_on_first() {
    let app = spawn_app().await;
    app.register_verified("eve@example.org", PASSWORD).await;
    app.register_verified("fin@example.org", PASSWORD).await;
    let eve = user_id(&app, "eve@example.org").await;
    let fin = user_id(&app, "fin@example.org").await;
    let shared = household_of(&app, &eve).await;
    join(&app, &shared, &fin, "member").await;

    app.sign_in("eve@example.org", PASSWORD).await;
    let refused = delete(
        &app,
        &[("password", PASSWORD), ("confirm_email", "eve@example.org")],
    )
    .await;
    assert_eq!(refused.status(), 400);
    let message = body(refused).await["message"].as_str().unwrap().to_owned();
    assert!(message.contains("only owner"), "{message}");
    assert!(message.contains("Make one of them an owner"), "{message}");
    assert_eq!(app.count(&format!("users WHERE id = '{eve}'")).await, 1);
    assert_eq!(
        app.count(&format!(
            "household_members WHERE household_id = '{shared}'"
        ))
        .await,
        2
    );

    // With a second owner, Eve may go; the household stays with Fin.
    user::Entity::update_many()
        .col_expr(user::Column::DisplayName, "Fin".into())
        .filter(user::Column::Id.eq(&fin))
        .exec(&app.app_db)
        .await
        .unwrap();
    household_member::Entity::update_many()
        .col_expr(household_member::Column::Role, "owner".into())
        .filter(household_member::Column::UserId.eq(&fin))
        .filter(household_member::Column::HouseholdId.eq(&shared))
        .exec(&app.app_db)
        .await
        .unwrap();
    let done = delete(
        &app,
        &[("password", PASSWORD), ("confirm_email", "eve@example.org")],
    )
    .await;
    assert_eq!(done.status(), 200);
    assert_eq!(
        app.count(&format!("households WHERE id = '{shared}'"))
            .await,
        1
    );
    // It was named after Eve ("Test Person's household"), and Fin is called something else: the name
    // goes with her.
    let named = |name: &str| format!("households WHERE id = '{shared}' AND name = '{name}'");
    assert_eq!(app.count(&named("Our household")).await, 1);
}

#[tokio::test]
async fn with_two_factor_on_deleting_also_needs_a_code() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_MFA_PER_MINUTE".into(), "1000".into());
    })
    .await;
    app.register_verified("gia@example.org", PASSWORD).await;
    app.sign_in("gia@example.org", PASSWORD).await;
    let (secret, _) = turn_on_two_factor(&app).await;
    let now = || nestegg::server::clock::Clock::now(&app.clock).unix_timestamp() as u64;
    app.clock.advance(time::Duration::seconds(30));

    let refused = delete(
        &app,
        &[("password", PASSWORD), ("confirm_email", "gia@example.org")],
    )
    .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(body(refused).await["field"], "code");
    let code = secret.code_at(now()).unwrap();
    let done = delete(
        &app,
        &[
            ("password", PASSWORD),
            ("code", &code),
            ("confirm_email", "gia@example.org"),
        ],
    )
    .await;
    assert_eq!(done.status(), 200);
    assert_eq!(app.count("totp_credentials").await, 0);
    assert_eq!(app.count("backup_codes").await, 0);
    assert_eq!(app.count("users").await, 0);
}

/// Turns on two-factor authentication for the signed-in account (just signed in: in sudo mode);
/// returns its secret and its backup codes.
async fn turn_on_two_factor(app: &TestApp) -> (TotpSecret, Vec<String>) {
    assert_eq!(app.call("start_two_factor_setup", &[]).await.status(), 200);
    let status = body(app.call("two_factor_status", &[]).await).await;
    let key = status["setup"]["manual_key"]
        .as_str()
        .unwrap()
        .replace(' ', "");
    let secret = TotpSecret::from_base32(&key).unwrap();
    let now = nestegg::server::clock::Clock::now(&app.clock).unix_timestamp() as u64;
    let enabled = app
        .call(
            "enable_two_factor",
            &[("code", &secret.code_at(now).unwrap())],
        )
        .await;
    assert_eq!(enabled.status(), 200);
    let codes = body(enabled).await["codes"]
        .as_array()
        .expect("backup codes")
        .iter()
        .map(|c| c.as_str().expect("a code").to_owned())
        .collect();
    (secret, codes)
}

/// A refused deletion has no effects: the last owner who confirms with a backup code keeps the code
/// (and is not told it was used), since the refusal comes before the code is checked.
#[tokio::test]
async fn a_refused_deletion_spends_no_backup_code() {
    let app = spawn_app_with(|v| {
        v.insert("RATE_LIMIT_MFA_PER_MINUTE".into(), "1000".into());
    })
    .await;
    app.register_verified("hal@example.org", PASSWORD).await;
    app.register_verified("ivy@example.org", PASSWORD).await;
    let hal = user_id(&app, "hal@example.org").await;
    let ivy = user_id(&app, "ivy@example.org").await;
    join(&app, &household_of(&app, &hal).await, &ivy, "member").await;

    app.sign_in("hal@example.org", PASSWORD).await;
    let (_, backup_codes) = turn_on_two_factor(&app).await;
    let backup_code = backup_codes[0].clone();
    let remaining = || async {
        body(app.call("two_factor_status", &[]).await).await["backup_codes_remaining"].clone()
    };
    assert_eq!(remaining().await, 10);

    let refused = delete(
        &app,
        &[
            ("password", PASSWORD),
            ("code", &backup_code),
            ("confirm_email", "hal@example.org"),
        ],
    )
    .await;
    assert_eq!(refused.status(), 400);
    let message = body(refused).await["message"].as_str().unwrap().to_owned();
    assert!(message.contains("only owner"), "{message}");
    assert_eq!(remaining().await, 10, "the backup code is still unused");
    assert_eq!(
        app.count("outbox_emails WHERE kind = 'backup_code_used'")
            .await,
        0
    );
    assert_eq!(app.count(&format!("users WHERE id = '{hal}'")).await, 1);
}
