//! The landing page for visitors.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::finance::{format_currency, parse_monthly, parse_rate, parse_years, project_savings};
use crate::routes;

#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <Title text="Nest Egg — household finance, kept safe" />
        <section class="hero container">
            <div class="hero-text">
                <h1>"Grow your household's nest egg, together."</h1>
                <p class="lead">
                    "Nest Egg gives a household one shared, calm place to plan its savings — each person with their "
                    "own sign-in, and the security controls of a bank, not an afterthought."
                </p>
                <div class="hero-actions">
                    <a class="button" href="#features">
                        "See what's inside"
                    </a>
                    <a class="button button-secondary" href=routes::SECURITY>
                        "How we keep it safe"
                    </a>
                </div>
            </div>
            <div class="hero-card">
                <h2>"What could you save?"</h2>
                <SavingsCalculator />
            </div>
        </section>
        <section class="features container" id="features">
            <h2>"Built for households"</h2>
            <p class="section-lead">"One shared picture of your money, and everyone stays in control of their own account."</p>
            <ul class="feature-grid">
                <li class="feature-card">
                    <span class="feature-icon" aria-hidden="true">"⌂"</span>
                    <h3>"Shared households"</h3>
                    <p>"Invite a partner or family member; each person keeps their own sign-in and privacy settings."</p>
                </li>
                <li class="feature-card">
                    <span class="feature-icon" aria-hidden="true">"◎"</span>
                    <h3>"Savings that add up"</h3>
                    <p>"See how a monthly amount compounds over the years, at the rate you expect."</p>
                </li>
                <li class="feature-card">
                    <span class="feature-icon" aria-hidden="true">"⇩"</span>
                    <h3>"Your data, portable"</h3>
                    <p>"Export everything as open JSON files at any time, or delete your account for good."</p>
                </li>
            </ul>
        </section>
        <section class="trust">
            <div class="container">
                <h2>"Safety is the first feature"</h2>
                <ul class="trust-list">
                    <li>"Every page is served with a strict content security policy and no third-party scripts."</li>
                    <li>"Requests from other sites cannot act on your behalf."</li>
                    <li>"Sessions live on our server, in cookies your browser's scripts cannot read."</li>
                    <li>"Runs on a single machine with SQLite, or scaled out on PostgreSQL."</li>
                </ul>
            </div>
        </section>
    }
}

/// A compound-savings calculator. Without JavaScript it is a GET form the server answers; once the
/// WASM has hydrated it recalculates as the visitor types.
#[component]
fn SavingsCalculator() -> impl IntoView {
    let query = use_query_map();
    // Query values are echoed back into the form, so keep them short.
    let initial = move |key: &str, default: &str| {
        query
            .with_untracked(|q| q.get(key))
            .filter(|value| !value.is_empty() && value.len() <= 24)
            .unwrap_or_else(|| default.to_owned())
    };
    let monthly = RwSignal::new(initial("monthly", "250"));
    let years = RwSignal::new(initial("years", "20"));
    let rate = RwSignal::new(initial("rate", "5"));

    let monthly_error = Signal::derive(move || parse_monthly(&monthly.get()).err());
    let years_error = Signal::derive(move || parse_years(&years.get()).err());
    let rate_error = Signal::derive(move || parse_rate(&rate.get()).err());

    let result = move || {
        let (Ok(m), Ok(y), Ok(r)) = (
            parse_monthly(&monthly.get()),
            parse_years(&years.get()),
            parse_rate(&rate.get()),
        ) else {
            return view! {
                <span class="result-label">"Fix the highlighted field to see a projection."</span>
                <span class="result-amount">"—"</span>
                <p class="result-note"></p>
            }
            .into_any();
        };
        let projection = project_savings(m, y, r);
        view! {
            <span class="result-label">{format!("After {y} years you could have")}</span>
            <span class="result-amount">{format_currency(projection.total)}</span>
            <p class="result-note">
                {format!(
                    "{} saved plus {} growth, compounding monthly. An illustration, not financial advice.",
                    format_currency(projection.contributed),
                    format_currency(projection.growth),
                )}
            </p>
        }
        .into_any()
    };

    view! {
        <form class="calculator" method="get" action=routes::HOME>
            <CalculatorField
                id="calc-monthly"
                name="monthly"
                label="Saved each month ($)"
                hint="What you put aside every month."
                max="1000000"
                value=monthly
                error=monthly_error
            />
            <CalculatorField
                id="calc-years"
                name="years"
                label="For how many years"
                hint="Between 1 and 80."
                max="80"
                value=years
                error=years_error
            />
            <CalculatorField
                id="calc-rate"
                name="rate"
                label="Yearly return (%)"
                hint="Long-run averages for mixed portfolios are often 4–7 %."
                max="25"
                value=rate
                error=rate_error
            />
            <output class="calculator-result" for="calc-monthly calc-years calc-rate" aria-live="polite">
                {result}
            </output>
            // Hidden by the stylesheet once the page is hydrated: then the result updates live.
            <button class="button calculator-submit" type="submit">
                "Calculate"
            </button>
        </form>
    }
}

#[component]
fn CalculatorField(
    id: &'static str,
    name: &'static str,
    label: &'static str,
    hint: &'static str,
    max: &'static str,
    value: RwSignal<String>,
    error: Signal<Option<&'static str>>,
) -> impl IntoView {
    let error_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let described_by = format!("{hint_id} {error_id}");
    view! {
        <div class="field">
            <label for=id>{label}</label>
            <input
                id=id
                name=name
                type="number"
                inputmode="decimal"
                min="0"
                max=max
                step="any"
                autocomplete="off"
                value=value.get_untracked()
                aria-invalid=move || error.get().map(|_| "true")
                aria-describedby=described_by
                on:input=move |ev| value.set(event_target_value(&ev))
            />
            <p class="hint" id=hint_id>
                {hint}
            </p>
            <p class="field-error" id=error_id role="alert">
                {move || error.get()}
            </p>
        </div>
    }
}
