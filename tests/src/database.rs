//! The test PostgreSQL cluster itself as a fault: stopped the way a crash
//! stops it (`pg_ctl stop -m immediate`: no checkpoint, WAL replay on the
//! next start) and started again, as its owner. Only a test holding the
//! cluster lock exclusively (`ClusterUse::Exclusive`) may do this.

use std::process::Command;

/// `pg_ctl ARGS` as the cluster's owner (through `runuser` when root).
fn pg_ctl(args: &[&str]) -> std::process::Output {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is unset"));
    let (bin, data, user) = (
        var("IMX_TEST_POSTGRES_BIN"),
        var(testkit::postgres::DATA_ENV),
        var("IMX_TEST_POSTGRES_USER"),
    );
    let pg_ctl = format!("{bin}/pg_ctl");
    // `-l`: the new postmaster must not inherit our pipes, or reading
    // pg_ctl's output would wait for the server to exit.
    let log = format!("{data}/../server.log");
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", &user, "--", &pg_ctl]);
        command
    } else {
        Command::new(&pg_ctl)
    };
    command
        .args(["-D", &data, "-l", &log, "-w", "-t", "120"])
        .args(args)
        .output()
        .expect("pg_ctl runs")
}

/// The cluster is down until [`Down::start`]; dropped without it (a
/// failing test), it starts the cluster again for the tests after it.
#[derive(Debug)]
#[must_use = "the cluster stays down until Down::start"]
pub struct Down {
    started: bool,
}

impl Down {
    /// Starts the cluster again (WAL replay).
    pub async fn start(mut self) {
        start().await;
        self.started = true;
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        if !self.started {
            let _ = std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a runtime")
                    .block_on(start())
            })
            .join();
        }
    }
}

/// Stops the cluster as a crash would (`-m immediate`).
pub async fn crash_stop() -> Down {
    let output = tokio::task::spawn_blocking(|| pg_ctl(&["-m", "immediate", "stop"]))
        .await
        .expect("pg_ctl task");
    assert!(output.status.success(), "pg_ctl stop: {output:?}");
    Down { started: false }
}

/// Starts the cluster again (it replays its WAL) with the options
/// `scripts/test-postgres` gave it: `postmaster.opts` keeps them (the port
/// above all), `pg_ctl start` alone would not reuse them.
async fn start() {
    let output = tokio::task::spawn_blocking(|| {
        let data = std::env::var(testkit::postgres::DATA_ENV).expect("the data folder");
        let opts =
            std::fs::read_to_string(format!("{data}/postmaster.opts")).expect("postmaster.opts");
        // `BINARY "-D" "DATA" "-p" "PORT" …`: everything after the data folder.
        let options = opts
            .trim()
            .split_once(&format!("\"{data}\""))
            .map(|(_, rest)| rest.trim().to_owned())
            .expect("postmaster.opts names the data folder");
        pg_ctl(&["-o", &options, "start"])
    })
    .await
    .expect("pg_ctl task");
    assert!(output.status.success(), "pg_ctl start: {output:?}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}
