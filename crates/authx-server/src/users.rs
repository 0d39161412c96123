//! `authx user`: the accounts, through the same administration as the console and the API.

use std::io::{BufRead as _, IsTerminal as _};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use authx_core::SystemClock;
use authx_core::admin::Administration;
use authx_core::auth::AuthError;
use authx_core::user::UserId;
use authx_server::config::Config;
use authx_server::state::AppState;
use authx_server::web::api::{command_line, views};
use authx_server::web::rfc3339;

use super::{finish, print_json};

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user; the password is read from standard input (or prompted on a terminal).
    Add {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user and end all of their sessions.
    Disable {
        /// Email address.
        #[arg(long)]
        email: String,
    },
    /// Re-enable a disabled user.
    Enable {
        /// Email address.
        #[arg(long)]
        email: String,
    },
    /// Show a user with their sessions and grants.
    Show {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Make a user an administrator.
    MakeAdmin {
        /// Email address.
        #[arg(long)]
        email: String,
    },
    /// Withdraw administration (never from the last active administrator).
    RemoveAdmin {
        /// Email address.
        #[arg(long)]
        email: String,
    },
    /// End every session and grant of a user (they can sign in again).
    RevokeAll {
        /// Email address.
        #[arg(long)]
        email: String,
    },
    /// End one session of a user (its id from `user show`).
    RevokeSession {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Session id.
        #[arg(long)]
        session: String,
    },
    /// Revoke one application grant of a user (its id from `user show`).
    RevokeGrant {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Grant (refresh-token family) id.
        #[arg(long)]
        grant: String,
    },
    /// Mail the user a password-reset link.
    ResetLink {
        /// Email address.
        #[arg(long)]
        email: String,
    },
    /// Remove every second factor and recovery code of a user.
    ResetFactors {
        /// Email address.
        #[arg(long)]
        email: String,
    },
}

pub(crate) async fn user_command(config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    let state = authx_server::build_state(config, Arc::new(SystemClock)).await?;
    let run = command_line(&state);
    let result = match cmd {
        UserCommand::Add { email, admin } => add_user(&state, &email, admin).await,
        UserCommand::List { json } => {
            let users = run.users().await?;
            if json {
                print_json(&users, views::user_json)?;
            } else {
                println!("{:<24} {:<9} {:<6} EMAIL", "ID", "STATUS", "ADMIN");
                for u in users {
                    println!(
                        "{:<24} {:<9} {:<6} {}",
                        u.id,
                        u.status.as_str(),
                        u.is_admin,
                        u.email
                    );
                }
            }
            Ok(())
        }
        UserCommand::Disable { email } => {
            run.disable_user(&find_user(&run, &email).await?).await?;
            println!("disabled {email}; all of their sessions ended");
            Ok(())
        }
        UserCommand::Enable { email } => {
            run.enable_user(&find_user(&run, &email).await?).await?;
            println!("enabled {email}");
            Ok(())
        }
        UserCommand::Show { email, json } => show_user(&run, &email, json).await,
        UserCommand::MakeAdmin { email } => {
            run.set_admin(&find_user(&run, &email).await?, true).await?;
            println!("{email} is an administrator");
            Ok(())
        }
        UserCommand::RemoveAdmin { email } => {
            run.set_admin(&find_user(&run, &email).await?, false)
                .await?;
            println!("{email} is no longer an administrator");
            Ok(())
        }
        UserCommand::RevokeAll { email } => {
            let ended = run
                .revoke_everything(&find_user(&run, &email).await?)
                .await?;
            println!("ended {ended} session(s) and every grant of {email}");
            Ok(())
        }
        UserCommand::RevokeSession { email, session } => {
            let id = find_user(&run, &email).await?;
            run.revoke_session(&id, &authx_core::session::SessionId(session.clone()))
                .await
                .map_err(|e| not_found_as(e, "no such session of that user"))?;
            println!("ended session {session} of {email}");
            Ok(())
        }
        UserCommand::RevokeGrant { email, grant } => {
            let id = find_user(&run, &email).await?;
            run.revoke_grant(&id, &grant).await?;
            println!("revoked grant {grant} of {email}");
            Ok(())
        }
        UserCommand::ResetLink { email } => {
            run.send_reset_link(&find_user(&run, &email).await?).await?;
            println!("mailed a password-reset link to {email}");
            Ok(())
        }
        UserCommand::ResetFactors { email } => {
            let n = run.reset_factors(&find_user(&run, &email).await?).await?;
            println!("removed {n} second factor(s) of {email}");
            Ok(())
        }
    };
    finish(&state, result).await
}

async fn add_user(state: &AppState, email: &str, admin: bool) -> anyhow::Result<()> {
    let password = read_password()?;
    match state.auth.create_user(email, &password, admin).await {
        Ok(user) => {
            println!("created user {} ({})", user.email, user.id);
            Ok(())
        }
        Err(e @ (AuthError::WeakPassword(_) | AuthError::InvalidEmail | AuthError::EmailTaken)) => {
            bail!("{e}")
        }
        Err(e) => Err(e).context("cannot create the user"),
    }
}

pub(crate) async fn find_user(run: &Administration<'_>, email: &str) -> anyhow::Result<UserId> {
    match run.user_by_email(email).await? {
        Some(u) => Ok(u.id),
        None => {
            let canonical = authx_core::user::canonical_email(email).unwrap_or_default();
            bail!("no user with email {canonical}")
        }
    }
}

/// The password from a terminal prompt (asked twice) or the first line of standard input.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            bail!("the passwords do not match");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        if password.is_empty() {
            bail!("no password on standard input");
        }
        Ok(password)
    }
}

async fn show_user(run: &Administration<'_>, email: &str, json: bool) -> anyhow::Result<()> {
    let id = find_user(run, email).await?;
    let user = run.user(&id).await?;
    let sessions = run.user_sessions(&id).await?;
    let grants = run.user_grants(&id).await?;
    if json {
        let v = serde_json::json!({
            "user": views::user_json(&user),
            "sessions": sessions.iter().map(|s| views::session_json(s, false)).collect::<Vec<_>>(),
            "grants": grants.iter().map(|(f, c)| views::grant_json(f, c.as_ref())).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{} ({})", user.email, user.id);
    println!(
        "status {}, {}, created {}",
        user.status.as_str(),
        if user.is_admin {
            "administrator"
        } else {
            "user"
        },
        rfc3339(user.created_at)
    );
    println!("{} session(s):", sessions.len());
    for s in &sessions {
        println!(
            "  {:<24} last seen {} from {}",
            s.id.0,
            rfc3339(s.last_seen_at),
            s.ip.as_deref().unwrap_or("-")
        );
    }
    println!("{} grant(s):", grants.len());
    for (f, _) in &grants {
        println!("  {:<24} {:<20} {}", f.id, f.client_id, f.scope);
    }
    Ok(())
}

/// A refusal for a missing thing, in the command's words.
fn not_found_as(e: authx_core::admin::AdminError, words: &str) -> anyhow::Error {
    match e {
        authx_core::admin::AdminError::Auth(AuthError::NotFound) => anyhow::anyhow!("{words}"),
        other => other.into(),
    }
}
