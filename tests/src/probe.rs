//! What the soak (`scripts/soak`) and the scale-out bench
//! (`scripts/bench-scale`) sample: a process's memory, descriptors,
//! threads and CPU time from `/proc`, and PostgreSQL's connections and
//! table sizes from its statistics views. Linux only, like the battery.

use std::time::Duration;

/// Tables whose size the soak follows (rows and bytes, indexes included).
pub const TABLES: [&str; 6] = ["events", "runs", "steps", "tasks", "timers", "workflows"];

/// One process at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    /// Resident memory, in KiB.
    pub rss_kib: u64,
    /// Open file descriptors (sockets included).
    pub fds: usize,
    pub threads: u64,
    /// User + system CPU time since the process started.
    pub cpu: Duration,
}

/// `/proc/<pid>` now; `None` once the process is gone.
pub fn process(pid: i32) -> Option<Process> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Process {
        rss_kib: field("VmRSS:"),
        fds,
        threads: field("Threads:"),
        cpu: cpu_time(pid)?,
    })
}

/// User + system CPU time of `pid` (fields 14 and 15 of `/proc/<pid>/stat`,
/// in clock ticks of 1/100 s: Linux's USER_HZ on every architecture).
pub fn cpu_time(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The parent pid of `pid`.
fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The test cluster's postmaster and every process it forked (backends,
/// WAL writer, checkpointer…), from `postmaster.pid` in its data folder
/// (`IMX_TEST_POSTGRES_DATA`); empty when unknown.
pub fn postgres_processes() -> Vec<i32> {
    let Ok(data) = std::env::var(testkit::postgres::DATA_ENV) else {
        return Vec::new();
    };
    let Some(postmaster) = std::fs::read_to_string(format!("{data}/postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
    else {
        return Vec::new();
    };
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
            && parent(pid) == Some(postmaster)
        {
            pids.push(pid);
        }
    }
    pids
}

/// CPU time of every process of the test cluster (see [`postgres_processes`]).
/// Backends that ended between two samples take their time with them, so
/// the bench keeps its connections open (pools) while it measures.
pub fn postgres_cpu() -> Duration {
    postgres_processes().into_iter().filter_map(cpu_time).sum()
}

/// `pg_stat_activity` of `database`: connections by `application_name`.
pub async fn connections(pool: &sqlx::PgPool, database: &str) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT coalesce(application_name, ''), count(*) FROM pg_stat_activity \
         WHERE datname = $1 GROUP BY 1 ORDER BY 1",
    )
    .bind(database)
    .fetch_all(pool)
    .await
    .unwrap_or_default()
}

/// Rows and total bytes (indexes and TOAST included) of each of [`TABLES`].
pub async fn table_sizes(pool: &sqlx::PgPool) -> Vec<(&'static str, i64, i64)> {
    let mut sizes = Vec::new();
    for table in TABLES {
        // Table names come from the constant above, never from input.
        let query = format!("SELECT count(*), pg_total_relation_size('{table}') FROM {table}");
        if let Ok((rows, bytes)) = sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(query))
            .fetch_one(pool)
            .await
        {
            sizes.push((table, rows, bytes));
        }
    }
    sizes
}

/// The database name at the end of a PostgreSQL URL.
pub fn database_name(url: &str) -> &str {
    let tail = url.rsplit('/').next().unwrap_or_default();
    tail.split('?').next().unwrap_or_default()
}

/// `url` with `application_name=NAME` added, so that `pg_stat_activity`
/// tells the nodes' connections apart.
pub fn with_application_name(url: &str, name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={name}")
}

/// The load average (1, 5, 15 minutes) and the machine, for the report.
pub fn machine() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cores} cores ({cpu}), load average {}", load.join(" "))
}
