use anyhow::Context;
use latchkey_bootstrap::{build, openapi_json, serve as serve_http, Config};
use std::process::ExitCode;
use tokio::net::TcpListener;

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
    latchkey_bootstrap::telemetry::init("info", std::io::stdout);
    let config = Config::from_env()?;
    tracing::debug!(?config, "configuration loaded");
    let app = build(&config).await?;
    let address = config.listen.address;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("could not listen on {address}"))?;
    tracing::info!(
        "latchkey listening on http://{address} (API docs at http://{address}/api/docs)"
    );
    serve_http(
        listener,
        app.endpoint,
        config.listen.serve,
        shutdown_signal(),
    )
    .await
    .with_context(|| format!("could not serve on {address}"))
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
