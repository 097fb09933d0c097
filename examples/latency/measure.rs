//! The methods, and the interleaved measuring loop.

use std::error::Error;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub type BoxError = Box<dyn Error + Send + Sync>;

/// One way of getting (and giving back) a connection.
/// In table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Cold,
    Open,
    OpenRelease,
    OpenSelectRelease,
    /// The `SELECT 1` inside `OpenSelectRelease` (a part of it, not a separate call).
    PartSelect,
    /// The `release` inside `OpenSelectRelease`: the reset after a statement.
    PartRelease,
    /// Redis: open, `GET` of a key set before the run, release.
    OpenGetRelease,
    /// The `GET` inside `OpenGetRelease`.
    PartGet,
    /// The `release` inside `OpenGetRelease`: the reset after a command.
    PartReleaseAfterGet,
    R2d2Get,
    R2d2Select,
    /// Redis: r2d2 `get`, the same `GET`, drop.
    R2d2GetCommand,
    /// Open, one row of a small table by primary key (a parameter), release.
    OpenRowRelease,
    R2d2Row,
    /// The floor: `SELECT 1` on a dedicated connection no pool touches, open for the whole run,
    /// in one round trip.
    FloorSelect,
    /// The floor of a Redis request: `GET` on a dedicated connection.
    FloorGet,
    /// The floor of the row by id: one round trip on a dedicated connection.
    FloorRow,
}

impl Method {
    /// Stable name for JSON and scripts.
    pub fn key(self) -> &'static str {
        match self {
            Method::Cold => "cold_connect_close",
            Method::Open => "pool_open",
            Method::OpenRelease => "pool_open_release",
            Method::OpenSelectRelease => "pool_open_select1_release",
            Method::R2d2Get => "r2d2_get_drop",
            Method::R2d2Select => "r2d2_get_select1_drop",
            Method::PartSelect => "part_select1",
            Method::PartRelease => "part_release_after_select1",
            Method::OpenGetRelease => "pool_open_get_release",
            Method::PartGet => "part_get",
            Method::PartReleaseAfterGet => "part_release_after_get",
            Method::R2d2GetCommand => "r2d2_get_get_drop",
            Method::OpenRowRelease => "pool_open_select_row_release",
            Method::R2d2Row => "r2d2_get_select_row_drop",
            Method::FloorSelect => "floor_select1",
            Method::FloorGet => "floor_get",
            Method::FloorRow => "floor_select_row",
        }
    }

    /// Whether this is a part of another method's call rather than a call of its own.
    pub fn is_part(self) -> bool {
        matches!(
            self,
            Method::PartSelect
                | Method::PartRelease
                | Method::PartGet
                | Method::PartReleaseAfterGet
        )
    }

    /// What a person reads in the table and the chart.
    pub fn label(self) -> &'static str {
        match self {
            Method::Cold => "cold connect + close",
            Method::Open => "pool::open (steady state)",
            Method::OpenRelease => "pool::open + release",
            Method::OpenSelectRelease => "pool::open + SELECT 1 + release",
            Method::R2d2Get => "r2d2 get + drop",
            Method::R2d2Select => "r2d2 get + SELECT 1 + drop",
            Method::PartSelect => "  of which SELECT 1",
            Method::PartRelease => "  of which release (reset)",
            Method::OpenGetRelease => "pool::open + GET + release",
            Method::PartGet => "  of which GET",
            Method::PartReleaseAfterGet => "  of which release (reset)",
            Method::R2d2GetCommand => "r2d2 get + GET + drop",
            Method::OpenRowRelease => "pool::open + row by id ($1) + release",
            Method::R2d2Row => "r2d2 get + row by id ($1) + drop",
            Method::FloorSelect => "floor: SELECT 1 on a dedicated connection",
            Method::FloorGet => "floor: GET on a dedicated connection",
            Method::FloorRow => "floor: row by id on a dedicated connection",
        }
    }
}

/// What one run of a step measured: the time of its timed part, and optionally of parts of it
/// (the statement and the release), each recorded under its own part method
/// ([`Method::PartSelect`], [`Method::PartRelease`], …).
pub struct Timing {
    pub total: Duration,
    pub parts: Vec<(Method, Duration)>,
}

impl From<Duration> for Timing {
    fn from(total: Duration) -> Self {
        Timing {
            total,
            parts: Vec::new(),
        }
    }
}

/// One timed run of a method.
pub type Step = Box<dyn FnMut() -> Result<Timing, BoxError>>;

/// Everything measured for one driver (one server).
pub struct Target {
    /// The pool's driver name: `postgres`, `mysql` or `redis`.
    pub driver: &'static str,
    /// Whether the pool's sessions are encrypted, as the server reports it (PostgreSQL's
    /// `pg_stat_ssl`, MariaDB's `Ssl_cipher`) or, for Redis, as `tls=on` makes certain. Asked
    /// rather than read from the arguments: `sslmode=prefer` encrypts only if the server
    /// offers TLS.
    pub tls: bool,
    /// Where, with secrets redacted.
    pub shown: String,
    pub steps: Vec<(Method, Step)>,
    /// The cold connect runs in every `cold_every`-th round only (1: every round). A cold TLS
    /// connect costs milliseconds, far more than anything else in a round, so sampling it less
    /// often keeps a run short; the other methods still run every round.
    pub cold_every: usize,
}

/// The recorded latencies of one target, in nanoseconds, per method.
pub struct Samples {
    pub driver: &'static str,
    pub tls: bool,
    pub shown: String,
    pub cold_every: usize,
    pub per_method: Vec<(Method, Vec<u64>)>,
}

impl Samples {
    /// `postgres`, or `postgres over TLS`: how a person tells the targets of one driver apart.
    pub fn title(&self) -> String {
        title(self.driver, self.tls)
    }
}

/// The driver's name, with "over TLS" for a target whose sessions are encrypted.
pub fn title(driver: &str, tls: bool) -> String {
    if tls {
        format!("{driver} over TLS")
    } else {
        driver.to_owned()
    }
}

/// Runs `warmup` unrecorded and then `iterations` recorded rounds. Each round runs every step
/// of every target once (a cold connect only in every `cold_every`-th round), in a freshly
/// shuffled order, so slow drift of the machine and the after-effects of one method (a backend
/// exiting after a cold connect, caches evicted by it) fall on all methods alike instead of
/// always on the one that follows it.
pub fn run(
    targets: &mut [Target],
    warmup: usize,
    iterations: usize,
) -> Result<Vec<Samples>, BoxError> {
    let mut slots: Vec<(usize, usize)> = targets
        .iter()
        .enumerate()
        .flat_map(|(t, target)| (0..target.steps.len()).map(move |s| (t, s)))
        .collect();
    let mut samples: Vec<Samples> = targets
        .iter()
        .map(|t| Samples {
            driver: t.driver,
            tls: t.tls,
            shown: t.shown.clone(),
            cold_every: t.cold_every.max(1),
            per_method: Vec::new(),
        })
        .collect();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let bar = progress_bar((warmup + iterations) as u64);
    for round in 0..warmup + iterations {
        if round == warmup {
            bar.set_message("measuring");
        }
        rng.shuffle(&mut slots);
        for &(t, s) in &slots {
            let target = &mut targets[t];
            let (method, step) = &mut target.steps[s];
            let method = *method;
            if method == Method::Cold && round % target.cold_every.max(1) != 0 {
                continue;
            }
            let timing = step().map_err(|e| {
                format!(
                    "{} {}: {e}",
                    title(target.driver, target.tls),
                    method.label()
                )
            })?;
            if round >= warmup {
                let record = &mut samples[t];
                record.push(method, timing.total);
                for (part, took) in timing.parts {
                    record.push(part, took);
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    for record in &mut samples {
        record.per_method.sort_by_key(|(m, _)| *m);
    }
    Ok(samples)
}

impl Samples {
    fn push(&mut self, method: Method, took: Duration) {
        let ns = took.as_nanos() as u64;
        match self.per_method.iter_mut().find(|(m, _)| *m == method) {
            Some((_, v)) => v.push(ns),
            None => self.per_method.push((method, vec![ns])),
        }
    }
}

/// A tiny PRNG for the shuffle (no `rand` dependency for one shuffle per round).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len); // draws on stderr
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} rounds (eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_message("warming up");
    bar
}
