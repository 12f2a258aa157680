//! A real Prometheus server on 127.0.0.1 that scrapes given targets, for tests of what
//! dashboards and alerts see.
//!
//! Each [`Prometheus`] owns a temporary directory (its configuration, TSDB and log) and a free
//! port, and is killed when dropped. The binary is Debian's `prometheus` package (the one that
//! also ships `promtool`), or `$SLUICE_PROMETHEUS`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tempfile::TempDir;

use crate::probe::http_get_at;
use crate::process::{Daemon, free_port};
use crate::tools::find_on_path;

/// The variable that names another `prometheus` binary than the one on PATH.
const ENV_VAR: &str = "SLUICE_PROMETHEUS";

/// A running Prometheus server scraping a fixed set of targets.
#[derive(Debug)]
pub struct Prometheus {
    // Dropped in field order: the server is killed before its directory goes.
    daemon: Daemon,
    address: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus on 127.0.0.1 with an empty TSDB, scraping `/metrics` of every target
    /// every `scrape_interval` as job `job`, and waits until it is ready.
    pub fn start(job: &str, targets: &[SocketAddr], scrape_interval: Duration) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("sluice-prometheus-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for Prometheus: {e}"));
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, scrape_config(job, targets, scrape_interval))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port());
        let mut command = Command::new(binary());
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .current_dir(dir.path());
        let mut daemon = Daemon::spawn("prometheus", command, &dir.path().join("prometheus.log"));
        daemon.wait_ready("ready", Duration::from_secs(60), || {
            matches!(http_get_at(address, "/-/ready"), Some((200, _)))
        });
        Prometheus {
            daemon,
            address,
            _dir: dir,
        }
    }

    /// The last `lines` lines of the server's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }

    /// `/api/v1/query` of `promql` now: the result's series (or scalar), or the error
    /// Prometheus gives.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        self.api(&format!("/api/v1/query?query={}", encode(promql)))
    }

    /// `/api/v1/query_range` of `promql` from `start` to `end` (Unix seconds) every `step`:
    /// the matrix's series, or the error Prometheus gives.
    pub fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<Value>, String> {
        self.api(&format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={}",
            encode(promql),
            step.as_secs_f64()
        ))
    }

    /// `/api/v1/label/LABEL/values` of the series that `selector` matches, as Grafana's
    /// `label_values(selector, label)` variable query asks it.
    pub fn label_values(&self, label: &str, selector: &str) -> Result<Vec<Value>, String> {
        self.api(&format!(
            "/api/v1/label/{}/values?match[]={}",
            encode(label),
            encode(selector)
        ))
    }

    /// GET `path_and_query` of the HTTP API: the `data` of a successful answer (a query's
    /// `result`), or what went wrong.
    fn api(&self, path_and_query: &str) -> Result<Vec<Value>, String> {
        let (status, body) = http_get_at(self.address, path_and_query)
            .ok_or_else(|| format!("Prometheus on {} did not answer", self.address))?;
        let answer: Value = serde_json::from_str(&body)
            .map_err(|e| format!("Prometheus answered {status} with no JSON ({e}): {body}"))?;
        if answer["status"] != "success" {
            return Err(format!(
                "Prometheus answered {status}: {} {}",
                answer["errorType"], answer["error"]
            ));
        }
        let data = &answer["data"];
        match data["resultType"].as_str() {
            // A query's vector or matrix: its series.
            Some("vector" | "matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            // A scalar or string is one value.
            Some(_) => Ok(vec![data["result"].clone()]),
            // Label values are a plain list.
            None => Ok(data.as_array().cloned().unwrap_or_default()),
        }
    }
}

/// `prometheus.yml`: one job scraping `targets` over plain HTTP.
fn scrape_config(job: &str, targets: &[SocketAddr], scrape_interval: Duration) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let interval = format!("{}ms", scrape_interval.as_millis());
    format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n\
         scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// `$SLUICE_PROMETHEUS`, else `prometheus` on PATH; panics saying how to install it.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os(ENV_VAR) {
        return PathBuf::from(path);
    }
    find_on_path("prometheus").unwrap_or_else(|| {
        panic!(
            "prometheus not found on PATH: apt-get install prometheus (Debian's package, which \
             also ships promtool), or set {ENV_VAR}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scrape_config_names_every_target() {
        let targets = [
            "10.234.0.7:8080".parse().unwrap(),
            "127.0.0.1:9000".parse().unwrap(),
        ];
        assert_eq!(
            scrape_config("sluice", &targets, Duration::from_millis(1500)),
            "global:\n  scrape_interval: 1500ms\n  scrape_timeout: 1500ms\n\
             scrape_configs:\n  - job_name: sluice\n    static_configs:\n      \
             - targets: [\"10.234.0.7:8080\", \"127.0.0.1:9000\"]\n"
        );
    }

    #[test]
    fn scrapes_its_target_and_answers_queries() {
        // Nothing listens on the target: Prometheus records the failed scrapes as `up` 0.
        let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port());
        let prometheus = Prometheus::start("nothing", &[target], Duration::from_millis(200));
        let mut up = Vec::new();
        for _ in 0..300 {
            up = prometheus.query("up{job=\"nothing\"}").unwrap();
            if !up.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            up.len(),
            1,
            "one series of `up` for the one target: {up:?}\n{}",
            prometheus.log_tail(20)
        );
        assert_eq!(up[0]["metric"]["instance"], target.to_string());
        assert_eq!(up[0]["value"][1], "0", "nothing answers on {target}");
        let jobs = prometheus.label_values("job", "up").unwrap();
        assert_eq!(jobs, [Value::from("nothing")]);
        let error = prometheus.query("up{").unwrap_err();
        assert!(error.contains("bad_data"), "{error}");
    }

    #[test]
    fn queries_are_encoded_for_a_url() {
        assert_eq!(
            encode("sum by (kind) (rate(x{a=~\"b.*\"}[4s]))"),
            "sum%20by%20%28kind%29%20%28rate%28x%7Ba%3D%7E%22b%2E%2A%22%7D%5B4s%5D%29%29"
        );
    }
}
