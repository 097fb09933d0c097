//! The web example's service (`examples/web/app.rs`, included as it is) seen through HTTP, on
//! a private PostgreSQL: its database killed and started again under 8 client threads, and
//! its `/metrics` page. Needs the `metrics` feature (`cargo test --features metrics`).

#[path = "../examples/web/app.rs"]
mod app;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use app::{App, PoolDb, REQUEST_BOUND};
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use pool_testservers::PgServer;

const CLIENTS: usize = 8;
const ITEMS: i64 = 200;
const DOWN_FOR: Duration = Duration::from_secs(3);

/// The longest any request may take: the service's own bound plus room for a slow machine.
fn bound() -> Duration {
    REQUEST_BOUND + Duration::from_secs(1)
}

/// The service on a runtime of its own, on a free loopback port.
struct Service {
    base: String,
    _runtime: tokio::runtime::Runtime,
}

impl Service {
    fn start(database_url: &str) -> Service {
        let metrics = app::install_metrics().expect("install the recorder");
        let db = PoolDb::connect(database_url, ITEMS).expect("prepare the database");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let app = App {
            db: Arc::new(db),
            metrics: Some(metrics),
        };
        let base = app::serve_in_background(&runtime, app).expect("serve");
        Service {
            base,
            _runtime: runtime,
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(bound() + Duration::from_secs(5)))
        .build()
        .into()
}

/// One HTTP request's outcome: its status (`None`: no answer at all) and body.
struct Answer {
    started: Instant,
    took: Duration,
    status: Option<u16>,
    body: String,
}

fn get(agent: &ureq::Agent, url: &str) -> Answer {
    let started = Instant::now();
    let (status, body) = match agent.get(url).call() {
        Ok(mut response) => {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            (Some(response.status().as_u16()), body)
        }
        Err(error) => (None, error.to_string()),
    };
    Answer {
        started,
        took: started.elapsed(),
        status,
        body,
    }
}

/// `CLIENTS` threads asking for items until `stop`; every answer is kept.
fn load(base: &str, stop: &Arc<AtomicBool>) -> thread::JoinHandle<Vec<Answer>> {
    let base = base.to_owned();
    let stop = Arc::clone(stop);
    thread::spawn(move || {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let clients: Vec<_> = (0..CLIENTS as i64)
            .map(|c| {
                let (base, stop, answers) = (base.clone(), stop.clone(), answers.clone());
                thread::spawn(move || {
                    let agent = agent();
                    let mut id = c * 17;
                    while !stop.load(SeqCst) {
                        id = id % ITEMS + 1;
                        let answer = get(&agent, &format!("{base}/items/{id}"));
                        answers.lock().unwrap().push(answer);
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("client thread");
        }
        Arc::try_unwrap(answers)
            .map_err(|_| "answers still shared")
            .unwrap()
            .into_inner()
            .unwrap()
    })
}

/// `/health` while the database is down must say so with 503 and a JSON reason.
fn assert_unavailable(answer: &Answer) {
    assert_eq!(
        answer.status,
        Some(503),
        "health while down: {}",
        answer.body
    );
    let body: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON body");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
}

#[test]
fn health_is_503_while_the_database_is_down_and_200_within_2_s_of_it_being_back() {
    let mut pg = PgServer::start().expect("private PostgreSQL");
    let service = Service::start(&pg.url());
    let health_url = format!("{}/health", service.base);
    let agent = agent();
    assert_eq!(get(&agent, &health_url).status, Some(200));

    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&service.base, &stop);
    thread::sleep(Duration::from_secs(1));

    pg.kill().expect("kill PostgreSQL");
    let killed = Instant::now();
    let mut health_down = 0;
    while killed.elapsed() < DOWN_FOR {
        let answer = get(&agent, &health_url);
        assert!(answer.took <= bound(), "health took {:?}", answer.took);
        assert_unavailable(&answer);
        health_down += 1;
        thread::sleep(Duration::from_millis(100));
    }

    pg.restart().expect("start PostgreSQL again");
    // `restart` returns once the server accepts connections.
    let back = Instant::now();
    let healthy_after = loop {
        let answer = get(&agent, &health_url);
        assert!(answer.took <= bound(), "health took {:?}", answer.took);
        if answer.status == Some(200) {
            break back.elapsed();
        }
        assert_unavailable(&answer);
        assert!(
            back.elapsed() <= Duration::from_secs(2),
            "health still 503 {:?} after the database was back: {}",
            back.elapsed(),
            answer.body
        );
        thread::sleep(Duration::from_millis(50));
    };
    thread::sleep(Duration::from_secs(3));
    stop.store(true, SeqCst);
    let answers = clients.join().expect("load thread");

    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != Some(200)).collect();
    let at = |t: Instant| t.saturating_duration_since(killed).as_secs_f64();
    println!(
        "{} requests, {} failed; /health 503 {health_down} times while down, 200 {:?} after \
         the database was back",
        answers.len(),
        failed.len(),
        healthy_after
    );
    if let (Some(first), Some(last)) = (failed.first(), failed.last()) {
        println!(
            "error window through HTTP: {:.3} s to {:.3} s after the kill (back at {:.3} s)",
            at(first.started),
            at(last.started + last.took),
            at(back)
        );
    }
    for answer in &answers {
        assert!(
            answer.took <= bound(),
            "a request took {:?} (bound {:?})",
            answer.took,
            bound()
        );
        assert!(
            matches!(answer.status, Some(200) | Some(503)),
            "a request answered {:?} (only 200 or 503 are right): {}",
            answer.status,
            answer.body
        );
    }
    assert!(!failed.is_empty(), "the outage was not seen at all");
    let late: Vec<_> = failed
        .iter()
        .filter(|a| a.started >= back + Duration::from_secs(1))
        .map(|a| format!("{:.3} s: {}", at(a.started), a.body))
        .collect();
    assert!(
        late.is_empty(),
        "failures from 1 s after recovery: {late:?}"
    );
    assert!(
        answers
            .iter()
            .any(|a| a.status == Some(200) && a.started >= back + Duration::from_secs(1)),
        "no request succeeded after recovery"
    );
}

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

/// `/metrics`, parsed by a strict parser of the Prometheus text format.
fn scrape(agent: &ureq::Agent, base: &str) -> Exposition {
    let answer = get(agent, &format!("{base}/metrics"));
    assert_eq!(answer.status, Some(200), "{}", answer.body);
    parse_prometheus(&answer.body)
        .unwrap_or_else(|e| panic!("not Prometheus text ({e:?}):\n{}", answer.body))
}

/// The value of metric `name` for this test's pool (its `pool` label holds the server's port).
fn sample<'a>(scrape: &'a Exposition, name: &str, port: u16) -> &'a PrometheusValue {
    let port = format!("port={port}");
    let family = scrape
        .families
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in the scrape"));
    family
        .iter_samples()
        .find(|s| {
            s.get_labelset().is_ok_and(|labels| {
                labels.get_label_value("driver") == Some("postgres")
                    && labels
                        .get_label_value("pool")
                        .is_some_and(|p| p.contains(&port))
            })
        })
        .map(|s| &s.value)
        .unwrap_or_else(|| panic!("no {name} sample for the pool on {port}"))
}

fn gauge(scrape: &Exposition, name: &str, port: u16) -> f64 {
    match sample(scrape, name, port) {
        PrometheusValue::Gauge(v) => v.as_f64(),
        other => panic!("{name} is not a gauge: {other:?}"),
    }
}

fn counter(scrape: &Exposition, name: &str, port: u16) -> f64 {
    match sample(scrape, name, port) {
        PrometheusValue::Counter(c) => c.value.as_f64(),
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

fn histogram_count(scrape: &Exposition, name: &str, port: u16) -> u64 {
    match sample(scrape, name, port) {
        PrometheusValue::Histogram(h) => h.count.unwrap_or(0),
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

#[test]
fn metrics_parse_as_prometheus_text_and_the_in_use_gauge_follows_the_pool() {
    let pg = PgServer::start().expect("private PostgreSQL");
    let url = pg.url();
    let service = Service::start(&url);
    let agent = agent();

    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&service.base, &stop);
    thread::sleep(Duration::from_millis(500));
    // Three connections held here, in the service's process, while the clients keep going.
    let held: Vec<pool::Conn> = (0..3)
        .map(|_| pool::open("postgres", &url).expect("open"))
        .collect();
    let busy = scrape(&agent, &service.base);
    let in_use_busy = gauge(&busy, "pool_in_use_connections", pg.port());
    assert!(in_use_busy >= 3.0, "in use while 3 are held: {in_use_busy}");
    for conn in held {
        conn.release().expect("release");
    }
    stop.store(true, SeqCst);
    let answers = clients.join().expect("load thread");
    assert!(answers.iter().all(|a| a.status == Some(200)));

    let quiet = scrape(&agent, &service.base);
    let port = pg.port();
    assert_eq!(gauge(&quiet, "pool_in_use_connections", port), 0.0);
    assert!(gauge(&quiet, "pool_idle_connections", port) >= 1.0);
    assert_eq!(gauge(&quiet, "pool_max_open_connections", port), 16.0);
    assert!(counter(&quiet, "pool_connections_opened_total", port) >= 3.0);
    assert_eq!(counter(&quiet, "pool_acquire_timeouts_total", port), 0.0);
    // Every request opened once, plus the three held here and the table's preparation.
    let acquired = histogram_count(&quiet, "pool_acquire_seconds", port);
    assert!(
        acquired >= answers.len() as u64 + 3,
        "{acquired} acquires recorded for {} requests",
        answers.len()
    );
    assert!(histogram_count(&quiet, "pool_reset_seconds", port) >= 1);
}

/// Every route once, as a client would call them, on the server behind `url`.
fn exercise_routes(url: &str, driver: &str) {
    let service = Service::start(url);
    let agent = agent();
    let base = &service.base;

    let first = get(&agent, &format!("{base}/items/1"));
    assert_eq!(first.status, Some(200), "{}", first.body);
    let item: app::Item = serde_json::from_str(&first.body).expect("an item");
    assert_eq!(
        (item.id, item.name.as_str(), item.price_cents),
        (1, "item 1", 100)
    );
    assert_eq!(
        get(&agent, &format!("{base}/items/999999")).status,
        Some(404)
    );

    let post = |body: serde_json::Value| {
        let mut response = agent
            .post(format!("{base}/items"))
            .send_json(&body)
            .expect("POST /items");
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (response.status().as_u16(), text)
    };
    let (status, body) = post(serde_json::json!({ "name": "tea", "price_cents": 350 }));
    assert_eq!(status, 201, "{body}");
    let created: app::Item = serde_json::from_str(&body).expect("the created item");
    assert!(created.id > ITEMS, "a new id: {created:?}");
    let again = get(&agent, &format!("{base}/items/{}", created.id));
    assert_eq!(
        serde_json::from_str::<app::Item>(&again.body).expect("the item"),
        created,
        "committed and readable by the next request"
    );
    let (status, body) = post(serde_json::json!({ "name": "", "price_cents": 1 }));
    assert_eq!(status, 400, "{body}");

    let health = get(&agent, &format!("{base}/health"));
    assert_eq!(
        (health.status, health.body.as_str()),
        (Some(200), r#"{"status":"ok"}"#)
    );
    let stats: serde_json::Value =
        serde_json::from_str(&get(&agent, &format!("{base}/stats")).body).expect("stats JSON");
    let ours = stats["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .find(|p| p["driver"] == driver && p["max_open"] == 16)
        .unwrap_or_else(|| panic!("no {driver} pool in {stats}"));
    assert_eq!(ours["in_use"], 0, "{ours}");
    assert!(
        !ours["pool"].as_str().unwrap_or("").contains("secret"),
        "{ours}"
    );
}

#[test]
fn every_route_answers_on_postgresql() {
    exercise_routes(&pool_testservers::shared_pg().url(), "postgres");
}

#[test]
fn every_route_answers_on_mariadb() {
    exercise_routes(&pool_testservers::shared_maria().url(), "mysql");
}

#[test]
fn the_servers_passing_refusals_answer_503_and_the_rest_500() {
    use pool::{DriverError, DriverErrorKind};
    let answer = |code: &str| {
        let error = DriverError::new(DriverErrorKind::Query, "refused").with_code(code);
        match app::DbError::from(pool::Error::Query(error)) {
            app::DbError::Unavailable(_) => 503,
            app::DbError::Failed(_) => 500,
            app::DbError::Invalid(_) => 400,
        }
    };
    // Serialization failure, deadlock, too many connections, statement and lock timeouts, a
    // read-only server after a failover; MySQL's lock wait timeout, deadlock, read-only.
    for code in [
        "40001", "40P01", "53300", "57014", "55P03", "25006", "1205", "1213", "1290",
    ] {
        assert_eq!(answer(code), 503, "{code}");
    }
    // A unique violation, a syntax error, an undefined table; MariaDB's CHECK violation and
    // duplicate key.
    for code in ["23505", "42601", "42P01", "4025", "1062"] {
        assert_eq!(answer(code), 500, "{code}");
    }
}
