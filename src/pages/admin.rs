//! The operators' security status page (`/admin/security-status`): every check as pass/fail with its
//! fix, the background jobs, failed emails (with "retry"), and the deployment's security events with
//! filters. Anyone who is not an operator gets the ordinary 404 page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::admin::{RetryEmail, admin_security_events, failed_emails, security_status};
use crate::components::auth_forms::{
    FormError, FormSuccess, SubmitButton, action_error, action_succeeded, form_error,
};
use crate::error::AppError;
use crate::pages::not_found::NotFoundPage;
use crate::pages::settings::LoadError;
use crate::routes;
use crate::types::{JobStatusView, SecurityStatusView, StatusCheckView};

#[component]
pub fn SecurityStatusPage() -> impl IntoView {
    // Blocking, so a 404 for non-operators is the response's status, not just its text.
    let status = Resource::new_blocking(|| (), |_| security_status());
    view! {
        <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match status.await {
                    Ok(view) => view! { <Status view=view /> }.into_any(),
                    Err(AppError::NotFound) => view! { <NotFoundPage /> }.into_any(),
                    Err(error) => view! {
                        <div class="container"><LoadError error=error /></div>
                    }
                        .into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Status(view: SecurityStatusView) -> impl IntoView {
    let failing = view.checks.iter().filter(|c| !c.ok).count();
    let any_failing = failing > 0;
    view! {
        <Title text="Security status — Nest Egg" />
        <div class="container admin-page">
            <h1>"Security status"</h1>
            <p class="status-summary" class:status-bad=any_failing>
                {if failing == 0 {
                    "Every check passes.".to_owned()
                } else {
                    format!("{failing} of {} checks need attention.", view.checks.len())
                }}
            </p>
            <section class="settings-section">
                <h2>"Checks"</h2>
                <ul class="status-checks">
                    {view.checks.into_iter().map(|c| view! { <CheckItem check=c /> }).collect_view()}
                </ul>
            </section>
            <section class="settings-section">
                <h2>"Background jobs"</h2>
                <JobTable jobs=view.jobs />
            </section>
            <FailedEmails />
            <Events kinds=view.event_kinds />
        </div>
    }
}

#[component]
fn CheckItem(check: StatusCheckView) -> impl IntoView {
    let ok = check.ok;
    let name = check.name.clone();
    view! {
        <li class="status-check" class:status-ok=ok class:status-fail=!ok data-check=name>
            <span class="status-icon" aria-hidden="true">{if ok { "✓" } else { "✗" }}</span>
            <div>
                <p class="status-name">
                    {check.name}
                    <span class="visually-hidden">{if ok { " (passing)" } else { " (failing)" }}</span>
                </p>
                <p class="status-detail">{check.detail}</p>
                {check.fix.map(|fix| view! { <p class="status-fix">{format!("Fix: {fix}")}</p> })}
            </div>
        </li>
    }
}

#[component]
fn JobTable(jobs: Vec<JobStatusView>) -> impl IntoView {
    view! {
        <table class="job-table">
            <thead>
                <tr>
                    <th scope="col">"Job"</th>
                    <th scope="col">"Last run"</th>
                    <th scope="col">"Outcome"</th>
                    <th scope="col">"Next run"</th>
                </tr>
            </thead>
            <tbody>
                {jobs
                    .into_iter()
                    .map(|job| {
                        let failing = job.outcome == "error" || job.outcome == "timeout";
                        let name = job.name.clone();
                        view! {
                            <tr data-job=name class:status-fail=failing>
                                <td>{job.name}</td>
                                <td>{job.last_run.unwrap_or_else(|| "—".to_owned())}</td>
                                <td>
                                    {job.outcome}
                                    {(job.failures > 0).then(|| format!(" ({} in a row)", job.failures))}
                                    {job.summary.map(|s| view! { <span class="hint job-summary">{s}</span> })}
                                </td>
                                <td>{job.next_run}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn FailedEmails() -> impl IntoView {
    let retry = ServerAction::<RetryEmail>::new();
    let emails = Resource::new(move || retry.version().get(), |_| failed_emails());
    let error = action_error(retry);
    let retried = action_succeeded(retry);
    view! {
        <section class="settings-section failed-emails">
            <h2>"Failed emails"</h2>
            {move || retried.get().then(|| view! { <FormSuccess message="The email is queued again." /> })}
            <FormError message=form_error(error, &[]) />
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match emails.await {
                        Ok(list) if list.is_empty() => view! { <p class="hint">"None."</p> }.into_any(),
                        Ok(list) => view! {
                            <ul class="failed-email-list">
                                {list
                                    .into_iter()
                                    .map(|e| view! {
                                        <li class="failed-email" data-kind=e.kind.clone()>
                                            <div>
                                                <p class="status-name">{format!("{} → {}", e.subject, e.to)}</p>
                                                <p class="hint">{format!("Queued {} · {} attempts · {}", e.queued, e.attempts, e.error)}</p>
                                            </div>
                                            <ActionForm action=retry attr:class="retry-email-form">
                                                <input type="hidden" name="id" value=e.id />
                                                <SubmitButton
                                                    label="Retry"
                                                    pending=retry.pending()
                                                    button_class="button button-small button-secondary"
                                                />
                                            </ActionForm>
                                        </li>
                                    })
                                    .collect_view()}
                            </ul>
                        }
                            .into_any(),
                        Err(error) => view! { <LoadError error=error /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// The deployment's security events; the filter is a plain GET form, so it works without JavaScript
/// and every filtered view has its own address.
#[component]
fn Events(kinds: Vec<String>) -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| {
        query.with(|q| {
            (
                q.get("kind").unwrap_or_default(),
                q.get("email").unwrap_or_default(),
                q.get("page")
                    .and_then(|p| p.parse::<u64>().ok())
                    .unwrap_or(1),
            )
        })
    });
    let events = Resource::new(
        move || filter.get(),
        |(kind, email, page)| admin_security_events(kind, email, page),
    );
    let (kind_now, email_now, _) = filter.get_untracked();
    view! {
        <section class="settings-section admin-events" id="events">
            <h2>"Security events"</h2>
            <form method="get" action=routes::ADMIN_SECURITY_STATUS class="event-filter">
                <div class="field">
                    <label for="event-kind">"Kind"</label>
                    <select id="event-kind" name="kind">
                        <option value="" selected=kind_now.is_empty()>"All"</option>
                        {kinds
                            .into_iter()
                            .map(|k| {
                                let selected = k == kind_now;
                                view! { <option value=k.clone() selected=selected>{k.clone()}</option> }
                            })
                            .collect_view()}
                    </select>
                </div>
                <div class="field">
                    <label for="event-email">"Account email"</label>
                    <input id="event-email" name="email" type="email" value=email_now />
                </div>
                <button type="submit" class="button button-secondary">"Filter"</button>
            </form>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match events.await {
                        Ok(view) => {
                            let (kind, email, page) = filter.get_untracked();
                            let link = move |page: u64| {
                                format!(
                                    "{}?kind={}&email={}&page={page}#events",
                                    routes::ADMIN_SECURITY_STATUS,
                                    encode(&kind),
                                    encode(&email),
                                )
                            };
                            view! {
                                {view.entries.is_empty().then(|| view! { <p class="hint">"No events match."</p> })}
                                <table class="event-table">
                                    <thead>
                                        <tr>
                                            <th scope="col">"When"</th>
                                            <th scope="col">"What"</th>
                                            <th scope="col">"Account"</th>
                                            <th scope="col">"From"</th>
                                        </tr>
                                    </thead>
                                    <tbody>
                                        {view
                                            .entries
                                            .into_iter()
                                            .map(|e| view! {
                                                <tr data-kind=e.kind.clone()>
                                                    <td>{e.when}</td>
                                                    <td>{e.what}</td>
                                                    <td>{e.who}</td>
                                                    <td>{e.ip}</td>
                                                </tr>
                                            })
                                            .collect_view()}
                                    </tbody>
                                </table>
                                <nav class="pager" aria-label="Security event pages">
                                    {(page > 1).then(|| view! { <a class="button button-secondary" href=link(page - 1)>"Newer"</a> })}
                                    {view.has_more.then(|| view! { <a class="button button-secondary" href=link(page + 1)>"Older"</a> })}
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

/// Percent-encodes a query value (letters, digits and `-._~` stay as they are).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(super::encode("a+b@c.org"), "a%2Bb%40c.org");
        assert_eq!(super::encode("sign_in"), "sign_in");
    }
}
