//! How `verify` reads a file: in batches of whole lines of any size; a
//! line that is too long, not UTF-8, ends in a Windows line break or has no
//! line break at the end of the file is named by its number, whatever the
//! batch size.

use replay::format::LINE_BYTES_MAX;
use replay::verify::Fault;
use replay::{Options, Scope, Tuning, verify_reader_tuned};

use crate::support::{append_runs, block_on, canned_runs, export_text, sqlite};

/// Batch sizes: one line per batch, a few lines, the default.
const BATCH_SIZES: [usize; 3] = [1, 4096, replay::pipeline::BATCH_BYTES];

fn export() -> String {
    block_on(async {
        let fixture = sqlite().await;
        append_runs(&fixture, &canned_runs(), 2).await;
        export_text(&fixture, Scope::default()).await
    })
}

fn verify(text: &[u8], batch_bytes: usize) -> Result<replay::Summary, replay::Problem> {
    let tuning = Tuning {
        batch_bytes,
        ..Tuning::default()
    };
    verify_reader_tuned(text, Options::default(), tuning)
}

/// The line number and detail of a `Malformed` problem.
fn malformed(problem: &replay::Problem) -> (Option<u64>, String) {
    match problem.fault.as_ref() {
        Fault::Malformed { detail, .. } => (problem.line, detail.clone()),
        other => panic!("not a malformed line: {other:?}"),
    }
}

#[test]
fn windows_line_breaks_and_a_missing_final_break_are_refused() {
    let text = export();
    let windows = text.replace('\n', "\r\n");
    let unfinished = text.trim_end_matches('\n');
    let trailer_line = text.lines().count() as u64;
    for batch_bytes in BATCH_SIZES {
        let problem = verify(text.as_bytes(), batch_bytes);
        assert!(problem.is_ok(), "batches of {batch_bytes}: {problem:?}");
        let problem = verify(windows.as_bytes(), batch_bytes).expect_err("CRLF refused");
        let (line, detail) = malformed_or_header(&problem);
        assert_eq!(line, Some(1), "batches of {batch_bytes}");
        assert!(detail.contains("carriage return"), "{detail}");
        let problem = verify(unfinished.as_bytes(), batch_bytes).expect_err("no final break");
        let (line, detail) = malformed(&problem);
        assert_eq!(line, Some(trailer_line), "batches of {batch_bytes}");
        assert!(detail.contains("line break"), "{detail}");
    }
    // A carriage return after the header is named by its line too.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[3].push('\r');
    let tampered = lines.join("\n") + "\n";
    for batch_bytes in BATCH_SIZES {
        let problem = verify(tampered.as_bytes(), batch_bytes).expect_err("CR refused");
        assert_eq!(malformed(&problem).0, Some(4), "batches of {batch_bytes}");
    }
}

/// The line and detail of a `Malformed` or `BadHeader` problem.
fn malformed_or_header(problem: &replay::Problem) -> (Option<u64>, String) {
    match problem.fault.as_ref() {
        Fault::BadHeader { detail } => (problem.line, detail.clone()),
        _ => malformed(problem),
    }
}

#[test]
fn a_line_over_the_limit_is_named_by_its_number() {
    let text = export();
    let mut lines: Vec<&str> = text.lines().collect();
    let long = format!("{{\"x\":\"{}\"}}", "a".repeat(LINE_BYTES_MAX));
    lines.insert(3, &long);
    let tampered = lines.join("\n") + "\n";
    for batch_bytes in BATCH_SIZES {
        let problem = verify(tampered.as_bytes(), batch_bytes).expect_err("too long");
        let (line, detail) = malformed(&problem);
        assert_eq!(line, Some(4), "batches of {batch_bytes}");
        assert!(detail.contains("longer than"), "{detail}");
    }
    // The same line without a break after it, at the end of the file.
    let cut = format!("{}\n{long}", lines[..3].join("\n"));
    for batch_bytes in BATCH_SIZES {
        let problem = verify(cut.as_bytes(), batch_bytes).expect_err("too long");
        assert_eq!(malformed(&problem).0, Some(4), "batches of {batch_bytes}");
    }
}

#[test]
fn a_line_that_is_not_utf8_is_named_by_its_number() {
    let text = export();
    let mut bytes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        bytes.extend_from_slice(line.as_bytes());
        if index == 5 {
            bytes.extend_from_slice(&[0xff, 0xfe]);
        }
        bytes.push(b'\n');
    }
    for batch_bytes in BATCH_SIZES {
        let problem = verify(&bytes, batch_bytes).expect_err("not UTF-8");
        let (line, detail) = malformed(&problem);
        assert_eq!(line, Some(6), "batches of {batch_bytes}");
        assert!(detail.contains("UTF-8"), "{detail}");
    }
}
