//! `/metrics` (issue #13, item 10) is unauthenticated, so it can move to
//! its own listener (`--metrics-listen`); the API listener then no longer
//! answers it.

use super::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_moves_metrics_off_the_api_listener() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"], &[]).await;
    let metrics_addr = server
        .metrics_addr
        .clone()
        .expect("imx serve names its metrics address");
    assert_ne!(metrics_addr, server.addr);
    let on_api = reqwest::get(format!("{}/metrics", server.base()))
        .await
        .expect("the API answers");
    assert_eq!(on_api.status().as_u16(), 404);
    let scraped = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("the metrics listener answers");
    assert_eq!(scraped.status().as_u16(), 200);
    let text = scraped.text().await.expect("a body");
    assert!(text.contains("imx_runs_started_total"), "{text}");
    server.assert_healthy().await;
}
