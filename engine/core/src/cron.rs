//! Cron fire times and the scheduler's decisions, pure: when a schedule
//! fires in its IANA timezone, which fires a node starts after downtime
//! (catch-up), whether a fire starts while the previous run still runs
//! (overlap), and which fires a backfill window holds. `now` is always an
//! argument; nothing here reads a clock.
//!
//! A schedule is matched against *wall-clock* times in its timezone, and
//! each matching wall time fires exactly once:
//! * a wall time that does not exist (skipped by a spring-forward, 02:30
//!   Europe/Berlin on 2027-03-28) fires at the first instant after the gap
//!   (03:00 local); several skipped wall times collapse into that one fire;
//! * a wall time that happens twice (fall-back, 02:30 Europe/Berlin on
//!   2027-10-31) fires at its first occurrence only (02:30 CEST, 00:30 UTC).
//!
//! So a schedule that must keep a fixed elapsed interval across DST changes
//! should use `timezone: UTC` (the default). See docs/triggers-cron.md.

use std::str::FromStr;

use chrono::offset::LocalResult;
use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use crate::dsl::Code;
use crate::workflow::{CatchUp, Overlap};

/// Most missed fires one catch-up starts for a schedule with
/// `catch_up: all`: the newest ones; older missed ticks are not started.
pub const CATCH_UP_FIRES_MAX: usize = 100;
/// A fire whose instant is at most this far behind `now` is on time, not
/// missed: a scheduler that wakes a little late (load, GC, a slow database)
/// still starts it whatever `catch_up` says. In ms.
pub const FIRE_LATE_MS_MAX: i64 = 10_000;
/// Most fires one backfill starts; a wider window is refused.
pub const BACKFILL_FIRES_MAX: usize = 1_000;
/// Most wall-clock times one query examines (fire times, the latest fire,
/// a backfill): bounds the work of a schedule that matches rarely or a
/// DST gap of a per-second schedule.
pub const WALL_TIMES_SCANNED_MAX: usize = 100_000;
/// Fire times `imx schedules` and the API show per schedule.
pub const UPCOMING_FIRES: usize = 5;

/// A schedule that cannot be read (a registered workflow validated by an
/// older version, or a hand-made one). Codes are the validator's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("IMX0017: invalid cron schedule `{schedule}`: {reason}")]
    InvalidSchedule { schedule: String, reason: String },
    #[error("IMX0018: unknown timezone `{timezone}`")]
    UnknownTimezone { timezone: String },
}

impl Error {
    /// The stable code (docs/errors.md): the validator's for the same problem.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidSchedule { .. } => Code::InvalidCron.as_str(),
            Error::UnknownTimezone { .. } => Code::UnknownTimezone.as_str(),
        }
    }
}

/// A cron expression (`sec min hour day month weekday [year]`) in a timezone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: cron::Schedule,
    zone: Tz,
}

impl CronSchedule {
    /// `timezone`: an IANA name; `None` is UTC.
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<CronSchedule, Error> {
        let zone = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| Error::UnknownTimezone {
                timezone: name.to_owned(),
            })?,
        };
        let schedule =
            cron::Schedule::from_str(expression).map_err(|error| Error::InvalidSchedule {
                schedule: expression.to_owned(),
                reason: error.to_string().lines().last().unwrap_or("").to_owned(),
            })?;
        Ok(CronSchedule { schedule, zone })
    }

    pub fn timezone(&self) -> Tz {
        self.zone
    }

    /// Fire instants strictly after `after`, ascending, each once.
    pub fn fires_after(&self, after: DateTime<Utc>) -> Fires<'_> {
        let wall = self
            .zone
            .from_utc_datetime(&after.naive_utc())
            .naive_local();
        Fires {
            schedule: self,
            walls: self.schedule.after_owned(wall.and_utc()),
            after,
            last: None,
            scanned: 0,
        }
    }

    /// The newest fire at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.newest_fires(at, DateTime::<Utc>::MIN_UTC, 1).pop()
    }

    /// Up to `max` newest fires in `(since, at]`, ascending.
    fn newest_fires(
        &self,
        at: DateTime<Utc>,
        since: DateTime<Utc>,
        max: usize,
    ) -> Vec<DateTime<Utc>> {
        // Walk wall times backwards from a little after `at`'s wall time: in
        // the second occurrence of a repeated hour, later wall times map to
        // earlier instants (their first occurrence).
        let offset = |instant: DateTime<Utc>| {
            i64::from(
                self.zone
                    .offset_from_utc_datetime(&instant.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        };
        let back = (offset(at - Duration::days(1)) - offset(at)).max(0);
        let start = self.zone.from_utc_datetime(&at.naive_utc()).naive_local()
            + Duration::seconds(back + 1);
        let mut walls = self.schedule.after_owned(start.and_utc());
        let mut newest = Vec::new();
        for _ in 0..WALL_TIMES_SCANNED_MAX {
            let Some(wall) = walls.next_back() else { break };
            let instant = self.instant_of(wall.naive_utc());
            if instant <= since {
                break;
            }
            if instant <= at && newest.last() != Some(&instant) {
                newest.push(instant);
                if newest.len() >= max {
                    break;
                }
            }
        }
        newest.reverse();
        newest
    }

    /// The instant a matching wall time fires at (see the module's rules).
    fn instant_of(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        match self.zone.from_local_datetime(&wall) {
            LocalResult::Single(at) => at.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            LocalResult::None => self.gap_end(wall),
        }
    }

    /// The first instant after the DST gap that swallowed `wall`: a binary
    /// search, by the second, between the instants `wall` would have with
    /// the offset after the gap (before the change) and the offset before
    /// it (after the change).
    fn gap_end(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        let offset_near = |days: i64| {
            let probe = wall.and_utc() + Duration::days(days);
            i64::from(
                self.zone
                    .offset_from_utc_datetime(&probe.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        };
        let as_utc = wall.and_utc().timestamp();
        let mut low = as_utc - offset_near(1); // local < wall here
        let mut high = as_utc - offset_near(-1); // local > wall here
        let local_after = |seconds: i64| {
            DateTime::from_timestamp(seconds, 0)
                .map(|at| self.zone.from_utc_datetime(&at.naive_utc()).naive_local() > wall)
        };
        if high <= low || local_after(high) != Some(true) {
            return DateTime::from_timestamp(high.max(low), 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
        }
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if local_after(middle) == Some(true) {
                high = middle;
            } else {
                low = middle;
            }
        }
        DateTime::from_timestamp(high, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Fire instants after a point, ascending, each once; ends after
/// [`WALL_TIMES_SCANNED_MAX`] wall times or the schedule's last year.
pub struct Fires<'a> {
    schedule: &'a CronSchedule,
    walls: cron::OwnedScheduleIterator<Utc>,
    after: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
    scanned: usize,
}

impl std::fmt::Debug for Fires<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fires")
            .field("after", &self.after)
            .field("last", &self.last)
            .field("scanned", &self.scanned)
            .finish_non_exhaustive()
    }
}

impl Iterator for Fires<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        while self.scanned < WALL_TIMES_SCANNED_MAX {
            self.scanned += 1;
            let wall = self.walls.next()?;
            let instant = self.schedule.instant_of(wall.naive_utc());
            // In a repeated hour or a gap several wall times share an
            // instant, or map before `after`: each instant fires once.
            if instant <= self.after || self.last.is_some_and(|last| instant <= last) {
                continue;
            }
            self.last = Some(instant);
            return Some(instant);
        }
        None
    }
}

/// The fires a scheduler starts now for a schedule that last considered
/// `since` (its newest fired or skipped instant; a new schedule starts
/// from when it was first seen), ascending. Fires in
/// `(now - FIRE_LATE_MS_MAX, now]` are on time and always start; older ones
/// are missed, and `catch_up` says which of those start: `none` none,
/// `latest` the newest, `all` the newest [`CATCH_UP_FIRES_MAX`].
pub fn due_fires(
    schedule: &CronSchedule,
    catch_up: CatchUp,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    if now <= since {
        return Vec::new();
    }
    let on_time_from = now - Duration::milliseconds(FIRE_LATE_MS_MAX);
    let mut fires = if on_time_from > since {
        let missed_max = match catch_up {
            CatchUp::None => 0,
            CatchUp::Latest => 1,
            CatchUp::All => CATCH_UP_FIRES_MAX,
        };
        if missed_max == 0 {
            Vec::new()
        } else {
            schedule.newest_fires(on_time_from, since, missed_max)
        }
    } else {
        Vec::new()
    };
    let from = since.max(on_time_from);
    fires.extend(schedule.fires_after(from).take_while(|at| *at <= now));
    fires
}

/// What a due fire does, given whether the previous run this schedule
/// started is still unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireDecision {
    Start,
    /// Recorded in the schedule's fire ledger, nothing started.
    Skip,
}

pub fn overlap_decision(overlap: Overlap, previous_unfinished: bool) -> FireDecision {
    match overlap {
        Overlap::Skip if previous_unfinished => FireDecision::Skip,
        Overlap::Skip | Overlap::Allow => FireDecision::Start,
    }
}

/// A backfill window that holds more than [`BACKFILL_FIRES_MAX`] fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyFires;

/// The fires in `[from, to]`, ascending; refused when there are more than `max`.
pub fn fires_between(
    schedule: &CronSchedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: usize,
) -> Result<Vec<DateTime<Utc>>, TooManyFires> {
    let fires: Vec<_> = schedule
        .fires_after(from - Duration::nanoseconds(1))
        .take_while(|at| *at <= to)
        .take(max.saturating_add(1))
        .collect();
    if fires.len() > max {
        return Err(TooManyFires);
    }
    Ok(fires)
}

/// The run idempotency key of a fire: the same on every node and for a
/// backfill, so the store starts each (workflow, trigger, instant) once.
pub fn fire_key(workflow: &str, trigger: &str, scheduled_at: DateTime<Utc>) -> String {
    format!(
        "cron:{workflow}:{trigger}:{}",
        scheduled_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    )
}
