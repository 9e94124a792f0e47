//! How `verify` reads a file: in batches of whole lines of any size, with
//! Windows line breaks or none at the end; a line that is too long or not
//! UTF-8 is named by its number, whatever the batch size.

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
fn windows_line_breaks_and_no_final_break_verify_alike() {
    let text = export();
    let events = text.lines().count() as u64 - 2;
    let windows = text.replace('\n', "\r\n");
    let unfinished = text.trim_end_matches('\n');
    for batch_bytes in BATCH_SIZES {
        for variant in [text.as_str(), windows.as_str(), unfinished] {
            let summary = verify(variant.as_bytes(), batch_bytes)
                .unwrap_or_else(|problem| panic!("batches of {batch_bytes}: {problem}"));
            assert_eq!(summary.events, events);
        }
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
