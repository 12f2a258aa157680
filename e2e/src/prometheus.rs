//! A real Prometheus (Debian's `prometheus`) on 127.0.0.1 that scrapes the operator's
//! `/metrics` on its Pod address, so the dashboard's queries are tested against the series
//! a running Sluice exports, with Prometheus's own PromQL engine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_testkit::probe::http_get_at;
use sluice_testkit::process::{Daemon, free_port};
use tempfile::TempDir;

/// How often the test Prometheus scrapes: fast, so `rate()` has samples within seconds.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// A running Prometheus scraping one target; stopped on drop.
pub struct Prometheus {
    port: u16,
    _daemon: Daemon,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus with one scrape job, `sluice`, of `target` (`host:port`), and waits
    /// until it serves queries.
    pub fn start(target: SocketAddr) -> Prometheus {
        if which("prometheus").is_none() {
            panic!("prometheus not found: apt-get install prometheus (Debian's package)");
        }
        let dir = tempfile::Builder::new()
            .prefix("sluice-prometheus-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let interval = format!("{}s", SCRAPE_INTERVAL.as_secs());
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: {interval}, evaluation_interval: {interval}}}\n\
                 scrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let port = free_port();
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut daemon = Daemon::spawn("prometheus", command, &dir.path().join("prometheus.log"));
        daemon.wait_ready("prometheus", Duration::from_secs(60), || {
            matches!(get(port, "/-/ready"), Some((200, _)))
        });
        Prometheus {
            port,
            _daemon: daemon,
            _dir: dir,
        }
    }

    /// The result vector of the instant query `expr` (`/api/v1/query`); panics when
    /// Prometheus rejects it, quoting its error.
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (status, body) = get(self.port, &path)
            .unwrap_or_else(|| panic!("Prometheus on port {} does not answer", self.port));
        let answer: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("Prometheus answered {status} with non-JSON ({e}): {body}"));
        assert_eq!(
            answer["status"], "success",
            "Prometheus rejected {expr}: {answer}"
        );
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `expr` returns at least one series, or `timeout` passes; returns the last
    /// result either way.
    pub fn wait_for_series(&self, expr: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(expr);
            if !result.is_empty() || Instant::now() > deadline {
                return result;
            }
            std::thread::sleep(SCRAPE_INTERVAL);
        }
    }
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_at(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port), path)
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// `s` with every byte but RFC 3986's unreserved ones percent-encoded, for a query string.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
