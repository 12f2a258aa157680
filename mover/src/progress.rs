//! Progress of long work: a bar on a terminal, restic-shaped status lines
//! with `--json`, and a log line every few seconds in mover Pods,
//! all driven by a ticker thread reading the engine's atomic counters.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A snapshot of the counters a ticker shows.
pub struct Sample {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Whether the totals are final (the walk is complete).
    pub totals_final: bool,
}

/// How progress is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Json,
    Log,
    Off,
}

impl Mode {
    /// The mode for this process: nothing with `--quiet`, JSON with
    /// `--json`, a bar on a TTY, log lines when `log_lines` (a mover Job), else nothing.
    pub fn detect(json: bool, quiet: bool, log_lines: bool) -> Mode {
        if quiet {
            Mode::Off
        } else if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else if log_lines {
            Mode::Log
        } else {
            Mode::Off
        }
    }
}

/// A running ticker; stop it with [`Ticker::finish`].
pub struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts showing progress of `what` ("backup", "restore").
    pub fn start<F>(mode: Mode, what: &'static str, sample: F) -> Ticker
    where
        F: Fn() -> Sample + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle =
            (mode != Mode::Off).then(|| std::thread::spawn(move || run(mode, what, sample, &s)));
        Ticker { stop, handle }
    }

    /// Stops the display.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run<F: Fn() -> Sample>(mode: Mode, what: &str, sample: F, stop: &AtomicBool) {
    let start = Instant::now();
    let bar = (mode == Mode::Bar).then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} {msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        b
    });
    let interval = match mode {
        Mode::Log => Duration::from_secs(5),
        Mode::Json => Duration::from_secs(1),
        _ => Duration::from_millis(200),
    };
    let mut last = Instant::now() - interval;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < interval {
            continue;
        }
        last = Instant::now();
        let s = sample();
        let elapsed = start.elapsed().as_secs_f64();
        let rate = s.bytes_done as f64 / elapsed.max(0.001);
        let eta = (s.totals_final && rate > 0.0)
            .then(|| (s.bytes_total.saturating_sub(s.bytes_done)) as f64 / rate);
        match mode {
            Mode::Bar => {
                let b = bar.as_ref().expect("bar");
                b.set_length(s.bytes_total.max(s.bytes_done));
                b.set_position(s.bytes_done);
                b.set_message(format!("{what} {}/{} files", s.files_done, s.files_total));
            }
            Mode::Json => {
                let pct = if s.bytes_total > 0 {
                    s.bytes_done as f64 / s.bytes_total as f64
                } else {
                    0.0
                };
                println!(
                    "{}",
                    serde_json::json!({
                        "message_type": "status",
                        "seconds_elapsed": elapsed as u64,
                        "seconds_remaining": eta.map(|e| e as u64),
                        "percent_done": pct,
                        "total_files": s.files_total,
                        "files_done": s.files_done,
                        "total_bytes": s.bytes_total,
                        "bytes_done": s.bytes_done,
                    })
                );
            }
            Mode::Log => tracing::info!(
                what,
                files_done = s.files_done,
                files_total = s.files_total,
                bytes_done = s.bytes_done,
                bytes_total = s.bytes_total,
                rate_mib_s = format!("{:.1}", rate / 1048576.0),
                eta_s = eta.map(|e| e as u64),
                "progress"
            ),
            Mode::Off => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}
