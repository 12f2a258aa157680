//! Printing: columns for people (coloured on a terminal unless `NO_COLOR` is set), JSON or
//! YAML for scripts, and the short ages kubectl shows (`5m`, `3h12m`, `2d`).

use std::io::IsTerminal;

use anyhow::Result;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::cli::Format;

/// Prints `value` as JSON or YAML; `false` for [`Format::Text`], which the caller prints.
pub fn structured<T: Serialize>(format: Format, value: &T) -> Result<bool> {
    match format {
        Format::Text => Ok(false),
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(value)?);
            Ok(true)
        }
        Format::Yaml => {
            print!("{}", serde_saphyr::to_string(value)?);
            Ok(true)
        }
    }
}

/// Colours of a status word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Good: green.
    Good,
    /// Under way or waiting: yellow.
    Busy,
    /// Failing: red.
    Bad,
    /// Nothing to say: plain.
    Plain,
}

/// Whether standard output gets ANSI colours.
pub fn colour_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `text` in `tone`'s colour when `colour` is set.
pub fn paint(text: &str, tone: Tone, colour: bool) -> String {
    let code = match tone {
        Tone::Good => "32",
        Tone::Busy => "33",
        Tone::Bad => "31",
        Tone::Plain => return text.to_string(),
    };
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Prints rows under a header, columns padded to their widest cell (colour codes not counted).
pub fn table(header: &[&str], rows: &[Vec<(String, Tone)>], colour: bool) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, (cell, _)) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<(String, Tone)>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, (cell, tone))| {
                let pad = if i == last {
                    0
                } else {
                    widths[i] - cell.chars().count()
                };
                format!("{}{}", paint(&cell, tone, colour), " ".repeat(pad))
            })
            .collect();
        println!("{}", text.join("   ").trim_end());
    };
    line(
        header
            .iter()
            .map(|h| (h.to_string(), Tone::Plain))
            .collect(),
    );
    for row in rows {
        line(row.clone());
    }
}

/// A duration as kubectl prints ages: the two largest units, `45s`, `5m10s`, `3h12m`, `2d4h`.
pub fn short(duration: SignedDuration) -> String {
    let total = duration.as_secs().unsigned_abs();
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) if m == 0 => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        _ if h == 0 => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

/// `time` relative to `now`: `5m ago`, `in 2h`.
pub fn relative(time: Timestamp, now: Timestamp) -> String {
    let delta = now.duration_since(time);
    if delta.is_negative() {
        format!("in {}", short(delta))
    } else {
        format!("{} ago", short(delta))
    }
}

/// Bytes in binary units, as `du -h`: `512B`, `1.5KiB`, `3.2GiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectls() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (300, "5m"),
            (310, "5m10s"),
            (3600, "1h"),
            (3 * 3600 + 12 * 60 + 5, "3h12m"),
            (2 * 86_400, "2d"),
            (2 * 86_400 + 4 * 3600 + 59, "2d4h"),
            (-90, "1m30s"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(
                short(SignedDuration::from_secs(seconds)),
                expected,
                "{seconds}"
            );
        }
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        assert_eq!(
            relative("2026-11-22T09:55:00Z".parse().unwrap(), now),
            "5m ago"
        );
        assert_eq!(
            relative("2026-11-22T12:00:00Z".parse().unwrap(), now),
            "in 2h"
        );
    }

    #[test]
    fn bytes_use_binary_units() {
        for (count, expected) in [
            (0, "0B"),
            (1023, "1023B"),
            (1536, "1.5KiB"),
            (5 << 30, "5.0GiB"),
        ] {
            assert_eq!(bytes(count), expected);
        }
    }

    #[test]
    fn colour_only_when_asked() {
        assert_eq!(paint("Ready", Tone::Good, false), "Ready");
        assert_eq!(paint("Ready", Tone::Good, true), "\x1b[32mReady\x1b[0m");
        assert_eq!(paint("x", Tone::Plain, true), "x");
    }
}
