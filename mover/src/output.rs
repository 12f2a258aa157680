//! Human and JSON output helpers, and log setup.

use std::io::IsTerminal;

/// Logs go to stderr: JSON lines in `--json` mode (or when SLUICE_LOG_FORMAT
/// is `json`), text otherwise. A mover Job (`job`) logs its steps and progress at `info`.
pub fn init_logging(verbose: u8, json: bool, job: bool) {
    let default = match verbose {
        0 if job => "warn,sluice_mover=info,sluice_repo=info",
        0 => "warn,sluice_repo=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let json_logs = json || std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json_logs {
        b.json().init();
    } else {
        b.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Bytes in restic's style: `1.234 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.3} {}", UNITS[u])
    }
}

/// Seconds as `m:ss` or `h:mm:ss`.
pub fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Prints one JSON value on its own line.
pub fn json_line(v: &serde_json::Value) {
    println!("{v}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.500 KiB");
        assert_eq!(super::duration(75.0), "1:15");
        assert_eq!(super::duration(3725.0), "1:02:05");
    }
}
