//! `imx bench run` through the real binary: a small run on SQLite prints
//! the table (one row per workflow and concurrency). Numbers are not
//! checked: they are measurements, not behaviour.

use super::imx;

#[test]
fn bench_run_prints_the_table() {
    let outcome = imx(&[
        "bench",
        "run",
        "--runs",
        "5",
        "--concurrency",
        "2",
        "--backend",
        "sqlite",
    ]);
    assert_eq!(outcome.code, 0, "{outcome:?}");
    let rows: Vec<Vec<&str>> = outcome
        .stdout
        .lines()
        .filter(|line| line.starts_with("| "))
        .map(|line| line.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let header = rows.first().expect("a table");
    assert_eq!(header[..4], ["backend", "workflow", "concurrency", "runs"]);
    assert!(header.contains(&"raw commits/s"), "{header:?}");
    let cells: Vec<Vec<&str>> = rows[2..].iter().map(|row| row[..4].to_vec()).collect();
    assert_eq!(
        cells,
        [
            ["sqlite", "bench-noop", "2", "5"],
            ["sqlite", "bench-http", "2", "5"]
        ]
    );
    for row in &rows[2..] {
        assert_eq!(row.len(), header.len(), "{row:?}");
        for number in &row[4..] {
            let value: f64 = number.parse().expect("a number");
            assert!(value.is_finite() && value >= 0.0, "{row:?}");
        }
    }
    assert!(outcome.stdout.contains("machine: "), "{}", outcome.stdout);
}
