//! `authx`: the server and its administration commands.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};

use authx_core::SystemClock;
use authx_core::admin::{AdminError, Administration, ClientSpec};
use authx_core::audit::AuditQuery;
use authx_server::config::{Config, LogFormat, Overrides};
use authx_server::state::AppState;
use authx_server::web::api::{command_line, views};
use authx_server::web::error::ApiError;
use authx_server::web::rfc3339;

mod users;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "authx",
    version,
    about = "Sessions, tokens and OpenID Connect in one server"
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "AUTHX_CONFIG")]
    config: Option<PathBuf>,
    /// Database: sqlite://PATH (default sqlite://authx.db) or postgres://...
    #[arg(long, global = true, env = "AUTHX_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(users::UserCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage API resources (the audiences of access tokens).
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage initial access tokens for dynamic client registration (RFC 7591).
    #[command(subcommand)]
    RegistrationToken(RegistrationTokenCommand),
    /// Sign in to any RFC 8628 server from this terminal (device authorization grant).
    Login(LoginArgs),
    /// Show the audit trail, oldest first; `--follow` keeps printing new events.
    Audit(AuditArgs),
    /// Check the mail settings.
    #[command(subcommand)]
    Email(EmailCommand),
    /// The upstream identity providers of the configuration.
    #[command(subcommand)]
    Federation(FederationCommand),
}

#[derive(Subcommand)]
enum FederationCommand {
    /// List the configured providers.
    List,
    /// Fetch a provider's discovery document now, with every check a sign-in makes.
    Test {
        /// The provider's name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum EmailCommand {
    /// Send a test mail through the configured transport now, and report its answer.
    Test {
        /// The recipient.
        #[arg(long)]
        to: String,
    },
}

#[derive(Args)]
struct AuditArgs {
    /// Only events about this user (email address or user id).
    #[arg(long)]
    user: Option<String>,
    /// Only events of this kind (for example sign_in_failed).
    #[arg(long)]
    kind: Option<String>,
    /// Only events about this client (client_id).
    #[arg(long)]
    client: Option<String>,
    /// Only `success` or only `failure` events.
    #[arg(long, value_parser = ["success", "failure"])]
    outcome: Option<String>,
    /// Only events this recent (30s, 15m, 2h, 7d) or since these Unix seconds.
    #[arg(long)]
    since: Option<String>,
    /// Show at most this many of the newest matching events.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Keep running and print new events as they are stored (polls every second).
    #[arg(long)]
    follow: bool,
}

#[derive(Args)]
struct LoginArgs {
    /// The issuer URL (its metadata must name a device_authorization_endpoint).
    #[arg(long)]
    issuer: String,
    /// client_id registered for the device grant.
    #[arg(long)]
    client_id: String,
    /// Client secret of a confidential client.
    #[arg(long, env = "AUTHX_LOGIN_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Scopes to ask for (space-separated, or repeat the flag).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Write the tokens to this file (mode 0600) instead of printing them.
    #[arg(long)]
    save: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client; a confidential client's secret is printed once.
    Add {
        #[command(flatten)]
        spec: Box<ClientArgs>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List clients.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a client and everything issued to it.
    Remove {
        /// client_id.
        #[arg(long)]
        id: String,
    },
    /// Replace a client's registration (the same flags as add; its secret stays).
    Update {
        #[command(flatten)]
        spec: Box<ClientArgs>,
    },
    /// Give a confidential client a new secret, printed once; the old one stops working.
    RotateSecret {
        /// client_id.
        #[arg(long)]
        id: String,
    },
}

/// A client registration from the command line.
#[derive(Args)]
struct ClientArgs {
    /// client_id.
    #[arg(long)]
    id: String,
    /// Display name shown on the consent page.
    #[arg(long)]
    name: String,
    /// Exact redirect URI (repeatable).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Allowed grant (repeatable): authorization_code, refresh_token, client_credentials.
    #[arg(long = "grant")]
    grants: Vec<String>,
    /// Allowed scope (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// API (resource id) the client may get access tokens for (repeatable); it must be
    /// registered already. Without it the client gets tokens for no API.
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// Public client (no secret; PKCE only).
    #[arg(long)]
    public: bool,
    /// First-party client: skips the consent page.
    #[arg(long)]
    first_party: bool,
    /// Its authorization requests must be pushed to /oauth2/par first (RFC 9126).
    #[arg(long = "require-par")]
    require_pushed_authorization_requests: bool,
    /// The least authentication its users need: `urn:authx:acr:mfa` asks every user for a
    /// second factor (users without one are refused until they add one).
    #[arg(long = "require-acr")]
    require_acr: Option<String>,
    /// Post-logout redirect URI (repeatable).
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// ID token algorithm: RS256 (default), ES256 or EdDSA.
    #[arg(long)]
    id_token_alg: Option<String>,
    /// OIDC back-channel logout URI.
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    /// How it authenticates: client_secret_basic (default), client_secret_post,
    /// private_key_jwt (with --jwks or --jwks-uri) or none (the same as --public).
    #[arg(long = "auth-method")]
    token_endpoint_auth_method: Option<String>,
    /// Its public keys for private_key_jwt, a JWK Set as JSON (`--jwks "$(cat keys.json)"`).
    #[arg(long, value_parser = parse_json)]
    jwks: Option<serde_json::Value>,
    /// Where it publishes its public keys for private_key_jwt (https).
    #[arg(long)]
    jwks_uri: Option<String>,
    /// Every access token it gets must be DPoP-bound (RFC 9449).
    #[arg(long = "dpop-bound")]
    dpop_bound_access_tokens: bool,
}

/// A JSON argument.
fn parse_json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))
}

impl From<ClientArgs> for ClientSpec {
    fn from(a: ClientArgs) -> Self {
        Self {
            id: a.id,
            name: a.name,
            redirect_uris: a.redirect_uris,
            grant_types: a.grants,
            scopes: a.scopes,
            resources: a.resources,
            public: a.public,
            token_endpoint_auth_method: a.token_endpoint_auth_method,
            jwks: a.jwks,
            jwks_uri: a.jwks_uri,
            dpop_bound_access_tokens: a.dpop_bound_access_tokens,
            first_party: a.first_party,
            require_pushed_authorization_requests: a.require_pushed_authorization_requests,
            require_acr: a.require_acr,
            post_logout_redirect_uris: a.post_logout_redirect_uris,
            id_token_alg: a.id_token_alg,
            backchannel_logout_uri: a.backchannel_logout_uri,
            access_token_ttl_secs: None,
            refresh_token_ttl_secs: None,
            refresh_idle_secs: None,
        }
    }
}

#[derive(Subcommand)]
enum ResourceCommand {
    /// Register an API: access tokens for it carry its id as their audience.
    Add {
        /// Resource indicator (absolute URI or URN).
        #[arg(long)]
        id: String,
        /// Scope the API understands (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// List resources.
    List,
}

#[derive(Subcommand)]
enum RegistrationTokenCommand {
    /// Issue an initial access token; it is printed once (only its hash is stored).
    Create {
        /// Lifetime: 30m, 12h, 7d or seconds (default 1d, at most 90d).
        #[arg(long)]
        ttl: Option<String>,
        /// How many clients it may register (default 1).
        #[arg(long)]
        uses: Option<i64>,
        /// A scope its clients may have (repeatable; default the OpenID Connect scopes).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// An API its clients may get tokens for (repeatable; default none).
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List initial access tokens (never the tokens themselves).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an initial access token (clients it registered stay).
    Revoke {
        /// The token's id, as listed.
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List signing keys.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Publish a new key for every algorithm; each starts signing after the publication lead
    /// time, and the key it replaces stays published until its tokens have expired.
    Rotate,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "AUTHX_LISTEN")]
    listen: Option<String>,
    /// Public URL of this server (default http://LISTEN).
    #[arg(long, env = "AUTHX_ISSUER")]
    issuer: Option<String>,
    /// Redis URL for the shared session store and event bus.
    #[arg(long, env = "AUTHX_REDIS_URL")]
    redis_url: Option<String>,
    /// Extra origins trusted for state-changing browser requests, comma separated.
    #[arg(long, env = "AUTHX_TRUSTED_ORIGINS")]
    trusted_origins: Option<String>,
    /// Whether anyone may create an account.
    #[arg(long, env = "AUTHX_SIGN_UP_ENABLED")]
    sign_up_enabled: Option<bool>,
    /// Log format: text or json.
    #[arg(long, env = "AUTHX_LOG_FORMAT")]
    log_format: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authx: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(real_main(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authx: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    let mut overrides = Overrides {
        database_url: cli.database_url.clone(),
        key_encryption_key: env("AUTHX_KEY_ENCRYPTION_KEY"),
        // Administration commands share the deployment's stores, Redis included.
        redis_url: env("AUTHX_REDIS_URL"),
        ..Overrides::default()
    };
    if let Command::Serve(a) = &cli.command {
        overrides.listen.clone_from(&a.listen);
        overrides.issuer.clone_from(&a.issuer);
        overrides.redis_url.clone_from(&a.redis_url);
        overrides.trusted_origins.clone_from(&a.trusted_origins);
        overrides.sign_up_enabled = a.sign_up_enabled;
        overrides.log_format.clone_from(&a.log_format);
    }
    // A client of any server: needs no configuration of this one.
    if let Command::Login(args) = cli.command {
        return login_command(args).await;
    }
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    init_logging(config.log_format);
    match cli.command {
        Command::Serve(_) => authx_server::run(config, Arc::new(SystemClock)).await,
        Command::Migrate => {
            let n = authx_store::migrate(&config.database_url, &config.store).await?;
            println!(
                "applied {}",
                authx_core::plural::count(n as u64, "migration", "migrations")
            );
            Ok(())
        }
        Command::User(cmd) => users::user_command(config, cmd).await,
        Command::Client(cmd) => client_command(config, cmd).await,
        Command::Resource(cmd) => resource_command(config, cmd).await,
        Command::Keys(cmd) => keys_command(config, cmd).await,
        Command::Federation(cmd) => federation_command(config, cmd).await,
        Command::RegistrationToken(cmd) => registration_token_command(config, cmd).await,
        Command::Login(args) => login_command(args).await,
        Command::Audit(args) => audit_command(config, args).await,
        Command::Email(EmailCommand::Test { to }) => email_test(&config, &to).await,
    }
}

/// `authx email test`: one mail straight through the transport (no database, no outbox), so
/// the operator sees the mail server's own answer.
async fn email_test(config: &Config, to: &str) -> anyhow::Result<()> {
    let mail = authx_server::mail::send_direct(
        &config.email,
        &config.issuer,
        to,
        &authx_core::mail::Message::Test,
    )
    .await?;
    println!(
        "test mail to {to} accepted (Message-ID {})",
        mail.message_id
    );
    Ok(())
}

/// `--since`: a duration back from now (`30s`, `15m`, `2h`, `7d`) or Unix seconds.
fn parse_since(text: &str, now: authx_core::Timestamp) -> anyhow::Result<authx_core::Timestamp> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return Ok(authx_core::Timestamp(secs));
    }
    let split = t.len().saturating_sub(1);
    let (n, unit) = t.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("--since {t:?}: use 30s, 15m, 2h, 7d or Unix seconds"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!("--since {t:?}: use 30s, 15m, 2h, 7d or Unix seconds"),
    };
    Ok(authx_core::Timestamp(
        now.secs().saturating_sub(n.saturating_mul(scale)),
    ))
}

async fn audit_command(config: Config, args: AuditArgs) -> anyhow::Result<()> {
    use authx_core::Clock as _;
    let state = authx_server::build_state(config, Arc::new(SystemClock)).await?;
    let run = command_line(&state);
    let user_id = match &args.user {
        Some(u) if u.contains('@') => Some(users::find_user(&run, u).await?.0),
        Some(u) => Some(u.clone()),
        None => None,
    };
    let since = match &args.since {
        Some(s) => Some(parse_since(s, SystemClock.now())?),
        None => None,
    };
    let query = AuditQuery {
        user_id,
        kind: args.kind.clone(),
        since,
        client_id: args.client.clone(),
        outcome: args.outcome.clone(),
        until: None,
        before_id: None,
        after_id: None,
        limit: args.limit.clamp(1, 10_000),
    };
    let events = run.audit(&query).await?;
    print_audit(&events, args.json)?;
    if !args.follow {
        return Ok(());
    }
    // Follow from the newest event shown (or the newest stored, when none matched).
    let last = match events.last() {
        Some(e) => e.id,
        None => {
            let newest = AuditQuery {
                limit: 1,
                ..Default::default()
            };
            run.audit(&newest).await?.last().map_or(0, |e| e.id)
        }
    };
    follow_audit(&run, query, last, args.json).await
}

/// Prints the events matching `query` stored after event `last`, as they come, forever.
async fn follow_audit(
    run: &Administration<'_>,
    mut query: AuditQuery,
    mut last: i64,
    json: bool,
) -> anyhow::Result<()> {
    query.limit = 500;
    loop {
        query.after_id = Some(last);
        let events = run.audit(&query).await?;
        print_audit(&events, json)?;
        match events.last() {
            Some(e) => last = e.id,
            None => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    }
}

/// Prints audit events, one a line: JSON objects, or time, id and a readable line.
fn print_audit(events: &[authx_core::audit::AuditRecord], json: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for e in events {
        if json {
            writeln!(out, "{}", views::audit_json(e))?;
        } else {
            writeln!(out, "{} #{} {}", rfc3339(e.at), e.id, e.to_line())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Prints `items` as one pretty JSON array of their views.
fn print_json<T>(items: &[T], view: impl Fn(&T) -> serde_json::Value) -> anyhow::Result<()> {
    let list: Vec<_> = items.iter().map(view).collect();
    println!("{}", serde_json::to_string_pretty(&list)?);
    Ok(())
}

/// Stores the audit events of a command before the process exits, then gives its result.
async fn finish(state: &AppState, result: anyhow::Result<()>) -> anyhow::Result<()> {
    state.auth.audit().flush().await;
    result
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUTHX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn client_command(config: Config, cmd: ClientCommand) -> anyhow::Result<()> {
    let state = authx_server::build_state(config, Arc::new(SystemClock)).await?;
    let run = command_line(&state);
    let result = match cmd {
        ClientCommand::Add { spec, json } => add_client(&run, (*spec).into(), json).await,
        ClientCommand::List { json } => {
            let list = run.clients().await?;
            if json {
                print_json(&list, views::client_json)?;
            } else {
                for c in list {
                    let kind = if c.is_confidential() {
                        "confidential"
                    } else {
                        "public"
                    };
                    let grants: Vec<_> = c.grant_types.iter().map(|g| g.as_str()).collect();
                    println!(
                        "{:<24} {:<12} {:<40} {}",
                        c.id,
                        kind,
                        grants.join(","),
                        c.redirect_uris.join(" ")
                    );
                }
            }
            Ok(())
        }
        // Through the provider, so the revocation event reaches guards via the log.
        ClientCommand::Remove { id } => match run.delete_client(&id).await {
            Ok(()) => {
                println!("removed client {id}");
                Ok(())
            }
            Err(AdminError::NotFound(_)) => bail!("no client {id}"),
            Err(e) => Err(e.into()),
        },
        ClientCommand::Update { spec } => match run.update_client((*spec).into()).await {
            Ok(c) => {
                println!("updated client {}", c.id);
                Ok(())
            }
            Err(AdminError::NotFound(_)) => bail!("no such client"),
            Err(e) => bail!("{e}"),
        },
        ClientCommand::RotateSecret { id } => match run.rotate_client_secret(&id).await {
            Ok(secret) => {
                println!("client_secret: {secret}");
                println!("(shown once: only its hash is stored; the old secret no longer works)");
                Ok(())
            }
            Err(AdminError::NotFound(_)) => bail!("no client {id}"),
            Err(e) => bail!("{e}"),
        },
    };
    finish(&state, result).await
}

async fn add_client(run: &Administration<'_>, spec: ClientSpec, json: bool) -> anyhow::Result<()> {
    let (client, secret) = match run.register_client(spec).await {
        Ok(v) => v,
        Err(AdminError::OAuth(authx_core::oauth::OAuthError::Store(
            authx_core::StoreError::Conflict,
        ))) => bail!("a client with that id already exists"),
        Err(e) => bail!("{e}"),
    };
    if json {
        let v = views::registered_client_json(&client, secret.as_deref());
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("registered client {}", client.id);
        if let Some(s) = secret {
            println!("client_secret: {s}");
            println!("(shown once: only its hash is stored)");
        }
    }
    Ok(())
}

async fn resource_command(config: Config, cmd: ResourceCommand) -> anyhow::Result<()> {
    let state = authx_server::build_state(config, Arc::new(SystemClock)).await?;
    let run = command_line(&state);
    let result = match cmd {
        ResourceCommand::Add { id, scopes } => {
            let r = run
                .register_resource(id, scopes)
                .await
                .map_err(|e| anyhow::anyhow!(ApiError::from(e).message))?;
            println!("registered resource {} ({})", r.id, r.scopes.join(" "));
            Ok(())
        }
        ResourceCommand::List => {
            for r in run.resources().await? {
                println!("{:<40} {}", r.id, r.scopes.join(" "));
            }
            Ok(())
        }
    };
    finish(&state, result).await
}

/// `--ttl`: `30m`, `12h`, `7d`, `45s` or seconds.
fn parse_ttl(text: &str) -> anyhow::Result<i64> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return Ok(secs);
    }
    let (n, unit) = t.split_at(t.len().saturating_sub(1));
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!("--ttl {t:?}: use 30m, 12h, 7d or seconds"),
    };
    let n: i64 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("--ttl {t:?}: use 30m, 12h, 7d or seconds"))?;
    Ok(n.saturating_mul(scale))
}

async fn registration_token_command(
    config: Config,
    cmd: RegistrationTokenCommand,
) -> anyhow::Result<()> {
    use authx_server::web::registration::initial_token_json;
    let state = authx_server::build_state(config, Arc::new(SystemClock)).await?;
    let actor = authx_core::admin::Actor::CommandLine;
    let result = match cmd {
        RegistrationTokenCommand::Create {
            ttl,
            uses,
            scopes,
            resources,
            json,
        } => {
            let request = authx_core::registration::InitialTokenRequest {
                ttl_secs: ttl.as_deref().map(parse_ttl).transpose()?,
                uses,
                scopes: scopes
                    .iter()
                    .flat_map(|s| s.split_whitespace())
                    .map(str::to_owned)
                    .collect(),
                resources,
            };
            match state
                .registration()
                .create_initial_token(request, &actor)
                .await
            {
                Ok((token, secret)) if json => {
                    let mut v = initial_token_json(&token);
                    v["initial_access_token"] = serde_json::Value::String(secret);
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    Ok(())
                }
                Ok((token, secret)) => {
                    println!(
                        "initial access token {} ({} uses, expires {})",
                        token.id,
                        token.uses_left,
                        rfc3339(token.expires_at)
                    );
                    println!("token: {secret}");
                    println!("(shown once: only its hash is stored)");
                    Ok(())
                }
                Err(e) => Err(anyhow::anyhow!(ApiError::from(e).message)),
            }
        }
        RegistrationTokenCommand::List { json } => {
            let list = state
                .registration()
                .initial_tokens()
                .await
                .map_err(|e| anyhow::anyhow!(ApiError::from(e).message))?;
            if json {
                print_json(&list, initial_token_json)?;
            } else {
                for t in list {
                    println!(
                        "{:<24} uses_left={:<5} expires={} scopes={} resources={}",
                        t.id,
                        t.uses_left,
                        rfc3339(t.expires_at),
                        t.scopes.join(" "),
                        t.resources.join(" ")
                    );
                }
            }
            Ok(())
        }
        RegistrationTokenCommand::Revoke { id } => {
            match state.registration().revoke_initial_token(&id, &actor).await {
                Ok(true) => {
                    println!("revoked registration token {id}");
                    Ok(())
                }
                Ok(false) => Err(anyhow::anyhow!("no registration token {id}")),
                Err(e) => Err(anyhow::anyhow!(ApiError::from(e).message)),
            }
        }
    };
    finish(&state, result).await
}

async fn federation_command(config: Config, cmd: FederationCommand) -> anyhow::Result<()> {
    use authx_core::Clock as _;
    let state = authx_server::build_state(config, Arc::new(SystemClock)).await?;
    let result = match cmd {
        FederationCommand::List => {
            for p in state.upstreams.providers() {
                println!("{:<16} {:<24} {}", p.name, p.display_name, p.issuer);
            }
            Ok(())
        }
        FederationCommand::Test { name } => {
            match state
                .upstreams
                .test_discovery(&name, SystemClock.now())
                .await
            {
                Ok(m) => {
                    println!("{name}: discovery answered for {}", m.issuer);
                    println!("authorization endpoint: {}", m.authorization_endpoint);
                    println!("token endpoint: {}", m.token_endpoint);
                    println!("keys: {}", m.jwks_uri);
                    Ok(())
                }
                Err(e) => Err(anyhow::anyhow!("{name}: discovery failed: {e}")),
            }
        }
    };
    finish(&state, result).await
}

async fn keys_command(config: Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let state = authx_server::build_state(config, Arc::new(SystemClock)).await?;
    let result = match cmd {
        KeysCommand::List { json } => {
            let keys = state.oauth.stores().keys.list_keys().await?;
            if json {
                print_json(
                    &keys,
                    |k| serde_json::json!({"kid": k.kid, "alg": k.alg.as_str(), "state": k.state.as_str(), "created_at": rfc3339(k.created_at)}),
                )?;
            } else {
                for k in keys {
                    println!(
                        "{:<24} {:<6} {:<8} {}",
                        k.kid,
                        k.alg.as_str(),
                        k.state.as_str(),
                        rfc3339(k.created_at)
                    );
                }
            }
            Ok(())
        }
        KeysCommand::Rotate => {
            use authx_core::oauth::keys::SigningAlg;
            for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
                let kid = state.oauth.publish_next_key(alg).await?;
                println!("published {} key {kid}", alg.as_str());
            }
            println!(
                "new keys start signing after the publication lead time; running servers pick them up by themselves"
            );
            Ok(())
        }
    };
    finish(&state, result).await
}

async fn login_command(args: LoginArgs) -> anyhow::Result<()> {
    let opts = authx_server::cli_login::LoginOptions {
        issuer: args.issuer,
        client_id: args.client_id,
        client_secret: args.client_secret,
        scope: (!args.scopes.is_empty()).then(|| args.scopes.join(" ")),
    };
    // A path that cannot be written is refused before the device code is spent.
    if let Some(path) = &args.save {
        authx_server::cli_login::check_save_path(path)?;
    }
    let tokens =
        authx_server::cli_login::run(&opts, |p| eprint!("{}", p.message()), tokio::time::sleep)
            .await?;
    match args.save {
        Some(path) => {
            if let Err(e) = authx_server::cli_login::save_tokens(&path, &tokens) {
                // The approval is spent: print the tokens rather than lose them.
                println!("{}", serde_json::to_string_pretty(&tokens)?);
                return Err(e.context(
                    "signed in, but the tokens could not be saved; they are printed above",
                ));
            }
            eprintln!("Signed in. Tokens saved to {}", path.display());
        }
        None => println!("{}", serde_json::to_string_pretty(&tokens)?),
    }
    Ok(())
}
