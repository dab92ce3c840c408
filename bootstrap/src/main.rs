use anyhow::Context;
use latchkey_bootstrap::{build, openapi_json, serve as serve_http, Config, ServeSettings};
use std::{process::ExitCode, time::Duration};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: latchkey [serve | openapi]

  serve     run the server (default); configured by environment variables or .env
  openapi   print the OpenAPI document to stdout";

// One async thread: the CPU-heavy work (argon2) runs on the hashing pool's own threads, and one
// thread serves ~50,000 authenticated requests/s here. Every extra async thread would get its
// own malloc arena, and their fragmentation cost ~4 MiB of RSS under load (scripts/bench.sh).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    let result = match command.as_str() {
        "serve" => serve().await,
        "openapi" => {
            println!("{}", openapi_json());
            Ok(())
        }
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

async fn serve() -> anyhow::Result<()> {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => return Err(e).context("could not read .env"),
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env(latchkey_bootstrap::config::LOG_FILTER_VARIABLE)
                .unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::from_env()?;
    tracing::debug!(?config, "configuration loaded");
    let app = build(&config).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("could not listen on {}", config.listen))?;
    tracing::info!(
        "latchkey listening on http://{0} (API docs at http://{0}/api/docs)",
        config.listen
    );
    let settings = ServeSettings {
        header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(config.idle_timeout_secs),
        shutdown_grace: Duration::from_secs(10),
    };
    serve_http(listener, app.endpoint, settings, shutdown_signal())
        .await
        .with_context(|| format!("could not serve on {}", config.listen))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
