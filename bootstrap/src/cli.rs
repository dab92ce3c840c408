//! The `latchkey` command line: `serve` (the default), `healthcheck`, `openapi` and `keygen`. The binary is this and
//! nothing else, so the suites that start server processes run exactly what ships.

use crate::{build, openapi_json, serve as serve_http, Config, MetricsSettings};
use anyhow::Context;
use latchkey_crypto::{JwtAlgorithm, SigningKey};
use latchkey_http::METRICS_PATH;
use poem::EndpointExt;
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::process::ExitCode;
use tokio::net::TcpListener;

const USAGE: &str =
    "usage: latchkey [serve | healthcheck | openapi | keygen --algorithm EdDSA|RS256 |
                 admin grant EMAIL]

  serve        run the server (default); configured by environment variables or .env
  healthcheck  exit 0 if the server configured here answers its readiness probe with 200
               (for container HEALTHCHECKs: no curl needed)
  openapi      print the OpenAPI document to stdout
  keygen       print a new private key for signing access tokens (PKCS#8 PEM) to stdout,
               for JWT_PRIVATE_KEY_FILE
  admin grant  make the account with EMAIL an administrator (its address counts as
               verified), in the store configured here: the first administrator, with no
               mail needed";

/// A probe that takes longer than this failed.
const HEALTHCHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs the command named by the first argument; call it from a single-threaded runtime.
pub async fn run() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    let result = match command.as_str() {
        "serve" => serve().await,
        "healthcheck" => healthcheck().await,
        "openapi" => {
            println!("{}", openapi_json());
            Ok(())
        }
        "keygen" => keygen(std::env::args().skip(2).collect()),
        "admin" => admin(std::env::args().skip(2).collect()).await,
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(anyhow::anyhow!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `keygen --algorithm NAME` (or `--algorithm=NAME`): the key on stdout, nothing else, so
/// `latchkey keygen --algorithm EdDSA > key.pem` makes a usable file.
fn keygen(arguments: Vec<String>) -> anyhow::Result<()> {
    let algorithm = match arguments.as_slice() {
        [flag, name] if flag == "--algorithm" => name.as_str(),
        [flag] if flag.starts_with("--algorithm=") => &flag["--algorithm=".len()..],
        _ => anyhow::bail!("keygen needs `--algorithm EdDSA` or `--algorithm RS256`\n\n{USAGE}"),
    };
    let algorithm = JwtAlgorithm::parse(algorithm)
        .filter(|algorithm| *algorithm != JwtAlgorithm::Hs256)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "keygen makes EdDSA or RS256 keys, not `{algorithm}` (HS256 signs with \
                 JWT_SECRET: `openssl rand -base64 48`)"
            )
        })?;
    let pem = SigningKey::generate_pem(algorithm)?;
    print!("{}", pem.expose_secret());
    Ok(())
}

/// `admin grant EMAIL`, against the store the server's configuration names.
async fn admin(arguments: Vec<String>) -> anyhow::Result<()> {
    let [verb, email] = arguments.as_slice() else {
        anyhow::bail!("admin needs `grant EMAIL`\n\n{USAGE}");
    };
    anyhow::ensure!(verb == "grant", "unknown admin command `{verb}`\n\n{USAGE}");
    let config = load_config()?;
    anyhow::ensure!(
        config.store.backend != crate::config::StoreConfig::Memory,
        "DB_URI names no database (the in-memory store lives only inside one server \
         process): set DB_URI to the server's MongoDB"
    );
    crate::telemetry::init("warn", config.log_format, std::io::stderr);
    let app = build(&config).await?;
    let user = app
        .service
        .grant_admin_by_operator(email)
        .await
        .with_context(|| format!("could not make `{email}` an administrator"))?;
    let roles: Vec<&str> = user.roles.iter().map(|role| role.as_str()).collect();
    println!(
        "{} ({}) is an administrator; roles: {}. It takes effect at the account's next login \
         or refresh.",
        user.email.as_str(),
        user.id,
        roles.join(", ")
    );
    // Anyone may have registered the address first: what tells the operator who chose the
    // password in force.
    let when = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map_or_else(|| "never".to_owned(), |at| at.to_rfc3339())
    };
    println!(
        "registered {}; last login {}; password set through a mailed link: {}. If someone else \
         may have registered this address, have its owner use \"forgot password\" now.",
        user.created_at.to_rfc3339(),
        when(user.last_login_at),
        when(user.password_set_by_mailbox_owner_at)
    );
    Ok(())
}

fn load_config() -> anyhow::Result<Config> {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => return Err(e).context("could not read .env"),
    }
    Ok(Config::from_env()?)
}

async fn healthcheck() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut address = load_config()?.listen.address;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(
                format!(
                    "GET /api/health/ready HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(HEALTHCHECK_TIMEOUT, probe)
        .await
        .map_err(|_| anyhow::anyhow!("{address} did not answer within {HEALTHCHECK_TIMEOUT:?}"))?
        .with_context(|| format!("could not ask {address}"))?;
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "not ready: {}",
        String::from_utf8_lossy(&head)
    );
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let config = load_config()?;
    crate::telemetry::init("info", config.log_format, std::io::stdout);
    tracing::debug!(?config, "configuration loaded");
    let mut signals = StopSignals::listen().context("could not listen for SIGTERM and SIGINT")?;
    let app = tokio::select! {
        app = build(&config) => app?,
        () = signals.next() => {
            tracing::info!("stopped while starting");
            return Ok(());
        }
    };
    let listener = bind(config.listen.address).await?;
    let address = listener.local_addr()?;
    // Bound before serving, so a taken port fails the start instead of a later scrape.
    let metrics_listener = match (config.metrics, app.metrics) {
        (MetricsSettings::OwnListener(at), Some(metrics)) => {
            let listener = bind(at).await?;
            tracing::info!("metrics at http://{}{METRICS_PATH}", listener.local_addr()?);
            Some((listener, metrics))
        }
        _ => None,
    };
    tracing::info!(
        "latchkey listening on http://{address} (API docs at http://{address}/api/docs)"
    );
    let readiness = app.readiness;
    let settings = config.listen.serve.clone();
    let stopping = async move {
        signals.next().await;
        // Probes see 503 from now on; load balancers stop sending during the delay.
        readiness.drain();
        tracing::info!(
            delay_secs = settings.shutdown_delay.as_secs(),
            grace_secs = settings.shutdown_grace.as_secs(),
            "shutting down: readiness answers 503; after the delay no new connections, and the \
             requests in flight get the grace period to finish"
        );
        tokio::spawn(async move {
            signals.next().await;
            tracing::warn!("a second signal: exiting without waiting for the requests in flight");
            std::process::exit(1);
        });
        tokio::time::sleep(settings.shutdown_delay).await;
    };
    let main = serve_http(
        listener,
        app.endpoint,
        config.listen.serve.clone(),
        stopping,
    );
    match metrics_listener {
        None => main.await,
        Some((listener, metrics)) => {
            let (stop_metrics, stopped) = tokio::sync::oneshot::channel::<()>();
            let metrics_only = poem::Route::new()
                .at(METRICS_PATH, poem::get(metrics))
                .boxed();
            let metrics_server = tokio::spawn(serve_http(
                listener,
                metrics_only,
                config.listen.serve.clone(),
                async move {
                    let _ = stopped.await;
                },
            ));
            let served = main.await;
            let _ = stop_metrics.send(());
            let _ = metrics_server.await;
            served
        }
    }
    .with_context(|| format!("could not serve on {address}"))?;
    tracing::info!("stopped");
    Ok(())
}

async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("could not listen on {address}"))
}

/// SIGTERM and SIGINT, listened for from the moment the server starts building: a signal
/// during start-up is not lost (and a container's PID 1 does not ignore it).
struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
