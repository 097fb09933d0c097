//! An HTTP JSON service on the pool (axum on tokio), and a load generator for it.
//!
//! ```text
//! cargo run --release --features metrics --example web            # serve
//! cargo run --release --features metrics --example web -- load    # measure (see load.rs)
//! ```
//!
//! Serving: with no `DATABASE_URL` it starts a private PostgreSQL (the test helper in
//! `dev/testservers`, deleted on exit), creates and fills its `items` table, and prints the
//! URLs to try. With `DATABASE_URL=postgres://…` or `mysql://…` it uses that server, and with
//! `DATABASE_URL=mariadb` a private MariaDB. `PORT`
//! picks the port (default: any free one). Ctrl-C stops it.
//!
//! Routes: `GET /items/{id}`, `POST /items` (`{"name": …, "price_cents": …}`, in a
//! transaction), `GET /health` (one round trip; 503 with a reason while the database is down),
//! `GET /stats` (every pool's `pool::Stats` as JSON), `GET /metrics` (Prometheus text).

mod app;
mod baselines;
mod baselines_mysql;
mod load;

use std::process::ExitCode;
use std::sync::Arc;

use app::{App, PoolDb};
use pool_testservers::{MariaServer, PgServer};

/// Items created in an empty table.
const SEED: i64 = 1000;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None => serve(),
        Some("load") => load::run(&args[1..]),
        Some(_) => Err("usage: web [load [--threads N] [--seconds S] [--rounds R]]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("web: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A private server, kept alive (and deleted when dropped) for as long as the service runs:
/// held only for its `Drop`.
#[allow(dead_code)]
enum Private {
    Pg(PgServer),
    Maria(MariaServer),
}

/// A database to run against: `DATABASE_URL`, or a private server kept alive by the returned
/// handle: PostgreSQL, or MariaDB when `DATABASE_URL` is `mariadb` (no URL: start one).
fn database() -> Result<(String, Option<Private>), String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url == "mariadb" => {
            eprintln!("DATABASE_URL=mariadb: starting a private MariaDB…");
            let server = MariaServer::start().map_err(|e| e.to_string())?;
            Ok((server.url(), Some(Private::Maria(server))))
        }
        Ok(url) if !url.is_empty() => Ok((url, None)),
        _ => {
            eprintln!("no DATABASE_URL: starting a private PostgreSQL…");
            let server = PgServer::start().map_err(|e| e.to_string())?;
            Ok((server.url(), Some(Private::Pg(server))))
        }
    }
}

fn serve() -> Result<(), String> {
    // Before the first open: the pool resolves its histogram handles when it creates a pool.
    let metrics = app::install_metrics()?;
    let (url, _server) = database()?;
    let db = PoolDb::connect(&url, SEED)?;
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|_| "PORT must be a number")?,
        Err(_) => 0,
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        if _server.is_some() {
            println!("database (private, deleted on exit): {url}");
        }
        println!("listening on http://{addr}; try:");
        println!("  curl http://{addr}/items/1");
        println!("  curl -X POST -H 'content-type: application/json' -d '{{\"name\":\"tea\",\"price_cents\":350}}' http://{addr}/items");
        println!("  curl -i http://{addr}/health");
        println!("  curl http://{addr}/stats");
        println!("  curl http://{addr}/metrics");
        let app = App {
            db: Arc::new(db),
            metrics: Some(metrics),
        };
        axum::serve(listener, app::router(app))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| e.to_string())
    })?;
    pool::shutdown();
    Ok(())
}
