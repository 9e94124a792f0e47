//! Who may do what: every mutation by every role, and every way a
//! credential can be wrong; 401 and 403 are distinct.

use expect_test::expect;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::api::*;
use engine::store::ApiKeys;

/// Each mutation against ids that do not exist: a caller that passes the
/// role check gets NOT_FOUND (or a result), one that does not gets FORBIDDEN.
const MUTATIONS: &[(&str, &str)] = &[
    (
        "registerWorkflow",
        "mutation { registerWorkflow(source: \"name: authz\\nsteps:\\n  a:\\n    uses: noop\\n\") { __typename } }",
    ),
    (
        "startRun",
        "mutation { startRun(workflow: \"no-such-workflow\") { created } }",
    ),
    (
        "cancelRun",
        "mutation { cancelRun(id: \"00000000-0000-7000-8000-000000000000\") { id } }",
    ),
    (
        "retryRun",
        "mutation { retryRun(id: \"00000000-0000-7000-8000-000000000000\") { id } }",
    ),
    (
        "approveStep",
        "mutation { approveStep(runId: \"00000000-0000-7000-8000-000000000000\", step: \"a\") { id } }",
    ),
    (
        "rejectStep",
        "mutation { rejectStep(runId: \"00000000-0000-7000-8000-000000000000\", step: \"a\", comment: \"no\") { id } }",
    ),
    (
        "rewindRun",
        "mutation { rewindRun(id: \"00000000-0000-7000-8000-000000000000\", step: \"a\", reason: \"r\") { id } }",
    ),
    (
        "forkRun",
        "mutation { forkRun(id: \"00000000-0000-7000-8000-000000000000\", step: \"a\", reason: \"r\") { id } }",
    ),
    (
        "pauseRun",
        "mutation { pauseRun(id: \"00000000-0000-7000-8000-000000000000\", reason: \"r\") { id } }",
    ),
    (
        "resumeRun",
        "mutation { resumeRun(id: \"00000000-0000-7000-8000-000000000000\", reason: \"r\") { id } }",
    ),
    (
        "skipStep",
        "mutation { skipStep(runId: \"00000000-0000-7000-8000-000000000000\", step: \"a\", reason: \"r\") { id } }",
    ),
    ("query runs", "{ runs(first: 1) { edges { cursor } } }"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutation_by_every_role() {
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), true).await;
    let mut table = String::new();
    for role in ["none", "viewer", "operator", "approver", "admin"] {
        let key = if role == "none" {
            None
        } else {
            Some(api.api_key(&[role]).await)
        };
        for (name, query) in MUTATIONS {
            let (status, body) = api.post(key.as_deref(), query, json!({})).await;
            let outcome = if body.get("errors").is_some() {
                code(&body)
            } else {
                "ok".to_owned()
            };
            table.push_str(&format!("{role:8} {name:16} {status} {outcome}\n"));
        }
    }
    expect![[r#"
        none     registerWorkflow 401 UNAUTHENTICATED
        none     startRun         401 UNAUTHENTICATED
        none     cancelRun        401 UNAUTHENTICATED
        none     retryRun         401 UNAUTHENTICATED
        none     approveStep      401 UNAUTHENTICATED
        none     rejectStep       401 UNAUTHENTICATED
        none     rewindRun        401 UNAUTHENTICATED
        none     forkRun          401 UNAUTHENTICATED
        none     pauseRun         401 UNAUTHENTICATED
        none     resumeRun        401 UNAUTHENTICATED
        none     skipStep         401 UNAUTHENTICATED
        none     query runs       401 UNAUTHENTICATED
        viewer   registerWorkflow 403 FORBIDDEN
        viewer   startRun         403 FORBIDDEN
        viewer   cancelRun        403 FORBIDDEN
        viewer   retryRun         403 FORBIDDEN
        viewer   approveStep      403 FORBIDDEN
        viewer   rejectStep       403 FORBIDDEN
        viewer   rewindRun        403 FORBIDDEN
        viewer   forkRun          403 FORBIDDEN
        viewer   pauseRun         403 FORBIDDEN
        viewer   resumeRun        403 FORBIDDEN
        viewer   skipStep         403 FORBIDDEN
        viewer   query runs       200 ok
        operator registerWorkflow 200 ok
        operator startRun         200 NOT_FOUND
        operator cancelRun        200 NOT_FOUND
        operator retryRun         200 NOT_FOUND
        operator approveStep      403 FORBIDDEN
        operator rejectStep       403 FORBIDDEN
        operator rewindRun        200 NOT_FOUND
        operator forkRun          200 NOT_FOUND
        operator pauseRun         200 NOT_FOUND
        operator resumeRun        200 NOT_FOUND
        operator skipStep         200 NOT_FOUND
        operator query runs       200 ok
        approver registerWorkflow 403 FORBIDDEN
        approver startRun         403 FORBIDDEN
        approver cancelRun        403 FORBIDDEN
        approver retryRun         403 FORBIDDEN
        approver approveStep      200 NOT_FOUND
        approver rejectStep       200 NOT_FOUND
        approver rewindRun        403 FORBIDDEN
        approver forkRun          403 FORBIDDEN
        approver pauseRun         403 FORBIDDEN
        approver resumeRun        403 FORBIDDEN
        approver skipStep         403 FORBIDDEN
        approver query runs       200 ok
        admin    registerWorkflow 200 ok
        admin    startRun         200 NOT_FOUND
        admin    cancelRun        200 NOT_FOUND
        admin    retryRun         200 NOT_FOUND
        admin    approveStep      200 NOT_FOUND
        admin    rejectStep       200 NOT_FOUND
        admin    rewindRun        200 NOT_FOUND
        admin    forkRun          200 NOT_FOUND
        admin    pauseRun         200 NOT_FOUND
        admin    resumeRun        200 NOT_FOUND
        admin    skipStep         200 NOT_FOUND
        admin    query runs       200 ok
    "#]]
    .assert_eq(&table);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_401() {
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), false).await;
    let now = chrono::Utc::now().timestamp();
    let sign = |claims: serde_json::Value, secret: &str| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("a token")
    };
    let good =
        json!({"sub": "t", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "roles": ["admin"]});
    let with = |field: &str, value: serde_json::Value| {
        let mut claims = good.clone();
        claims[field] = value;
        claims
    };
    // alg "none": header and claims, no signature.
    let b64 = |v: serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(good.clone())
    );
    let revoked = api.api_key(&["admin"]).await;
    let revoked_id = api
        .store
        .list_api_keys()
        .await
        .expect("keys")
        .last()
        .expect("a key")
        .key_id;
    api.store
        .revoke_api_key(revoked_id, chrono::Utc::now())
        .await
        .expect("revoked");
    let cases = [
        ("valid", sign(good.clone(), SECRET)),
        ("expired", sign(with("exp", json!(now - 3600)), SECRET)),
        (
            "not yet valid",
            sign(with("nbf", json!(now + 3600)), SECRET),
        ),
        (
            "forged",
            sign(good.clone(), "another-secret-that-is-32-bytes-long!!"),
        ),
        ("wrong issuer", sign(with("iss", json!("evil")), SECRET)),
        ("wrong audience", sign(with("aud", json!("other")), SECRET)),
        ("alg none", none),
        ("garbage", "not.a.token".to_owned()),
        (
            "unknown api key",
            "imx_0000000000000000000000000000000000000000000000000000000000000000".to_owned(),
        ),
        ("revoked api key", revoked),
    ];
    let mut table = String::new();
    for (name, token) in cases {
        let (status, body) = api
            .post(
                Some(&token),
                "{ runs(first: 1) { edges { cursor } } }",
                json!({}),
            )
            .await;
        let outcome = if body.get("errors").is_some() {
            code(&body)
        } else {
            "ok".to_owned()
        };
        table.push_str(&format!("{name:16} {status} {outcome}\n"));
    }
    expect![[r#"
        valid            200 ok
        expired          401 UNAUTHENTICATED
        not yet valid    401 UNAUTHENTICATED
        forged           401 UNAUTHENTICATED
        wrong issuer     401 UNAUTHENTICATED
        wrong audience   401 UNAUTHENTICATED
        alg none         401 UNAUTHENTICATED
        garbage          401 UNAUTHENTICATED
        unknown api key  401 UNAUTHENTICATED
        revoked api key  401 UNAUTHENTICATED
    "#]]
    .assert_eq(&table);
    // A subscription with a bad token is refused at connection_init.
    assert!(Ws::connect(&api, "imx_wrong").await.is_err());
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_need_the_steps_role() {
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config(), true).await;
    let operator = api.api_key(&["operator"]).await;
    let (name, source) = named(APPROVAL_WORKFLOW, "roles");
    register(&api, &operator, &source).await;
    let run_id = start(&api, &operator, &name).await;
    wait_status(&api, &operator, &run_id, "WAITING").await;
    let approve = "mutation($id: ID!) { approveStep(runId: $id, step: \"approve\") { id status } }";
    let viewer = jwt(&["viewer"], 600);
    let (status, body) = api
        .post(Some(&viewer), approve, json!({"id": run_id}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (403, "FORBIDDEN".to_owned()),
        "{body}"
    );
    let wrong_team = jwt(&["approver", "legal"], 600);
    let (status, body) = api
        .post(Some(&wrong_team), approve, json!({"id": run_id}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (403, "FORBIDDEN".to_owned()),
        "{body}"
    );
    let finance = jwt(&["approver", "finance"], 600);
    let (status, body) = api
        .post(
            Some(&finance),
            "mutation($id: ID!) { rejectStep(runId: $id, step: \"prepare\") { id } }",
            json!({"id": run_id}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (200, "CONFLICT".to_owned()),
        "not waiting: {body}"
    );
    let data = api.data(&finance, approve, json!({"id": run_id})).await;
    assert_eq!(data["approveStep"]["id"], run_id.as_str());
    wait_status(&api, &operator, &run_id, "SUCCEEDED").await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_and_key_confusion() {
    let pair = rcgen::KeyPair::generate().expect("a P-256 key pair");
    let public_pem = pair.public_key_pem();
    let mut config = config();
    config.jwt = Some(imx_gateway::api::config::JwtConfig {
        algorithm: Algorithm::ES256,
        keys: imx_gateway::api::config::JwtKeys::One(
            jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()).expect("a public key"),
        ),
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        role_claim: "roles".to_owned(),
    });
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config, false).await;
    let now = chrono::Utc::now().timestamp();
    let claims =
        json!({"sub": "t", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "roles": "viewer"});
    let signed = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("a private key"),
    )
    .expect("an ES256 token");
    // Key confusion: HS256 "signed" with the public key as the HMAC secret.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .expect("an HS256 token");
    let query = "{ runs(first: 1) { edges { cursor } } }";
    assert_eq!(api.post(Some(&signed), query, json!({})).await.0, 200);
    let (status, body) = api.post(Some(&confused), query, json!({})).await;
    assert_eq!(
        (status, code(&body)),
        (401, "UNAUTHENTICATED".to_owned()),
        "{body}"
    );
    api.stop().await;
}
