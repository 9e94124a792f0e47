//! Cron fire times and the scheduler's decisions as tables: DST gaps and
//! repeated hours, leap days, 7-field schedules with a year, catch-up,
//! overlap and backfill windows. Each line shows the instant in UTC and the
//! wall time in the schedule's zone.

use chrono::{DateTime, TimeZone, Utc};
use expect_test::{Expect, expect};
use imx_core::cron::{
    BACKFILL_FIRES_MAX, CATCH_UP_FIRES_MAX, CronSchedule, FIRE_LATE_MS_MAX, FireDecision,
    TooManyFires, due_fires, fire_key, fires_between, overlap_decision,
};
use imx_core::workflow::{CatchUp, Overlap};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_else(|error| panic!("{text}: {error}"))
}

fn schedule(expression: &str, zone: Option<&str>) -> CronSchedule {
    CronSchedule::parse(expression, zone).unwrap_or_else(|error| panic!("{error}"))
}

fn show(schedule: &CronSchedule, fires: &[DateTime<Utc>]) -> String {
    fires
        .iter()
        .map(|fire| {
            let local = schedule.timezone().from_utc_datetime(&fire.naive_utc());
            format!("{} = {}\n", fire.format("%FT%TZ"), local.format("%F %T %Z"))
        })
        .collect()
}

/// The first `count` fires after `after`.
fn check_fires(expression: &str, zone: &str, after: &str, count: usize, expect: Expect) {
    let schedule = schedule(expression, Some(zone));
    let fires: Vec<_> = schedule.fires_after(at(after)).take(count).collect();
    expect.assert_eq(&show(&schedule, &fires));
}

#[test]
fn spring_forward_skipped_wall_time_fires_once_at_the_end_of_the_gap() {
    // 2027-03-28 02:00 CET jumps to 03:00 CEST in Berlin: 02:30 never happens.
    check_fires(
        "0 30 2 * * *",
        "Europe/Berlin",
        "2027-03-26T00:00:00Z",
        4,
        expect![[r#"
            2027-03-26T01:30:00Z = 2027-03-26 02:30:00 CET
            2027-03-27T01:30:00Z = 2027-03-27 02:30:00 CET
            2027-03-28T01:00:00Z = 2027-03-28 03:00:00 CEST
            2027-03-29T00:30:00Z = 2027-03-29 02:30:00 CEST
        "#]],
    );
}

#[test]
fn spring_forward_collapses_every_skipped_tick_into_one_fire() {
    // Every 30 minutes: 02:00 and 02:30 are skipped and 03:00 is the end of the gap.
    check_fires(
        "0 */30 * * * *",
        "Europe/Berlin",
        "2027-03-28T00:15:00Z",
        4,
        expect![[r#"
            2027-03-28T00:30:00Z = 2027-03-28 01:30:00 CET
            2027-03-28T01:00:00Z = 2027-03-28 03:00:00 CEST
            2027-03-28T01:30:00Z = 2027-03-28 03:30:00 CEST
            2027-03-28T02:00:00Z = 2027-03-28 04:00:00 CEST
        "#]],
    );
}

#[test]
fn fall_back_repeated_wall_time_fires_once_at_its_first_occurrence() {
    // 2027-10-31 03:00 CEST goes back to 02:00 CET: 02:30 happens twice.
    check_fires(
        "0 30 2 * * *",
        "Europe/Berlin",
        "2027-10-29T12:00:00Z",
        3,
        expect![[r#"
            2027-10-30T00:30:00Z = 2027-10-30 02:30:00 CEST
            2027-10-31T00:30:00Z = 2027-10-31 02:30:00 CEST
            2027-11-01T01:30:00Z = 2027-11-01 02:30:00 CET
        "#]],
    );
}

#[test]
fn fall_back_repeated_hour_fires_each_wall_time_once() {
    check_fires(
        "0 */30 * * * *",
        "Europe/Berlin",
        "2027-10-30T23:15:00Z",
        5,
        expect![[r#"
            2027-10-30T23:30:00Z = 2027-10-31 01:30:00 CEST
            2027-10-31T00:00:00Z = 2027-10-31 02:00:00 CEST
            2027-10-31T00:30:00Z = 2027-10-31 02:30:00 CEST
            2027-10-31T02:00:00Z = 2027-10-31 03:00:00 CET
            2027-10-31T02:30:00Z = 2027-10-31 03:30:00 CET
        "#]],
    );
}

#[test]
fn fall_back_asked_from_inside_the_second_occurrence_waits_for_new_wall_times() {
    // 02:10 CET (the second 02:10): 02:30 already fired at its first occurrence.
    check_fires(
        "0 */30 * * * *",
        "Europe/Berlin",
        "2027-10-31T01:10:00Z",
        2,
        expect![[r#"
            2027-10-31T02:00:00Z = 2027-10-31 03:00:00 CET
            2027-10-31T02:30:00Z = 2027-10-31 03:30:00 CET
        "#]],
    );
}

#[test]
fn leap_day_schedule_fires_on_leap_years_only() {
    check_fires(
        "0 0 12 29 2 *",
        "UTC",
        "2027-01-01T00:00:00Z",
        3,
        expect![[r#"
            2028-02-29T12:00:00Z = 2028-02-29 12:00:00 UTC
            2032-02-29T12:00:00Z = 2032-02-29 12:00:00 UTC
            2036-02-29T12:00:00Z = 2036-02-29 12:00:00 UTC
        "#]],
    );
}

#[test]
fn seven_field_schedule_stops_after_its_last_year() {
    check_fires(
        "0 0 0 1 1 * 2030-2031",
        "America/New_York",
        "2026-12-07T00:00:00Z",
        5,
        expect![[r#"
            2030-01-01T05:00:00Z = 2030-01-01 00:00:00 EST
            2031-01-01T05:00:00Z = 2031-01-01 00:00:00 EST
        "#]],
    );
}

#[test]
fn fires_after_is_strict_and_defaults_to_utc() {
    let every_second = CronSchedule::parse("* * * * * *", None).expect("parse");
    let fires: Vec<_> = every_second
        .fires_after(at("2027-01-01T00:00:00Z"))
        .take(2)
        .collect();
    assert_eq!(
        fires,
        [at("2027-01-01T00:00:01Z"), at("2027-01-01T00:00:02Z")]
    );
    assert_eq!(every_second.timezone(), chrono_tz::Tz::UTC);
}

#[test]
fn latest_at_or_before_sees_first_occurrences_from_the_repeated_hour() {
    let half_hourly = schedule("0 */30 * * * *", Some("Europe/Berlin"));
    let cases = [
        "2027-10-31T00:45:00Z", // 02:45 CEST
        "2027-10-31T01:45:00Z", // 02:45 CET: the newest fire is 02:30 CEST
        "2027-10-31T02:00:00Z", // 03:00 CET exactly
        "2027-03-28T01:10:00Z", // 03:10 CEST: the gap's fire at 03:00
        "2027-03-28T00:59:59Z", // 01:59:59 CET, before the gap
    ];
    let shown: String = cases
        .iter()
        .map(|case| {
            let latest = half_hourly.latest_at_or_before(at(case));
            format!(
                "{case} -> {}",
                show(&half_hourly, &latest.into_iter().collect::<Vec<_>>())
            )
        })
        .collect();
    expect![[r#"
        2027-10-31T00:45:00Z -> 2027-10-31T00:30:00Z = 2027-10-31 02:30:00 CEST
        2027-10-31T01:45:00Z -> 2027-10-31T00:30:00Z = 2027-10-31 02:30:00 CEST
        2027-10-31T02:00:00Z -> 2027-10-31T02:00:00Z = 2027-10-31 03:00:00 CET
        2027-03-28T01:10:00Z -> 2027-03-28T01:00:00Z = 2027-03-28 03:00:00 CEST
        2027-03-28T00:59:59Z -> 2027-03-28T00:30:00Z = 2027-03-28 01:30:00 CET
    "#]]
    .assert_eq(&shown);
}

/// Due fires for an every-minute schedule that last considered `since`.
fn due(catch_up: CatchUp, since: &str, now: &str) -> Vec<DateTime<Utc>> {
    due_fires(&schedule("0 * * * * *", None), catch_up, at(since), at(now))
}

#[test]
fn catch_up_decides_which_missed_fires_start() {
    let (since, now) = ("2027-01-01T11:00:00Z", "2027-01-01T12:00:05Z");
    let table: String = [CatchUp::None, CatchUp::Latest, CatchUp::All]
        .into_iter()
        .map(|catch_up| {
            let fires = due(catch_up, since, now);
            let first = fires.first().map(|at| at.format("%T").to_string());
            let last = fires.last().map(|at| at.format("%T").to_string());
            format!("{catch_up:?}: {} fires, {first:?}..{last:?}\n", fires.len())
        })
        .collect();
    expect![[r#"
        None: 1 fires, Some("12:00:00")..Some("12:00:00")
        Latest: 2 fires, Some("11:59:00")..Some("12:00:00")
        All: 60 fires, Some("11:01:00")..Some("12:00:00")
    "#]]
    .assert_eq(&table);
}

#[test]
fn catch_up_all_is_bounded_to_the_newest_missed_fires() {
    let fires = due(CatchUp::All, "2027-01-01T00:00:00Z", "2027-01-02T00:00:05Z");
    // The newest CATCH_UP_FIRES_MAX missed ones, then the on-time one.
    assert_eq!(fires.len(), CATCH_UP_FIRES_MAX + 1);
    assert_eq!(fires.first(), Some(&at("2027-01-01T22:20:00Z")));
    assert_eq!(fires.last(), Some(&at("2027-01-02T00:00:00Z")));
    assert!(fires.windows(2).all(|pair| pair[0] < pair[1]));
}

#[test]
fn a_slightly_late_fire_is_on_time_whatever_catch_up_says() {
    // The scheduler woke FIRE_LATE_MS_MAX after the tick: still on time.
    let now = at("2027-01-01T12:00:00Z") + chrono::Duration::milliseconds(FIRE_LATE_MS_MAX - 1);
    let fires = due_fires(
        &schedule("0 * * * * *", None),
        CatchUp::None,
        at("2027-01-01T11:59:30Z"),
        now,
    );
    assert_eq!(fires, [at("2027-01-01T12:00:00Z")]);
}

#[test]
fn nothing_is_due_at_or_before_the_cursor() {
    let now = "2027-01-01T12:00:00Z";
    let nothing: Vec<DateTime<Utc>> = Vec::new();
    assert_eq!(due(CatchUp::All, now, now), nothing);
    assert_eq!(due(CatchUp::All, "2027-01-01T12:00:30Z", now), nothing);
    // The cursor's own instant fired already: only later ones are due.
    assert_eq!(
        due(CatchUp::All, "2027-01-01T11:59:00Z", now),
        [at("2027-01-01T12:00:00Z")]
    );
}

#[test]
fn overlap_skips_only_when_asked_and_the_previous_run_is_unfinished() {
    let table: String = [Overlap::Allow, Overlap::Skip]
        .into_iter()
        .flat_map(|overlap| [false, true].map(|running| (overlap, running)))
        .map(|(overlap, running)| {
            let decision: FireDecision = overlap_decision(overlap, running);
            format!("{overlap:?} previous_unfinished={running}: {decision:?}\n")
        })
        .collect();
    expect![[r#"
        Allow previous_unfinished=false: Start
        Allow previous_unfinished=true: Start
        Skip previous_unfinished=false: Start
        Skip previous_unfinished=true: Skip
    "#]]
    .assert_eq(&table);
}

#[test]
fn backfill_window_is_inclusive_and_bounded() {
    let hourly = schedule("0 0 * * * *", None);
    let fires = fires_between(
        &hourly,
        at("2027-01-01T10:00:00Z"),
        at("2027-01-01T12:00:00Z"),
        BACKFILL_FIRES_MAX,
    );
    assert_eq!(
        fires,
        Ok(vec![
            at("2027-01-01T10:00:00Z"),
            at("2027-01-01T11:00:00Z"),
            at("2027-01-01T12:00:00Z"),
        ])
    );
    let every_second = schedule("* * * * * *", None);
    let too_many = fires_between(
        &every_second,
        at("2027-01-01T00:00:00Z"),
        at("2027-01-01T01:00:00Z"),
        BACKFILL_FIRES_MAX,
    );
    assert_eq!(too_many, Err(TooManyFires));
}

#[test]
fn fire_key_names_workflow_trigger_and_instant() {
    assert_eq!(
        fire_key("nightly", "cron", at("2027-03-28T01:00:00Z")),
        "cron:nightly:cron:2027-03-28T01:00:00Z"
    );
}

#[test]
fn unreadable_schedules_carry_the_validators_codes() {
    let bad_zone = CronSchedule::parse("0 0 2 * * *", Some("Mars/Olympus")).unwrap_err();
    let bad_cron = CronSchedule::parse("0 0 25 * * *", None).unwrap_err();
    expect![[r#"
        IMX0018 IMX0018: unknown timezone `Mars/Olympus`
        IMX0017 IMX0017: invalid cron schedule `0 0 25 * * *`: Hours must be less than 23. ('25' specified.)
    "#]]
    .assert_eq(&format!(
        "{} {bad_zone}\n{} {bad_cron}\n",
        bad_zone.code(),
        bad_cron.code()
    ));
}
