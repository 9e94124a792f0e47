//! `imx replay export`: writes the log (or one run) as an `imx-event-log`
//! file, paging through the store so that memory stays constant.

use std::io::Write;

use chrono::{DateTime, Utc};
use engine::chain::{GENESIS_HASH, LogHead, RecordedEvent};
use engine::store::prelude::*;

use crate::Error;
use crate::format::{
    ChainParams, EventLineRef, FORMAT_NAME, FORMAT_VERSION, Header, Line, Scope, Trailer,
};

/// Events read from the store per page (the stores' default page maximum).
pub const EXPORT_PAGE_EVENTS: u32 = 1_000;

/// Writes the events of `scope` to `out`: header, events, trailer. The
/// export ends at the log head read when it starts, so a busy log gives a
/// well-defined file. Returns the trailer (its `head` is what an auditor
/// keeps apart from the file).
pub async fn export<S: EventStore>(
    store: &S,
    scope: Scope,
    exported_at: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<Trailer, Error> {
    let end = store.log_head().await?;
    if scope.since > end.position {
        return Err(Error::SinceBeyondHead {
            since: scope.since,
            head: end.position,
        });
    }
    let start = start_head(store, scope.since).await?;
    let header = Header {
        format: FORMAT_NAME.to_owned(),
        format_version: FORMAT_VERSION,
        chain: ChainParams::v1(),
        scope: scope.clone(),
        start: start.clone(),
        exported_at,
    };
    writeln!(out, "{}", Line::Header(Box::new(header)).to_text())?;
    let mut writer = EventWriter {
        out,
        events: 0,
        position: start.position,
        head: match scope.run {
            Some(_) => GENESIS_HASH.to_owned(),
            None => start.log_hash.clone(),
        },
        run_scope: scope.run.is_some(),
    };
    match scope.run {
        Some(run_id) => {
            let mut after_seq = 0;
            loop {
                let page = store
                    .read_stream(run_id, after_seq, EXPORT_PAGE_EVENTS)
                    .await?;
                let Some(last) = page.last() else { break };
                after_seq = last.seq;
                for event in page
                    .iter()
                    .filter(|event| event.position > scope.since && event.position <= end.position)
                {
                    writer.write(event)?;
                }
            }
            if after_seq == 0 {
                return Err(Error::RunNotFound { run_id });
            }
        }
        None => {
            let mut after = scope.since;
            while after < end.position {
                let page = store.read_log(after, EXPORT_PAGE_EVENTS).await?;
                let Some(last) = page.last() else { break };
                after = last.position;
                for event in page.iter().filter(|event| event.position <= end.position) {
                    writer.write(event)?;
                }
            }
        }
    }
    let trailer = Trailer {
        events: writer.events,
        head: writer.head,
        position: writer.position,
    };
    writeln!(writer.out, "{}", Line::Trailer(trailer.clone()).to_text())?;
    writer.out.flush()?;
    Ok(trailer)
}

/// The log head right before position `since + 1`.
async fn start_head<S: EventStore>(store: &S, since: u64) -> Result<LogHead, Error> {
    if since == 0 {
        return Ok(LogHead::genesis());
    }
    let page = store.read_log(since - 1, 1).await?;
    match page.first() {
        Some(event) if event.position == since => Ok(LogHead {
            position: since,
            log_hash: event.log_hash.clone(),
        }),
        _ => Err(Error::SinceBeyondHead { since, head: 0 }),
    }
}

/// One event's line as an export holds it, without the newline: the one
/// writer of event lines (the export, and the log relay's record values).
pub fn write_event_line(out: &mut impl Write, event: &RecordedEvent) -> std::io::Result<()> {
    serde_json::to_writer(out, &EventLineRef::new(event)).map_err(std::io::Error::from)
}

struct EventWriter<'a, W> {
    out: &'a mut W,
    events: u64,
    position: u64,
    head: String,
    run_scope: bool,
}

impl<W: Write> EventWriter<'_, W> {
    fn write(&mut self, event: &RecordedEvent) -> Result<(), Error> {
        write_event_line(&mut *self.out, event)?;
        self.out.write_all(b"\n")?;
        self.events += 1;
        self.position = event.position;
        self.head.clone_from(if self.run_scope {
            &event.hash
        } else {
            &event.log_hash
        });
        Ok(())
    }
}
