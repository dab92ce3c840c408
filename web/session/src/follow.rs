//! What a page does when another tab changes the stored tokens (a `storage` event).

use crate::Identity;

/// What local storage holds, read right after another tab changed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    Nothing,
    /// One of the two keys: another tab is between its two writes of a sign-in or sign-out,
    /// and a second event follows.
    HalfWritten,
    /// Both tokens; whose they are, when the access token says.
    Tokens(Option<Identity>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Nothing this page shows changed (a refresh, or half of a change).
    Stay,
    /// Signed out elsewhere: to the log-in page.
    LogIn,
    /// Signed in elsewhere while this page waited to log in: on to where the user was headed.
    GoOn,
    /// The account this log-in page offered to continue as is signed out: show the form.
    ShowForm,
    /// Another account, or a new log-in, is stored under a page showing an account: show it.
    ShowNewSession,
}

/// The page's move. `shown` is the account and session it shows (or offers to continue as);
/// `signing_in` is true while the page's own log-in is in the air, which navigates on its own
/// once it lands and must not be cut short.
pub fn follow(
    stored: &Stored,
    shown: Option<&Identity>,
    on_sign_in_page: bool,
    signing_in: bool,
) -> Follow {
    match (stored, on_sign_in_page) {
        (Stored::HalfWritten, _) => Follow::Stay,
        (Stored::Nothing, false) => Follow::LogIn,
        (Stored::Nothing, true) if shown.is_some() => Follow::ShowForm,
        (Stored::Nothing, true) => Follow::Stay,
        (Stored::Tokens(_), true) if signing_in => Follow::Stay,
        (Stored::Tokens(now), true) if shown.is_none() || now.as_ref() != shown => Follow::GoOn,
        (Stored::Tokens(now), false) if shown.is_some() && now.as_ref() != shown => {
            Follow::ShowNewSession
        }
        (Stored::Tokens(_), _) => Follow::Stay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(account: &str, session: &str) -> Identity {
        Identity {
            account: account.into(),
            session: session.into(),
        }
    }

    #[test]
    fn a_page_showing_an_account_follows_a_sign_out_and_a_new_session_but_not_a_refresh() {
        let ann = who("ann", "s1");
        let shown = Some(&ann);
        assert_eq!(follow(&Stored::Nothing, shown, false, false), Follow::LogIn);
        for other in [who("bob", "s2"), who("ann", "s3")] {
            assert_eq!(
                follow(&Stored::Tokens(Some(other.clone())), shown, false, false),
                Follow::ShowNewSession,
                "{other:?}"
            );
        }
        assert_eq!(
            follow(&Stored::Tokens(Some(ann.clone())), shown, false, false),
            Follow::Stay,
            "a refresh keeps the account and session"
        );
        assert_eq!(
            follow(&Stored::Tokens(None), shown, false, false),
            Follow::ShowNewSession,
            "tokens that name nobody are not the ones shown"
        );
    }

    #[test]
    fn half_of_a_sign_in_or_sign_out_changes_nothing_yet() {
        let ann = who("ann", "s1");
        for (shown, on_sign_in_page) in [
            (None, true),
            (Some(&ann), true),
            (None, false),
            (Some(&ann), false),
        ] {
            assert_eq!(
                follow(&Stored::HalfWritten, shown, on_sign_in_page, false),
                Follow::Stay
            );
        }
    }

    #[test]
    fn a_log_in_page_goes_on_when_someone_signs_in_elsewhere_unless_it_is_signing_in_itself() {
        let ann = who("ann", "s1");
        let bob = Stored::Tokens(Some(who("bob", "s2")));
        assert_eq!(follow(&bob, None, true, false), Follow::GoOn);
        assert_eq!(follow(&bob, Some(&ann), true, false), Follow::GoOn);
        assert_eq!(follow(&bob, None, true, true), Follow::Stay);
        assert_eq!(
            follow(&Stored::Tokens(Some(ann.clone())), Some(&ann), true, false),
            Follow::Stay,
            "the account it offers to continue as was refreshed"
        );
    }

    #[test]
    fn a_log_in_page_offering_to_continue_shows_the_form_once_that_account_signed_out() {
        let ann = who("ann", "s1");
        assert_eq!(
            follow(&Stored::Nothing, Some(&ann), true, false),
            Follow::ShowForm
        );
        assert_eq!(follow(&Stored::Nothing, None, true, false), Follow::Stay);
    }
}
