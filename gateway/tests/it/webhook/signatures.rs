//! Both signature schemes over the wire: GitHub's published test vector,
//! the imx scheme's window (both directions), and delivery ids.

use super::{
    GITHUB_VECTOR_SECRET, Hooks, OTHER_SECRET, RAW, SECRET, VECTOR, assert_refused, github, imx,
    unix_now,
};

/// GitHub's example body and its published signature.
const VECTOR_BODY: &str = "Hello, World!";
const VECTOR_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_published_vector_passes_the_signature_check_over_http() {
    let hooks = Hooks::start(&[], &[VECTOR]).await;
    let signed = vec![(
        "x-hub-signature-256".to_owned(),
        VECTOR_SIGNATURE.to_owned(),
    )];
    // The signature holds, so the refusal is the next check's: the body is no JSON.
    let answer = hooks.post("vector", &signed, VECTOR_BODY.as_bytes()).await;
    assert_refused(&answer, 400, "VALIDATION", "IMX0856");
    // One byte more and it is the signature that fails.
    let answer = hooks.post("vector", &signed, b"Hello, World!!").await;
    assert_refused(&answer, 401, "UNAUTHENTICATED", "IMX0851");
    // The same secret over a JSON body starts a run.
    let body = br#"{"zen": "Keep it logically awesome."}"#;
    let answer = hooks
        .post("vector", &github(GITHUB_VECTOR_SECRET, body, None), body)
        .await;
    assert_eq!(answer.0, 202, "{}", answer.1);
    assert_eq!(hooks.runs("vector").await.len(), 1);
    hooks.server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imx_scheme_is_accepted_within_the_window_both_ways() {
    let hooks = Hooks::start(&[], &[RAW]).await;
    let body = br#"{"action": "opened"}"#;
    // 250 s either way of now: inside the 300 s window with room for a slow test.
    for skew in [0, -250, 250] {
        let answer = hooks
            .post("raw", &imx(SECRET, unix_now() + skew, body), body)
            .await;
        assert_eq!(answer.0, 202, "skew {skew}: {}", answer.1);
        assert_eq!(answer.1["created"], true, "{}", answer.1);
    }
    assert_eq!(hooks.runs("raw").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imx_scheme_is_refused_outside_the_window_both_ways() {
    let hooks = Hooks::start(&[], &[RAW]).await;
    let body = br#"{"action": "opened"}"#;
    // A request captured 400 s ago (a replay), and one dated 400 s ahead.
    for skew in [-400, 400] {
        let answer = hooks
            .post("raw", &imx(SECRET, unix_now() + skew, body), body)
            .await;
        assert_refused(&answer, 401, "UNAUTHENTICATED", "IMX0852");
    }
    // A wrong signature on a stale request says nothing about the time.
    let answer = hooks
        .post("raw", &imx(OTHER_SECRET, unix_now() - 400, body), body)
        .await;
    assert_refused(&answer, 401, "UNAUTHENTICATED", "IMX0851");
    assert!(hooks.runs("raw").await.is_empty(), "nothing started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_of_a_delivery_id_returns_the_same_run() {
    let hooks = Hooks::start(&[], &[RAW]).await;
    let body = br#"{"action": "opened"}"#;
    let signed = github(SECRET, body, Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
    let first = hooks.post("raw", &signed, body).await;
    assert_eq!(first.0, 202, "{}", first.1);
    assert_eq!(first.1["created"], true);
    let again = hooks.post("raw", &signed, body).await;
    assert_eq!(again.0, 202, "{}", again.1);
    assert_eq!(again.1["created"], false);
    assert_eq!(again.1["run_id"], first.1["run_id"]);
    // The imx scheme's delivery header, replayed within the window.
    let mut signed = imx(SECRET, unix_now(), body);
    signed.push(("x-imx-delivery".to_owned(), "delivery-7".to_owned()));
    let first_imx = hooks.post("raw", &signed, body).await;
    let replayed = hooks.post("raw", &signed, body).await;
    assert_eq!(first_imx.1["created"], true, "{}", first_imx.1);
    assert_eq!(replayed.1["created"], false, "{}", replayed.1);
    assert_eq!(replayed.1["run_id"], first_imx.1["run_id"]);
    assert_eq!(hooks.runs("raw").await.len(), 2);
    assert_eq!(hooks.webhooks_counted("accepted", "redelivery").await, 2);
    assert_eq!(hooks.webhooks_counted("accepted", "started").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_delivery_id_every_request_starts_a_run() {
    let hooks = Hooks::start(&[], &[RAW]).await;
    let body = br#"{"action": "opened"}"#;
    let signed = github(SECRET, body, None);
    for _ in 0..2 {
        let answer = hooks.post("raw", &signed, body).await;
        assert_eq!(answer.0, 202, "{}", answer.1);
        assert_eq!(answer.1["created"], true);
    }
    assert_eq!(hooks.runs("raw").await.len(), 2);
}
