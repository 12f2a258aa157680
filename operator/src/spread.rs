//! Spreading many objects on one schedule: `H` in a cron field and `trigger.jitter` take their
//! values from a stable hash of the object's namespace and name, as Jenkins and kopiur do. So
//! 5,000 sources on `H * * * *` start over the whole hour instead of at :00, and each always at
//! its own minute, which keeps the intervals between its snapshots even.

use jiff::SignedDuration;
use sha2::{Digest, Sha256};

/// The longest `trigger.jitter`: a delay beyond a week is a different schedule, not a spread.
pub const MAX_JITTER: SignedDuration = SignedDuration::from_hours(7 * 24);

/// The five cron fields: name, and the range an `H` takes a value from. Days of the month stop
/// at 28 so that every month has the chosen day.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 28),
    ("month", 1, 12),
    ("day-of-week", 0, 6),
];

/// The stable hash of one object that its `H` values and its jitter come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity([u8; 32]);

impl Identity {
    /// The identity of the object `namespace/name`.
    pub fn of(namespace: &str, name: &str) -> Self {
        Self(Sha256::digest(format!("{namespace}/{name}")).into())
    }

    /// Word `index` (0 to 7) of the hash; each use takes its own word, so an object's minute
    /// says nothing about its hour.
    fn word(&self, index: usize) -> u32 {
        let bytes = &self.0[index * 4..index * 4 + 4];
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
}

/// `expression` with every `H` replaced by this object's value: `H` (the field's range),
/// `H(a-b)` (within a..b) or either followed by `/n` (every n, from an offset below n). `@`
/// shorthands and expressions without `H` are returned as they are; a malformed `H` is an error
/// that says what is wrong.
pub fn expand(expression: &str, identity: Identity) -> Result<String, String> {
    let expression = expression.trim();
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if expression.starts_with('@') || fields.len() != FIELDS.len() {
        // Nothing to expand; the cron parser says what is wrong with a bad one.
        return Ok(expression.to_string());
    }
    let mut expanded = Vec::with_capacity(fields.len());
    for (index, field) in fields.iter().enumerate() {
        let parts: Result<Vec<String>, String> = field
            .split(',')
            .map(|part| expand_part(part, index, identity))
            .collect();
        expanded.push(parts?.join(","));
    }
    Ok(expanded.join(" "))
}

fn expand_part(part: &str, index: usize, identity: Identity) -> Result<String, String> {
    let Some(hashed) = part.strip_prefix('H') else {
        return Ok(part.to_string());
    };
    let (name, first, last) = FIELDS[index];
    let (range, step) = match hashed.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (hashed, None),
    };
    let (low, high) = match range {
        "" => (first, last),
        range => {
            let bounds = range
                .strip_prefix('(')
                .and_then(|range| range.strip_suffix(')'))
                .and_then(|range| range.split_once('-'))
                .and_then(|(low, high)| Some((low.parse::<u32>().ok()?, high.parse::<u32>().ok()?)))
                .filter(|(low, high)| first <= *low && low <= high && *high <= last);
            bounds.ok_or_else(|| {
                format!(
                    "{part:?} in the {name} field: write H(a-b) with {first} <= a <= b <= {last}"
                )
            })?
        }
    };
    let word = identity.word(index);
    let Some(step) = step else {
        return Ok((low + word % (high - low + 1)).to_string());
    };
    let step: u32 = step.parse().ok().filter(|step| *step > 0).ok_or_else(|| {
        format!("{part:?} in the {name} field: the step after / must be a number above 0")
    })?;
    let start = low + word % step.min(high - low + 1);
    Ok(format!("{start}-{high}/{step}"))
}

/// The delay below `jitter` (`90s`, `5m`, `1h30m`) that this object's scheduled syncs take.
pub fn offset(jitter: &str, identity: Identity) -> Result<SignedDuration, String> {
    let total = parse_duration(jitter)
        .filter(|total| *total <= MAX_JITTER)
        .ok_or_else(|| {
            format!(
                "spec.trigger.jitter {jitter:?} is not a duration of at most {}h such as 90s, 5m or 1h30m",
                MAX_JITTER.as_hours()
            )
        })?;
    let millis = u64::try_from(total.as_millis()).unwrap_or(0);
    if millis == 0 {
        return Ok(SignedDuration::ZERO);
    }
    let word = (u64::from(identity.word(5)) << 32) | u64::from(identity.word(6));
    let chosen = i64::try_from(word % millis).unwrap_or(0);
    Ok(SignedDuration::from_millis(chosen))
}

/// `1h30m`, `90s`: number-unit pairs with units h, m, s; `None` when it is not one.
fn parse_duration(text: &str) -> Option<SignedDuration> {
    let mut total = SignedDuration::ZERO;
    let mut number: Option<i64> = None;
    for character in text.chars() {
        if let Some(digit) = character.to_digit(10) {
            let value = number
                .unwrap_or(0)
                .checked_mul(10)?
                .checked_add(i64::from(digit))?;
            number = Some(value);
            continue;
        }
        let seconds = match character {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let amount = SignedDuration::from_secs(number.take()?.checked_mul(seconds)?);
        total = total.checked_add(amount)?;
    }
    (number.is_none() && !text.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Identity {
        Identity::of("apps", "db")
    }

    #[test]
    fn h_takes_a_stable_value_of_the_object_in_each_field() {
        let expanded = expand("H H H H H", db()).unwrap();
        assert_eq!(expanded, expand("H H H H H", db()).unwrap(), "stable");
        let values: Vec<u32> = expanded.split(' ').map(|v| v.parse().unwrap()).collect();
        for ((_, first, last), value) in FIELDS.iter().zip(&values) {
            assert!((*first..=*last).contains(value), "{values:?}");
        }
        assert_ne!(
            expand("H * * * *", db()).unwrap(),
            expand("H * * * *", Identity::of("apps", "web")).unwrap(),
            "two objects, two minutes (for these two names)"
        );
        assert_ne!(
            expand("H * * * *", db()).unwrap(),
            expand("H * * * *", Identity::of("other", "db")).unwrap(),
            "the namespace counts"
        );
    }

    #[test]
    fn ranges_steps_and_lists() {
        let cases = [
            ("H(0-29) * * * *", 0, 0, 29),
            ("H(10-10) * * * *", 0, 10, 10),
            ("0 H(9-17) * * *", 1, 9, 17),
        ];
        for (expression, field, low, high) in cases {
            let expanded = expand(expression, db()).unwrap();
            let value: u32 = expanded.split(' ').nth(field).unwrap().parse().unwrap();
            assert!((low..=high).contains(&value), "{expression} -> {expanded}");
        }
        let stepped = expand("H/15 * * * *", db()).unwrap();
        let (start, rest) = stepped.split_once('-').unwrap();
        assert!(start.parse::<u32>().unwrap() < 15, "{stepped}");
        assert!(rest.starts_with("59/15 "), "{stepped}");
        let bounded = expand("H(30-59)/10 * * * *", db()).unwrap();
        let start: u32 = bounded.split_once('-').unwrap().0.parse().unwrap();
        assert!((30..40).contains(&start), "{bounded}");
        let listed = expand("0,H * * * *", db()).unwrap();
        assert!(listed.starts_with("0,"), "{listed}");
        for unchanged in ["@hourly", "*/5 * * * *", "0 9 * * THU", "0 0 * *"] {
            assert_eq!(expand(unchanged, db()).unwrap(), unchanged);
        }
    }

    #[test]
    fn a_malformed_h_says_what_to_write() {
        let cases = [
            ("H(5) * * * *", "H(a-b) with 0 <= a <= b <= 59"),
            ("H(30-10) * * * *", "H(a-b)"),
            ("* H(0-24) * * *", "hour field"),
            ("* * H(0-5) * *", "1 <= a <= b <= 28"),
            ("H/0 * * * *", "step after / must be a number above 0"),
            ("H/x * * * *", "step after /"),
        ];
        for (expression, expected) in cases {
            let error = expand(expression, db()).unwrap_err();
            assert!(error.contains(expected), "{expression}: {error}");
        }
    }

    #[test]
    fn five_thousand_sources_on_h_spread_over_the_hour() {
        let mut starts = [0u32; 60];
        for index in 0..5000 {
            let identity = Identity::of(&format!("team-{}", index / 100), &format!("pvc-{index}"));
            let minute: usize = expand("H * * * *", identity)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            starts[minute] += 1;
        }
        let busiest = *starts.iter().max().unwrap();
        let quietest = *starts.iter().min().unwrap();
        // Uniform would be 83.3 a minute; at :00 without H it is 5,000. These names give 101 at
        // most and 59 at least.
        assert!(
            busiest <= 110 && quietest >= 50,
            "{busiest} / {quietest}: {starts:?}"
        );
    }

    #[test]
    fn jitter_is_a_stable_delay_below_the_bound() {
        let five_minutes = offset("5m", db()).unwrap();
        assert!(
            five_minutes >= SignedDuration::ZERO && five_minutes < SignedDuration::from_mins(5)
        );
        assert_eq!(five_minutes, offset("5m", db()).unwrap());
        assert_eq!(offset("0s", db()).unwrap(), SignedDuration::ZERO);
        assert!(offset("1h30m", db()).unwrap() < SignedDuration::from_mins(90));
        let spread: std::collections::BTreeSet<i64> = (0..50)
            .map(|i| {
                offset("10m", Identity::of("apps", &format!("s{i}")))
                    .unwrap()
                    .as_secs()
            })
            .collect();
        assert!(
            spread.len() > 40,
            "50 objects get (nearly) 50 delays: {spread:?}"
        );
        for bad in ["5 minutes", "m", "5", "", "169h", "99999999999999999999h"] {
            let error = offset(bad, db()).unwrap_err();
            assert!(error.contains("spec.trigger.jitter"), "{bad}: {error}");
        }
    }
}
