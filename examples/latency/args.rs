//! Command-line arguments (no parser crate: six flags do not need one).

use std::path::PathBuf;

pub const USAGE: &str = "\
usage: cargo run --release --example latency -- [options]

Measures how long getting a database connection takes: a cold connect, the pool's `open`,
and r2d2's `get`, interleaved in one run. Without --url it starts private PostgreSQL,
MariaDB and Redis servers, a plain one and a TLS one of each (verified against a throwaway
CA), and stops them afterwards.

options:
  --url URL          measure an existing server (postgres://…, mysql://…, redis://… or
                     rediss://…); repeatable. TLS as each driver spells it, e.g.
                     postgres://…?sslmode=verify-full&sslrootcert=/path/ca.pem
                     mysql://…?ssl-mode=VERIFY_IDENTITY&ssl-ca=/path/ca.pem
                     rediss://…?cacert=/path/ca.pem
  --iterations N     measured iterations per method (default 2000)
  --warmup N         warm-up iterations per method, not recorded (default N/10, at least 50)
  --tls-cold-every N on a TLS target, run the cold connect in every N-th round only
                     (default 4: a cold TLS connect costs milliseconds); 1 for every round
  --json             print the results as one JSON object instead of the table
  --plot FILE.svg    draw the latency distributions (CDF, log-scale µs) as an SVG
  -h, --help         print this help";

/// What the user asked for.
#[derive(Debug)]
pub struct Args {
    pub urls: Vec<String>,
    pub iterations: usize,
    pub warmup: usize,
    /// The cold connect of a TLS target runs in every this-many-th round (see
    /// `Target::cold_every`).
    pub tls_cold_every: usize,
    pub json: bool,
    pub plot: Option<PathBuf>,
}

/// `Ok(None)` means `--help` was asked for.
pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut urls = Vec::new();
    let mut iterations = 2000;
    let mut warmup = None;
    let mut tls_cold_every = 4;
    let mut json = false;
    let mut plot = None;
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--url" => urls.push(value("--url")?),
            "--iterations" => iterations = number("--iterations", &value("--iterations")?)?,
            "--warmup" => warmup = Some(number("--warmup", &value("--warmup")?)?),
            "--tls-cold-every" => {
                tls_cold_every = number("--tls-cold-every", &value("--tls-cold-every")?)?
            }
            "--json" => json = true,
            "--plot" => plot = Some(plot_path(value("--plot")?)?),
            other => return Err(format!("unknown argument `{other}`\n\n{USAGE}")),
        }
    }
    if iterations == 0 {
        return Err("--iterations must be at least 1".into());
    }
    if tls_cold_every == 0 {
        return Err("--tls-cold-every must be at least 1".into());
    }
    Ok(Some(Args {
        urls,
        iterations,
        warmup: warmup.unwrap_or((iterations / 10).max(50)),
        tls_cold_every,
        json,
        plot,
    }))
}

fn number(flag: &str, text: &str) -> Result<usize, String> {
    text.parse()
        .map_err(|_| format!("{flag} `{text}` is not a whole number"))
}

fn plot_path(text: String) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => Ok(path),
        Some(e) if e.eq_ignore_ascii_case("png") => Err(format!(
            "--plot {}: PNG is not supported (plotters' bitmap backend needs system font \
             libraries that this build does not use); use an .svg file name",
            path.display()
        )),
        _ => Err(format!(
            "--plot {}: the file name must end in .svg",
            path.display()
        )),
    }
}
