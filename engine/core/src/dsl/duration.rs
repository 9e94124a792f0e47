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
