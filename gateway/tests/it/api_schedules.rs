//! Cron schedules over GraphQL (docs/triggers-cron.md): `schedules` for
//! every role that reads, `pauseSchedule`, `resumeSchedule` and
//! `backfillSchedule` for operators only; backfilling twice starts nothing
//! new; refusals carry their IMX codes.

use expect_test::expect;
use serde_json::{Value, json};

use crate::api::*;

const NIGHTLY: &str = r#"
name: NAME
triggers:
  - { id: nightly, cron: "0 30 2 * * *", timezone: Europe/Berlin }
steps:
  a: { uses: noop }
"#;

const SCHEDULES: &str =
    "{ schedules { workflow trigger cron timezone state pausedBy lastFireAt skipped nextFires } }";
const PAUSE: &str = "mutation($w: String!, $t: String) { pauseSchedule(workflow: $w, trigger: $t) { trigger state pausedBy nextFires } }";
const RESUME: &str =
    "mutation($w: String!) { resumeSchedule(workflow: $w) { trigger state nextFires } }";
const BACKFILL: &str = "mutation($w: String!, $t: String, $from: DateTime!, $to: DateTime!) { backfillSchedule(workflow: $w, trigger: $t, from: $from, to: $to) { fires started existing } }";

fn imx_code(body: &Value) -> String {
    let error = &body["errors"][0]["extensions"];
    format!(
        "{} {}",
        error["code"].as_str().unwrap_or("<none>"),
        error["imxCode"].as_str().unwrap_or("<none>")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_operations_by_role() {
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), true).await;
    let mut table = String::new();
    let window = json!({"w": "nope", "from": "2027-01-01T00:00:00Z", "to": "2027-01-02T00:00:00Z"});
    for role in ["viewer", "operator", "approver"] {
        let key = api.api_key(&[role]).await;
        for (name, query) in [
            ("schedules", SCHEDULES),
            ("pauseSchedule", PAUSE),
            ("resumeSchedule", RESUME),
            ("backfillSchedule", BACKFILL),
        ] {
            let (status, body) = api.post(Some(&key), query, window.clone()).await;
            let outcome = if body.get("errors").is_some() {
                code(&body)
            } else {
                "ok".to_owned()
            };
            table.push_str(&format!("{role:8} {name:16} {status} {outcome}\n"));
        }
    }
    expect![[r#"
        viewer   schedules        200 ok
        viewer   pauseSchedule    403 FORBIDDEN
        viewer   resumeSchedule   403 FORBIDDEN
        viewer   backfillSchedule 403 FORBIDDEN
        operator schedules        200 ok
        operator pauseSchedule    200 NOT_FOUND
        operator resumeSchedule   200 NOT_FOUND
        operator backfillSchedule 200 NOT_FOUND
        approver schedules        200 ok
        approver pauseSchedule    403 FORBIDDEN
        approver resumeSchedule   403 FORBIDDEN
        approver backfillSchedule 403 FORBIDDEN
    "#]]
    .assert_eq(&table);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_pause_resume_and_backfill_over_graphql() {
    for url in database_urls() {
        let api = TestApi::start(&url, config(), true).await;
        let operator = api.api_key(&["operator"]).await;
        let (name, source) = named(NIGHTLY, "cron");
        register(&api, &operator, &source).await;

        let listed = api.data(&operator, SCHEDULES, json!({})).await;
        let mine: Vec<&Value> = listed["schedules"]
            .as_array()
            .expect("a list")
            .iter()
            .filter(|schedule| schedule["workflow"] == name.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{listed}");
        assert_eq!(
            (
                &mine[0]["trigger"],
                &mine[0]["cron"],
                &mine[0]["timezone"],
                &mine[0]["state"]
            ),
            (
                &json!("nightly"),
                &json!("0 30 2 * * *"),
                &json!("Europe/Berlin"),
                &json!("ACTIVE")
            )
        );
        assert_eq!(mine[0]["nextFires"].as_array().map(Vec::len), Some(5));

        let paused = api.data(&operator, PAUSE, json!({"w": name})).await;
        let paused = &paused["pauseSchedule"][0];
        assert_eq!(
            (&paused["state"], &paused["nextFires"]),
            (&json!("PAUSED"), &json!([]))
        );
        assert!(
            paused["pausedBy"]
                .as_str()
                .is_some_and(|by| by.starts_with("key:")),
            "{paused}"
        );
        let resumed = api.data(&operator, RESUME, json!({"w": name})).await;
        assert_eq!(resumed["resumeSchedule"][0]["state"], "ACTIVE");

        // Three nights, 02:30 Berlin; the second call starts nothing new.
        let window = json!({"w": name, "t": "nightly",
            "from": "2027-01-01T00:00:00Z", "to": "2027-01-03T23:59:59Z"});
        let first = api.data(&operator, BACKFILL, window.clone()).await;
        assert_eq!(
            first["backfillSchedule"],
            json!({"fires": 3, "started": 3, "existing": 0})
        );
        let second = api.data(&operator, BACKFILL, window).await;
        assert_eq!(
            second["backfillSchedule"],
            json!({"fires": 3, "started": 0, "existing": 3})
        );

        let refusals = [
            json!({"w": name, "from": "2020-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}),
            json!({"w": name, "from": "2027-01-02T00:00:00Z", "to": "2027-01-01T00:00:00Z"}),
            json!({"w": name, "t": "other", "from": "2027-01-01T00:00:00Z", "to": "2027-01-02T00:00:00Z"}),
        ];
        let mut codes = Vec::new();
        for variables in refusals {
            let (_, body) = api.post(Some(&operator), BACKFILL, variables).await;
            codes.push(imx_code(&body));
        }
        assert_eq!(
            codes,
            ["LIMIT IMX0421", "VALIDATION IMX0422", "NOT_FOUND IMX0420"]
        );
        api.stop().await;
    }
}
