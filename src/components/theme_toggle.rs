//! Light / dark / system theme switch. A plain form post without JavaScript, a live switch with it.

use leptos::prelude::*;

use crate::api::preferences::SetTheme;
use crate::types::Theme;

#[component]
pub fn ThemeToggle() -> impl IntoView {
    // Provided by `App`; a fresh signal keeps the toggle working even if it were rendered elsewhere.
    let theme = use_context::<RwSignal<Theme>>().unwrap_or_else(|| RwSignal::new(Theme::default()));
    let set_theme = ServerAction::<SetTheme>::new();

    Effect::new(move |_| {
        if let Some(Ok(chosen)) = set_theme.value().get() {
            theme.set(chosen);
            if let Some(root) = document().document_element() {
                let _ = root.set_attribute("data-theme", chosen.as_str());
            }
        }
    });

    view! {
        <ActionForm action=set_theme attr:class="theme-form">
            <input type="hidden" name="theme" value=move || theme.get().next().as_str() />
            <button
                class="theme-toggle"
                type="submit"
                title=move || theme.get().toggle_label()
                aria-label=move || theme.get().toggle_label()
            >
                <span aria-hidden="true">{move || icon(theme.get())}</span>
            </button>
        </ActionForm>
    }
}

fn icon(theme: Theme) -> &'static str {
    match theme {
        Theme::System => "◐",
        Theme::Light => "☀",
        Theme::Dark => "☾",
    }
}
