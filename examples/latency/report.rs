//! Percentiles, the table, the ratios and the JSON form.

use serde_json::{json, Value};

use crate::measure::{title, Method, Samples};

/// Percentiles of one method, in microseconds.
pub struct Summary {
    pub method: Method,
    /// How many calls were measured (fewer for a cold connect sampled every n-th round).
    pub calls: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// A ratio between two methods of one driver, at p50 and at p99.
pub struct Ratio {
    pub key: &'static str,
    pub label: &'static str,
    pub p50: f64,
    pub p99: f64,
}

pub struct DriverReport {
    pub driver: &'static str,
    pub tls: bool,
    pub shown: String,
    pub cold_every: usize,
    pub summaries: Vec<Summary>,
    pub ratios: Vec<Ratio>,
}

pub const FOOTNOTE: &str = "\
Notes: times are per call, in µs, from one interleaved run (every round runs each method once).
  pool::open (steady state) times only `open`; its `release` runs untimed right after.
  The \"of which\" rows split the open + SELECT 1 + release call. The pool driver's statements
  are one round trip (PostgreSQL: an unnamed statement with server-inferred parameter types;
  MariaDB: a text query, parameters sent as literals, nothing prepared). r2d2's `query` is
  prepare + execute on PostgreSQL (two round trips), as most code written against it does.
  Release resets the session with the full reset (PostgreSQL: BEGIN; ROLLBACK + reset batch;
  MariaDB: COM_RESET_CONNECTION), nothing for an untouched session, and after a statement on
  the pool's resetter thread: the caller's release is a hand-off, and the connection is parked
  once its reset is done (an open meanwhile takes another or waits for it).
  The row rows read one row of a 100-row table by primary key, a different id each call.
  The floor rows run the same statement on a dedicated connection of the driver's native
  crate, open for the whole run, in one round trip: a request with no pool at all.
  r2d2 does NO reset when a connection is returned. With its default settings it tests every
  checkout (postgres: an empty query, one round trip; mysql: COM_PING), and r2d2_mysql pings
  again on return (has_broken). So r2d2 get+drop is 1 (postgres) or 2 (mysql) round trips,
  pool::open+release 0.";

/// Added to the notes when a Redis target was measured.
pub const REDIS_FOOTNOTE: &str = "\
Redis: the pool's GET is one round trip through the uniform API (`conn.query(\"GET\", …)`);
  release after it needs no reset and no I/O: GET is data-only as the server classifies its
  commands (`COMMAND`, once per server), so nothing it did can have changed the connection. A
  session that ran any other command (SELECT, CLIENT …, MULTI, a script) gets the full reset,
  one pipelined round trip (RESET, AUTH, CLIENT SETNAME <name or \"\">, PING <nonce>; SELECT
  too when a db is configured), on the resetter thread.
  Cold connect is redis::Client::get_connection (what the driver does): TCP connect + one
  pipelined round trip (AUTH, CLIENT SETINFO ×2); close drops the socket (no QUIT).
  r2d2 is the redis crate's `r2d2` feature with default settings: test_on_check_out makes
  every get send PING (is_valid), has_broken is a local check, and there is NO reset on
  return. So r2d2 get+GET+drop is 2 round trips, pool open+GET+release 1 for the caller.";

/// Added to the notes when a plain PostgreSQL target was measured: why its cold connect has an
/// SSLRequest in it.
pub const PG_PREFER_FOOTNOTE: &str = "\
PostgreSQL without sslmode (the plain rows): the driver, libpq and the baselines here all use
  libpq's default sslmode=prefer, so a cold connect first asks for TLS (SSLRequest); the plain
  server says no and the connect goes on unencrypted: one round trip more than
  sslmode=disable. The pool pays it only when it connects, never on open.";

/// Added to the notes when a TLS target was measured; `{every}` is its cold-connect stride.
pub const TLS_FOOTNOTE: &str = "\
TLS rows (\"over TLS\"): the same methods against a second private server of each kind that
  speaks TLS (without --url: at 127.0.0.1, the same kind of login as the plain rows), every
  session encrypted (the server says so: pg_stat_ssl, Ssl_cipher; the Redis port speaks only
  TLS) and verified in full against a throwaway CA: chain and host name (sslmode=verify-full,
  ssl-mode=VERIFY_IDENTITY, tls=on + cacert).
  Cold connect over TLS = the plain cold connect + the TLS handshake with its certificate
  checks (PostgreSQL: after the SSLRequest; MariaDB: after the server's greeting). It runs in
  one round of every {every} (--tls-cold-every), hence fewer calls (the line under its rows).
  The baselines use the native crates on rustls with ring, as the drivers do: postgres with
  tokio-postgres-rustls (one ClientConfig for all connects), mysql with SslOpts (the crate
  reads ssl-ca on every connect), redis with tls-rustls. A cold Redis TLS connect costs
  4-5 ms mostly because the redis crate (0.32) rescans the platform's CA store
  (ca-certificates, ~140 roots, about 3 ms) on every TLS connect, even when cacert replaces
  it; the pool's driver pays that too, but only when it connects, never on open.
  pool::open over TLS attaches a parked connection whose TLS session is already up: no
  handshake and no certificate check, so it costs what a plain open costs (compare the
  \"pool::open: TLS ÷ plain\" ratio). A request over TLS (pool open+statement+release, r2d2
  get+statement+drop) has the round trips of its plain row; TLS adds the encryption and
  decryption of each message (the reset's too, on the resetter thread). r2d2 over TLS is
  r2d2_postgres with MakeRustlsConnect, r2d2_mysql with SslOpts and the redis crate's r2d2
  with tls-rustls, default settings as in the plain rows. \"TLS ÷ plain\" ratios compare a TLS
  row with the same method on the plain server of the same run.";

/// The notes for these reports.
pub fn footnote(reports: &[DriverReport]) -> String {
    let mut notes = FOOTNOTE.to_owned();
    if reports.iter().any(|r| r.driver == "postgres" && !r.tls) {
        notes += "\n";
        notes += PG_PREFER_FOOTNOTE;
    }
    if reports.iter().any(|r| r.driver == "redis") {
        notes += "\n";
        notes += REDIS_FOOTNOTE;
    }
    if let Some(every) = reports.iter().filter(|r| r.tls).map(|r| r.cold_every).max() {
        notes += "\n";
        notes += &TLS_FOOTNOTE.replace("{every}", &every.to_string());
    }
    notes
}

/// Nearest-rank percentile of sorted nanoseconds, in µs.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

pub fn summarize(samples: &Samples) -> DriverReport {
    let summaries: Vec<Summary> = samples
        .per_method
        .iter()
        .filter(|(_, ns)| !ns.is_empty())
        .map(|(method, ns)| {
            let mut sorted = ns.clone();
            sorted.sort_unstable();
            Summary {
                method: *method,
                calls: sorted.len(),
                p50: percentile(&sorted, 0.50),
                p90: percentile(&sorted, 0.90),
                p99: percentile(&sorted, 0.99),
                max: percentile(&sorted, 1.0),
                mean: sorted.iter().sum::<u64>() as f64 / sorted.len() as f64 / 1000.0,
            }
        })
        .collect();
    let find = |m: Method| summaries.iter().find(|s| s.method == m);
    let ratio = |key, label, num: Method, den: Method| {
        let (n, d) = (find(num)?, find(den)?);
        Some(Ratio {
            key,
            label,
            p50: n.p50 / d.p50,
            p99: n.p99 / d.p99,
        })
    };
    let ratios = [
        ratio(
            "cold_over_pool_open",
            "cold connect ÷ pool::open",
            Method::Cold,
            Method::Open,
        ),
        ratio(
            "cold_over_pool_open_release",
            "cold connect ÷ pool::open + release",
            Method::Cold,
            Method::OpenRelease,
        ),
        ratio(
            "r2d2_get_over_pool_open",
            "r2d2 get + drop ÷ pool::open",
            Method::R2d2Get,
            Method::Open,
        ),
        ratio(
            "r2d2_get_over_pool_open_release",
            "r2d2 get + drop ÷ pool::open + release",
            Method::R2d2Get,
            Method::OpenRelease,
        ),
        ratio(
            "r2d2_select_over_pool_select",
            "r2d2 get+SELECT 1+drop ÷ pool open+SELECT 1+release",
            Method::R2d2Select,
            Method::OpenSelectRelease,
        ),
        ratio(
            "r2d2_get_over_pool_get",
            "r2d2 get+GET+drop ÷ pool open+GET+release",
            Method::R2d2GetCommand,
            Method::OpenGetRelease,
        ),
        ratio(
            "r2d2_row_over_pool_row",
            "r2d2 get+row+drop ÷ pool open+row+release",
            Method::R2d2Row,
            Method::OpenRowRelease,
        ),
        ratio(
            "pool_select_over_floor",
            "pool open+SELECT 1+release ÷ the floor",
            Method::OpenSelectRelease,
            Method::FloorSelect,
        ),
        ratio(
            "pool_get_over_floor",
            "pool open+GET+release ÷ the floor",
            Method::OpenGetRelease,
            Method::FloorGet,
        ),
        ratio(
            "pool_row_over_floor",
            "pool open+row+release ÷ the floor",
            Method::OpenRowRelease,
            Method::FloorRow,
        ),
        ratio(
            "release_after_select_over_select",
            "release after SELECT 1 ÷ the SELECT 1",
            Method::PartRelease,
            Method::PartSelect,
        ),
        ratio(
            "release_after_get_over_get",
            "release after GET ÷ the GET",
            Method::PartReleaseAfterGet,
            Method::PartGet,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    DriverReport {
        driver: samples.driver,
        tls: samples.tls,
        shown: samples.shown.clone(),
        cold_every: samples.cold_every,
        summaries,
        ratios,
    }
}

/// The reports of all targets, each TLS one with its "TLS ÷ plain" ratios against the plain
/// target of the same driver, when the run has one.
pub fn summarize_all(samples: &[Samples]) -> Vec<DriverReport> {
    let mut reports: Vec<DriverReport> = samples.iter().map(summarize).collect();
    for i in 0..reports.len() {
        let (driver, tls) = (reports[i].driver, reports[i].tls);
        let plain = reports.iter().position(|r| r.driver == driver && !r.tls);
        if let (true, Some(plain)) = (tls, plain) {
            let extra = tls_ratios(&reports[i], &reports[plain]);
            reports[i].ratios.extend(extra);
        }
    }
    reports
}

/// What TLS adds, method by method: a TLS target's percentiles over the plain target's.
const TLS_RATIOS: &[(&str, &str, Method)] = &[
    (
        "tls_over_plain_cold",
        "cold connect: TLS ÷ plain",
        Method::Cold,
    ),
    (
        "tls_over_plain_pool_open",
        "pool::open: TLS ÷ plain",
        Method::Open,
    ),
    (
        "tls_over_plain_pool_select",
        "pool open+SELECT 1+release: TLS ÷ plain",
        Method::OpenSelectRelease,
    ),
    (
        "tls_over_plain_r2d2_select",
        "r2d2 get+SELECT 1+drop: TLS ÷ plain",
        Method::R2d2Select,
    ),
    (
        "tls_over_plain_pool_get",
        "pool open+GET+release: TLS ÷ plain",
        Method::OpenGetRelease,
    ),
    (
        "tls_over_plain_r2d2_get",
        "r2d2 get+GET+drop: TLS ÷ plain",
        Method::R2d2GetCommand,
    ),
];

fn tls_ratios(tls: &DriverReport, plain: &DriverReport) -> Vec<Ratio> {
    fn find(r: &DriverReport, m: Method) -> Option<&Summary> {
        r.summaries.iter().find(|s| s.method == m)
    }
    TLS_RATIOS
        .iter()
        .filter_map(|&(key, label, method)| {
            let (t, p) = (find(tls, method)?, find(plain, method)?);
            Some(Ratio {
                key,
                label,
                p50: t.p50 / p.p50,
                p99: t.p99 / p.p99,
            })
        })
        .collect()
}

fn us(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

fn times(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}×")
    } else {
        format!("{v:.0}×")
    }
}

/// The width of the method column: the longest label.
const LABEL: usize = 38;

pub fn table(reports: &[DriverReport], iterations: usize, warmup: usize) -> String {
    let mut out = format!(
        "{iterations} measured iterations per method (after {warmup} warm-up), interleaved\n"
    );
    for r in reports {
        out += &format!("\n{} — {}\n", title(r.driver, r.tls), r.shown);
        out += &format!(
            "  {:<LABEL$} {:>9} {:>9} {:>9} {:>9}\n",
            "method", "p50 µs", "p90 µs", "p99 µs", "max µs"
        );
        for s in &r.summaries {
            out += &format!(
                "  {:<LABEL$} {:>9} {:>9} {:>9} {:>9}\n",
                s.method.label(),
                us(s.p50),
                us(s.p90),
                us(s.p99),
                us(s.max)
            );
        }
        for s in r.summaries.iter().filter(|s| s.calls < iterations) {
            out += &format!(
                "  ({}: {} calls, one in every {} rounds; --tls-cold-every)\n",
                s.method.label(),
                s.calls,
                r.cold_every
            );
        }
        out += &format!("  {:<58} {:>9} {:>9}\n", "ratio", "at p50", "at p99");
        for q in &r.ratios {
            out += &format!(
                "  {:<58} {:>9} {:>9}\n",
                q.label,
                times(q.p50),
                times(q.p99)
            );
        }
    }
    out + "\n" + &footnote(reports) + "\n"
}

pub fn to_json(reports: &[DriverReport], iterations: usize, warmup: usize) -> Value {
    let drivers: Vec<Value> = reports
        .iter()
        .map(|r| {
            let methods: Vec<Value> = r
                .summaries
                .iter()
                .map(|s| {
                    json!({
                        "method": s.method.key(),
                        "label": s.method.label().trim(),
                        "calls": s.calls,
                        "p50_us": s.p50,
                        "p90_us": s.p90,
                        "p99_us": s.p99,
                        "max_us": s.max,
                        "mean_us": s.mean,
                    })
                })
                .collect();
            let ratios: serde_json::Map<String, Value> = r
                .ratios
                .iter()
                .map(|q| (q.key.to_owned(), json!({ "p50": q.p50, "p99": q.p99 })))
                .collect();
            json!({
                "driver": r.driver,
                "tls": r.tls,
                "target": r.shown,
                "cold_every": r.cold_every,
                "methods": methods,
                "ratios": ratios,
            })
        })
        .collect();
    json!({
        "unit": "microseconds",
        "iterations": iterations,
        "warmup": warmup,
        "interleaved": true,
        "drivers": drivers,
        "notes": footnote(reports),
    })
}
