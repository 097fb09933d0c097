//! The HTTP service: routes, handlers, and the pool-backed database behind them.
//!
//! This file is shared: the example's `main.rs` serves it, the load generator serves it three
//! times (over the pool, r2d2 and a cold connect, through [`Db`]), and `tests/web_service.rs`
//! includes it with `#[path]` to take its database down under load and watch through HTTP.
//!
//! # From async code
//! The pool is blocking: `pool::open`, queries and `release` run on the caller's thread. An
//! async handler calls it inside `tokio::task::spawn_blocking`, never on a runtime worker
//! (a worker blocked on a connect or a wait at `max_open` stalls every task scheduled on it).
//! A connection is opened and released inside the same closure, so it never crosses an
//! `.await`. [`blocking`] wraps that, and bounds it: every wait inside the pool has its own
//! bound (`acquire_timeout`, `connect_timeout`), and [`REQUEST_BOUND`] is the outer one.
//!
//! # Status codes
//! A database that is down or overloaded is a temporary condition: 503 with a JSON reason and
//! `Retry-After`, never 500 (`pool::Error::is_transient` tells which is which, and
//! [`server_says_retry`] adds the server's own passing refusals: a deadlock, a statement
//! timeout, a failover). 500 is kept for what retrying cannot fix (a statement the server
//! rejects) and for a handler that panicked.

// Each of the three targets that include this file uses a different part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use pool::{Settings, Value};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The longest a handler waits for its database work before answering 503. The pool bounds
/// its own waits (`acquire_timeout`, `connect_timeout`); a statement the server never answers
/// is bounded only by the server (`statement_timeout`) and the network, so this bound is what
/// keeps the client's request finite. The blocking work goes on after the 503 and releases
/// its connection when it ends.
pub const REQUEST_BOUND: Duration = Duration::from_secs(5);

/// One row of `items`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: i64,
    pub name: String,
    pub price_cents: i64,
}

/// The body of `POST /items`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewItem {
    pub name: String,
    pub price_cents: i64,
}

/// Why a database call failed, as the handlers answer it.
#[derive(Debug)]
pub enum DbError {
    /// Down, overloaded or timed out: 503, try again.
    Unavailable(String),
    /// The request itself is wrong: 400.
    Invalid(String),
    /// Anything else: 500.
    Failed(String),
}

impl From<pool::Error> for DbError {
    fn from(error: pool::Error) -> Self {
        if error.is_transient() || server_says_retry(&error) {
            DbError::Unavailable(error.to_string())
        } else {
            DbError::Failed(error.to_string())
        }
    }
}

/// A statement the server refused for a passing reason, which a retry may get through: 503
/// too. `Error::is_transient` covers what the pool knows (no connection, a broken one); these
/// are this service's choice among the server's own codes. PostgreSQL SQLSTATEs: class 40
/// (serialization failure, deadlock), class 53 (out of memory, disk, connections), `57014`
/// (`statement_timeout`), `55P03` (`lock_timeout`), `25006` (read-only: a failover left this
/// server a replica). MySQL/MariaDB error numbers: 1205 (lock wait timeout), 1213 (deadlock),
/// 1290 (`--read-only`), 3024 (`max_execution_time`).
fn server_says_retry(error: &pool::Error) -> bool {
    let pool::Error::Query(e) = error else {
        return false;
    };
    let Some(code) = e.code() else {
        return false;
    };
    // SQLSTATEs have five characters; MySQL's numbers four (and 4025 is a CHECK violation).
    let sqlstate_class = |class: &str| code.len() == 5 && code.starts_with(class);
    sqlstate_class("40")
        || sqlstate_class("53")
        || matches!(
            code,
            "57014" | "55P03" | "25006" | "1205" | "1213" | "1290" | "3024"
        )
}

impl IntoResponse for DbError {
    fn into_response(self) -> Response {
        let (status, reason) = match self {
            DbError::Unavailable(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
            DbError::Invalid(reason) => (StatusCode::BAD_REQUEST, reason),
            DbError::Failed(reason) => (StatusCode::INTERNAL_SERVER_ERROR, reason),
        };
        let body = Json(json!({ "error": status.canonical_reason(), "reason": reason }));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            (status, [(header::RETRY_AFTER, "1")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

/// What the handlers need from a database. Blocking: called inside `spawn_blocking`.
pub trait Db: Send + Sync + 'static {
    fn get_item(&self, id: i64) -> Result<Option<Item>, DbError>;
    /// Inserts inside a transaction and returns the row.
    fn create_item(&self, new: &NewItem) -> Result<Item, DbError>;
    /// One round trip.
    fn ping(&self) -> Result<(), DbError>;
}

/// The SQL that differs between PostgreSQL and MySQL/MariaDB.
pub struct Dialect {
    pub driver: &'static str,
    pub create_table: &'static str,
    pub get_item: &'static str,
    pub insert_item: &'static str,
    /// After `insert_item` on the same connection: the new id (`None`: `insert_item` returns it).
    pub last_id: Option<&'static str>,
}

pub const POSTGRES: Dialect = Dialect {
    driver: "postgres",
    create_table: "CREATE TABLE IF NOT EXISTS items (id bigserial PRIMARY KEY, \
                   name text NOT NULL, price_cents bigint NOT NULL)",
    get_item: "SELECT id, name, price_cents FROM items WHERE id = $1",
    insert_item: "INSERT INTO items (name, price_cents) VALUES ($1, $2) RETURNING id",
    last_id: None,
};

pub const MYSQL: Dialect = Dialect {
    driver: "mysql",
    create_table: "CREATE TABLE IF NOT EXISTS items (id bigint AUTO_INCREMENT PRIMARY KEY, \
                   name varchar(200) NOT NULL, price_cents bigint NOT NULL)",
    get_item: "SELECT id, name, price_cents FROM items WHERE id = ?",
    insert_item: "INSERT INTO items (name, price_cents) VALUES (?, ?)",
    last_id: Some("SELECT LAST_INSERT_ID()"),
};

impl Dialect {
    /// The dialect of a `postgres://`/`postgresql://` or `mysql://`/`mariadb://` URL.
    pub fn of_url(url: &str) -> Result<&'static Dialect, String> {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        match scheme {
            "postgres" | "postgresql" => Ok(&POSTGRES),
            "mysql" | "mariadb" => Ok(&MYSQL),
            _ => Err("DATABASE_URL must start with postgres:// or mysql://".to_owned()),
        }
    }
}

/// The pool's settings for this service: small bounds, so a request that cannot get a
/// connection answers 503 within a few seconds instead of holding a client.
pub fn service_settings() -> Settings {
    Settings {
        max_open: 16,
        acquire_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        check_timeout: Duration::from_secs(1),
        validate_after: Duration::from_millis(100),
        primer_backoff_max: Duration::from_millis(500),
        ..Settings::default()
    }
}

/// The database through `pool::open` and `release`: the way this library is meant to be used.
pub struct PoolDb {
    url: String,
    sql: &'static Dialect,
}

impl PoolDb {
    /// Configures the pool for `url` with [`service_settings`], creates the table and fills it
    /// with `seed` items if it is empty.
    pub fn connect(url: &str, seed: i64) -> Result<PoolDb, String> {
        Self::connect_with(url, service_settings(), seed)
    }

    /// As [`connect`](Self::connect), with other settings.
    pub fn connect_with(url: &str, settings: Settings, seed: i64) -> Result<PoolDb, String> {
        let sql = Dialect::of_url(url)?;
        pool::configure(sql.driver, url, settings).map_err(|e| e.to_string())?;
        let db = PoolDb {
            url: url.to_owned(),
            sql,
        };
        db.prepare_table(seed).map_err(|e| format!("{e:?}"))?;
        Ok(db)
    }

    fn open(&self) -> Result<pool::Conn, DbError> {
        Ok(pool::open(self.sql.driver, &self.url)?)
    }

    fn prepare_table(&self, seed: i64) -> Result<(), DbError> {
        let mut conn = self.open()?;
        conn.execute(self.sql.create_table, &[])?;
        let rows = conn.query("SELECT count(*) FROM items", &[])?;
        let have = rows.scalar().and_then(Value::as_i64).unwrap_or(0);
        conn.execute("BEGIN", &[])?;
        for i in have..seed {
            let params = [
                Value::Text(format!("item {}", i + 1)),
                Value::Int((i + 1) * 100),
            ];
            conn.execute(self.sql.insert_item, &params)?;
        }
        conn.execute("COMMIT", &[])?;
        conn.release()?;
        Ok(())
    }
}

impl Db for PoolDb {
    fn get_item(&self, id: i64) -> Result<Option<Item>, DbError> {
        let mut conn = self.open()?;
        let rows = conn.query(self.sql.get_item, &[Value::Int(id)])?;
        finish(conn);
        item_of(&rows)
    }

    fn create_item(&self, new: &NewItem) -> Result<Item, DbError> {
        if new.name.is_empty() || new.name.len() > 200 {
            return Err(DbError::Invalid("name must be 1 to 200 bytes".into()));
        }
        let mut conn = self.open()?;
        // An error or a panic before COMMIT drops `conn`: the pool rolls the transaction back
        // before anyone else gets this session.
        conn.execute("BEGIN", &[])?;
        let params = [Value::Text(new.name.clone()), Value::Int(new.price_cents)];
        let rows = conn.query(self.sql.insert_item, &params)?;
        let rows = match self.sql.last_id {
            Some(last_id) => conn.query(last_id, &[])?,
            None => rows,
        };
        let id = rows
            .scalar()
            .and_then(Value::as_i64)
            .ok_or_else(|| DbError::Failed("the insert returned no id".into()))?;
        conn.execute("COMMIT", &[])?;
        // Committed: from here the request has succeeded, whatever the release says (a 503
        // now would make a retrying client insert the item twice).
        finish(conn);
        Ok(Item {
            id,
            name: new.name.clone(),
            price_cents: new.price_cents,
        })
    }

    fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.open()?;
        conn.query("SELECT 1", &[])?;
        finish(conn);
        Ok(())
    }
}

/// Releases a connection whose work is done. A failed release (its reset failed, so the pool
/// closed it instead of parking it) is the pool's business, not the request's: logged only.
fn finish(conn: pool::Conn) {
    if let Err(error) = conn.release() {
        tracing::warn!(%error, "release after a finished request failed; the pool closed that connection");
    }
}

/// The first row of `id, name, price_cents` rows.
fn item_of(rows: &pool::Rows) -> Result<Option<Item>, DbError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let field = |name: &str| {
        rows.get_named(0, name)
            .ok_or_else(|| DbError::Failed(format!("no column {name}")))
    };
    let int = |name: &str| {
        field(name)?
            .as_i64()
            .ok_or_else(|| DbError::Failed(format!("{name} is not an integer")))
    };
    let name = field("name")?
        .as_str()
        .ok_or_else(|| DbError::Failed("name is not text".into()))?
        .to_owned();
    Ok(Some(Item {
        id: int("id")?,
        name,
        price_cents: int("price_cents")?,
    }))
}

/// Shared by every handler.
#[derive(Clone)]
pub struct App {
    pub db: Arc<dyn Db>,
    /// Renders `/metrics`; `None` serves 404 there.
    pub metrics: Option<PrometheusHandle>,
}

/// Every route of the service.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/items/{id}", get(get_item))
        .route("/items", post(create_item))
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// Serves `app` in the background on `runtime`, on a free loopback port; its base URL.
pub fn serve_in_background(runtime: &tokio::runtime::Runtime, app: App) -> Result<String, String> {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("cannot listen on loopback: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    runtime.spawn(async move { axum::serve(listener, router(app)).await });
    Ok(format!("http://{addr}"))
}

/// Runs blocking database work off the runtime's workers, bounded by [`REQUEST_BOUND`].
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    match tokio::time::timeout(REQUEST_BOUND, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(DbError::Failed(format!("the handler failed: {join}"))),
        Err(_) => Err(DbError::Unavailable(format!(
            "the database did not answer within {REQUEST_BOUND:?}"
        ))),
    }
}

async fn get_item(State(app): State<App>, Path(id): Path<i64>) -> Result<Response, DbError> {
    let db = Arc::clone(&app.db);
    Ok(match blocking(move || db.get_item(id)).await? {
        Some(item) => Json(item).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such item" })),
        )
            .into_response(),
    })
}

async fn create_item(
    State(app): State<App>,
    Json(new): Json<NewItem>,
) -> Result<(StatusCode, Json<Item>), DbError> {
    let db = Arc::clone(&app.db);
    let item = blocking(move || db.create_item(&new)).await?;
    Ok((StatusCode::CREATED, Json(item)))
}

async fn health(State(app): State<App>) -> Response {
    let db = Arc::clone(&app.db);
    match blocking(move || db.ping()).await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        // Whatever went wrong, the service itself is alive: the database is not reachable.
        Err(DbError::Unavailable(reason) | DbError::Failed(reason) | DbError::Invalid(reason)) => {
            let body = Json(json!({ "status": "unavailable", "reason": reason }));
            let retry = [(header::RETRY_AFTER, "1")];
            (StatusCode::SERVICE_UNAVAILABLE, retry, body).into_response()
        }
    }
}

async fn stats() -> Json<serde_json::Value> {
    let pools: Vec<_> = pool::all_stats()
        .into_iter()
        .map(|s| {
            json!({
                "driver": s.driver, "pool": s.pool, "max_open": s.max_open,
                "idle": s.idle, "in_use": s.in_use, "resetting": s.resetting,
                "opening": s.opening, "waiting": s.waiting,
                "opened": s.opened, "closed": s.closed, "reaped_idle": s.reaped_idle,
                "dropped_dead": s.dropped_dead, "rotated": s.rotated,
                "not_reusable": s.not_reusable, "reset_failures": s.reset_failures,
                "connect_failures": s.connect_failures, "waits": s.waits,
                "timeouts": s.timeouts, "shed": s.shed,
                "total_wait_seconds": s.total_wait.as_secs_f64(),
            })
        })
        .collect();
    Json(json!({ "pools": pools }))
}

async fn metrics(State(app): State<App>) -> Response {
    let Some(handle) = app.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response();
    };
    // Gauges and counters are copied from the pools now, so the scrape is exact.
    pool::publish_metrics();
    let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    (content_type, handle.render()).into_response()
}

/// Installs the Prometheus recorder (once per process) with buckets for the pool's
/// histograms. Call before the first `pool::open`: the pool resolves its histogram handles
/// when it creates a key's pool.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<Result<PrometheusHandle, String>> =
        std::sync::OnceLock::new();
    let buckets = [
        0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
        0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ];
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Prefix("pool_".into()), &buckets)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())
        })
        .clone()
}
