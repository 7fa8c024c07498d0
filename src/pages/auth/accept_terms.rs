//! Shown right after sign-in when the terms or the privacy policy changed since the person accepted
//! them: accept the new versions, or decline (sign out), with the way to delete the account first.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::account::{AcceptTerms, outstanding_consents};
use crate::api::auth::SignOut;
use crate::components::auth_forms::{FormError, SubmitButton, action_error, form_error, refusals};
use crate::pages::settings::LoadError;
use crate::routes;

#[component]
pub fn AcceptTermsPage() -> impl IntoView {
    let accept = ServerAction::<AcceptTerms>::new();
    let decline = ServerAction::<SignOut>::new();
    let error = action_error(accept);
    let decline_error = action_error(decline);
    // Loaded again after a refusal: what is to be accepted may have changed since the page loaded.
    let refused = refusals(accept);
    let outstanding = Resource::new(move || refused.get(), |_| outstanding_consents());

    view! {
        <Title text="Updated terms — Nest Egg" />
        <section class="form-card auth-card">
            <h1>"We updated our terms"</h1>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    // Not "nothing to do" when it could not be found out (signed out, an outage).
                    let (documents, shown) = match outstanding.await {
                        Ok(view) => (view.documents, view.shown),
                        Err(error) => return view! { <LoadError error=error /> }.into_any(),
                    };
                    if documents.is_empty() {
                        return view! {
                            <p>"You have accepted the current versions. Nothing to do here."</p>
                            <a class="button" href=routes::HOME>"Continue"</a>
                        }
                            .into_any();
                    }
                    view! {
                        <p>"Please read what changed before you continue:"</p>
                        <ul class="changed-documents">
                            {documents.contains(&"terms".to_owned()).then(|| view! {
                                <li><a href=routes::TERMS target="_blank">"Terms of service"</a></li>
                            })}
                            {documents.contains(&"privacy".to_owned()).then(|| view! {
                                <li><a href=routes::PRIVACY target="_blank">"Privacy policy"</a></li>
                            })}
                        </ul>
                        <ActionForm action=accept attr:class="accept-terms-form">
                            <FormError message=form_error(error, &[]) />
                            <input type="hidden" name="shown" value=shown />
                            <SubmitButton label="Accept and continue" pending=accept.pending() />
                        </ActionForm>
                        <ActionForm action=decline attr:class="decline-terms-form">
                            <FormError message=form_error(decline_error, &[]) />
                            <SubmitButton
                                label="Decline and sign out"
                                pending=decline.pending()
                                button_class="button button-secondary"
                            />
                        </ActionForm>
                        <p class="hint">
                            "Don't want to continue? Before you decline, you can "
                            <a href=format!("{}#export", routes::SETTINGS_PRIVACY)>"download your data"</a>
                            " or "
                            <a href=routes::SETTINGS_ACCOUNT>"delete your account"</a>
                            "."
                        </p>
                    }
                        .into_any()
                })}
            </Transition>
        </section>
    }
}
