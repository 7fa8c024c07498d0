//! Terms of service and privacy policy. Their version numbers are what registrations record consent to.

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn TermsPage() -> impl IntoView {
    view! {
        <Title text="Terms of service — Nest Egg" />
        <article class="prose container">
            <h1>"Terms of service"</h1>
            <p class="updated">"Version 1 · effective 22 November 2026"</p>
            <h2>"1. The service"</h2>
            <p>
                "Nest Egg lets members of a household plan and track their finances together. Projections and "
                "calculations are illustrations based on the figures you enter; they are not financial advice."
            </p>
            <h2>"2. Your account"</h2>
            <p>
                "You are responsible for keeping your password and any second factor safe, and for the activity "
                "of your account. Tell us at once if you believe someone else has used it."
            </p>
            <h2>"3. Households"</h2>
            <p>
                "Members of a household can see the household's shared records. Owners can invite and remove members. "
                "Leaving a household does not delete your own account."
            </p>
            <h2>"4. Acceptable use"</h2>
            <p>
                "Do not attempt to access accounts or households that are not yours, to disrupt the service, or to "
                "use it for anything unlawful."
            </p>
            <h2>"5. Ending"</h2>
            <p>
                "You can export your data and delete your account at any time from your settings. We may suspend "
                "accounts that break these terms."
            </p>
            <h2>"6. Changes"</h2>
            <p>"When these terms change we raise the version number and ask you to accept the new version before you continue."</p>
        </article>
    }
}

#[component]
pub fn PrivacyPage() -> impl IntoView {
    view! {
        <Title text="Privacy policy — Nest Egg" />
        <article class="prose container">
            <h1>"Privacy policy"</h1>
            <p class="updated">"Version 1 · effective 22 November 2026"</p>
            <h2>"What we keep"</h2>
            <ul>
                <li>"Your account: email address, display name, and a one-way hash of your password."</li>
                <li>"Your household's records that you or other members enter."</li>
                <li>
                    "Security records: sign-ins and other account events with time, IP address and browser, so you "
                    "and we can spot misuse."
                </li>
                <li>"Which version of these documents you accepted, when, and from where."</li>
            </ul>
            <h2>"Cookies"</h2>
            <p>
                "We use a session cookie to keep you signed in, a cookie remembering your colour theme, and a "
                "security cookie on browsers you have signed in with, for 180 days, so that someone else guessing "
                "your password cannot lock you out of your own devices. "
                "No advertising or tracking cookies, and no third-party scripts."
            </p>
            <h2>"Your rights"</h2>
            <p>
                "You can download all your data as JSON files at any time, correct your profile, and delete your account. "
                "Deleting your account removes your personal data; a pseudonymous record that a deletion took place is "
                "kept for security auditing."
            </p>
            <h2>"Retention"</h2>
            <p>"Security events are deleted after the retention period set by the operator (400 days by default)."</p>
        </article>
    }
}
