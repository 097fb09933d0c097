//! The latency tool: how long does getting a database connection take?
//!
//! ```text
//! cargo run --release --example latency                       # private PostgreSQL, MariaDB, Redis
//! cargo run --release --example latency -- --json             # one JSON object on stdout
//! cargo run --release --example latency -- --plot docs/latency.svg
//! cargo run --release --example latency -- --url postgres://app@db:5432/shop --url mysql://…
//! ```
//!
//! For each driver it compares, interleaved in one run: a cold connect + close with the native
//! crate, `pool::open` in steady state, `open` + `release`, `open` + `SELECT 1` + `release`,
//! and r2d2 (default settings) `get` + drop, with and without the same `SELECT 1`. For Redis
//! the statement is a `GET` of one key, and r2d2 is measured with it only.

mod args;
mod measure;
mod plot;
mod redis_target;
mod report;
mod targets;

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
    // Held until the end of `run`: dropping them stops the private servers.
    let mut servers: (
        Option<pool_testservers::PgServer>,
        Option<pool_testservers::MariaServer>,
        Option<pool_testservers::RedisServer>,
    ) = (None, None, None);
    let mut targets = if args.urls.is_empty() {
        eprintln!("starting private PostgreSQL, MariaDB and Redis servers…");
        let pg =
            pool_testservers::PgServer::start().map_err(|e| format!("starting PostgreSQL: {e}"))?;
        let maria =
            pool_testservers::MariaServer::start().map_err(|e| format!("starting MariaDB: {e}"))?;
        let redis =
            pool_testservers::RedisServer::start().map_err(|e| format!("starting Redis: {e}"))?;
        let list = vec![
            targets::postgres(&pg.url())?,
            targets::mysql(&maria.url())?,
            // `key=value` args for its ACL user; the machine's own Redis (6379) is never used.
            redis_target::redis(&redis.args())?,
        ];
        servers = (Some(pg), Some(maria), Some(redis));
        list
    } else {
        args.urls
            .iter()
            .map(|url| target(url))
            .collect::<Result<Vec<Target>, BoxError>>()?
    };
    let samples = measure::run(&mut targets, args.warmup, args.iterations)?;
    drop(targets); // close r2d2's connections before the servers stop
    pool::shutdown();
    drop(servers);

    let reports: Vec<report::DriverReport> = samples.iter().map(report::summarize).collect();
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

fn target(url: &str) -> Result<Target, BoxError> {
    let scheme = url.split("://").next().unwrap_or_default();
    match scheme {
        "postgres" | "postgresql" => targets::postgres(url),
        "mysql" | "mariadb" => targets::mysql(url),
        "redis" => redis_target::redis(url),
        _ => Err(format!(
            "--url must start with postgres://, postgresql://, mysql://, mariadb:// or \
             redis:// (got `{scheme}://…`)"
        )
        .into()),
    }
}
