//! Privacy: the consent ledger, every version of the terms and privacy policy accepted.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::account::consent_ledger;
use crate::pages::settings::{LoadError, SettingsLayout, SignedIn};
use crate::routes;

#[component]
pub fn SettingsPrivacyPage() -> impl IntoView {
    view! {
        <Title text="Privacy — Nest Egg" />
        <SettingsLayout title="Privacy">
            <SignedIn next=routes::SETTINGS_PRIVACY render=move |_| { view! { <ConsentLedger /> }.into_any() } />
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
