//! The member's HTTP admin API, for operators, load balancers and
//! Prometheus:
//!
//! | request | answer |
//! |---|---|
//! | `GET /status` | the member's status as JSON |
//! | `GET /primary` | 200 on the primary that takes writes, else 503 |
//! | `GET /replica?lag=BYTES` | 200 on a backup or async copy at most BYTES behind (default 1 MiB), else 503 |
//! | `GET /health` | 200 while the member runs and its store is not poisoned |
//! | `GET /metrics` | Prometheus text format |
//! | `POST /switchover` | (primary) hand over to the active backup and follow it |
//! | `POST /failover` | make this member primary now (the old primary must be gone) |
//!
//! A deliberately small HTTP/1.1 server on std: one request per
//! connection, no keep-alive, no request bodies.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redoubt_engine::mirror::{Actions, MemberStatus};

/// Where the admin API gets a fresh status from.
pub type StatusSource = Arc<dyn Fn() -> MemberStatus + Send + Sync>;

/// Operator actions the API can ask for; `None` serves status only.
pub type ActionSource = Option<Actions>;

pub fn serve(
    listener: TcpListener,
    status: StatusSource,
    actions: ActionSource,
    stop: Arc<AtomicBool>,
) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                let status = status.clone();
                let actions = actions.clone();
                std::thread::spawn(move || {
                    let _ = handle(s, &status, actions.as_ref());
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn handle(s: TcpStream, status: &StatusSource, actions: Option<&Actions>) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Skip headers.
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (code, ctype, body) = match (method, target, actions) {
        ("POST", "/switchover", Some(a)) => action(a.switchover()),
        ("POST", "/failover", Some(a)) => action(a.failover()),
        _ => route(method, target, &status()),
    };
    respond(s, code, ctype, &body)
}

fn action(r: Result<String, String>) -> (u16, &'static str, String) {
    match r {
        Ok(msg) => (200, "text/plain; charset=utf-8", msg + "\n"),
        Err(why) => (409, "text/plain; charset=utf-8", why + "\n"),
    }
}

/// (status code, content type, body) for a request.
pub fn route(method: &str, target: &str, st: &MemberStatus) -> (u16, &'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    if method != "GET" {
        return (
            405,
            "text/plain",
            "GET, or POST /switchover and /failover\n".into(),
        );
    }
    let text = "text/plain; charset=utf-8";
    match path {
        "/status" => (
            200,
            "application/json",
            serde_json::to_string_pretty(st).unwrap_or_default() + "\n",
        ),
        "/health" => match &st.poisoned {
            None => (200, text, "ok\n".into()),
            Some(why) => (503, text, format!("poisoned: {why}\n")),
        },
        "/primary" => {
            if st.role == "primary" && st.paused.is_none() && st.poisoned.is_none() {
                (200, text, "primary\n".into())
            } else {
                (
                    503,
                    text,
                    format!(
                        "{} (primary: {})\n",
                        st.role,
                        st.primary.as_deref().unwrap_or("unknown")
                    ),
                )
            }
        }
        "/replica" => {
            let max: u64 = match param("lag").map(|l| l.parse()) {
                None => 1 << 20,
                Some(Ok(n)) => n,
                Some(Err(_)) => return (400, text, "lag must be a number of bytes\n".into()),
            };
            let lag = st.receive_lag_bytes.unwrap_or(u64::MAX);
            let copy = st.role == "backup" || st.role == "async";
            if copy && lag <= max && st.poisoned.is_none() {
                (200, text, format!("{} {lag} bytes behind\n", st.role))
            } else if copy {
                (
                    503,
                    text,
                    format!(
                        "{} {} behind (limit {max})\n",
                        st.role,
                        if lag == u64::MAX {
                            "unknown".to_string()
                        } else {
                            format!("{lag} bytes")
                        }
                    ),
                )
            } else {
                (503, text, format!("{} is not a replica\n", st.role))
            }
        }
        "/metrics" => (200, "text/plain; version=0.0.4", metrics(st)),
        _ => (
            404,
            text,
            "not found; try /status /primary /replica?lag=BYTES /health /metrics\n".into(),
        ),
    }
}

fn metrics(st: &MemberStatus) -> String {
    let labels = format!("mirror=\"{}\",member=\"{}\"", st.mirror, st.member);
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {value}\n"
        ));
    };
    gauge(
        "redoubt_is_primary",
        "1 if this member is the primary",
        f64::from(st.role == "primary"),
    );
    gauge(
        "redoubt_is_backup",
        "1 if this member is a backup",
        f64::from(st.role == "backup"),
    );
    gauge(
        "redoubt_trouble",
        "1 if commits are paused (trouble state)",
        f64::from(st.paused.is_some()),
    );
    gauge(
        "redoubt_epoch",
        "current epoch (primary tenure)",
        st.epoch as f64,
    );
    gauge(
        "redoubt_journal_end_bytes",
        "end of this member's journal",
        st.journal_end as f64,
    );
    gauge(
        "redoubt_journal_durable_bytes",
        "end of the durable journal",
        st.journal_durable as f64,
    );
    gauge(
        "redoubt_applied_bytes",
        "end of what is applied to the databases",
        st.applied as f64,
    );
    gauge(
        "redoubt_sync",
        "1 if commits wait for the backup",
        f64::from(st.sync),
    );
    gauge(
        "redoubt_active_backup",
        "1 if this backup is the active backup",
        f64::from(st.active_backup),
    );
    gauge(
        "redoubt_arbiter_connected",
        "1 if the arbiter is reachable",
        f64::from(st.arbiter_connected),
    );
    if let Some(l) = st.receive_lag_bytes {
        gauge(
            "redoubt_receive_lag_bytes",
            "journal bytes not yet received from the primary",
            l as f64,
        );
    }
    if let Some(l) = st.receive_lag_secs {
        gauge(
            "redoubt_receive_lag_seconds",
            "how far behind the primary in time",
            l,
        );
    }
    gauge(
        "redoubt_apply_lag_bytes",
        "received but not yet applied",
        st.journal_durable.saturating_sub(st.applied) as f64,
    );
    let page = 8192.0;
    gauge(
        "redoubt_pool_capacity_bytes",
        "bound of the buffer pools (cache_pages per database)",
        st.pool.capacity_pages as f64 * page,
    );
    gauge(
        "redoubt_pool_resident_bytes",
        "held in the buffer pools, insert buffers and key filters included",
        st.pool.resident_pages as f64 * page,
    );
    gauge(
        "redoubt_pool_dirty_bytes",
        "pages changed since a flush cycle last wrote them",
        st.pool.dirty_pages as f64 * page,
    );
    gauge(
        "redoubt_insert_buffer_keys",
        "new keys waiting in insert buffers for their leaves",
        st.pool.buffered_keys as f64,
    );
    gauge(
        "redoubt_insert_buffer_databases",
        "databases whose insert buffer takes new keys (its key filter answers: kept from a clean shutdown or built)",
        st.pool.buffering_databases as f64,
    );
    out.push_str("# HELP redoubt_commits_total writes acknowledged to clients\n# TYPE redoubt_commits_total counter\n");
    out.push_str(&format!(
        "redoubt_commits_total{{{labels}}} {}\n",
        st.commits
    ));
    out.push_str("# HELP redoubt_journal_syncs_total fsyncs of the journal\n# TYPE redoubt_journal_syncs_total counter\n");
    out.push_str(&format!(
        "redoubt_journal_syncs_total{{{labels}}} {}\n",
        st.journal_syncs
    ));
    let mut counter = |name: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{labels}}} {value}\n"
        ));
    };
    let pool = &st.pool;
    counter(
        "redoubt_insert_buffer_merged_keys_total",
        "keys merged from insert buffers into their leaves",
        pool.merged_keys as f64,
    );
    counter(
        "redoubt_insert_buffer_sync_merged_keys_total",
        "of those, keys committers merged while their commit synced (no write waited for them)",
        pool.sync_merged_keys as f64,
    );
    counter(
        "redoubt_writer_merges_total",
        "merges of a full insert buffer that a write ran or waited for",
        pool.writer_merges as f64,
    );
    counter(
        "redoubt_writer_merge_seconds_total",
        "time writes spent in those merges",
        pool.writer_merge_us as f64 / 1e6,
    );
    counter(
        "redoubt_writer_flush_waits_total",
        "waits of writes for a flush cycle (the pool's dirty budget spent)",
        pool.flush_waits as f64,
    );
    counter(
        "redoubt_writer_flush_wait_seconds_total",
        "time writes spent in those waits",
        pool.flush_wait_us as f64 / 1e6,
    );
    out.push_str("# HELP redoubt_follower_lag_bytes journal a follower still lacks\n# TYPE redoubt_follower_lag_bytes gauge\n");
    for f in &st.followers {
        out.push_str(&format!(
            "redoubt_follower_lag_bytes{{{labels},follower=\"{}\"}} {}\n",
            f.name, f.lag_bytes
        ));
    }
    out
}

fn respond(mut s: TcpStream, code: u16, ctype: &str, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        409 => "Conflict",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    write!(
        s,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(role: &str) -> MemberStatus {
        MemberStatus {
            mirror: "M".into(),
            member: "a".into(),
            role: role.into(),
            receive_lag_bytes: Some(100),
            ..MemberStatus::default()
        }
    }

    #[test]
    fn health_checks_answer_as_load_balancers_expect() {
        assert_eq!(route("GET", "/primary", &st("primary")).0, 200);
        assert_eq!(route("GET", "/primary", &st("backup")).0, 503);
        let mut paused = st("primary");
        paused.paused = Some("isolated".into());
        assert_eq!(
            route("GET", "/primary", &paused).0,
            503,
            "a primary in trouble takes no writes"
        );
        assert_eq!(route("GET", "/replica?lag=1000", &st("backup")).0, 200);
        assert_eq!(route("GET", "/replica?lag=10", &st("backup")).0, 503);
        assert_eq!(route("GET", "/replica", &st("primary")).0, 503);
        assert_eq!(route("GET", "/replica?lag=x", &st("backup")).0, 400);
        assert_eq!(route("POST", "/status", &st("backup")).0, 405);
        assert_eq!(route("GET", "/nope", &st("backup")).0, 404);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let (code, _, body) = route("GET", "/metrics", &st("backup"));
        assert_eq!(code, 200);
        assert!(
            body.contains("redoubt_is_backup{mirror=\"M\",member=\"a\"} 1\n"),
            "{body}"
        );
        assert!(body.contains("# TYPE redoubt_commits_total counter"));
        assert!(body.contains("redoubt_receive_lag_bytes{mirror=\"M\",member=\"a\"} 100\n"));
        let mut full = st("primary");
        full.pool = redoubt_engine::PoolStats {
            capacity_pages: 100,
            resident_pages: 100,
            dirty_pages: 3,
            buffered_keys: 42,
            buffering_databases: 2,
            merged_keys: 1000,
            sync_merged_keys: 600,
            writer_merges: 7,
            writer_merge_us: 2_500_000,
            flush_waits: 3,
            flush_wait_us: 125_000,
        };
        let body = route("GET", "/metrics", &full).2;
        for line in [
            "redoubt_pool_capacity_bytes{mirror=\"M\",member=\"a\"} 819200\n",
            "redoubt_pool_resident_bytes{mirror=\"M\",member=\"a\"} 819200\n",
            "redoubt_pool_dirty_bytes{mirror=\"M\",member=\"a\"} 24576\n",
            "redoubt_insert_buffer_keys{mirror=\"M\",member=\"a\"} 42\n",
            "redoubt_insert_buffer_databases{mirror=\"M\",member=\"a\"} 2\n",
            "# TYPE redoubt_insert_buffer_merged_keys_total counter\n",
            "redoubt_insert_buffer_merged_keys_total{mirror=\"M\",member=\"a\"} 1000\n",
            "redoubt_insert_buffer_sync_merged_keys_total{mirror=\"M\",member=\"a\"} 600\n",
            "redoubt_writer_merges_total{mirror=\"M\",member=\"a\"} 7\n",
            "redoubt_writer_merge_seconds_total{mirror=\"M\",member=\"a\"} 2.5\n",
            "redoubt_writer_flush_waits_total{mirror=\"M\",member=\"a\"} 3\n",
            "redoubt_writer_flush_wait_seconds_total{mirror=\"M\",member=\"a\"} 0.125\n",
        ] {
            assert!(body.contains(line), "{line} in {body}");
        }
    }
}
