//! When a sync runs: the `spec.trigger` of both kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Five cron fields (minute hour day-of-month month day-of-week; numbers, names, `*`, `?`, `,`,
/// `-`, `/`, and `H`, `H(a-b)`, `H/n` for a value of the object's own) or one of the `@`
/// shorthands. The operator parses it with croner; this pattern only keeps obvious mistakes (six
/// fields, `@every 1h`) out of the API server.
pub const SCHEDULE_PATTERN: &str =
    r"^(@(hourly|daily|weekly|monthly|yearly)|[0-9A-Za-z*?/,()-]+(\s+[0-9A-Za-z*?/,()-]+){4})$";

/// A duration as `trigger.jitter` takes it: number-unit pairs with units h, m, s (`90s`, `5m`,
/// `1h30m`).
pub const JITTER_PATTERN: &str = r"^([0-9]+[hms])+$";

/// Decides when a sync starts: on a schedule, once per new `manual` value, or, with neither,
/// continuously (the next sync starts as soon as the previous one ends).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.timeZone) || has(self.schedule)",
        "message": "spec.trigger.timeZone is only meaningful with spec.trigger.schedule",
    },
    {
        "rule": "!has(self.jitter) || has(self.schedule)",
        "message": "spec.trigger.jitter is only meaningful with spec.trigger.schedule",
    },
]))]
pub struct Trigger {
    /// Cron schedule: five fields (`0 * * * *`) or `@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`. Runs missed while the operator was down collapse into one run. `H` in a field
    /// stands for a value chosen from a stable hash of the object's namespace and name, so many
    /// objects on `H * * * *` spread over the hour instead of all starting at :00: `H` (the
    /// field's whole range; days of the month 1-28), `H(0-29)` (within a range), `H/15` (every
    /// 15, from an offset below 15). `status.nextSyncTime` shows the time chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SCHEDULE_PATTERN))]
    pub schedule: Option<String>,
    /// Any string; each new value starts one sync. When it finishes, `status.lastManualSync` is
    /// set to the same value, so a client sets it and waits for the two to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
    /// IANA time zone the schedule is read in (`Europe/Berlin`). Default: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_+/-]+$"))]
    pub time_zone: Option<String>,
    /// Delays every scheduled sync by the same offset below this (`5m`, `90s`, `1h30m`), chosen
    /// from a stable hash of the object's namespace and name, so objects on one schedule do not
    /// start in the same second. `status.nextSyncTime` shows the delayed time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = JITTER_PATTERN))]
    pub jitter: Option<String>,
}
