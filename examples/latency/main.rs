//! The latency tool: how long does getting a database connection take?
//!
//! ```text
//! cargo run --release --example latency                       # private PostgreSQL, MariaDB, Redis
//! cargo run --release --example latency -- --json             # one JSON object on stdout
//! cargo run --release --example latency -- --plot docs/latency.svg
//! cargo run --release --example latency -- --url postgres://app@db:5432/shop --url mysql://…
//! cargo run --release --example latency -- \
//!     --url 'postgres://app@db/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem'
//! ```
//!
//! For each driver it compares, interleaved in one run: a cold connect + close with the native
//! crate, `pool::open` in steady state, `open` + `release`, `open` + `SELECT 1` + `release`,
//! and r2d2 (default settings) `get` + drop, with and without the same `SELECT 1`. For Redis
//! the statement is a `GET` of one key, and r2d2 is measured with it only.
//!
//! Without `--url` it starts a plain and a TLS server per driver and measures both: the TLS
//! rows show what TLS adds to a cold connect (a handshake and certificate checks: milliseconds)
//! against what it adds to the pool's `open` (nothing: a parked connection keeps its TLS
//! session), and a request over TLS against r2d2 over TLS. A `--url` may itself ask for TLS
//! (`sslmode=…`, `ssl-mode=…`, `rediss://`); whether a target's sessions are encrypted is asked
//! of the server, and its rows are labelled by the answer.

mod args;
mod measure;
mod mysql_target;
mod pg_target;
mod plot;
mod redis_target;
mod report;
mod servers;
mod targets;
mod tls;

use std::process::ExitCode;

use measure::{BoxError, Target};

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("latency: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &args::Args) -> Result<(), BoxError> {
    // The tool's own Redis client uses rustls' process-wide provider (see the function).
    tls::install_ring_provider();
    // Held until the end of `run`: dropping them stops the private servers.
    let mut servers = None;
    let endpoints = if args.urls.is_empty() {
        eprintln!("starting private PostgreSQL, MariaDB and Redis servers, plain and with TLS…");
        let (started, endpoints) = servers::start()?;
        servers = Some(started);
        endpoints
    } else {
        args.urls
            .iter()
            .map(|url| endpoint(url))
            .collect::<Result<Vec<_>, BoxError>>()?
    };
    let mut targets = endpoints
        .iter()
        .map(|e| target(e, args.tls_cold_every))
        .collect::<Result<Vec<Target>, BoxError>>()?;
    let samples = measure::run(&mut targets, args.warmup, args.iterations)?;
    drop(targets); // close r2d2's connections before the servers stop
    pool::shutdown();
    drop(servers);

    let reports = report::summarize_all(&samples);
    if args.json {
        let value = report::to_json(&reports, args.iterations, args.warmup);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", report::table(&reports, args.iterations, args.warmup));
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &samples)?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}

/// The target of `endpoint`, its cold connect sampled every `tls_cold_every`-th round when its
/// sessions turn out to be encrypted.
fn target(endpoint: &servers::Endpoint, tls_cold_every: usize) -> Result<Target, BoxError> {
    let args = endpoint.args.as_str();
    let mut target = match endpoint.driver {
        "postgres" => pg_target::postgres(args),
        "mysql" => mysql_target::mysql(args),
        _ => redis_target::redis(args),
    }
    .map_err(|e| format!("{}: {e}", targets::shown(args)))?;
    if target.tls {
        target.cold_every = tls_cold_every;
    }
    Ok(target)
}

/// The driver a `--url` is for, by its scheme.
fn endpoint(url: &str) -> Result<servers::Endpoint, BoxError> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    let driver = match scheme {
        Some("postgres" | "postgresql") => "postgres",
        Some("mysql" | "mariadb") => "mysql",
        Some("redis" | "rediss") => "redis",
        _ => {
            // Only a plausible scheme is echoed: anything else may be a piece of a password.
            let got = match scheme {
                Some(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()) => {
                    format!(" (got `{s}://…`)")
                }
                _ => String::new(),
            };
            return Err(format!(
                "--url must start with postgres://, postgresql://, mysql://, mariadb://, \
                 redis:// or rediss://{got}"
            )
            .into());
        }
    };
    Ok(servers::Endpoint {
        driver,
        args: url.to_owned(),
    })
}
