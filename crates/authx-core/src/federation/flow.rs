//! The relying-party flow of an upstream sign-in, as decisions: [`RelyingParty::start`] makes
//! the authorization request, [`RelyingParty::complete`] takes the upstream's answer to a
//! local session (or to a pending link, or to a refusal), and [`RelyingParty::link`] finishes a
//! pending link once the account's own password is given. The web layer only renders what
//! they return; the calls to the upstream go through the [`UpstreamClient`] port.
//!
//! # Security
//! - `start` stores a one-time transaction (hash of `state`, `nonce`, PKCE S256 verifier,
//!   expected issuer, local `return_to`) bound to the browser by its binding cookie.
//! - `complete` takes the transaction in one step (a replayed `state` finds nothing), checks
//!   that the browser is the one that started it, that the response comes from the expected
//!   issuer (RFC 9207 `iss`; mix-up defence), and validates the ID token fully before any
//!   account is looked at (SECURITY.md #61-#64). Nothing is signed in on any failure.

use super::account::{Refusal, Resolution, UpstreamIdentity, new_link, resolve};
use super::id_token::{Expected, IdTokenError, VerifiedIdToken, verify_id_token};
use super::records::{
    BrowserBinding, FederationState, FederationStore, LinkToken, PENDING_LINK_TTL_SECS,
    PendingLink, TRANSACTION_TTL_SECS, Transaction,
};
use super::upstream::{Metadata, UpstreamClient, UpstreamError, UpstreamTokens};
use crate::Timestamp;
use crate::audit::{AuditEvent, record_current};
use crate::auth::{AuthError, AuthService, SignInOutcome, SignedIn};
use crate::secret::{SessionToken, b64url, random_bytes};
use crate::session::ClientContext;
use crate::store::StoreError;
use crate::user::User;

/// Longest query parameter value read from an upstream's redirect (SECURITY.md #68).
const MAX_PARAM_LEN: usize = 4096;
/// Clock skew allowed on the ID token's times.
const LEEWAY_SECS: i64 = 60;
/// Oldest acceptable ID token `iat`.
const MAX_ID_TOKEN_AGE_SECS: i64 = 600;

/// The browser behind a request: where it is, and the cookies it presented.
#[derive(Debug, Clone, Copy)]
pub struct Browser<'a> {
    /// Address and user agent.
    pub ctx: &'a ClientContext,
    /// The session cookie it presented, valid or not (ended by a sign-in: session fixation).
    pub session: Option<&'a SessionToken>,
    /// Its federation binding cookie.
    pub binding: Option<&'a BrowserBinding>,
}

/// Where sign-in attempts are counted (the server's metrics).
pub trait SignInCounter: Send + Sync {
    /// Counts one attempt.
    fn count(&self, outcome: SignInOutcome);
}

impl<F: Fn(SignInOutcome) + Send + Sync> SignInCounter for F {
    fn count(&self, outcome: SignInOutcome) {
        self(outcome);
    }
}

/// The relying party: the account service that signs in, the federation store, and where a
/// sign-in attempt is counted.
pub struct RelyingParty<'a> {
    /// Accounts and sessions.
    pub auth: &'a AuthService,
    /// Transactions, links and pending links.
    pub store: &'a dyn FederationStore,
    /// Told of every sign-in attempted.
    pub sign_ins: &'a dyn SignInCounter,
}

/// A started upstream sign-in.
#[derive(Debug)]
pub struct Started {
    /// The authorization request to send the browser to.
    pub location: String,
    /// The binding cookie to set (the browser's own, or a new one).
    pub binding: BrowserBinding,
}

/// Where a successful callback leads.
#[derive(Debug)]
pub enum Completed {
    /// A local session: set its cookie and go to `return_to`.
    SignedIn {
        /// The new session.
        signed: Box<SignedIn>,
        /// The local path to go to.
        return_to: String,
    },
    /// An account has the verified email: its password must be given before the link is made.
    ProveControl {
        /// The cookie that names the pending link.
        token: LinkToken,
    },
}

/// Why an upstream sign-in or a link stopped. No session was created.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The callback repeats a parameter or carries an oversized one.
    #[error("The response from the identity provider is malformed.")]
    Malformed,
    /// The callback has no well-formed `state`.
    #[error(
        "The response from the identity provider carries no valid state. Start again from the sign-in page."
    )]
    MissingState,
    /// No transaction has this `state`: replayed, purged or never issued.
    #[error(
        "This sign-in was already completed or has expired. Start again from the sign-in page."
    )]
    UnknownState,
    /// The transaction was started for another provider.
    #[error("This response belongs to a sign-in with another identity provider.")]
    OtherProvider,
    /// The transaction is too old.
    #[error("This sign-in took too long. Start again from the sign-in page.")]
    Expired,
    /// Another browser started the transaction.
    #[error(
        "This sign-in was started in another browser. Start again from the sign-in page in this browser."
    )]
    OtherBrowser,
    /// RFC 9207: `iss` names another issuer.
    #[error(
        "The response came from another identity provider than the one this sign-in was sent to."
    )]
    IssuerMismatch,
    /// RFC 9207: `iss` is missing though the upstream advertises it.
    #[error("The response from the identity provider does not say who sent it.")]
    IssuerMissing,
    /// The upstream answered with an error code (reduced to `[A-Za-z0-9_]`, 64 characters).
    #[error("the identity provider did not sign you in ({0})")]
    Denied(String),
    /// The callback has neither a code nor an error.
    #[error("The response from the identity provider carries no authorization code.")]
    MissingCode,
    /// The ID token failed validation.
    #[error("{0}")]
    IdToken(IdTokenError),
    /// A signed assertion the caller verifies itself (SAML) failed validation: what it says.
    #[error("{0}")]
    Assertion(String),
    /// The assertion was accepted before (its id is in the shared replay cache).
    #[error("This sign-in response was already used. Start again from the sign-in page.")]
    Replayed,
    /// The upstream identity may not sign in here.
    #[error("{0}")]
    Refused(Refusal),
    /// The account disappeared or was disabled between resolution and sign-in.
    #[error("This account is disabled.")]
    Disabled,
    /// The local sign-in failed (a link's password, throttling, the server).
    #[error("{0}")]
    SignIn(AuthError),
    /// The pending link is gone, expired, or its address now belongs to another account.
    #[error(
        "There is no sign-in waiting to be linked, or it has expired. Start again from the sign-in page."
    )]
    NoPendingLink,
    /// A call to the upstream failed.
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    /// Storage failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl FederationError {
    /// The reason recorded in the `federation_refused` audit event, for the refusals that are
    /// audited.
    #[must_use]
    pub fn audit_reason(&self) -> Option<&'static str> {
        Some(match self {
            Self::Malformed => "malformed callback",
            Self::MissingState => "missing state",
            Self::UnknownState => "unknown or replayed state",
            Self::OtherProvider => "state of another provider",
            Self::Expired => "expired transaction",
            Self::OtherBrowser => "state from another browser",
            Self::IssuerMismatch => "iss mismatch",
            Self::IssuerMissing => "iss missing",
            Self::Denied(_) => "upstream error",
            Self::MissingCode => "missing code",
            Self::IdToken(_) => "invalid id token",
            Self::Assertion(_) => "invalid assertion",
            Self::Replayed => "replayed assertion",
            Self::Refused(r) => refusal_reason(*r),
            Self::Disabled
            | Self::SignIn(_)
            | Self::NoPendingLink
            | Self::Upstream(_)
            | Self::Store(_) => return None,
        })
    }
}

fn refusal_reason(r: Refusal) -> &'static str {
    match r {
        Refusal::Disabled => "account disabled",
        Refusal::NoEmail => "no email",
        Refusal::EmailNotVerified => "email not verified for an existing account",
        Refusal::CannotProveControl => "existing account without password",
        Refusal::SignUpNotAllowed => "sign-up not allowed",
        Refusal::UnverifiedEmailSignUp => "email not verified for a new account",
        Refusal::NotPersistent => "transient subject",
    }
}

/// The authorization response's parameters (RFC 6749 §4.1.2, RFC 9207 §2).
#[derive(Default)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

impl CallbackParams {
    /// Reads a query string; any repeated or oversized parameter makes it invalid.
    fn parse(raw: Option<&str>) -> Option<Self> {
        let mut p = Self::default();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let slot = match k.as_ref() {
                "code" => &mut p.code,
                "state" => &mut p.state,
                "iss" => &mut p.iss,
                "error" => &mut p.error,
                _ => continue,
            };
            if slot.is_some() || v.len() > MAX_PARAM_LEN {
                return None;
            }
            *slot = Some(v.into_owned()).filter(|s| !s.is_empty());
        }
        Some(p)
    }
}

impl RelyingParty<'_> {
    fn now(&self) -> Timestamp {
        self.auth.clock().now()
    }

    /// Starts an upstream sign-in: stores the transaction and returns the authorization
    /// request (code flow with PKCE S256 and a nonce) to send the browser to. A browser that
    /// already has a binding cookie keeps it, so sign-ins in two tabs both complete.
    ///
    /// # Errors
    /// [`FederationError::Upstream`] without usable metadata; storage failures.
    pub async fn start(
        &self,
        upstream: &dyn UpstreamClient,
        binding: Option<BrowserBinding>,
        return_to: String,
    ) -> Result<Started, FederationError> {
        let p = upstream.provider();
        let now = self.now();
        let m = upstream.metadata(now).await?;
        let binding = binding.unwrap_or_else(BrowserBinding::generate);
        let st = FederationState::generate();
        let nonce = b64url(&random_bytes::<32>());
        let verifier = b64url(&random_bytes::<32>());
        let challenge = crate::oauth::pkce::s256(&verifier);
        self.store
            .put_transaction(&Transaction {
                state_hash: st.hash(),
                provider: p.name.to_owned(),
                issuer: p.issuer.to_owned(),
                browser_hash: binding.hash(),
                nonce: nonce.clone(),
                pkce_verifier: verifier,
                return_to,
                created_at: now,
                expires_at: now.plus(TRANSACTION_TTL_SECS),
            })
            .await?;
        let params: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", p.client_id)
            .append_pair("redirect_uri", p.redirect_uri)
            .append_pair("scope", p.scope)
            .append_pair("state", st.expose())
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let sep = if m.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        record_current(AuditEvent::success("federation_started").with("provider", p.name));
        Ok(Started {
            location: format!("{}{sep}{params}", m.authorization_endpoint),
            binding,
        })
    }

    /// Completes an upstream sign-in from the callback's query string, in the order OIDC Core
    /// §3.1.3 gives: the transaction, the browser, the issuer, the code, the ID token, then the
    /// local account by (issuer, subject) only. Every refusal is audited.
    ///
    /// # Errors
    /// Why the sign-in stopped; nothing was signed in.
    pub async fn complete(
        &self,
        upstream: &dyn UpstreamClient,
        browser: Browser<'_>,
        query: Option<&str>,
    ) -> Result<Completed, FederationError> {
        let result = self.callback(upstream, browser, query).await;
        if let Err(e) = &result {
            record_refusal(upstream.provider().name, e);
        }
        result
    }

    async fn callback(
        &self,
        upstream: &dyn UpstreamClient,
        browser: Browser<'_>,
        query: Option<&str>,
    ) -> Result<Completed, FederationError> {
        let p = upstream.provider();
        let q = CallbackParams::parse(query).ok_or(FederationError::Malformed)?;
        let t = self.take_transaction(upstream, browser, &q).await?;
        let now = self.now();
        let m = upstream.metadata(now).await?;
        // Mix-up defence (RFC 9207 §2.4): the response names the issuer it came from.
        match q.iss.as_deref() {
            Some(iss) if iss == t.issuer => {}
            Some(_) => return Err(FederationError::IssuerMismatch),
            None if m.iss_parameter_supported => return Err(FederationError::IssuerMissing),
            None => {}
        }
        if let Some(err) = q.error.as_deref() {
            let code = err
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(FederationError::Denied(code));
        }
        let code = q.code.as_deref().ok_or(FederationError::MissingCode)?;
        let tokens = upstream.exchange_code(&m, code, &t.pkce_verifier).await?;
        let token = verify(upstream, &m, &t, &tokens, now).await?;
        let identity = UpstreamIdentity::from_token(
            p.name,
            &t.issuer,
            &token,
            p.email_claim,
            p.email_verified_claim,
        );
        let rules = AccountRules {
            allow_sign_up: p.allow_sign_up,
            trust_mfa: p.trust_mfa,
        };
        self.conclude(&identity, rules, browser, t.return_to).await
    }

    /// Ends a validated upstream identity in a local session, a pending link or a refusal, by
    /// (issuer, subject) only, with the email-verification and password-proof rules of
    /// [`resolve`]. The OIDC callback ends here, and so does any sign-in whose protocol the
    /// caller verified itself (SAML).
    ///
    /// # Errors
    /// Why the sign-in stopped; nothing was signed in. Refusals are not audited here
    /// ([`record_refusal`] does it).
    pub async fn conclude(
        &self,
        identity: &UpstreamIdentity,
        rules: AccountRules,
        browser: Browser<'_>,
        return_to: String,
    ) -> Result<Completed, FederationError> {
        let now = self.now();
        let accounts = self.auth.stores().accounts.as_ref();
        match resolve(accounts, self.store, identity, rules.allow_sign_up, now).await? {
            Resolution::Linked(user) | Resolution::Created(user) => {
                let user = self
                    .auth
                    .upstream_verified_email(
                        user,
                        identity.email.as_deref(),
                        identity.email_verified,
                    )
                    .await
                    .map_err(FederationError::SignIn)?;
                // A provider trusted for it vouches for the second factor too.
                let upstream_mfa = rules.trust_mfa && identity.upstream_mfa;
                let signed = self
                    .sign_in(&user, browser, &identity.provider, upstream_mfa, &return_to)
                    .await?;
                Ok(Completed::SignedIn {
                    signed: Box::new(signed),
                    return_to,
                })
            }
            Resolution::ProveControl(user) => {
                let token = self.pend(identity, &user, return_to).await?;
                Ok(Completed::ProveControl { token })
            }
            Resolution::Refused(r) => Err(FederationError::Refused(r)),
        }
    }

    /// The state: present, issued by this server, not used before, for this provider, in time,
    /// and started by this very browser.
    async fn take_transaction(
        &self,
        upstream: &dyn UpstreamClient,
        browser: Browser<'_>,
        q: &CallbackParams,
    ) -> Result<Transaction, FederationError> {
        let p = upstream.provider();
        let t = self
            .take_unbound(p.name, p.issuer, q.state.as_deref())
            .await?;
        same_browser(&t, browser)?;
        Ok(t)
    }

    /// The transaction of `state`, taken in one step (a replayed `state` finds nothing), for
    /// this provider and in time; which browser presents it is not checked.
    async fn take_unbound(
        &self,
        provider: &str,
        issuer: &str,
        state: Option<&str>,
    ) -> Result<Transaction, FederationError> {
        let st = state
            .and_then(FederationState::parse)
            .ok_or(FederationError::MissingState)?;
        let t = self
            .store
            .take_transaction(&st.hash())
            .await?
            .ok_or(FederationError::UnknownState)?;
        if t.provider != provider || t.issuer != issuer {
            return Err(FederationError::OtherProvider);
        }
        if self.now() >= t.expires_at {
            return Err(FederationError::Expired);
        }
        Ok(t)
    }

    /// Opens a sign-in whose protocol the caller speaks itself (SAML): a one-time transaction
    /// bound to this browser exactly like an OIDC one, whose `nonce` holds `request_id` (the
    /// id the upstream's answer must refer to). Returns the `state` to send along (SAML's
    /// `RelayState`) and the binding cookie to set.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn open(
        &self,
        provider: &str,
        issuer: &str,
        binding: Option<BrowserBinding>,
        request_id: &str,
        return_to: String,
    ) -> Result<(FederationState, BrowserBinding), FederationError> {
        let now = self.now();
        let binding = binding.unwrap_or_else(BrowserBinding::generate);
        let st = FederationState::generate();
        self.store
            .put_transaction(&Transaction {
                state_hash: st.hash(),
                provider: provider.to_owned(),
                issuer: issuer.to_owned(),
                browser_hash: binding.hash(),
                nonce: request_id.to_owned(),
                pkce_verifier: String::new(),
                return_to,
                created_at: now,
                expires_at: now.plus(TRANSACTION_TTL_SECS),
            })
            .await?;
        record_current(AuditEvent::success("federation_started").with("provider", provider));
        Ok((st, binding))
    }

    /// Receives the upstream's answer where the browser's cookies are not sent (SAML's
    /// cross-site POST): takes the transaction of `state` (one-time, in time, this provider)
    /// and keeps it, with `answer` (in its `pkce_verifier`) and the same browser binding and
    /// expiry, under a new one-time `state`, which [`Self::take_answer`] redeems where the
    /// binding cookie is sent. Refusals are audited.
    ///
    /// # Errors
    /// The transaction's refusals; storage failures.
    pub async fn park_answer(
        &self,
        provider: &str,
        issuer: &str,
        state: Option<&str>,
        answer: String,
    ) -> Result<FederationState, FederationError> {
        let result = async {
            let t = self.take_unbound(provider, issuer, state).await?;
            let st = FederationState::generate();
            self.store
                .put_transaction(&Transaction {
                    state_hash: st.hash(),
                    pkce_verifier: answer,
                    ..t
                })
                .await?;
            Ok(st)
        }
        .await;
        if let Err(e) = &result {
            record_refusal(provider, e);
        }
        result
    }

    /// The transaction [`Self::park_answer`] kept under `state`, taken in one step, for this
    /// provider, in time, and only by the browser that started the sign-in. Refusals are
    /// audited.
    ///
    /// # Errors
    /// The transaction's refusals; storage failures.
    pub async fn take_answer(
        &self,
        provider: &str,
        issuer: &str,
        state: Option<&str>,
        browser: Browser<'_>,
    ) -> Result<Transaction, FederationError> {
        let result = async {
            let t = self.take_unbound(provider, issuer, state).await?;
            same_browser(&t, browser)?;
            Ok(t)
        }
        .await;
        if let Err(e) = &result {
            record_refusal(provider, e);
        }
        result
    }

    async fn sign_in(
        &self,
        user: &User,
        browser: Browser<'_>,
        provider: &str,
        upstream_mfa: bool,
        return_to: &str,
    ) -> Result<SignedIn, FederationError> {
        let method = if upstream_mfa {
            format!("federated:{provider}+upstream_mfa")
        } else {
            format!("federated:{provider}")
        };
        let result = self
            .auth
            .sign_in_verified(
                &user.id,
                browser.ctx,
                browser.session,
                &method,
                Some(return_to),
            )
            .await;
        self.sign_ins.count(SignInOutcome::of(&result));
        match result {
            Ok(signed) => {
                record_current(
                    AuditEvent::success("federated_sign_in")
                        .user(&signed.user.id)
                        .with("provider", provider),
                );
                Ok(signed)
            }
            Err(AuthError::InvalidCredentials) => Err(FederationError::Disabled),
            Err(e) => Err(FederationError::SignIn(e)),
        }
    }

    /// Remembers the upstream identity until the account's password is given.
    async fn pend(
        &self,
        identity: &UpstreamIdentity,
        user: &User,
        return_to: String,
    ) -> Result<LinkToken, FederationError> {
        let now = self.now();
        let token = LinkToken::generate();
        self.store
            .put_pending_link(&PendingLink {
                token_hash: token.hash(),
                provider: identity.provider.clone(),
                issuer: identity.issuer.clone(),
                subject: identity.subject.clone(),
                user_id: user.id.clone(),
                email: user.email.clone(),
                return_to,
                created_at: now,
                expires_at: now.plus(PENDING_LINK_TTL_SECS),
            })
            .await?;
        record_current(
            AuditEvent::success("federation_link_pending")
                .user(&user.id)
                .with("provider", &identity.provider),
        );
        Ok(token)
    }

    /// The pending link a browser's cookie names, while it is valid.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn pending_link(
        &self,
        token: Option<&LinkToken>,
    ) -> Result<Option<PendingLink>, StoreError> {
        let Some(token) = token else {
            return Ok(None);
        };
        let now = self.now();
        Ok(self
            .store
            .pending_link(&token.hash())
            .await?
            .filter(|p| now < p.expires_at))
    }

    /// Proves control of the pending link's account with its own password, through the
    /// ordinary sign-in (throttling included), and makes the link. The link is made at most
    /// once; a link that another request made first still signs in.
    ///
    /// # Errors
    /// [`FederationError::SignIn`] when the password sign-in fails;
    /// [`FederationError::NoPendingLink`] when the address now belongs to another account (no
    /// session is kept); storage failures.
    pub async fn link(
        &self,
        pending: &PendingLink,
        password: &str,
        browser: Browser<'_>,
    ) -> Result<SignedIn, FederationError> {
        let result = self
            .auth
            .sign_in(&pending.email, password, browser.ctx, browser.session)
            .await;
        self.sign_ins.count(SignInOutcome::of(&result));
        let signed = match result {
            Ok(s) if s.user.id == pending.user_id => s,
            Ok(s) => {
                // The address now belongs to another account: link nothing, keep no session.
                let _ = self.auth.sign_out(&s.token).await;
                return Err(FederationError::NoPendingLink);
            }
            Err(e) => return Err(FederationError::SignIn(e)),
        };
        let identity = UpstreamIdentity {
            provider: pending.provider.clone(),
            issuer: pending.issuer.clone(),
            subject: pending.subject.clone(),
            email: Some(pending.email.clone()),
            email_verified: true,
            upstream_mfa: false,
        };
        if self.store.delete_pending_link(&pending.token_hash).await? {
            let link = new_link(&identity, &signed.user.id, self.now());
            match self.store.create_link(&link).await {
                Ok(()) => record_current(
                    AuditEvent::success("federation_linked")
                        .user(&signed.user.id)
                        .with("provider", &pending.provider),
                ),
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(signed)
    }
}

/// What a provider's configuration allows the identities it asserts.
#[derive(Debug, Clone, Copy)]
pub struct AccountRules {
    /// Whether a first sign-in with no matching account creates one.
    pub allow_sign_up: bool,
    /// Whether the upstream's own second factor stands in for the local one.
    pub trust_mfa: bool,
}

/// Whether the browser presenting a transaction is the one that started it.
fn same_browser(t: &Transaction, browser: Browser<'_>) -> Result<(), FederationError> {
    if browser
        .binding
        .is_some_and(|b| b.hash().ct_eq(&t.browser_hash))
    {
        Ok(())
    } else {
        Err(FederationError::OtherBrowser)
    }
}

/// Records the `federation_refused` audit event of a refusal that is audited (see
/// [`FederationError::audit_reason`]).
pub fn record_refusal(provider: &str, e: &FederationError) {
    if let Some(reason) = e.audit_reason() {
        let mut event = AuditEvent::failure("federation_refused")
            .with("provider", provider)
            .with("reason", reason);
        match e {
            FederationError::IdToken(t) => event = event.with("error", t),
            FederationError::Assertion(t) => event = event.with("error", t),
            _ => {}
        }
        record_current(event);
    }
}

/// Validates the ID token fully before anything in it is used; an unknown key sends for the
/// upstream's keys again once (it may have rotated them).
async fn verify(
    upstream: &dyn UpstreamClient,
    m: &Metadata,
    t: &Transaction,
    tokens: &UpstreamTokens,
    now: Timestamp,
) -> Result<VerifiedIdToken, FederationError> {
    let expected = Expected {
        issuer: &t.issuer,
        client_id: upstream.provider().client_id,
        nonce: &t.nonce,
        access_token: tokens.access_token.as_deref(),
        now,
        leeway_secs: LEEWAY_SECS,
        max_age_secs: MAX_ID_TOKEN_AGE_SECS,
    };
    let keys = upstream.keys(m, now, false).await?;
    let mut verified = verify_id_token(&tokens.id_token, &keys, &expected);
    if matches!(verified, Err(IdTokenError::UnknownKey)) {
        let keys = upstream.keys(m, now, true).await?;
        verified = verify_id_token(&tokens.id_token, &keys, &expected);
    }
    verified.map_err(FederationError::IdToken)
}

#[cfg(test)]
mod tests;
