//! Security activity: what happened to the account, newest first, a page at a time.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::account::security_activity;
use crate::pages::settings::{LoadError, SettingsLayout, SignedIn};
use crate::routes;

#[component]
pub fn SettingsActivityPage() -> impl IntoView {
    view! {
        <Title text="Security activity — Nest Egg" />
        <SettingsLayout title="Security activity">
            <SignedIn next=routes::SETTINGS_ACTIVITY render=move |_| { view! { <ActivityList /> }.into_any() } />
        </SettingsLayout>
    }
}

#[component]
fn ActivityList() -> impl IntoView {
    let query = use_query_map();
    let page = Memo::new(move |_| {
        query
            .with(|q| q.get("page"))
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(1)
            .max(1)
    });
    let activity = Resource::new(move || page.get(), security_activity);

    view! {
        <section class="settings-section">
            <p>
                "Sign-ins, changes to your password, email and two-factor authentication, and other security events on your account. "
                "If something here wasn't you, change your password and sign out your other sessions."
            </p>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match activity.await {
                        Ok(view) => {
                            let current = view.page;
                            view! {
                                <ol class="activity-list">
                                    {view
                                        .entries
                                        .into_iter()
                                        .map(|entry| view! {
                                            <li class="activity-item">
                                                <p class="activity-what">{entry.what}</p>
                                                <p class="activity-meta">{format!("{} · {}", entry.when, entry.from)}</p>
                                            </li>
                                        })
                                        .collect_view()}
                                </ol>
                                <nav class="pager" aria-label="Activity pages">
                                    {(current > 1).then(|| view! {
                                        <a class="button button-small button-secondary" href=format!("{}?page={}", routes::SETTINGS_ACTIVITY, current - 1)>
                                            "Newer"
                                        </a>
                                    })}
                                    {view.has_older.then(|| view! {
                                        <a class="button button-small button-secondary" href=format!("{}?page={}", routes::SETTINGS_ACTIVITY, current + 1)>
                                            "Older"
                                        </a>
                                    })}
                                </nav>
                            }
                                .into_any()
                        }
                        Err(error) => view! { <LoadError error=error /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}
