//! The one place where the site talks to the API (browser only).
//!
//! Pages call the functions at the bottom. Every authenticated call goes through
//! [`latchkey_web_session::Session`], which attaches the access token, refreshes once on a 401
//! (one refresh for any number of calls failing together) and retries once; when the session is
//! over, the user is sent to the log-in page and brought back afterwards. Tabs follow each
//! other's sign-out and sign-in ([`follow_other_tabs`]), and a page never acts as an account
//! other than the one it shows.

use futures::future::{FutureExt, LocalBoxFuture};
use latchkey_web_session::{
    Attempt, CallError, Follow, RefreshFailure, Refresher, Session, Stored, TokenStore, Tokens,
};
use progenitor_client::{Error as ClientError, ResponseValue};
use std::{cell::Cell, future::Future};
use wasm_bindgen::{closure::Closure, JsCast};

/// Written by `latchkey-client-gen` from `openapi/openapi.json` when the site is built.
#[allow(dead_code, unused_imports, clippy::all)]
#[rustfmt::skip]
#[path = "generated/api_client.rs"]
mod generated;
pub use generated::types;
use generated::Client;

const ACCESS_TOKEN_KEY: &str = "latchkey.access_token";
const REFRESH_TOKEN_KEY: &str = "latchkey.refresh_token";
/// Where to go back to after logging in (per tab, so it lives in session storage).
const RETURN_TO_KEY: &str = "latchkey.return_to";
/// A word for the next page of this tab about why it landed there (session storage).
const NOTICE_KEY: &str = "latchkey.notice";
/// The account the page that sent this tab to log in showed (session storage), so that a
/// sign-in elsewhere can say when the account is another one.
const PREVIOUS_ACCOUNT_KEY: &str = "latchkey.previous_account";
const SIGNED_OUT_ELSEWHERE: &str = "You were signed out in another tab, or your session ended.";
/// Said for a moment, before the page reloads to show who is signed in now.
const SESSION_CHANGED: &str = "Who is signed in here changed in another tab. Reloading…";
const ANOTHER_ACCOUNT_ELSEWHERE: &str =
    "You signed in to another account in another tab, so this page now shows that account.";

type ApiError = ClientError<types::ErrorBody>;

fn window() -> web_sys::Window {
    web_sys::window().expect("the site runs in a browser window")
}

/// Local storage: shared by every tab of the site, so a refresh in one tab serves them all.
pub struct LocalStorageTokens;

impl LocalStorageTokens {
    /// What is stored, telling apart the moment between another tab's two writes.
    fn stored(&self) -> Stored {
        let present = |key| {
            window()
                .local_storage()
                .ok()
                .flatten()
                .and_then(|storage| storage.get_item(key).ok().flatten())
                .is_some()
        };
        match self.load() {
            Some(tokens) => Stored::Tokens(tokens.identity()),
            None if present(ACCESS_TOKEN_KEY) || present(REFRESH_TOKEN_KEY) => Stored::HalfWritten,
            None => Stored::Nothing,
        }
    }
}

impl TokenStore for LocalStorageTokens {
    fn load(&self) -> Option<Tokens> {
        let storage = window().local_storage().ok()??;
        Some(Tokens {
            access_token: storage.get_item(ACCESS_TOKEN_KEY).ok()??,
            refresh_token: storage.get_item(REFRESH_TOKEN_KEY).ok()??,
        })
    }

    fn save(&self, tokens: &Tokens) {
        if let Ok(Some(storage)) = window().local_storage() {
            let _ = storage.set_item(ACCESS_TOKEN_KEY, &tokens.access_token);
            let _ = storage.set_item(REFRESH_TOKEN_KEY, &tokens.refresh_token);
        }
    }

    fn clear(&self) {
        if let Ok(Some(storage)) = window().local_storage() {
            let _ = storage.remove_item(ACCESS_TOKEN_KEY);
            let _ = storage.remove_item(REFRESH_TOKEN_KEY);
        }
    }
}

fn client(access_token: Option<&str>) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = access_token {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a browser fetch client");
    let origin = window().location().origin().unwrap_or_default();
    Client::new_with_client(&format!("{origin}/api"), http)
}

pub struct ApiRefresher;

impl Refresher for ApiRefresher {
    fn refresh(
        &self,
        refresh_token: String,
    ) -> LocalBoxFuture<'static, Result<Tokens, RefreshFailure>> {
        async move {
            let body = types::RefreshRequest { refresh_token };
            // A refresh whose answer was lost may have rotated the token on the server. Trying
            // again at once lands inside the server's grace window, which answers with the same
            // successor; trying much later would look like reuse and end the session.
            let mut attempts_left = 3;
            loop {
                attempts_left -= 1;
                match client(None).refresh(&body).await {
                    Ok(pair) => return Ok(tokens_of(pair.into_inner())),
                    Err(e) if status(&e) == Some(401) => return Err(RefreshFailure::Rejected),
                    // Throttled: nothing was rotated, and asking again at once only spends
                    // more of this network's budget.
                    Err(e) if status(&e) == Some(429) => {
                        return Err(RefreshFailure::Unavailable(describe(e)))
                    }
                    Err(e) if attempts_left == 0 => {
                        return Err(RefreshFailure::Unavailable(describe(e)))
                    }
                    Err(_) => {}
                }
            }
        }
        .boxed_local()
    }
}

thread_local! {
    static SESSION: Session<LocalStorageTokens, ApiRefresher> =
        Session::new(LocalStorageTokens, ApiRefresher);
}

/// The page's one session object, so every call shares its in-flight refresh.
pub fn session() -> Session<LocalStorageTokens, ApiRefresher> {
    SESSION.with(Clone::clone)
}

fn tokens_of(pair: types::TokenPairView) -> Tokens {
    Tokens {
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
    }
}

fn status(error: &ApiError) -> Option<u16> {
    error.status().map(|s| s.as_u16())
}

/// A sentence for the user, taken from the API's error body where there is one.
fn describe(error: ApiError) -> String {
    match error {
        ClientError::ErrorResponse(body) => sentence(body.into_inner().message),
        ClientError::CommunicationError(_) => {
            "The server cannot be reached. Check your connection and try again.".into()
        }
        other => match status(&other) {
            Some(code) if code >= 500 => {
                "The service is unavailable right now. Please try again shortly.".into()
            }
            _ => "Something went wrong. Please try again.".into(),
        },
    }
}

/// The API's messages are lower-case fragments; on a page they read as sentences.
fn sentence(message: String) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>() + ".",
        None => message,
    }
}

/// Runs an authenticated call; on a dead session, goes to the log-in page.
async fn authenticated<T, F, Fut>(call: F) -> Result<T, String>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Result<ResponseValue<T>, ApiError>>,
{
    authenticated_as(call, describe).await
}

/// [`authenticated`], with the API's refusals turned into `E` by `refusal`.
async fn authenticated_as<T, E, F, Fut>(call: F, refusal: fn(ApiError) -> E) -> Result<T, E>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Result<ResponseValue<T>, ApiError>>,
    E: From<String>,
{
    let outcome = session()
        .call(|token| {
            let response = call(client(Some(&token)));
            async move {
                match response.await {
                    Ok(value) => Attempt::Done(value.into_inner()),
                    Err(e) if status(&e) == Some(401) => Attempt::Unauthorized,
                    Err(e) => Attempt::Failed(refusal(e)),
                }
            }
        })
        .await;
    match outcome {
        Ok(value) => Ok(value),
        Err(CallError::Failed(error)) => Err(error),
        Err(CallError::RefreshUnavailable(message)) => Err(message.into()),
        Err(CallError::SignedOut) if session().is_signed_in() => {
            // Refused, but another tab has stored other tokens meanwhile: start over with them.
            follow_session_change();
            Err(String::from(SESSION_CHANGED).into())
        }
        Err(CallError::SignedOut) => {
            go_to_login();
            Err(String::from("Your session has ended. Please log in again.").into())
        }
        Err(CallError::SessionChanged) => {
            follow_session_change();
            Err(String::from(SESSION_CHANGED).into())
        }
    }
}

/// Shows what is stored now instead of what this page was shown for: the account signed in
/// since (saying so when it is another one), or the log-in page.
fn follow_session_change() {
    let Some(now) = LocalStorageTokens.load() else {
        set_notice(SIGNED_OUT_ELSEWHERE);
        go_to_login();
        return;
    };
    let shown = session().shown_for();
    if shown.is_some_and(|shown| Some(shown.account) != now.identity().map(|now| now.account)) {
        set_notice(ANOTHER_ACCOUNT_ELSEWHERE);
    }
    let _ = window().location().reload();
}

fn set_notice(notice: &str) {
    if let Ok(Some(storage)) = window().session_storage() {
        let _ = storage.set_item(NOTICE_KEY, notice);
    }
}

/// Why this tab landed on this page, if another page said so (shown once).
pub fn take_notice() -> Option<String> {
    let storage = window().session_storage().ok()??;
    let notice = storage.get_item(NOTICE_KEY).ok()??;
    let _ = storage.remove_item(NOTICE_KEY);
    Some(notice)
}

pub fn go_to(path: &str) {
    let _ = window().location().assign(path);
}

/// Sends the user to log in, remembering this page to come back to.
pub fn go_to_login() {
    let location = window().location();
    let here = format!(
        "{}{}",
        location.pathname().unwrap_or_default(),
        location.search().unwrap_or_default()
    );
    if let Ok(Some(storage)) = window().session_storage() {
        let _ = storage.set_item(RETURN_TO_KEY, &here);
        let _ = match session().shown_for() {
            Some(shown) => storage.set_item(PREVIOUS_ACCOUNT_KEY, &shown.account),
            None => storage.remove_item(PREVIOUS_ACCOUNT_KEY),
        };
    }
    go_to("/login");
}

/// The account the page that sent this tab to log in showed, if it showed one (read once).
fn take_previous_account() -> Option<String> {
    let storage = window().session_storage().ok()??;
    let account = storage.get_item(PREVIOUS_ACCOUNT_KEY).ok()??;
    let _ = storage.remove_item(PREVIOUS_ACCOUNT_KEY);
    Some(account)
}

thread_local! {
    /// True while this page's own log-in is in the air: it navigates once it lands, and a
    /// sign-in elsewhere must not navigate first (that would cut it short, leaving a session
    /// created on the server but stored nowhere).
    static SIGNING_IN: Cell<bool> = const { Cell::new(false) };
}

/// Marks this page's log-in as in the air for as long as it lives.
struct SigningIn;

impl SigningIn {
    fn start() -> Self {
        SIGNING_IN.with(|signing_in| signing_in.set(true));
        SigningIn
    }
}

impl Drop for SigningIn {
    fn drop(&mut self) {
        SIGNING_IN.with(|signing_in| signing_in.set(false));
    }
}

/// Where to go after logging in: the page that sent the user away, or home. Only local paths,
/// so a crafted value cannot send anyone to another site.
pub fn take_return_to() -> String {
    let saved = window()
        .session_storage()
        .ok()
        .flatten()
        .and_then(|s| {
            let value = s.get_item(RETURN_TO_KEY).ok().flatten();
            let _ = s.remove_item(RETURN_TO_KEY);
            value
        })
        .unwrap_or_default();
    let local = saved.starts_with('/') && !saved.starts_with("//") && !saved.starts_with("/login");
    if local {
        saved
    } else {
        "/".into()
    }
}

pub async fn login(email: String, password: String) -> Result<(), String> {
    let _in_the_air = SigningIn::start();
    // The user chose this log-in: no word about the account shown before.
    let _ = take_previous_account();
    // The document bounds a login email's length, so the client checks it before sending.
    let email = email
        .parse::<types::CredentialsEmail>()
        .map_err(|_| "Enter your email address (at most 254 characters).".to_owned())?;
    let pair = client(None)
        .login(&types::Credentials { email, password })
        .await
        .map_err(describe)?;
    // Another tab signed in while this one did: its session would run on with nobody able to
    // reach it, so it ends here. Waited for, since the page navigates away next.
    if let Some(replaced) = session().sign_in(&tokens_of(pair.into_inner())) {
        // Once more if the server could not be reached; beyond that it expires on its own.
        if revoke(replaced.refresh_token.clone()).await.is_err() {
            let _ = revoke(replaced.refresh_token).await;
        }
    }
    Ok(())
}

/// Who is signed in on this browser, for the log-in page's "continue as" choice: `Ok(None)`
/// when nobody is (or the stored session is over), `Err` when the server could not tell.
pub async fn signed_in_email() -> Result<Option<String>, String> {
    // Twice at most: another tab may store other tokens while the first answer is in the air.
    for _ in 0..2 {
        if !session().is_signed_in() {
            return Ok(None);
        }
        // Whoever is signed in now, not whoever this page asked about before.
        session().unbind();
        let answer = session()
            .call(|token| async move {
                match client(Some(&token)).get_current_user().await {
                    Ok(user) => Attempt::Done(user.into_inner().email),
                    Err(e) if status(&e) == Some(401) => Attempt::Unauthorized,
                    Err(e) => Attempt::Failed(describe(e)),
                }
            })
            .await;
        match answer {
            Ok(email) => return Ok(Some(email)),
            Err(CallError::SignedOut | CallError::SessionChanged) => continue,
            Err(CallError::Failed(message) | CallError::RefreshUnavailable(message)) => {
                return Err(message)
            }
        }
    }
    Err(SESSION_CHANGED.into())
}

/// The form field a refusal is about, so the page can show it next to that field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Field {
    Email,
    /// The password being chosen.
    Password,
    /// The password the account has now, confirming a change.
    CurrentPassword,
}

/// Why a form was refused: a sentence, and the field it is about when there is one.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FormError {
    pub message: String,
    pub field: Option<Field>,
}

impl From<String> for FormError {
    fn from(message: String) -> Self {
        Self {
            message,
            field: None,
        }
    }
}

/// A refusal of a form, placed next to the field its code is about: the API names the rule a
/// weak password breaks, and the message says it in words.
fn form_error(error: ApiError) -> FormError {
    let field = match &error {
        ClientError::ErrorResponse(body) => match body.error.as_str() {
            "weak_password" => Some(Field::Password),
            "wrong_password" | "invalid_password" => Some(Field::CurrentPassword),
            "invalid_email" | "email_taken" => Some(Field::Email),
            _ => None,
        },
        _ => None,
    };
    FormError {
        message: describe(error),
        field,
    }
}

pub async fn register_and_login(email: String, password: String) -> Result<(), FormError> {
    let _in_the_air = SigningIn::start();
    client(None)
        .register(&types::NewAccount {
            email: email.clone(),
            password: password.clone(),
        })
        .await
        .map_err(form_error)?;
    login(email, password).await.map_err(FormError::from)
}

/// The `token` of the mailed link this page was opened with. It travels in the fragment
/// (`#token=...`), which the browser never sends to a server; once read it is taken out of the
/// address bar and the history, so that neither shows it to the next person at this screen.
pub fn link_token() -> Option<String> {
    read_link().map(|link| link.token)
}

/// The address a reset link was sent to (`#token=...&email=...`), for password managers.
pub fn link_email() -> Option<String> {
    read_link().and_then(|link| link.email)
}

#[derive(Clone)]
struct Link {
    /// The page it was read on.
    page: String,
    token: String,
    email: Option<String>,
}

fn read_link() -> Option<Link> {
    thread_local! {
        static LINK: std::cell::RefCell<Option<Link>> = const { std::cell::RefCell::new(None) };
    }
    let location = window().location();
    let path = location.pathname().ok()?;
    let fragment = location.hash().ok().unwrap_or_default();
    let parameter = |name: &str| {
        fragment
            .trim_start_matches('#')
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    // A link pasted into this tab replaces the one read before; without one in the address,
    // the link read on this page is still the one.
    let Some(token) = parameter("token") else {
        return LINK
            .with(|link| link.borrow().clone())
            .filter(|link| link.page == path);
    };
    let link = Link {
        page: path.clone(),
        token,
        email: parameter("email").and_then(|email| percent_decode(&email)),
    };
    LINK.with(|stored| *stored.borrow_mut() = Some(link.clone()));
    if let Ok(history) = window().history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&path));
    }
    Some(link)
}

/// `%XX` escapes to the bytes they stand for; `None` for a broken escape or text that is not
/// UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Asks for a reset link; the answer is the same whether or not an account has the address.
pub async fn forgot_password(email: String) -> Result<String, FormError> {
    let email = email
        .parse::<types::PasswordForgottenEmail>()
        .map_err(|_| FormError {
            message: "Enter your email address (at most 254 characters).".into(),
            field: Some(Field::Email),
        })?;
    let accepted = client(None)
        .forgot_password(&types::PasswordForgotten { email })
        .await
        .map_err(form_error)?;
    Ok(sentence(accepted.into_inner().message))
}

pub async fn reset_password(token: String, new_password: String) -> Result<(), FormError> {
    client(None)
        .reset_password(&types::PasswordReset {
            token,
            new_password,
        })
        .await
        .map_err(form_error)?;
    // Every session of the account has ended; if this browser held one, its next call finds
    // out and goes to log in. Tokens of another account signed in here stay as they are.
    Ok(())
}

/// Why a verification failed, and whether the same link can be tried again (it can, unless
/// the server said it is no good).
pub struct VerifyFailure {
    pub message: String,
    pub link_still_good: bool,
}

/// Confirms the address, signed in when this browser holds a session: the server keeps the
/// sessions of an account confirmed from its own session only. Answers whether every session
/// of the account ended (this browser was not signed in to it).
pub async fn verify_email(token: String) -> Result<bool, VerifyFailure> {
    // Unsure whether this browser is signed in (the server did not answer): better to try
    // again than to end the owner's own sessions.
    let access_token = live_access_token().await.map_err(|message| VerifyFailure {
        message,
        link_still_good: true,
    })?;
    let verified = client(access_token.as_deref())
        .verify_email(&types::EmailVerification { token })
        .await
        .map_err(|error| {
            let link_dead =
                matches!(&error, ClientError::ErrorResponse(body) if body.error == "invalid_link");
            VerifyFailure {
                message: describe(error),
                link_still_good: !link_dead,
            }
        })?;
    Ok(verified.into_inner().sessions_ended)
}

/// This browser's access token, refreshed first if it expired; `None` when signed out (an
/// expired token would count as signed in to nothing). Never leaves the page.
async fn live_access_token() -> Result<Option<String>, String> {
    if !session().is_signed_in() {
        return Ok(None);
    }
    // This page shows no account: whoever is signed in now is the one to ask with.
    session().unbind();
    let checked = session()
        .call(|token| async move {
            let api = client(Some(&token));
            let answer = api.get_session().await;
            match answer {
                Ok(_) => Attempt::Done(token),
                Err(e) if status(&e) == Some(401) => Attempt::Unauthorized,
                Err(e) => Attempt::Failed(describe(e)),
            }
        })
        .await;
    match checked {
        Ok(token) => Ok(Some(token)),
        Err(CallError::SignedOut) => Ok(None),
        // Signed in anew meanwhile: the next try asks with the new session.
        Err(CallError::SessionChanged) => {
            Err("Who is signed in here changed in another tab. Please try again.".into())
        }
        Err(CallError::Failed(message) | CallError::RefreshUnavailable(message)) => Err(message),
    }
}

pub async fn resend_verification() -> Result<(), String> {
    authenticated(|api| async move { api.resend_verification().await }).await?;
    Ok(())
}

/// The most pages of sessions the account page reads, 100 sessions each (the server's default
/// page): with the default `MAX_SESSIONS_PER_USER` (100), one page holds them all.
const MAX_SESSION_PAGES: usize = 5;

/// The account's live sessions, newest first, following each page's `next`; `true` when more
/// than [`MAX_SESSION_PAGES`] pages' worth were left unread.
pub async fn list_sessions() -> Result<(Vec<types::SessionSummaryView>, bool), String> {
    let mut sessions = Vec::new();
    let mut cursor: Option<types::ListSessionsCursor> = None;
    for _ in 0..MAX_SESSION_PAGES {
        let page = authenticated(|api| {
            let cursor = cursor.clone();
            async move { api.list_sessions(cursor.as_ref(), None).await }
        })
        .await?;
        sessions.extend(page.sessions);
        let Some(next) = page.next_cursor else {
            return Ok((sessions, false));
        };
        cursor = Some(next.parse().map_err(|_| {
            "The list of sessions cannot be continued; reload the page.".to_owned()
        })?);
    }
    Ok((sessions, true))
}

pub async fn end_session(id: uuid::Uuid) -> Result<(), String> {
    authenticated(|api| async move { api.end_session(&id).await }).await
}

/// Ends every session of the account, this one included, then forgets the tokens.
pub async fn logout_all() -> Result<(), String> {
    authenticated(|api| async move { api.logout_all().await }).await?;
    session().sign_out_everywhere();
    Ok(())
}

pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<(), FormError> {
    let body = types::PasswordChange {
        current_password,
        new_password,
    };
    authenticated_as(
        |api| {
            let body = body.clone();
            async move { api.change_password(&body).await }
        },
        form_error,
    )
    .await
}

/// Deletes the account for good, then forgets the tokens.
pub async fn delete_account(password: String) -> Result<(), FormError> {
    let body = types::PasswordConfirmation { password };
    authenticated_as(
        |api| {
            let body = body.clone();
            async move { api.delete_current_user(&body).await }
        },
        form_error,
    )
    .await?;
    session().sign_out_everywhere();
    Ok(())
}

/// One page of accounts (administrators only), starting after `cursor`.
pub async fn list_users(
    query: String,
    cursor: Option<String>,
) -> Result<types::UserPageView, String> {
    let query = Some(query.trim().to_owned())
        .filter(|query| !query.is_empty())
        .map(|query| query.parse::<types::AdminListUsersQuery>())
        .transpose()
        .map_err(|_| "Search for at most 254 characters.".to_owned())?;
    let cursor = cursor
        .map(|cursor| cursor.parse::<types::AdminListUsersCursor>())
        .transpose()
        .map_err(|_| "This page cannot be continued; search again.".to_owned())?;
    authenticated(|api| {
        let (query, cursor) = (query.clone(), cursor.clone());
        async move {
            api.admin_list_users(cursor.as_ref(), None, None, query.as_ref(), None)
                .await
        }
    })
    .await
}

pub async fn admin_user(id: uuid::Uuid) -> Result<types::AdminUserDetailView, String> {
    authenticated(|api| async move { api.admin_get_user(&id).await }).await
}

/// Sets the account's roles from a comma-separated list.
pub async fn set_user_roles(id: uuid::Uuid, roles: String) -> Result<(), String> {
    let roles = roles
        .split(',')
        .map(str::trim)
        .filter(|role| !role.is_empty())
        .map(|role| role.parse::<types::RolesInputRolesItem>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            "A role is 1 to 32 of a-z, 0-9, _ and -, starting with a letter.".to_owned()
        })?;
    let body = types::RolesInput { roles };
    authenticated(|api| {
        let body = body.clone();
        async move { api.admin_set_user_roles(&id, &body).await }
    })
    .await?;
    Ok(())
}

pub async fn set_user_disabled(id: uuid::Uuid, disabled: bool) -> Result<(), String> {
    if disabled {
        authenticated(|api| async move { api.admin_disable_user(&id).await }).await?;
    } else {
        authenticated(|api| async move { api.admin_enable_user(&id).await }).await?;
    }
    Ok(())
}

pub async fn end_user_sessions(id: uuid::Uuid) -> Result<u64, String> {
    let ended = authenticated(|api| async move { api.admin_end_user_sessions(&id).await }).await?;
    Ok(ended.ended_sessions)
}

pub async fn current_user() -> Result<types::UserView, String> {
    authenticated(|api| async move { api.get_current_user().await }).await
}

pub async fn current_session() -> Result<types::SessionView, String> {
    authenticated(|api| async move { api.get_session().await }).await
}

/// Ends the session on the server, then forgets the tokens. The refresh token is the
/// credential (RFC 7009), so this works after the access token expired. When the server could
/// not be told, the tokens are kept for another try: forgetting them would leave a session
/// running that nobody can end any more.
pub async fn logout() -> Result<(), String> {
    match session().log_out(revoke).await {
        Ok(()) => Ok(()),
        Err(CallError::SessionChanged) => {
            follow_session_change();
            Err(SESSION_CHANGED.into())
        }
        Err(CallError::Failed(e)) => Err(format!(
            "Logging out failed, so you are still signed in. {}",
            describe(e)
        )),
        Err(CallError::SignedOut | CallError::RefreshUnavailable(_)) => Ok(()),
    }
}

/// Ends the session `refresh_token` belongs to. A refusal counts as ended: it would not change
/// on another try (the session is over or unknown); a timeout or rate limit might.
async fn revoke(refresh_token: String) -> Result<(), ApiError> {
    match client(None)
        .logout(&types::RefreshRequest { refresh_token })
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if status(&e).is_some_and(|code| code < 500 && code != 408 && code != 429) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Keeps this tab in step with the others: a `storage` event fires here when another tab of
/// the site changes local storage. When that tab signs out, a signed-in page goes to log in;
/// when it signs in, a log-in or register page goes on to where the user was headed. Installed
/// once per page load, since navigating inside the site keeps the window and its listeners.
pub fn follow_other_tabs() {
    thread_local! {
        static FOLLOWING: Cell<bool> = const { Cell::new(false) };
    }
    if FOLLOWING.with(|following| following.replace(true)) {
        return;
    }
    let mut leaving = false;
    let on_storage =
        Closure::<dyn FnMut(web_sys::StorageEvent)>::new(move |event: web_sys::StorageEvent| {
            // No key: another tab cleared all of local storage.
            let ours = event
                .key()
                .is_none_or(|key| key == ACCESS_TOKEN_KEY || key == REFRESH_TOKEN_KEY);
            if leaving || !ours {
                return;
            }
            // Signing in or out writes two keys, so two events: what counts is what is stored
            // now, not what this one event changed. A refresh keeps the account and session,
            // so it changes nothing here.
            let stored = LocalStorageTokens.stored();
            let path = window().location().pathname().unwrap_or_default();
            let on_sign_in_page = matches!(path.trim_end_matches('/'), "/login" | "/register");
            let signing_in = SIGNING_IN.with(Cell::get);
            match latchkey_web_session::follow(
                &stored,
                session().shown_for().as_ref(),
                on_sign_in_page,
                signing_in,
            ) {
                Follow::Stay => return,
                Follow::LogIn => {
                    set_notice(SIGNED_OUT_ELSEWHERE);
                    go_to_login();
                }
                Follow::GoOn => {
                    let now = match &stored {
                        Stored::Tokens(Some(now)) => Some(now.account.as_str()),
                        _ => None,
                    };
                    // The account this tab showed last: the one it offers to continue as, or
                    // the one whose page sent it here.
                    let previous = take_previous_account();
                    let before = session()
                        .shown_for()
                        .map(|shown| shown.account)
                        .or(previous);
                    if before.is_some_and(|before| Some(before.as_str()) != now) {
                        set_notice(ANOTHER_ACCOUNT_ELSEWHERE);
                    }
                    go_to(&take_return_to());
                }
                Follow::ShowForm => {
                    let _ = window().location().reload();
                }
                Follow::ShowNewSession => follow_session_change(),
            }
            leaving = true;
        });
    let _ =
        window().add_event_listener_with_callback("storage", on_storage.as_ref().unchecked_ref());
    // The listener lives as long as the page.
    on_storage.forget();
}
