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
        "1,2",
        "--backend",
        "sqlite",
        "--workflow",
        "noop,http,agent",
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
            ["sqlite", "bench-noop", "1", "5"],
            ["sqlite", "bench-noop", "2", "5"],
            ["sqlite", "bench-http", "1", "5"],
            ["sqlite", "bench-http", "2", "5"],
            ["sqlite", "bench-agent", "1", "5"],
            ["sqlite", "bench-agent", "2", "5"]
        ]
    );
    assert_eq!(
        header[header.len() - 2..],
        ["serial floor ms", "p50 ÷ floor"]
    );
    for row in &rows[2..] {
        assert_eq!(row.len(), header.len(), "{row:?}");
        // The serial floor is measured in the serial cells only.
        let numbers = match row[2] {
            "1" => &row[4..],
            _ => {
                assert_eq!(row[row.len() - 2..], ["-", "-"], "{row:?}");
                &row[4..row.len() - 2]
            }
        };
        for number in numbers {
            let value: f64 = number.parse().expect("a number");
            assert!(value.is_finite() && value >= 0.0, "{row:?}");
        }
    }
    assert!(
        outcome.stdout.contains("one bare GET"),
        "the http baselines: {}",
        outcome.stdout
    );
    assert!(outcome.stdout.contains("machine: "), "{}", outcome.stdout);
}
