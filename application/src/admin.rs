//! What administrators do to accounts: find them, change their roles, disable and enable them,
//! end their sessions. Every call re-reads the caller's account, so a removed role, a disabled
//! administrator or a deleted one stops at once, whatever their access token says.

use crate::AuthService;
use latchkey_domain::{
    ports::StoreError, role_set, AccessClaims, AdminAction, AuthEvent, EmailAddress, EmailKey,
    InvalidRole, Role, SessionEndCause, User, UserFilter, UserId,
};

/// The most entries one page of a listing holds (accounts, or one's own sessions).
pub const MAX_PAGE_SIZE: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum OperatorGrantError {
    #[error("no account has this email; register it first")]
    NoSuchAccount,
    #[error("the account has the most roles an account may have; remove one first")]
    TooManyRoles,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "this needs an administrator: an access token issued with the admin role (refresh \
         after being made one), of an enabled account with a verified email address"
    )]
    Forbidden,
    #[error("no account has this id")]
    UserNotFound,
    #[error("administrators cannot remove their own admin role")]
    OwnAdminRole,
    #[error("administrators cannot disable their own account")]
    OwnAccount,
    #[error(transparent)]
    InvalidRole(#[from] InvalidRole),
    #[error("the cursor is not one a listing handed out")]
    InvalidCursor,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of a listing, as asked: `role` and `cursor` are checked only once the caller is
/// known to be an administrator (the HTTP layer checks types and ranges before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    /// The start of the email, in any case.
    pub email_prefix: Option<String>,
    /// A role name.
    pub role: Option<String>,
    pub disabled: Option<bool>,
    /// The [`UserPage::next`] of the previous page; `None` for the first page.
    pub cursor: Option<String>,
    /// 1 to [`MAX_PAGE_SIZE`].
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPage {
    pub users: Vec<User>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDetail {
    pub user: User,
    /// Live sessions, as the store counts them (none is read).
    pub active_sessions: u64,
}

/// A page ends at an account's lower-cased email; the cursor is its bytes in hex, so that it
/// travels in a URL as it is.
fn encode_cursor(key: &str) -> String {
    key.bytes().map(|byte| format!("{byte:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Option<String> {
    if !cursor.len().is_multiple_of(2) || cursor.len() > 2 * EmailAddress::MAX_LEN {
        return None;
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(cursor.get(at..at + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

impl AuthService {
    /// The caller's account, if it may administer now. An address from `ADMIN_EMAILS` can be
    /// registered by anyone before its owner does; a verified address is what proves the owner.
    async fn administrator(&self, caller: &AccessClaims) -> Result<User, AdminError> {
        if !caller.roles.iter().any(Role::is_admin) {
            return Err(AdminError::Forbidden);
        }
        match self.ports.users.find_by_id(caller.subject).await? {
            Some(user)
                if user.is_admin()
                    && user.disabled_at.is_none()
                    && user.email_verified_at.is_some() =>
            {
                Ok(user)
            }
            _ => Err(AdminError::Forbidden),
        }
    }

    #[tracing::instrument(name = "admin_list_users", skip_all)]
    pub async fn list_users(
        &self,
        caller: &AccessClaims,
        query: UserQuery,
    ) -> Result<UserPage, AdminError> {
        self.administrator(caller).await?;
        let filter = UserFilter {
            email_prefix: query.email_prefix.filter(|prefix| !prefix.is_empty()),
            role: query.role.as_deref().map(Role::parse).transpose()?,
            disabled: query.disabled,
        };
        let after = query
            .cursor
            .as_deref()
            .map(|cursor| decode_cursor(cursor).ok_or(AdminError::InvalidCursor))
            .transpose()?;
        let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
        // One more than asked tells whether a next page exists.
        let mut users = self.ports.users.list(&filter, after, limit + 1).await?;
        let next = if users.len() > limit {
            users.truncate(limit);
            users
                .last()
                .map(|user| encode_cursor(user.email.normalized()))
        } else {
            None
        };
        Ok(UserPage { users, next })
    }

    #[tracing::instrument(name = "admin_get_user", skip_all, fields(user_id = %id))]
    pub async fn get_user(
        &self,
        caller: &AccessClaims,
        id: UserId,
    ) -> Result<UserDetail, AdminError> {
        self.administrator(caller).await?;
        let user = self
            .ports
            .users
            .find_by_id(id)
            .await?
            .ok_or(AdminError::UserNotFound)?;
        let active_sessions = self
            .ports
            .sessions
            .count_active(id, self.liveness(self.ports.clock.now()))
            .await?;
        Ok(UserDetail {
            user,
            active_sessions,
        })
    }

    /// Replaces the account's roles (`user` is always kept). Access tokens issued before carry
    /// the old roles until they expire; the admin API itself goes by the stored roles.
    #[tracing::instrument(name = "admin_set_roles", skip_all, fields(user_id = %id))]
    pub async fn set_roles(
        &self,
        caller: &AccessClaims,
        id: UserId,
        roles: Vec<String>,
    ) -> Result<User, AdminError> {
        let admin = self.administrator(caller).await?;
        let roles = role_set(
            roles
                .iter()
                .map(|raw| Role::parse(raw))
                .collect::<Result<Vec<_>, _>>()?,
        )?;
        if id == admin.id && !roles.iter().any(Role::is_admin) {
            return Err(AdminError::OwnAdminRole);
        }
        let user = self
            .ports
            .users
            .set_roles(id, &roles)
            .await?
            .ok_or(AdminError::UserNotFound)?;
        self.record(AuthEvent::AdminAction {
            admin: admin.id,
            user: id,
            action: AdminAction::RolesChanged,
        });
        Ok(user)
    }

    /// Disables the account and ends every session of it. Safe to repeat: a call that failed
    /// halfway (the store went away) is finished by the next.
    #[tracing::instrument(name = "admin_disable", skip_all, fields(user_id = %id))]
    pub async fn disable_user(
        &self,
        caller: &AccessClaims,
        id: UserId,
    ) -> Result<User, AdminError> {
        let admin = self.administrator(caller).await?;
        if id == admin.id {
            return Err(AdminError::OwnAccount);
        }
        let now = self.ports.clock.now();
        // Disabled first: a login that creates a session after this reads the mark and ends
        // its session itself; one that created it before has it ended below.
        let user = self
            .ports
            .users
            .set_disabled(id, Some(now))
            .await?
            .ok_or(AdminError::UserNotFound)?;
        // Audited as soon as it holds: the sessions' end has its own line, after it.
        self.record(AuthEvent::AdminAction {
            admin: admin.id,
            user: id,
            action: AdminAction::Disabled,
        });
        self.end_all_sessions_of(id).await?;
        Ok(user)
    }

    #[tracing::instrument(name = "admin_enable", skip_all, fields(user_id = %id))]
    pub async fn enable_user(&self, caller: &AccessClaims, id: UserId) -> Result<User, AdminError> {
        let admin = self.administrator(caller).await?;
        let user = self
            .ports
            .users
            .set_disabled(id, None)
            .await?
            .ok_or(AdminError::UserNotFound)?;
        self.record(AuthEvent::AdminAction {
            admin: admin.id,
            user: id,
            action: AdminAction::Enabled,
        });
        Ok(user)
    }

    /// Ends every session of the account; returns how many were live.
    #[tracing::instrument(name = "admin_end_sessions", skip_all, fields(user_id = %id))]
    pub async fn end_user_sessions(
        &self,
        caller: &AccessClaims,
        id: UserId,
    ) -> Result<u64, AdminError> {
        let admin = self.administrator(caller).await?;
        if self.ports.users.find_by_id(id).await?.is_none() {
            return Err(AdminError::UserNotFound);
        }
        let ended = self.end_all_sessions_of(id).await?;
        self.record(AuthEvent::AdminAction {
            admin: admin.id,
            user: id,
            action: AdminAction::SessionsEnded,
        });
        Ok(ended)
    }

    async fn end_all_sessions_of(&self, id: UserId) -> Result<u64, StoreError> {
        let ended = self
            .ports
            .sessions
            .revoke_all_of_user(id, self.ports.clock.now(), None)
            .await?;
        if ended > 0 {
            self.record(AuthEvent::SessionsEnded {
                user: id,
                session: None,
                cause: SessionEndCause::Administrator,
            });
        }
        Ok(ended)
    }

    /// Makes the accounts of `ADMIN_EMAILS` whose mailbox holder set the password in force
    /// enabled administrators (at start): the way back when no administrator is left, or
    /// every one was disabled. Returns how many accounts changed.
    pub async fn grant_configured_admins(&self) -> Result<usize, StoreError> {
        let mut changed = 0;
        for email in self.admin_emails.iter() {
            let Some(mut user) = self.ports.users.find_by_email(email).await? else {
                continue;
            };
            if !user.owned_by_mailbox_holder() {
                continue;
            }
            let mut enabled = false;
            if user.disabled_at.is_some() {
                if let Some(account) = self.ports.users.set_disabled(user.id, None).await? {
                    self.record(AuthEvent::AdminEnabledByConfiguration { user: user.id });
                    user = account;
                    enabled = true;
                }
            }
            if self.grant_if_configured(user).await? || enabled {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// `ADMIN_EMAILS` applies to an account once the mailbox's holder has set its password
    /// through a mailed link: anyone can register an address, and choose its password, before
    /// its owner does; verifying the address alone would hand the role to that password.
    pub(crate) async fn grant_if_configured(&self, user: User) -> Result<bool, StoreError> {
        let configured = self.admin_emails.contains(&user.email.key());
        if !configured || !user.owned_by_mailbox_holder() || user.is_admin() {
            return Ok(false);
        }
        let Ok(roles) = role_set(user.roles.iter().cloned().chain([Role::admin()])) else {
            tracing::warn!(user_id = %user.id, "ADMIN_EMAILS: the account has the most roles an account may have; admin not added");
            return Ok(false);
        };
        let granted = self.ports.users.set_roles(user.id, &roles).await?.is_some();
        if granted {
            self.record(AuthEvent::AdminGrantedByConfiguration { user: user.id });
        }
        Ok(granted)
    }

    /// [`Self::grant_if_configured`] for the account as stored now (right after a reset).
    pub(crate) async fn grant_if_configured_by_id(&self, user: UserId) -> Result<(), StoreError> {
        if self.admin_emails.is_empty() {
            return Ok(());
        }
        if let Some(account) = self.ports.users.find_by_id(user).await? {
            self.grant_if_configured(account).await?;
        }
        Ok(())
    }

    /// `latchkey admin grant EMAIL`: an operator, who runs the server and so needs no mail to
    /// prove anything, makes the account with `email` an enabled administrator with a verified
    /// address. Returns the account as it is now.
    #[tracing::instrument(name = "admin_grant_by_operator", skip_all)]
    pub async fn grant_admin_by_operator(&self, email: &str) -> Result<User, OperatorGrantError> {
        let key = EmailKey::for_login(email).map_err(|_| OperatorGrantError::NoSuchAccount)?;
        let users = &self.ports.users;
        let user = users
            .find_by_email(&key)
            .await?
            .ok_or(OperatorGrantError::NoSuchAccount)?;
        users
            .mark_email_verified(user.id, user.email.normalized(), self.ports.clock.now())
            .await?;
        if user.disabled_at.is_some() {
            users.set_disabled(user.id, None).await?;
        }
        let roles = role_set(user.roles.iter().cloned().chain([Role::admin()]))
            .map_err(|_| OperatorGrantError::TooManyRoles)?;
        let user = users
            .set_roles(user.id, &roles)
            .await?
            .ok_or(OperatorGrantError::NoSuchAccount)?;
        self.record(AuthEvent::AdminGrantedByOperator { user: user.id });
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use mockall::Sequence;

    fn admin_user() -> User {
        User {
            roles: vec![Role::user(), Role::admin()],
            email_verified_at: Some(t0()),
            password_set_by_mailbox_owner_at: Some(t0()),
            ..user(1)
        }
    }

    fn claims_of(user: &User, roles: Vec<Role>) -> AccessClaims {
        AccessClaims {
            subject: user.id,
            roles,
            session: family(7),
            token_id: fixed_uuid(9),
            issued_at: t0(),
            expires_at: t0() + chrono::Duration::hours(1),
        }
    }

    /// What user 1, the administrator, did to user 2.
    fn by_admin_1_on_user_2(action: AdminAction) -> AuthEvent {
        AuthEvent::AdminAction {
            admin: user(1).id,
            user: user(2).id,
            action,
        }
    }

    fn admin_claims() -> AccessClaims {
        claims_of(&admin_user(), vec![Role::user(), Role::admin()])
    }

    /// The caller's account, as the store holds it now.
    fn caller_is(mocks: &mut Mocks, stored: Option<User>) {
        mocks
            .users
            .expect_find_by_id()
            .withf(|id| *id == user(1).id)
            .returning(move |_| Ok(stored.clone()));
    }

    #[tokio::test]
    async fn a_token_without_the_admin_role_is_refused_without_a_store_call() {
        let mut mocks = Mocks::new();
        mocks.users.expect_find_by_id().never();
        let claims = claims_of(&user(1), vec![Role::user()]);
        let err = mocks
            .service()
            .get_user(&claims, user(2).id)
            .await
            .unwrap_err();
        assert!(matches!(err, AdminError::Forbidden));
    }

    #[tokio::test]
    async fn the_stored_account_decides_not_the_tokens_roles() {
        let demoted = User {
            roles: vec![Role::user()],
            ..admin_user()
        };
        let disabled = User {
            disabled_at: Some(t0()),
            ..admin_user()
        };
        let unverified = User {
            email_verified_at: None,
            ..admin_user()
        };
        for stored in [Some(demoted), Some(disabled), Some(unverified), None] {
            let mut mocks = Mocks::new();
            caller_is(&mut mocks, stored.clone());
            mocks.users.expect_set_disabled().never();
            let err = mocks
                .service()
                .disable_user(&admin_claims(), user(2).id)
                .await
                .unwrap_err();
            assert!(matches!(err, AdminError::Forbidden), "{stored:?}");
        }
    }

    #[tokio::test]
    async fn disabling_marks_the_account_first_then_ends_its_sessions_and_says_who() {
        let mut mocks = Mocks::new();
        caller_is(&mut mocks, Some(admin_user()));
        let mut order = Sequence::new();
        mocks
            .users
            .expect_set_disabled()
            .withf(|id, at| *id == user(2).id && *at == Some(t0()))
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, at| {
                Ok(Some(User {
                    disabled_at: at,
                    ..user(2)
                }))
            });
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .withf(|id, at, keep| *id == user(2).id && *at == t0() && keep.is_none())
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(2));
        let events = mocks.events.clone();
        let disabled = mocks
            .service()
            .disable_user(&admin_claims(), user(2).id)
            .await
            .unwrap();
        assert_eq!(disabled.disabled_at, Some(t0()));
        assert_eq!(
            events.taken(),
            [
                by_admin_1_on_user_2(AdminAction::Disabled),
                AuthEvent::SessionsEnded {
                    user: user(2).id,
                    session: None,
                    cause: SessionEndCause::Administrator
                }
            ]
        );
    }

    /// The account is disabled (and audited so) even when ending its sessions fails; the
    /// sessions' end is not claimed.
    #[tokio::test]
    async fn a_disabling_the_store_cuts_short_is_audited_as_far_as_it_got() {
        let mut mocks = Mocks::new();
        caller_is(&mut mocks, Some(admin_user()));
        mocks.users.expect_set_disabled().returning(|_, at| {
            Ok(Some(User {
                disabled_at: at,
                ..user(2)
            }))
        });
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .returning(|_, _, _| Err(StoreError("timed out".into())));
        let events = mocks.events.clone();
        let err = mocks
            .service()
            .disable_user(&admin_claims(), user(2).id)
            .await
            .unwrap_err();
        assert!(matches!(err, AdminError::Store(_)));
        assert_eq!(
            events.taken(),
            [by_admin_1_on_user_2(AdminAction::Disabled)]
        );
    }

    #[tokio::test]
    async fn at_start_a_disabled_configured_administrator_is_enabled_again() {
        let mut mocks = Mocks::new();
        mocks.admin_emails = vec![EmailKey::for_login("user1@example.com").unwrap()];
        mocks.users.expect_find_by_email().returning(|_| {
            Ok(Some(User {
                disabled_at: Some(t0()),
                ..admin_user()
            }))
        });
        mocks
            .users
            .expect_set_disabled()
            .withf(|id, at| *id == user(1).id && at.is_none())
            .times(1)
            .returning(|_, _| Ok(Some(admin_user())));
        mocks.users.expect_set_roles().never();
        let events = mocks.events.clone();
        assert_eq!(mocks.service().grant_configured_admins().await, Ok(1));
        assert_eq!(
            events.taken(),
            [AuthEvent::AdminEnabledByConfiguration { user: user(1).id }]
        );
    }

    #[tokio::test]
    async fn an_administrator_cannot_disable_themselves_or_drop_their_own_admin_role() {
        let mut mocks = Mocks::new();
        caller_is(&mut mocks, Some(admin_user()));
        mocks.users.expect_set_disabled().never();
        mocks.users.expect_set_roles().never();
        let service = mocks.service();
        assert!(matches!(
            service.disable_user(&admin_claims(), user(1).id).await,
            Err(AdminError::OwnAccount)
        ));
        assert!(matches!(
            service
                .set_roles(&admin_claims(), user(1).id, vec!["billing".into()])
                .await,
            Err(AdminError::OwnAdminRole)
        ));
        assert!(matches!(
            service
                .set_roles(&admin_claims(), user(2).id, vec!["Admin".into()])
                .await,
            Err(AdminError::InvalidRole(_))
        ));
    }

    #[tokio::test]
    async fn roles_are_set_as_a_set_with_user_and_the_change_is_audited() {
        let mut mocks = Mocks::new();
        caller_is(&mut mocks, Some(admin_user()));
        let billing = Role::parse("billing").unwrap();
        let expected = vec![Role::user(), billing.clone(), Role::admin()];
        let stored = expected.clone();
        mocks
            .users
            .expect_set_roles()
            .withf(move |id, roles| *id == user(2).id && roles == stored.as_slice())
            .times(1)
            .returning(|_, roles| {
                Ok(Some(User {
                    roles: roles.to_vec(),
                    ..user(2)
                }))
            });
        let events = mocks.events.clone();
        let changed = mocks
            .service()
            .set_roles(
                &admin_claims(),
                user(2).id,
                vec!["billing".into(), "admin".into(), "billing".into()],
            )
            .await
            .unwrap();
        assert_eq!(changed.roles, expected);
        assert_eq!(
            events.taken(),
            [by_admin_1_on_user_2(AdminAction::RolesChanged)]
        );
    }

    #[tokio::test]
    async fn a_page_asks_for_one_more_and_points_past_its_last_account() {
        for (stored, expect_next) in [(3, true), (2, false)] {
            let mut mocks = Mocks::new();
            caller_is(&mut mocks, Some(admin_user()));
            mocks
                .users
                .expect_list()
                .withf(|filter, after, limit| {
                    filter.role == Some(Role::admin())
                        && filter.email_prefix.is_none()
                        && after.as_deref() == Some("a@example.com")
                        && *limit == 3
                })
                .returning(move |_, _, _| Ok((2..2 + stored).map(user).collect()));
            let page = mocks
                .service()
                .list_users(
                    &admin_claims(),
                    UserQuery {
                        email_prefix: Some(String::new()),
                        role: Some("admin".into()),
                        disabled: None,
                        cursor: Some(encode_cursor("a@example.com")),
                        limit: 2,
                    },
                )
                .await
                .unwrap();
            assert_eq!(page.users.len(), 2);
            assert_eq!(
                page.next,
                expect_next.then(|| encode_cursor("user3@example.com"))
            );
        }
    }

    #[tokio::test]
    async fn bad_parameters_are_answered_to_administrators_only() {
        let query = |role: &str, cursor: &str| UserQuery {
            email_prefix: None,
            role: Some(role.into()),
            disabled: None,
            cursor: Some(cursor.into()),
            limit: 20,
        };
        let mut mocks = Mocks::new();
        caller_is(&mut mocks, Some(admin_user()));
        mocks.users.expect_list().never();
        let service = mocks.service();
        for cursor in ["x", "0g", "ff", &"61".repeat(255)] {
            assert!(
                matches!(
                    service
                        .list_users(&admin_claims(), query("admin", cursor))
                        .await,
                    Err(AdminError::InvalidCursor)
                ),
                "{cursor}"
            );
        }
        assert!(matches!(
            service
                .list_users(&admin_claims(), query("Admin", "61"))
                .await,
            Err(AdminError::InvalidRole(_))
        ));
        let user_claims = claims_of(&user(1), vec![Role::user()]);
        assert!(matches!(
            service.list_users(&user_claims, query("Admin", "x")).await,
            Err(AdminError::Forbidden)
        ));
        assert_eq!(
            decode_cursor(&encode_cursor("zoë@example.com")).as_deref(),
            Some("zoë@example.com")
        );
    }

    #[tokio::test]
    async fn the_detail_counts_live_sessions_in_the_store_without_reading_them() {
        let mut mocks = Mocks::sessions_strict();
        caller_is(&mut mocks, Some(admin_user()));
        mocks
            .users
            .expect_find_by_id()
            .withf(|id| *id == user(2).id)
            .returning(|_| Ok(Some(user(2))));
        mocks
            .sessions
            .expect_count_active()
            .withf(|id, live| {
                *id == user(2).id
                    && live.now == t0()
                    && live.used_after == t0() - chrono::Duration::days(14)
            })
            .times(1)
            .returning(|_, _| Ok(7));
        mocks.sessions.expect_list_active().never();
        let detail = mocks
            .service()
            .get_user(&admin_claims(), user(2).id)
            .await
            .unwrap();
        assert_eq!(detail.active_sessions, 7);
        assert_eq!(detail.user, user(2));
    }

    #[tokio::test]
    async fn an_unknown_account_is_not_found() {
        let mut mocks = Mocks::new();
        caller_is(&mut mocks, Some(admin_user()));
        mocks
            .users
            .expect_find_by_id()
            .withf(|id| *id == user(2).id)
            .returning(|_| Ok(None));
        mocks.users.expect_set_disabled().returning(|_, _| Ok(None));
        mocks.sessions.expect_revoke_all_of_user().never();
        let service = mocks.service();
        assert!(matches!(
            service.get_user(&admin_claims(), user(2).id).await,
            Err(AdminError::UserNotFound)
        ));
        assert!(matches!(
            service.disable_user(&admin_claims(), user(2).id).await,
            Err(AdminError::UserNotFound)
        ));
        assert!(matches!(
            service.end_user_sessions(&admin_claims(), user(2).id).await,
            Err(AdminError::UserNotFound)
        ));
    }

    #[tokio::test]
    async fn configured_emails_make_accounts_whose_mailbox_holder_set_the_password_administrators_once(
    ) {
        let mut mocks = Mocks::new();
        mocks.admin_emails = [
            "user2@example.com",
            "user3@example.com",
            "user4@example.com",
            "user5@example.com",
            "nobody@example.com",
        ]
        .iter()
        .map(|email| EmailKey::for_login(email).unwrap())
        .collect();
        let verified = |n| User {
            email_verified_at: Some(t0()),
            ..user(n)
        };
        let reset_by_mail = move |n| User {
            password_set_by_mailbox_owner_at: Some(t0()),
            ..verified(n)
        };
        mocks.users.expect_find_by_email().returning(move |email| {
            Ok(match email.as_str() {
                "user2@example.com" => Some(reset_by_mail(2)),
                "user3@example.com" => Some(User {
                    roles: vec![Role::user(), Role::admin()],
                    ..reset_by_mail(3)
                }),
                // Registered by anyone, maybe not the address's owner: not yet.
                "user4@example.com" => Some(user(4)),
                // Verified, but the password may still be a squatter's (pre-hijacking).
                "user5@example.com" => Some(verified(5)),
                _ => None,
            })
        });
        mocks
            .users
            .expect_set_roles()
            .withf(|id, roles| *id == user(2).id && roles == [Role::user(), Role::admin()])
            .times(1)
            .returning(|_, _| Ok(Some(user(2))));
        let events = mocks.events.clone();
        assert_eq!(mocks.service().grant_configured_admins().await, Ok(1));
        assert_eq!(
            events.taken(),
            [AuthEvent::AdminGrantedByConfiguration { user: user(2).id }]
        );
    }

    #[tokio::test]
    async fn an_operator_grant_verifies_enables_and_makes_an_administrator() {
        let mut mocks = Mocks::new();
        let mut order = Sequence::new();
        mocks
            .users
            .expect_find_by_email()
            .withf(|key| key.as_str() == "user1@example.com")
            .returning(|_| {
                Ok(Some(User {
                    disabled_at: Some(t0()),
                    ..user(1)
                }))
            });
        mocks
            .users
            .expect_mark_email_verified()
            .withf(|id, email, _| *id == user(1).id && email == "user1@example.com")
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(true));
        mocks
            .users
            .expect_set_disabled()
            .withf(|id, at| *id == user(1).id && at.is_none())
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _| Ok(Some(user(1))));
        mocks
            .users
            .expect_set_roles()
            .withf(|id, roles| *id == user(1).id && roles == [Role::user(), Role::admin()])
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _| Ok(Some(admin_user())));
        let events = mocks.events.clone();
        let granted = mocks
            .service()
            .grant_admin_by_operator(" USER1@example.com")
            .await
            .unwrap();
        assert!(granted.is_admin());
        assert_eq!(
            events.taken(),
            [AuthEvent::AdminGrantedByOperator { user: user(1).id }]
        );
    }

    #[tokio::test]
    async fn an_operator_grant_for_an_unknown_address_changes_nothing() {
        let mut mocks = Mocks::new();
        mocks.users.expect_find_by_email().returning(|_| Ok(None));
        mocks.users.expect_set_roles().never();
        let err = mocks
            .service()
            .grant_admin_by_operator("nobody@example.com")
            .await
            .unwrap_err();
        assert!(matches!(err, OperatorGrantError::NoSuchAccount));
    }
}
