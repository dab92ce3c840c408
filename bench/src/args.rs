//! Command-line options. Hand-parsed: a handful of flags does not justify a parser crate.

use anyhow::{bail, Context};
use std::{path::PathBuf, time::Duration};

pub const USAGE: &str = "usage: latchkey-bench [options]

Measures a release build of the latchkey server on this machine: argon2id verifies/s in
process, then the server's start-to-ready time and RSS, its throughput under login load (8 and
64 connections), RSS after abandoned logins, the cost of GET /api/users/me and GET
/api/auth/session, refresh-token rotation chains, and /api/users/me during a login storm.

options:
  --server PATH      server binary (default target/release/latchkey)
  --seconds N        length of each timed phase (default 10)
  --workers N        passed to the server as HASH_WORKERS; also the thread count of the
                     in-process baseline (default: unset, baseline uses every core)
  --env KEY=VALUE    extra environment variable for the server (repeatable), e.g. HASH_QUEUE=16
  --abandoned N      connections per abandoned-login burst (default 100)
  --bursts N         abandoned-login bursts (default 3)
  -h, --help         this text";

#[derive(Debug)]
pub struct Options {
    pub server: PathBuf,
    pub phase: Duration,
    pub workers: Option<usize>,
    pub env: Vec<(String, String)>,
    pub abandoned: usize,
    pub bursts: usize,
}

/// `Ok(None)` means help was asked for.
pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Option<Options>> {
    let mut options = Options {
        server: PathBuf::from("target/release/latchkey"),
        phase: Duration::from_secs(10),
        workers: None,
        env: Vec::new(),
        abandoned: 100,
        bursts: 3,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))
        };
        match flag.as_str() {
            "--server" => options.server = PathBuf::from(value()?),
            "--seconds" => options.phase = Duration::from_secs(positive(&flag, &value()?)?),
            "--workers" => options.workers = Some(positive(&flag, &value()?)? as usize),
            "--abandoned" => options.abandoned = positive(&flag, &value()?)? as usize,
            "--bursts" => options.bursts = positive(&flag, &value()?)? as usize,
            "--env" => {
                let pair = value()?;
                let Some((key, val)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                    bail!("--env expects KEY=VALUE, got {pair:?}");
                };
                options.env.push((key.to_owned(), val.to_owned()));
            }
            other => bail!("unknown option `{other}`\n\n{USAGE}"),
        }
    }
    Ok(Some(options))
}

fn positive(flag: &str, value: &str) -> anyhow::Result<u64> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{flag} expects a positive whole number, got {value:?}"),
    }
}
