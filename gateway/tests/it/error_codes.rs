//! Error codes as data: every stable `IMX` code the code can produce (DSL
//! diagnostics, store, runtime, executors, audit) has its entry in
//! `docs/errors.md`, the docs name no code the code lacks, and every engine
//! error's message opens with the code its `code()` returns.

use std::collections::BTreeSet;

use engine::checkpoint::{Error as CheckpointError, ErrorKind as CheckpointKind};
use engine::core::dsl::Code as DiagnosticCode;
use engine::executor::egress::EGRESS_REFUSED_CODE;
use engine::executor::http::ErrorKind as HttpKind;
use engine::executor::kafka::ErrorKind as KafkaKind;
use engine::runtime::{Error as RuntimeError, ErrorKind as RuntimeKind};
use engine::secrets::ErrorKind as SecretsKind;
use engine::store::{APPEND_ONLY_CODE, Error as StoreError, ErrorKind as StoreKind};
use engine::triggers::kafka::{DeadLetterReason, ErrorKind as TriggerKind};
use engine::triggers::webhook::{Error as WebhookError, ErrorKind as WebhookKind};
use replay::fault::{Fault, FaultKind, Problem};
use replay::{Error as ReplayError, ErrorKind as ReplayKind};
use strum::VariantArray;
use uuid::Uuid;

/// Every code the code base defines, from each error type's list of kinds.
fn codes_in_code() -> BTreeSet<&'static str> {
    let mut codes: BTreeSet<&'static str> = DiagnosticCode::ALL
        .iter()
        .map(|code| code.as_str())
        .collect();
    codes.extend(StoreKind::VARIANTS.iter().map(|kind| kind.code()));
    codes.extend(RuntimeKind::VARIANTS.iter().filter_map(|kind| kind.code()));
    codes.extend(ReplayKind::VARIANTS.iter().filter_map(|kind| kind.code()));
    codes.extend(FaultKind::VARIANTS.iter().map(|kind| kind.code()));
    codes.extend(HttpKind::VARIANTS.iter().map(|kind| kind.code()));
    codes.extend(KafkaKind::VARIANTS.iter().map(|kind| kind.code()));
    codes.extend(SecretsKind::VARIANTS.iter().map(|kind| kind.code()));
    codes.extend(WebhookKind::VARIANTS.iter().filter_map(|kind| kind.code()));
    codes.extend(TriggerKind::VARIANTS.iter().map(|kind| kind.code()));
    codes.extend(
        CheckpointKind::VARIANTS
            .iter()
            .filter_map(|kind| kind.code()),
    );
    codes.extend(
        DeadLetterReason::VARIANTS
            .iter()
            .map(|reason| reason.code()),
    );
    codes.extend([EGRESS_REFUSED_CODE, APPEND_ONLY_CODE]);
    codes
}

fn errors_md() -> String {
    std::fs::read_to_string(crate::repo_root().join("docs/errors.md")).expect("docs/errors.md")
}

/// Every `IMX` followed by four digits in `text`.
fn codes_named_in(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    (0..bytes.len())
        .filter(|&at| {
            bytes[at..].starts_with(b"IMX")
                && bytes.len() >= at + 7
                && bytes[at + 3..at + 7].iter().all(u8::is_ascii_digit)
                && !bytes.get(at + 7).is_some_and(u8::is_ascii_alphanumeric)
        })
        .map(|at| text[at..at + 7].to_owned())
        .collect()
}

#[test]
fn every_code_has_an_entry_in_errors_md() {
    let docs = errors_md();
    let missing: Vec<_> = codes_in_code()
        .into_iter()
        .filter(|code| {
            !docs.contains(&format!("## {code}\n")) && !docs.contains(&format!("| {code} |"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/errors.md has no heading (`## CODE`) or table row (`| CODE |`) for {missing:?}"
    );
}

#[test]
fn errors_md_names_no_code_the_code_lacks() {
    let known = codes_in_code();
    let unknown: Vec<_> = codes_named_in(&errors_md())
        .into_iter()
        .filter(|code| !known.contains(code.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/errors.md names codes no error has: {unknown:?}"
    );
}

#[test]
fn the_append_only_code_is_the_one_the_migrations_raise() {
    for backend in ["sqlite", "postgres"] {
        let folder = crate::repo_root().join("migrations").join(backend);
        let raised = std::fs::read_dir(&folder)
            .expect("the migrations folder")
            .map(|entry| std::fs::read_to_string(entry.expect("an entry").path()).expect("SQL"))
            .any(|sql| {
                sql.contains(&format!(
                    "'{APPEND_ONLY_CODE}: the event log is append-only"
                ))
            });
        assert!(raised, "no {backend} migration raises {APPEND_ONLY_CODE}");
    }
}

/// One error of each store kind. The match has no wildcard, so a new kind
/// does not compile until it has a sample here.
fn store_sample(kind: StoreKind) -> StoreError {
    let run_id = Uuid::nil();
    match kind {
        StoreKind::Conflict => StoreError::Conflict {
            run_id,
            expected_seq: 2,
            actual_seq: Some(3),
        },
        StoreKind::LeaseLost => StoreError::LeaseLost { task_id: run_id },
        StoreKind::PayloadTooLarge => StoreError::PayloadTooLarge {
            run_id,
            index: 0,
            event_type: "step.succeeded".to_owned(),
            bytes: 2,
            max: 1,
        },
        StoreKind::LimitExceeded => StoreError::LimitExceeded {
            what: "a page".to_owned(),
            value: 2,
            max: 1,
            setting: "page_size_max",
        },
        StoreKind::InvalidRequest => StoreError::InvalidRequest {
            message: "bad".to_owned(),
        },
        StoreKind::SchemaTooNew => StoreError::SchemaTooNew {
            database_version: 9,
            known_version: 1,
        },
        StoreKind::Unavailable => StoreError::Unavailable {
            source: sqlx::Error::PoolTimedOut,
        },
        StoreKind::UnsupportedUrl => StoreError::UnsupportedUrl {
            scheme: "mysql".to_owned(),
        },
        StoreKind::CreateFolder => StoreError::CreateFolder {
            path: "/nowhere".to_owned(),
            source: std::io::Error::other("denied"),
        },
        StoreKind::Migrate => StoreError::Migrate {
            source: sqlx::migrate::MigrateError::VersionMissing(1),
        },
        StoreKind::IdempotencyKeyTaken => StoreError::IdempotencyKeyTaken {
            key: "order-42".to_owned(),
            run_id,
        },
        StoreKind::Corrupt => StoreError::Corrupt {
            what: "a row".to_owned(),
        },
        StoreKind::Database => StoreError::Database {
            source: sqlx::Error::RowNotFound,
        },
        StoreKind::RunNotFound => StoreError::RunNotFound { run_id },
    }
}

/// One error of each runtime kind (no wildcard: see [`store_sample`]).
fn runtime_sample(kind: RuntimeKind) -> RuntimeError {
    let run_id = Uuid::nil();
    match kind {
        RuntimeKind::Store => RuntimeError::Store(store_sample(StoreKind::Conflict)),
        RuntimeKind::Core => RuntimeError::Core(engine::core::run::Error::NotStarted),
        RuntimeKind::UnknownWorkflow => RuntimeError::UnknownWorkflow {
            name: "missing".to_owned(),
            version: None,
        },
        RuntimeKind::InvalidWorkflow => RuntimeError::InvalidWorkflow {
            diagnostics: "1:1: error[IMX0006]: …".to_owned(),
        },
        RuntimeKind::InvalidInput => RuntimeError::InvalidInput {
            workflow: "shop".to_owned(),
            problems: vec!["/: not an object".to_owned()],
        },
        RuntimeKind::RunNotFound => RuntimeError::RunNotFound { run_id },
        RuntimeKind::RunFinished => RuntimeError::RunFinished {
            run_id,
            status: "succeeded".to_owned(),
            action: "cancel",
        },
        RuntimeKind::NotWaiting => RuntimeError::NotWaiting {
            run_id,
            step: "approve".to_owned(),
            status: "pending".to_owned(),
        },
        RuntimeKind::NotRetryable => RuntimeError::NotRetryable {
            run_id,
            status: "running".to_owned(),
        },
        RuntimeKind::Corrupt => RuntimeError::Corrupt {
            what: "an event".to_owned(),
        },
        RuntimeKind::Contended => RuntimeError::Contended { run_id },
        RuntimeKind::Decide => RuntimeError::Decide {
            run_id,
            detail: "panicked".to_owned(),
        },
        RuntimeKind::InvalidIdempotencyKey => RuntimeError::InvalidIdempotencyKey {
            problem: "is empty".to_owned(),
        },
        RuntimeKind::TriggerInput => RuntimeError::TriggerInput {
            workflow: "orders".to_owned(),
            trigger: "webhook".to_owned(),
            detail: "undefined value".to_owned(),
        },
        RuntimeKind::Vars => RuntimeError::Vars {
            workflow: "orders".to_owned(),
            detail: "undefined value".to_owned(),
        },
        RuntimeKind::ScheduleNotFound => RuntimeError::ScheduleNotFound {
            workflow: "nightly".to_owned(),
            trigger: Some("cron".to_owned()),
        },
        RuntimeKind::BackfillTooLarge => RuntimeError::BackfillTooLarge {
            workflow: "nightly".to_owned(),
            trigger: "cron".to_owned(),
            max: 1_000,
        },
        RuntimeKind::BackfillWindowInvalid => RuntimeError::BackfillWindowInvalid {
            from: chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(1),
            to: chrono::DateTime::UNIX_EPOCH,
        },
        RuntimeKind::SurgeryRefused => RuntimeError::SurgeryRefused {
            run_id,
            detail:
                "rewind needs a run that is succeeded, failed or cancelled; this run is running"
                    .to_owned(),
        },
        RuntimeKind::UnknownStep => RuntimeError::UnknownStep {
            run_id,
            detail: "the run has no step `chrage`; its steps: charge, fetch".to_owned(),
        },
        RuntimeKind::ForkIncompatible => RuntimeError::ForkIncompatible {
            run_id,
            detail: "version sha256:… cannot take over the source run's steps: …".to_owned(),
        },
        RuntimeKind::SurgeryInput => RuntimeError::SurgeryInput {
            run_id,
            problem: "a reason is required".to_owned(),
        },
    }
}

/// One error of each audit kind (no wildcard: see [`store_sample`]).
fn replay_sample(kind: ReplayKind) -> ReplayError {
    let run_id = Uuid::nil();
    match kind {
        ReplayKind::Store => ReplayError::Store(store_sample(StoreKind::Corrupt)),
        ReplayKind::Io => ReplayError::Io(std::io::Error::other("disk full")),
        ReplayKind::RunNotFound => ReplayError::RunNotFound { run_id },
        ReplayKind::SinceBeyondHead => ReplayError::SinceBeyondHead { since: 9, head: 1 },
        ReplayKind::Event => ReplayError::Event {
            run_id,
            seq: 1,
            source: engine::core::event::Error::UnknownType {
                event_type: "nope".to_owned(),
            },
        },
        ReplayKind::Evolve => ReplayError::Evolve(engine::core::evolve::Error::WrongRun {
            expected: run_id,
            got: Uuid::max(),
        }),
        ReplayKind::AtBeyondEnd => ReplayError::AtBeyondEnd {
            run_id,
            at: 9,
            last: 1,
        },
        ReplayKind::Registry => ReplayError::Registry {
            name: "shop".to_owned(),
            version: "sha256:00".to_owned(),
            detail: "unknown field".to_owned(),
        },
        ReplayKind::Export => ReplayError::Export(Problem {
            run_id: None,
            seq: None,
            position: None,
            line: Some(1),
            fault: Box::new(Fault::NoTrailer),
        }),
        ReplayKind::TreeSize => ReplayError::TreeSize {
            size: 9,
            at_least: 1,
            head: 3,
        },
        ReplayKind::SeqNotFound => ReplayError::SeqNotFound { run_id, seq: 9 },
        ReplayKind::ProofFile => ReplayError::ProofFile {
            detail: "unknown field".to_owned(),
        },
        ReplayKind::ProofInvalid => ReplayError::ProofInvalid {
            detail: "another root".to_owned(),
        },
    }
}

/// One error of each webhook kind (no wildcard: see [`store_sample`]).
fn webhook_sample(kind: WebhookKind) -> WebhookError {
    match kind {
        WebhookKind::BadSignature => WebhookError::BadSignature,
        WebhookKind::Stale => WebhookError::Stale {
            timestamp: 1,
            now: 400,
        },
        WebhookKind::NotFound => WebhookError::NotFound {
            path: "shop".to_owned(),
            reason: "no workflow of that name has a webhook trigger".to_owned(),
        },
        WebhookKind::SecretUnset => WebhookError::SecretUnset {
            workflow: "shop".to_owned(),
            trigger: "webhook".to_owned(),
            variable: "IMX_SECRET_SHOP".to_owned(),
        },
        WebhookKind::BodyTooLarge => WebhookError::BodyTooLarge { limit_bytes: 1 },
        WebhookKind::BodyTimeout => WebhookError::BodyTimeout { limit_ms: 1 },
        WebhookKind::NotJson => WebhookError::NotJson {
            detail: "EOF".to_owned(),
        },
        WebhookKind::InvalidDelivery => WebhookError::InvalidDelivery {
            problem: "is empty".to_owned(),
        },
        WebhookKind::RateLimited => WebhookError::RateLimited {
            workflow: "shop".to_owned(),
        },
        WebhookKind::Runtime => WebhookError::Runtime(runtime_sample(RuntimeKind::InvalidInput)),
    }
}

fn checkpoint_sample(kind: CheckpointKind) -> CheckpointError {
    match kind {
        CheckpointKind::BadKey => CheckpointError::BadKey {
            detail: "not 32 key bytes".to_owned(),
        },
        CheckpointKind::BadNote => CheckpointError::BadNote {
            detail: "no blank line before the signatures".to_owned(),
        },
        CheckpointKind::Untrusted => CheckpointError::Untrusted {
            tree_size: 20,
            keys: "imx-log+0a1b2c3d".to_owned(),
        },
        CheckpointKind::Witness => CheckpointError::Witness {
            target: "/var/lib/imx/witness".to_owned(),
            detail: "No space left on device".to_owned(),
        },
        CheckpointKind::Conflict => CheckpointError::Conflict {
            tree_size: 20,
            first: "imx-log+0a1b2c3d".to_owned(),
            second: "imx-log+0a1b2c3d".to_owned(),
        },
        CheckpointKind::Store => CheckpointError::Store(store_sample(StoreKind::Unavailable)),
    }
}

#[test]
fn every_checkpoint_error_message_opens_with_its_code() {
    for kind in CheckpointKind::VARIANTS {
        let error = checkpoint_sample(*kind);
        assert_eq!(kind.code().unwrap_or("IMX0307"), error.code(), "{kind:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}: ", error.code())),
            "{error}"
        );
    }
}

#[test]
fn every_engine_error_message_opens_with_its_code() {
    for kind in StoreKind::VARIANTS {
        let error = store_sample(*kind);
        assert_eq!(error.code(), kind.code());
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}: ", error.code())),
            "{error}"
        );
    }
    for kind in RuntimeKind::VARIANTS {
        let error = runtime_sample(*kind);
        assert_eq!(kind.code().unwrap_or("IMX0301"), error.code(), "{kind:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}: ", error.code())),
            "{error}"
        );
    }
    for kind in ReplayKind::VARIANTS {
        let error = replay_sample(*kind);
        if let Some(code) = kind.code() {
            assert_eq!(code, error.code(), "{kind:?}");
        }
        assert!(
            error.to_string().contains(&format!("{}: ", error.code())),
            "{error}"
        );
    }
    for kind in WebhookKind::VARIANTS {
        let error = webhook_sample(*kind);
        assert_eq!(kind.code().unwrap_or("IMX0404"), error.code(), "{kind:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}: ", error.code())),
            "{error}"
        );
    }
    assert_eq!(replay_sample(ReplayKind::Store).code(), "IMX0312");
    assert_eq!(replay_sample(ReplayKind::Export).code(), "IMX0517");
}
