//! Privacy: the consent ledger (every version of the terms and privacy policy accepted) and the
//! data export.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::account::{consent_ledger, export_status};
use crate::api::auth::ConfirmPassword;
use crate::pages::settings::{LoadError, ReauthForm, SettingsLayout, SignedIn};
use crate::routes;

#[component]
pub fn SettingsPrivacyPage() -> impl IntoView {
    view! {
        <Title text="Privacy — Nest Egg" />
        <SettingsLayout title="Privacy">
            <SignedIn next=routes::SETTINGS_PRIVACY render=move |_| { view! { <DataExport /> <ConsentLedger /> }.into_any() } />
        </SettingsLayout>
    }
}

#[component]
fn ConsentLedger() -> impl IntoView {
    let ledger = Resource::new(|| (), |_| consent_ledger());
    view! {
        <section class="settings-section">
            <h2>"What you agreed to"</h2>
            <p>
                "Each version of our " <a href=routes::TERMS>"terms of service"</a> " and "
                <a href=routes::PRIVACY>"privacy policy"</a> " you accepted, with when and from where."
            </p>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match ledger.await {
                        Ok(entries) => view! {
                            <table class="consent-ledger">
                                <thead>
                                    <tr><th scope="col">"Document"</th><th scope="col">"Version"</th><th scope="col">"Accepted"</th><th scope="col">"From"</th></tr>
                                </thead>
                                <tbody>
                                    {entries
                                        .into_iter()
                                        .map(|c| view! {
                                            <tr>
                                                <td>{c.document}</td>
                                                <td>{c.version}</td>
                                                <td>{c.accepted}</td>
                                                <td>{c.ip}</td>
                                            </tr>
                                        })
                                        .collect_view()}
                                </tbody>
                            </table>
                        }
                            .into_any(),
                        Err(error) => view! { <LoadError error=error /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// Download everything as a ZIP. The download is a plain form post (the browser saves the answer as a
/// file); it needs the password within the sudo window, so the password form comes first when that
/// has lapsed.
#[component]
fn DataExport() -> impl IntoView {
    let reauth = ServerAction::<ConfirmPassword>::new();
    let status = Resource::new(move || reauth.version().get(), |_| export_status());
    let query = use_query_map();
    // Set by the download when it was refused (see `api::export`).
    let refused = Memo::new(move |_| {
        query.with(|q| match q.get("export").as_deref() {
            Some("rate_limited") => Some(match q.get("retry_after").and_then(|s| s.parse::<u64>().ok()) {
                Some(secs) => format!(
                    "You have downloaded your data as often as an hour allows. Try again in {} minutes.",
                    secs.div_ceil(60).max(1)
                ),
                None => "You have downloaded your data as often as an hour allows. Try again later.".to_owned(),
            }),
            Some("reauth") => Some("For your security, enter your password again first.".to_owned()),
            Some(_) => Some("The export is not available right now. Please try again in a moment.".to_owned()),
            None => None,
        })
    });
    view! {
        <section class="settings-section data-export" id="export">
            <h2>"Download your data"</h2>
            <p>
                "A ZIP file with everything Nest Egg holds about you: your profile, household and its members, "
                "consents, sessions, security activity and the emails we sent you, one JSON file each, with a "
                "README.txt explaining them. Passwords, two-factor secrets and other secrets are never included."
            </p>
            {move || refused.get().map(|message| view! {
                <div class="form-error export-refused" role="alert"><p>{message}</p></div>
            })}
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match status.await {
                        Ok(view) if view.reauth_needed => view! {
                            <ReauthForm action=reauth purpose="download your data" with_code=view.with_code />
                        }
                            .into_any(),
                        Ok(_) => view! {
                            <form method="post" action=routes::DATA_EXPORT class="export-form">
                                <button type="submit" class="button">"Download my data (ZIP)"</button>
                            </form>
                        }
                            .into_any(),
                        Err(error) => view! { <LoadError error=error /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}
