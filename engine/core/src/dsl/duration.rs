//! Durations as authors write them (`500ms`, `30s`, `1m`, `1h30m`, `2d`) to milliseconds.

/// Longest duration accepted anywhere in a workflow: 365 days, in ms.
pub const DURATION_MS_MAX: u64 = 365 * 24 * 60 * 60 * 1000;

/// Units from largest to smallest; a duration lists each at most once, in this order.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("empty duration")]
    Empty,
    #[error("`{0}` has a number without a unit")]
    MissingUnit(String),
    #[error("`{text}` has an unknown unit `{unit}`")]
    UnknownUnit { text: String, unit: String },
    #[error("`{text}` has a unit without a number before `{unit}`")]
    MissingNumber { text: String, unit: String },
    #[error("`{text}`: units must go from largest to smallest, each once (d, h, m, s, ms)")]
    UnitOrder { text: String },
    #[error("`{text}` is longer than the limit of 365d")]
    TooLong { text: String },
}

/// Parses a duration such as `1h30m` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, Error> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Error::Empty);
    }
    let mut rest = trimmed;
    let mut total: u64 = 0;
    let mut last_unit_index: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number_text, after_number) = rest.split_at(digits);
        let letters = after_number.len()
            - after_number
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, after_unit) = after_number.split_at(letters);
        if unit.is_empty() {
            return Err(Error::MissingUnit(trimmed.to_owned()));
        }
        if number_text.is_empty() {
            return Err(Error::MissingNumber {
                text: trimmed.to_owned(),
                unit: unit.to_owned(),
            });
        }
        let Some(unit_index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(Error::UnknownUnit {
                text: trimmed.to_owned(),
                unit: unit.to_owned(),
            });
        };
        if last_unit_index.is_some_and(|last| unit_index <= last) {
            return Err(Error::UnitOrder {
                text: trimmed.to_owned(),
            });
        }
        last_unit_index = Some(unit_index);
        let too_long = || Error::TooLong {
            text: trimmed.to_owned(),
        };
        let number: u64 = number_text.parse().map_err(|_| too_long())?;
        let part = number
            .checked_mul(UNITS[unit_index].1)
            .ok_or_else(too_long)?;
        total = total.checked_add(part).ok_or_else(too_long)?;
        rest = after_unit;
    }
    if total > DURATION_MS_MAX {
        return Err(Error::TooLong {
            text: trimmed.to_owned(),
        });
    }
    Ok(total)
}

/// An ISO-8601 duration (`PT1H`, `P1DT12H`, `PT1.5S`), as other workflow
/// tools write them, in milliseconds: only to suggest the imx form. `None`
/// when `text` is not one, or names years, months or weeks (no fixed length
/// in days here) or exceeds [`DURATION_MS_MAX`].
pub fn iso8601_ms(text: &str) -> Option<u64> {
    let rest = text.trim().strip_prefix(['P', 'p'])?;
    let (date, time) = match rest.split_once(['T', 't']) {
        Some((date, time)) if !time.is_empty() => (date, Some(time)),
        Some(_) => return None,
        None => (rest, None),
    };
    let mut total: u64 = 0;
    let mut any = false;
    for (part, units) in [
        (date, &[('D', 86_400_000_u64)][..]),
        (
            time.unwrap_or(""),
            &[('H', 3_600_000), ('M', 60_000), ('S', 1_000)][..],
        ),
    ] {
        let mut rest = part;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let number_len = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ',')
                    .len();
            let (number, after) = rest.split_at(number_len);
            let unit = after.chars().next()?.to_ascii_uppercase();
            let index = units[next_unit..]
                .iter()
                .position(|(name, _)| *name == unit)?
                + next_unit;
            next_unit = index + 1;
            let number: f64 = number.replace(',', ".").parse().ok()?;
            // Only seconds may have a fraction, and only down to milliseconds.
            let part_ms = number * units[index].1 as f64;
            if part_ms.fract() != 0.0 || (unit != 'S' && number.fract() != 0.0) {
                return None;
            }
            total = total.checked_add(part_ms as u64)?;
            any = true;
            rest = &after[1..];
        }
    }
    (any && total <= DURATION_MS_MAX).then_some(total)
}

/// Milliseconds in the form authors write (`1h30m`, `1s500ms`, `0s`):
/// [`parse_duration_ms`] reads it back to the same number.
pub fn format_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut rest = ms;
    let mut text = String::new();
    for (name, unit_ms) in UNITS {
        if rest >= unit_ms {
            text.push_str(&format!("{}{name}", rest / unit_ms));
            rest %= unit_ms;
        }
    }
    text
}
