use leptos::prelude::*;
use leptos_meta::Title;

/// What protects a visitor today, in plain words. Only controls that are in force belong here.
#[component]
pub fn SecurityPage() -> impl IntoView {
    view! {
        <Title text="Security — Nest Egg" />
        <article class="prose container">
            <h1>"How Nest Egg keeps your household safe"</h1>
            <p class="updated">"This page lists the protections in force on this deployment."</p>
            <h2>"In your browser"</h2>
            <ul>
                <li>
                    "Every page carries a strict Content Security Policy: only our own scripts run, each page "
                    "load with a fresh one-time nonce. No analytics, ads or third-party scripts."
                </li>
                <li>"Pages cannot be framed by other sites, and links to other sites do not leak the page you were on."</li>
                <li>"Pages and answers about your account are never stored in shared caches."</li>
            </ul>
            <h2>"Between your browser and us"</h2>
            <ul>
                <li>"In production every connection uses HTTPS, and browsers are told to never use plain HTTP again (HSTS)."</li>
                <li>
                    "Any change request that another website tries to send on your behalf is refused, using the "
                    "browser's own report of where the request came from."
                </li>
                <li>"Requests for unknown host names and oversized requests are turned away before they reach the app."</li>
            </ul>
            <h2>"On our servers"</h2>
            <ul>
                <li>
                    "Sessions are kept on the server. Your browser holds only a random, signed identifier in a cookie "
                    "that scripts cannot read; the database stores only a hash of it."
                </li>
                <li>"Every request gets an id that appears in our logs, so a problem you report can be traced without your data."</li>
                <li>"Error pages never show internal details."</li>
            </ul>
        </article>
    }
}
