//! What every server function needs from its request: the app state, who is calling (session), from
//! where (client IP, user agent), and rate limits. Also the one mapping from service errors to
//! [`AppError`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use leptos::prelude::*;
use sea_orm::EntityTrait as _;
use tower_sessions::Session;

use crate::error::AppError;
use crate::routes;
use crate::server::client_ip::client_ip;
use crate::server::entities::user;
use crate::server::middleware::api_errors;
use crate::server::services::auth::AuthError;
use crate::server::services::device_cookies::DeviceCookie;
use crate::server::session_store::{
    AUTH_AT_KEY, CLIENT_IP_KEY, CLIENT_UA_KEY, CONSENTED_KEY, ConsentSeen, INVITATION_KEY,
    MFA_PENDING_KEY, MFA_SETUP_KEY, PASSWORD_SEEN_KEY, PendingMfa, STARTED_AT_KEY,
    TWO_FACTOR_SEEN_KEY, USER_KEY, hash_id,
};
use crate::server::state::AppState;

pub use crate::server::rate_limit::{Limit, LimitError};

/// Where a request came from, for rate limits, lock-outs and the audit trail.
#[derive(Clone, Debug)]
pub struct RequestMeta {
    pub ip: IpAddr,
    pub user_agent: String,
    /// The browser's device cookie, if it sent one (`services::device_cookies`): checked, for the
    /// account concerned, only where a password or code is.
    pub device: Option<DeviceCookie>,
}

/// The value of the cookie `name` in a request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value)
}

impl RequestMeta {
    /// The key rate limits count under: the address, or for IPv6 its /64, since one client usually
    /// holds a whole /64 and could otherwise rotate through it.
    pub fn limit_key(&self) -> String {
        match self.ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            ip => ip.to_canonical().to_string(),
        }
    }

    /// For work that has no request (background jobs, CLI).
    pub fn internal() -> Self {
        RequestMeta {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            user_agent: String::new(),
            device: None,
        }
    }
}

/// Middleware: works out the client IP (trusting `X-Forwarded-For` only from `TRUSTED_PROXIES`) and
/// user agent once, for everything downstream.
pub async fn attach_request_meta(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    // Every X-Forwarded-For line, in order: a proxy may add its own line after the client's.
    let forwarded: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
    let ip = client_ip(peer, forwarded.as_deref(), &state.settings.trusted_proxies);
    let user_agent: String = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect();
    let device = cookie_value(request.headers(), state.settings.device_cookie_name())
        .and_then(DeviceCookie::new);
    request.extensions_mut().insert(RequestMeta {
        ip,
        user_agent,
        device,
    });
    next.run(request).await
}

/// Middleware: every server-function call counts against the per-IP API budget.
pub async fn limit_api_calls(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != http::Method::POST
        || !request.uri().path().starts_with(routes::API_PREFIX)
    {
        return next.run(request).await;
    }
    let ip = request
        .extensions()
        .get::<RequestMeta>()
        .map_or_else(|| "unknown".to_owned(), |m| m.limit_key());
    match state.limiters.check(Limit::Api, &ip).await {
        Ok(()) => next.run(request).await,
        Err(LimitError::Exceeded { retry_after_secs }) => {
            rate_limited_response(&request, retry_after_secs)
        }
        Err(err @ LimitError::Unavailable(_)) => {
            tracing::warn!(error = %err, "cannot count the request");
            api_errors::answer(
                &api_errors::Asked::from_request(&request),
                AppError::Unavailable,
            )
        }
    }
}

/// What [`limit_page_loads`] needs: the limiters, and the site's own files, which do not count.
#[derive(Clone)]
pub struct PageBudget {
    state: AppState,
    site_files: std::sync::Arc<std::collections::HashSet<String>>,
}

impl PageBudget {
    /// Lists the files at the top of the site's root (`/favicon.svg`, `/robots.txt`) once: every page
    /// load brings them along, and serving one renders nothing. (The bundle under `/pkg` is served
    /// outside the pages.)
    pub fn new(state: AppState) -> Self {
        let site_files = std::fs::read_dir(&*state.leptos_options.site_root)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|entry| entry.file_name().into_string().ok())
                    .map(|name| format!("/{name}"))
                    .collect()
            })
            .unwrap_or_default();
        PageBudget {
            state,
            site_files: std::sync::Arc::new(site_files),
        }
    }
}

/// Middleware around the pages: every page load (a GET or HEAD, the not-found page and a file that
/// does not exist included) counts against the per-IP page budget. Rendering reads the session and
/// most pages read the database, so a loop of page loads from one network meets a limit, as a loop
/// of server-function calls does ([`limit_api_calls`]).
pub async fn limit_page_loads(
    State(budget): State<PageBudget>,
    request: Request,
    next: Next,
) -> Response {
    let page_load = matches!(*request.method(), http::Method::GET | http::Method::HEAD)
        && !budget.site_files.contains(request.uri().path());
    if !page_load {
        return next.run(request).await;
    }
    let ip = request
        .extensions()
        .get::<RequestMeta>()
        .map_or_else(|| "unknown".to_owned(), |m| m.limit_key());
    match budget.state.limiters.check(Limit::Pages, &ip).await {
        Ok(()) => next.run(request).await,
        Err(LimitError::Exceeded { retry_after_secs }) => {
            use axum::response::IntoResponse as _;
            (
                http::StatusCode::TOO_MANY_REQUESTS,
                [(http::header::RETRY_AFTER, retry_after_secs.to_string())],
                format!(
                    "Too many pages were opened from your network in the last minute. \
                     Please wait {retry_after_secs} seconds and try again."
                ),
            )
                .into_response()
        }
        Err(err @ LimitError::Unavailable(_)) => {
            // Not a reason to refuse the page: what it needs (the session, the database) answers
            // 503 by itself when unreachable, and a page that needs neither can still be served.
            tracing::warn!(error = %err, "cannot count the page load");
            next.run(request).await
        }
    }
}

fn rate_limited_response(request: &Request, wait: u64) -> Response {
    let asked = api_errors::Asked::from_request(request);
    api_errors::answer(
        &asked,
        AppError::RateLimited {
            retry_after_secs: wait,
        },
    )
}

pub struct RequestContext {
    pub state: AppState,
    pub meta: RequestMeta,
    pub session: Session,
}

impl RequestContext {
    pub async fn current() -> Result<Self, AppError> {
        let state = use_context::<AppState>().ok_or(AppError::Internal)?;
        let parts = use_context::<http::request::Parts>().ok_or(AppError::Internal)?;
        Self::from_parts(state, &parts)
    }

    /// For plain axum handlers (outside the server-function runtime).
    pub fn from_parts(state: AppState, parts: &http::request::Parts) -> Result<Self, AppError> {
        let meta = parts
            .extensions
            .get::<RequestMeta>()
            .cloned()
            .unwrap_or_else(RequestMeta::internal);
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(AppError::Internal)?;
        Ok(RequestContext {
            state,
            meta,
            session,
        })
    }

    /// After a completed sign-in: this browser gets a new device cookie for `user`, so that a lock-out
    /// of the address by someone else does not keep it out.
    pub fn remember_device(&self, user: &user::Model) -> Result<(), AppError> {
        use crate::server::services::device_cookies;
        let now = self.state.clock.now().unix_timestamp();
        self.set_device_cookie(&device_cookies::issue(&self.state, user, now))
    }

    /// After `before` changed their password or turned two-factor on to make `after`: this browser's
    /// device cookie, if it holds a valid one, stays valid (`device_cookies::rebind`).
    pub fn rebind_device(&self, before: &user::Model, after: &user::Model) -> Result<(), AppError> {
        use crate::server::services::device_cookies;
        let now = self.state.clock.now().unix_timestamp();
        match device_cookies::rebind(&self.state, before, after, self.meta.device.as_ref(), now) {
            Some(value) => self.set_device_cookie(&value),
            None => Ok(()),
        }
    }

    fn set_device_cookie(&self, value: &str) -> Result<(), AppError> {
        use crate::server::services::device_cookies;
        use tower_sessions::cookie::{Cookie, SameSite, time::Duration};
        let response = use_context::<leptos_axum::ResponseOptions>().ok_or(AppError::Internal)?;
        let settings = &self.state.settings;
        let cookie = Cookie::build((settings.device_cookie_name(), value))
            .path("/")
            .max_age(Duration::days(device_cookies::MAX_AGE_DAYS))
            .same_site(SameSite::Strict)
            .http_only(true)
            .secure(settings.cookie_secure)
            .build();
        let value =
            http::HeaderValue::from_str(&cookie.to_string()).map_err(|_| AppError::Internal)?;
        response.append_header(http::header::SET_COOKIE, value);
        Ok(())
    }

    pub async fn rate_limit(&self, limit: Limit) -> Result<(), AppError> {
        self.rate_limit_key(limit, &self.meta.limit_key()).await
    }

    /// Counts this request against `limit` under `key` (an account id, for per-account limits).
    pub async fn rate_limit_key(&self, limit: Limit, key: &str) -> Result<(), AppError> {
        self.state
            .limiters
            .check(limit, key)
            .await
            .map_err(limit_error)
    }

    /// Signs `user` in on this session, under a new session id (no fixation). `password_at` is when
    /// the password was checked (the start of sudo mode); `password_changed_at` is the account's value
    /// of it as read before that check ([`PASSWORD_SEEN_KEY`]), or `None` for a sign-in begun before
    /// it was recorded. `user` must have been read before the sign-in decided whether a code was
    /// needed ([`TWO_FACTOR_SEEN_KEY`]).
    pub async fn start_session(
        &self,
        user: &user::Model,
        password_at: i64,
        password_changed_at: Option<i64>,
    ) -> Result<(), AppError> {
        let user_id = user.id.as_str();
        self.session.cycle_id().await.map_err(session_error)?;
        self.session
            .remove_value(MFA_PENDING_KEY)
            .await
            .map_err(session_error)?;
        self.session
            .insert(USER_KEY, user_id)
            .await
            .map_err(session_error)?;
        self.session
            .insert(AUTH_AT_KEY, password_at)
            .await
            .map_err(session_error)?;
        match password_changed_at {
            Some(seen) => self.session.insert(PASSWORD_SEEN_KEY, seen).await,
            None => self
                .session
                .remove_value(PASSWORD_SEEN_KEY)
                .await
                .map(|_| ()),
        }
        .map_err(session_error)?;
        self.mark_two_factor_seen(user.two_factor_enabled_at)
            .await?;
        // What the sessions list shows about this sign-in.
        let now = self.state.clock.now().unix_timestamp();
        self.session
            .insert(STARTED_AT_KEY, now)
            .await
            .map_err(session_error)?;
        self.session
            .insert(CLIENT_IP_KEY, self.meta.ip.to_string())
            .await
            .map_err(session_error)?;
        self.session
            .insert(CLIENT_UA_KEY, &self.meta.user_agent)
            .await
            .map_err(session_error)?;
        // Found out now, while the session is being saved anyway: otherwise the first page would
        // read the ledger and save the session again to record it ([`Self::consent_required`]).
        // Only a shortcut: if the ledger cannot be read, the first page asks it. Failing here would
        // lose a sign-in already counted (the lock-out cleared, a backup code spent).
        // A failure was logged where it happened.
        if let Ok(true) = self.all_consents_given(user).await {
            self.session
                .insert(CONSENTED_KEY, self.consent_in_force(user))
                .await
                .map_err(session_error)?;
        }
        Ok(())
    }

    /// After a correct password for an account with two-factor authentication: the session (under a
    /// new id) holds only the pending sign-in, and is signed out for everything else.
    /// `password_changed_at` as for [`Self::start_session`].
    pub async fn begin_mfa_sign_in(
        &self,
        user_id: &str,
        next: String,
        password_changed_at: i64,
    ) -> Result<(), AppError> {
        self.session.cycle_id().await.map_err(session_error)?;
        for key in [USER_KEY, AUTH_AT_KEY, PASSWORD_SEEN_KEY] {
            self.session
                .remove_value(key)
                .await
                .map_err(session_error)?;
        }
        let pending = PendingMfa {
            user_id: user_id.to_owned(),
            started_at: self.state.clock.now().unix_timestamp(),
            failures: 0,
            next,
            password_changed_at: Some(password_changed_at),
        };
        self.set_pending_mfa(&pending).await
    }

    /// The sign-in waiting for its second factor, if there is one and it has not expired (an expired
    /// one is removed).
    pub async fn pending_mfa(&self) -> Result<Option<PendingMfa>, AppError> {
        let pending = self
            .session
            .get::<PendingMfa>(MFA_PENDING_KEY)
            .await
            .map_err(session_error)?;
        let now = self.state.clock.now().unix_timestamp();
        match pending {
            Some(p) if now - p.started_at <= crate::server::services::mfa::PENDING_TTL_SECS => {
                Ok(Some(p))
            }
            Some(_) => {
                self.clear_pending_mfa().await?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    pub async fn set_pending_mfa(&self, pending: &PendingMfa) -> Result<(), AppError> {
        self.session
            .insert(MFA_PENDING_KEY, pending)
            .await
            .map_err(session_error)
    }

    pub async fn clear_pending_mfa(&self) -> Result<(), AppError> {
        self.session
            .remove_value(MFA_PENDING_KEY)
            .await
            .map(|_| ())
            .map_err(session_error)
    }

    /// The household invitation (its id) kept while the visitor signs in.
    pub async fn kept_invitation(&self) -> Result<Option<String>, AppError> {
        self.session
            .get::<String>(INVITATION_KEY)
            .await
            .map_err(session_error)
    }

    pub async fn keep_invitation(&self, invitation_id: &str) -> Result<(), AppError> {
        self.session
            .insert(INVITATION_KEY, invitation_id)
            .await
            .map_err(session_error)
    }

    pub async fn forget_invitation(&self) -> Result<(), AppError> {
        self.session
            .remove_value(INVITATION_KEY)
            .await
            .map(|_| ())
            .map_err(session_error)
    }

    /// Sudo mode: the password was entered within `SUDO_WINDOW_MINUTES`.
    pub async fn recently_authenticated(&self) -> Result<bool, AppError> {
        let auth_at = self
            .session
            .get::<i64>(AUTH_AT_KEY)
            .await
            .map_err(session_error)?
            .unwrap_or(0);
        let now = self.state.clock.now().unix_timestamp();
        let window = self.state.settings.accounts.sudo_window.as_secs() as i64;
        Ok(now - auth_at <= window)
    }

    /// Sensitive actions (two-factor changes) refuse a session whose password is not fresh.
    pub async fn require_recent_auth(&self) -> Result<(), AppError> {
        if self.recently_authenticated().await? {
            Ok(())
        } else {
            Err(AppError::ReauthRequired)
        }
    }

    /// This session just changed the password: it stays signed in, under a new session id (see
    /// [`Self::mark_reauthenticated`]). `password_changed_at` is the account's new value. Sudo mode
    /// starts only when the password is all re-authenticating takes (`with_code` false): with
    /// two-factor on it also takes a code, which changing the password does not ask for.
    pub async fn mark_password_changed(
        &self,
        password_changed_at: i64,
        with_code: bool,
    ) -> Result<(), AppError> {
        self.session
            .insert(PASSWORD_SEEN_KEY, password_changed_at)
            .await
            .map_err(session_error)?;
        if with_code {
            return self.renew_session_id().await;
        }
        self.mark_reauthenticated().await
    }

    /// Records the account's `two_factor_enabled_at` as this session's ([`TWO_FACTOR_SEEN_KEY`]): at
    /// sign-in, and in the session that turned two-factor authentication on.
    pub async fn mark_two_factor_seen(&self, enabled_at: Option<i64>) -> Result<(), AppError> {
        self.session
            .insert(TWO_FACTOR_SEEN_KEY, enabled_at.unwrap_or(0))
            .await
            .map_err(session_error)
    }

    /// The password (and code) were just checked again: sudo mode starts now, under a new session id.
    /// A copy of the cookie (a shared computer, a leaked HAR file) is the same session as far as the
    /// sessions page can tell, so ending the other sessions does not end it; renewing the id here
    /// does, before the copy could use the sudo mode or the new password this browser just proved.
    pub async fn mark_reauthenticated(&self) -> Result<(), AppError> {
        self.renew_session_id().await?;
        let now = self.state.clock.now().unix_timestamp();
        self.session
            .insert(AUTH_AT_KEY, now)
            .await
            .map_err(session_error)
    }

    /// A new session id for the same session (see [`Self::mark_reauthenticated`] for why), taking
    /// over its stored record only if it still exists ([`renew_id`]).
    ///
    /// [`renew_id`]: crate::server::session_store::renew_id
    pub async fn renew_session_id(&self) -> Result<(), AppError> {
        crate::server::session_store::renew_id(&self.session)
            .await
            .map_err(session_error)
    }

    /// Which two-factor setup this session started ([`mfa::setup_started_here`]), if any.
    ///
    /// [`mfa::setup_started_here`]: crate::server::services::mfa::setup_started_here
    pub async fn mfa_setup_started_here(&self) -> Result<Option<String>, AppError> {
        self.session
            .get::<String>(MFA_SETUP_KEY)
            .await
            .map_err(session_error)
    }

    pub async fn set_mfa_setup_started_here(&self, fingerprint: &str) -> Result<(), AppError> {
        self.session
            .insert(MFA_SETUP_KEY, fingerprint)
            .await
            .map_err(session_error)
    }

    /// Deletes the session server-side and clears the cookie.
    pub async fn end_session(&self) -> Result<(), AppError> {
        if let Ok(Some(user_id)) = self.session.get::<String>(USER_KEY).await {
            let now = self.state.clock.now().unix_timestamp();
            let event = crate::server::services::audit::Event::new("sign_out").user(&user_id);
            if let Err(err) =
                crate::server::services::audit::log(&self.state.db, &self.meta, now, event).await
            {
                tracing::warn!(error = %err, "could not record sign-out");
            }
        }
        self.session.flush().await.map_err(session_error)
    }

    /// The stored key of this session, to keep it when ending the user's other sessions.
    pub fn session_key(&self) -> Option<String> {
        self.session.id().map(|id| hash_id(&id))
    }

    pub async fn user(&self) -> Result<Option<user::Model>, AppError> {
        let Some(user_id) = self
            .session
            .get::<String>(USER_KEY)
            .await
            .map_err(session_error)?
        else {
            return Ok(None);
        };
        let found = user::Entity::find_by_id(user_id)
            .one(&self.state.db)
            .await
            .map_err(|err| internal("loading the signed-in user", &err))?;
        // A session whose password was checked before the password last changed is over, even if a
        // concurrent sign-in saved it after the change ended every session.
        let auth_at = self
            .session
            .get::<i64>(AUTH_AT_KEY)
            .await
            .map_err(session_error)?
            .unwrap_or(0);
        let seen = self
            .session
            .get::<i64>(PASSWORD_SEEN_KEY)
            .await
            .map_err(session_error)?;
        let found = found.filter(|u| match seen {
            Some(seen) => seen == u.password_changed_at,
            // Sessions from before the value was recorded: by time, as they always were.
            None => auth_at >= u.password_changed_at,
        });
        // Nor does a sign-in outlive two-factor authentication turned on while it was under way.
        let two_factor_seen = self
            .session
            .get::<i64>(TWO_FACTOR_SEEN_KEY)
            .await
            .map_err(session_error)?;
        let found = found.filter(|u| {
            two_factor_seen.is_none_or(|seen| seen == u.two_factor_enabled_at.unwrap_or(0))
        });
        // However active, a session lasts `SESSION_LIFETIME_HOURS` from its sign-in.
        let now = self.state.clock.now().unix_timestamp();
        let started_at = self
            .session
            .get::<i64>(STARTED_AT_KEY)
            .await
            .map_err(session_error)?
            .unwrap_or(auth_at);
        let lifetime = self.state.settings.session_absolute_lifetime.as_secs() as i64;
        let found = found.filter(|_| now - started_at < lifetime);
        if found.is_none() {
            // The account is gone: this session must not linger.
            self.session.flush().await.map_err(session_error)?;
        }
        Ok(found)
    }

    /// The signed-in person, for everything except setting up two-factor authentication: refused
    /// with `MfaSetupRequired` while `REQUIRE_MFA` applies to them and they have not set it up.
    pub async fn require_user(&self) -> Result<user::Model, AppError> {
        let user = self.require_user_allowing_mfa_setup().await?;
        if self.consent_required(&user).await? {
            return Err(AppError::ConsentRequired);
        }
        if self.mfa_setup_required(&user).await? {
            return Err(AppError::MfaSetupRequired);
        }
        Ok(user)
    }

    /// The signed-in person, even if they still have to set up two-factor authentication (for the
    /// setup itself, reading who is signed in, and signing out).
    pub async fn require_user_allowing_mfa_setup(&self) -> Result<user::Model, AppError> {
        let user = self.require_user_ungated().await?;
        if self.consent_required(&user).await? {
            return Err(AppError::ConsentRequired);
        }
        Ok(user)
    }

    /// An operator of this deployment (`ADMIN_EMAILS` or `nestegg admin grant`), past every gate
    /// (with `REQUIRE_MFA=admins`, that includes two-factor authentication). Anyone else, signed in
    /// or not, gets `NotFound`: operator pages do not reveal that they exist.
    pub async fn require_operator(&self) -> Result<user::Model, AppError> {
        let user = match self.require_user().await {
            Ok(user) => user,
            Err(err @ (AppError::Unavailable | AppError::Internal)) => return Err(err),
            Err(_) => return Err(AppError::NotFound),
        };
        let operator = crate::server::services::operators::is_operator(
            &self.state.db,
            &self.state.settings,
            &user,
        )
        .await
        .map_err(|err| internal("checking operator rights", &err))?;
        if operator {
            Ok(user)
        } else {
            Err(AppError::NotFound)
        }
    }

    /// This request carries `X-Forwarded-For` from a peer that is not a trusted proxy.
    pub fn forwarded_by_untrusted_peer(&self) -> bool {
        let Some(parts) = use_context::<http::request::Parts>() else {
            return false;
        };
        let trusted = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|c| {
                crate::server::client_ip::is_trusted_proxy(
                    c.0.ip(),
                    &self.state.settings.trusted_proxies,
                )
            });
        parts.headers.contains_key("x-forwarded-for") && !trusted
    }

    /// The signed-in person with no gate at all: only for answering the gates themselves (accepting
    /// updated terms, reading what was accepted), for deleting the account and what its form needs
    /// (confirming the password, whether two-factor is on).
    pub async fn require_user_ungated(&self) -> Result<user::Model, AppError> {
        self.user().await?.ok_or(AppError::Unauthenticated)
    }

    /// A newer version of the terms or the privacy policy waits for their acceptance. Asked on every
    /// page and call of a signed-in person, so the answer "all accepted" is kept in the session
    /// ([`ConsentSeen`]) and the ledger is read again only when a version in force goes up.
    pub async fn consent_required(&self, user: &user::Model) -> Result<bool, AppError> {
        let in_force = self.consent_in_force(user);
        let seen = self
            .session
            .get::<ConsentSeen>(CONSENTED_KEY)
            .await
            .map_err(session_error)?;
        if seen.is_some_and(|seen| {
            seen.user_id == in_force.user_id
                && seen.terms >= in_force.terms
                && seen.privacy >= in_force.privacy
        }) {
            return Ok(false);
        }
        if !self.all_consents_given(user).await? {
            return Ok(true);
        }
        // A session without an id is one this request would otherwise not create.
        if self.session.id().is_some() {
            self.session
                .insert(CONSENTED_KEY, in_force)
                .await
                .map_err(session_error)?;
        }
        Ok(false)
    }

    /// The versions of the terms and the privacy policy in force, as [`ConsentSeen`] by `user`.
    fn consent_in_force(&self, user: &user::Model) -> ConsentSeen {
        ConsentSeen {
            user_id: user.id.clone(),
            terms: self.state.settings.accounts.terms_version,
            privacy: self.state.settings.accounts.privacy_version,
        }
    }

    /// `user` has accepted the versions in force (the ledger says so).
    async fn all_consents_given(&self, user: &user::Model) -> Result<bool, AppError> {
        let outstanding = crate::server::services::consents::outstanding(&self.state, &user.id)
            .await
            .map_err(|err| internal("checking consents", &err))?;
        Ok(outstanding.is_empty())
    }

    /// `REQUIRE_MFA` applies to this person.
    pub async fn mfa_required(&self, user: &user::Model) -> Result<bool, AppError> {
        crate::server::services::operators::requires_mfa(&self.state.db, &self.state.settings, user)
            .await
            .map_err(|err| internal("checking the two-factor policy", &err))
    }

    pub async fn mfa_setup_required(&self, user: &user::Model) -> Result<bool, AppError> {
        if !self.mfa_required(user).await? {
            return Ok(false);
        }
        let enabled = crate::server::services::mfa::is_enabled(&self.state.db, &user.id)
            .await
            .map_err(|err| internal("checking two-factor status", &err))?;
        Ok(!enabled)
    }
}

/// After a completed sign-in: the new-device email, when this browser and address are new. A failure
/// here is logged; the sign-in itself has succeeded.
pub async fn alert_new_device(ctx: &RequestContext, user: &user::Model) {
    if let Err(err) =
        crate::server::services::sign_in_alerts::after_sign_in(&ctx.state, &ctx.meta, user).await
    {
        tracing::error!(error = %err, "could not check for a new sign-in device");
    }
}

/// After a plain HTML form post (no JavaScript) that succeeded, sends the browser back to the page it
/// came from with `done=<endpoint>`, so the page can show its success message (a fetch call reads the
/// result directly and is left alone). Only the referer's path and query are used: the redirect stays
/// on this site. The query stays (a link's token, a filter, where to go after signing in), without an
/// earlier form's result.
pub fn redirect_back_done(endpoint: &str) {
    let Some(parts) = use_context::<http::request::Parts>() else {
        return;
    };
    if !is_plain_form_post() {
        return;
    }
    let referer = parts
        .headers
        .get(http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok())
        .filter(|u| u.path().starts_with('/') && !u.path().starts_with("//"));
    let Some(referer) = referer else {
        leptos_axum::redirect(&format!("{}?done={endpoint}", routes::HOME));
        return;
    };
    // A link's token that this form used (to confirm an address, report a sign-in…) is spent: it
    // need not stay in the address and the history. One that another form on its page did not use
    // (the invitation's, under "send me a new confirmation link") is still the page's.
    let used_token = parts
        .extensions
        .get::<crate::server::middleware::body_limit::RawForm>()
        .is_some_and(|form| url::form_urlencoded::parse(&form.0).any(|(key, _)| key == "token"));
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(referer.query_pairs().filter(|(key, _)| {
        let spent = used_token && key == "token";
        !(spent || crate::server::middleware::api_errors::is_form_result(key))
    }));
    query.append_pair("done", endpoint);
    leptos_axum::redirect(&format!("{}?{}", referer.path(), query.finish()));
}

/// A Unix time as people read it, e.g. "22 November 2026 at 17:05 UTC".
pub fn readable_date(unix: i64) -> String {
    let format = time::macros::format_description!(
        "[day padding:none] [month repr:long] [year] at [hour]:[minute] UTC"
    );
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Whether this server-function call is a plain HTML form post (no JavaScript): its result can only
/// be a redirect, never data shown in the page.
pub fn is_plain_form_post() -> bool {
    use_context::<http::request::Parts>().is_some_and(|parts| {
        parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
    })
}

pub fn limit_error(err: LimitError) -> AppError {
    match err {
        LimitError::Exceeded { retry_after_secs } => AppError::RateLimited { retry_after_secs },
        LimitError::Unavailable(_) => {
            tracing::warn!(error = %err, "cannot count the request");
            AppError::Unavailable
        }
    }
}

fn session_error(err: tower_sessions::session::Error) -> AppError {
    tracing::error!(error = %err, "session store failed");
    AppError::Unavailable
}

/// An error nobody can fix by changing their input. A database that cannot be reached (pool timed
/// out or closed, connection lost) is `Unavailable` (503: try again), anything else `Internal`.
pub fn internal<E: std::fmt::Display + 'static>(what: &str, err: &E) -> AppError {
    let unreachable = (err as &dyn std::any::Any)
        .downcast_ref::<sea_orm::DbErr>()
        .is_some_and(database_unreachable);
    if unreachable {
        tracing::warn!(error = %err, "{what} failed: the database is unreachable");
        return AppError::Unavailable;
    }
    tracing::error!(error = %err, "{what} failed");
    AppError::Internal
}

/// The database cannot be reached: no connection to be had, or the one in use was lost (by the
/// network, or the server shutting down) in the middle of a query.
fn database_unreachable(err: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    let lost = |runtime: &RuntimeErr| match runtime {
        RuntimeErr::SqlxError(sqlx) => match sqlx.as_ref() {
            Sqlx::Io(_)
            | Sqlx::Tls(_)
            | Sqlx::Protocol(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed => true,
            // SQLSTATE class 08 (connection exception) and 57P01-03 (the server is going away).
            Sqlx::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
            _ => false,
        },
        _ => false,
    };
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => lost(runtime),
        _ => false,
    }
}

/// The one place service errors become what a person sees.
pub fn auth_error(err: AuthError) -> AppError {
    match err {
        AuthError::Invalid { field, message } => AppError::InvalidInput {
            field: field.map(str::to_owned),
            message,
        },
        AuthError::InvalidCredentials => AppError::InvalidInput {
            field: None,
            message: "That email and password don't match an account. Check both and try again."
                .to_owned(),
        },
        AuthError::LockedOut => AppError::InvalidInput {
            field: None,
            message: "Too many attempts — try again later. If you have forgotten your password, you can reset it.".to_owned(),
        },
        // Not the advice to reset the password: a reset does not lift a lock set by wrong codes.
        AuthError::CodesLockedOut => AppError::InvalidInput {
            field: None,
            message: "Too many attempts — codes for this account are refused for a while. Please \
                      try again later."
                .to_owned(),
        },
        AuthError::EmailNotVerified => AppError::EmailNotVerified,
        AuthError::RegistrationClosed => AppError::InvalidInput {
            field: None,
            message: "Sign-ups are closed at the moment. Please try again later.".to_owned(),
        },
        AuthError::LinkInvalid => AppError::InvalidInput {
            field: None,
            message: "This link has expired or was already used. Ask for a new one.".to_owned(),
        },
        AuthError::TooSoon { retry_after_secs } => AppError::RateLimited { retry_after_secs },
        AuthError::WrongCode { .. } => AppError::InvalidInput {
            field: Some("code".to_owned()),
            message: "That code didn't work. Enter the current code from your app, or an unused \
                      backup code."
                .to_owned(),
        },
        AuthError::MfaNeedsConfirmedAddress => AppError::InvalidInput {
            field: None,
            message: "Confirm your email address first: open the link we sent you, or ask for a \
                      new one from the notice at the top of the page. Then you can turn on \
                      two-factor authentication."
                .to_owned(),
        },
        AuthError::MfaAlreadyEnabled => AppError::InvalidInput {
            field: None,
            message: "Two-factor authentication is already on.".to_owned(),
        },
        AuthError::MfaNotEnabled => AppError::InvalidInput {
            field: None,
            message: "Two-factor authentication is off for this account.".to_owned(),
        },
        AuthError::MfaSetupMissing => AppError::InvalidInput {
            field: None,
            message: "This setup has expired or was replaced. Start again to get a new QR code."
                .to_owned(),
        },
        AuthError::MfaPendingMissing => AppError::InvalidInput {
            field: None,
            message: "This sign-in has expired. Please sign in again with your password."
                .to_owned(),
        },
        AuthError::NotFound => AppError::NotFound,
        AuthError::Seal(err) => internal("opening a sealed secret", &err),
        AuthError::Database(err) => internal("a database operation", &err),
        AuthError::CountersUnavailable(err) => {
            tracing::warn!(error = %err, "the shared counters are unreachable");
            AppError::Unavailable
        }
        AuthError::Crypto(err) => internal("password hashing", &err),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::RequestMeta;

    fn key(ip: &str) -> String {
        RequestMeta {
            ip: ip.parse().unwrap(),
            user_agent: String::new(),
            device: None,
        }
        .limit_key()
    }

    #[test]
    fn dates_read_like_a_sentence() {
        assert_eq!(
            super::readable_date(1_795_367_100),
            "22 November 2026 at 17:05 UTC"
        );
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64_and_ipv4_per_address() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(
            key("::ffff:203.0.113.7"),
            "203.0.113.7",
            "mapped IPv4 counts as IPv4"
        );
    }
}
