//! Bearer JWTs checked against a JWKS file: the token's `kid` picks the
//! key, the algorithm stays pinned, and keys of other kinds in the set
//! (an HMAC secret) never verify anything.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use imx_gateway::api::ApiArgs;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::api::*;

#[derive(Debug, Parser)]
struct Flags {
    #[command(flatten)]
    api: ApiArgs,
}

/// The public half of a P-256 pair as a JWK.
fn ec_jwk(pair: &rcgen::KeyPair, kid: Option<&str>) -> Value {
    // Uncompressed point: 0x04, then x and y, 32 bytes each.
    let point = pair.public_key_raw();
    let mut jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    if let Some(kid) = kid {
        jwk["kid"] = json!(kid);
    }
    jwk
}

fn flags_with(jwks: &Value, algorithm: &str) -> Result<imx_gateway::api::ApiConfig, String> {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("jwks-{}.json", uuid::Uuid::now_v7().simple()));
    std::fs::write(&path, jwks.to_string()).expect("the JWKS file is written");
    let flags = Flags::try_parse_from([
        "imx",
        "--listen=127.0.0.1:0",
        &format!("--jwt-algorithm={algorithm}"),
        &format!("--jwt-jwks={}", path.display()),
        &format!("--jwt-issuer={ISSUER}"),
        &format!("--jwt-audience={AUDIENCE}"),
    ])
    .map_err(|error| error.to_string())?;
    let shown = path.display().to_string();
    (flags.api.into_config()).map_err(|error| error.to_string().replace(&shown, "FILE"))
}

fn token(algorithm: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims =
        json!({"sub": "t", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "roles": "viewer"});
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key).expect("a token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_file_verifies_tokens_by_kid() {
    let (a, b) = (
        rcgen::KeyPair::generate().expect("a P-256 pair"),
        rcgen::KeyPair::generate().expect("a P-256 pair"),
    );
    let hmac_secret = b"a-secret-in-the-set-that-must-never-verify";
    let jwks = json!({"keys": [
        ec_jwk(&a, Some("a")),
        ec_jwk(&b, Some("b")),
        {"kty": "oct", "kid": "hmac", "k": URL_SAFE_NO_PAD.encode(hmac_secret)},
    ]});
    let config = flags_with(&jwks, "ES256").expect("the JWKS configures");
    let url = database_urls().remove(0);
    let api = TestApi::start(&url, config, false).await;
    let key_a = EncodingKey::from_ec_pem(a.serialize_pem().as_bytes()).expect("a key");
    let key_b = EncodingKey::from_ec_pem(b.serialize_pem().as_bytes()).expect("a key");
    let cases = [
        ("key a, kid a", token(Algorithm::ES256, Some("a"), &key_a)),
        ("key b, kid b", token(Algorithm::ES256, Some("b"), &key_b)),
        ("key a, kid b", token(Algorithm::ES256, Some("b"), &key_a)),
        ("unknown kid", token(Algorithm::ES256, Some("zzz"), &key_a)),
        ("no kid", token(Algorithm::ES256, None, &key_a)),
        (
            "HS256 by the set's secret",
            token(
                Algorithm::HS256,
                Some("hmac"),
                &EncodingKey::from_secret(hmac_secret),
            ),
        ),
    ];
    let mut table = String::new();
    for (name, token) in cases {
        let (status, body) = api.post(Some(&token), "{ __typename }", json!({})).await;
        let outcome = if status == 200 {
            "ok".to_owned()
        } else {
            code(&body)
        };
        table.push_str(&format!("{name:26} {status} {outcome}\n"));
    }
    expect_test::expect![[r#"
        key a, kid a               200 ok
        key b, kid b               200 ok
        key a, kid b               401 UNAUTHENTICATED
        unknown kid                401 UNAUTHENTICATED
        no kid                     401 UNAUTHENTICATED
        HS256 by the set's secret  401 UNAUTHENTICATED
    "#]]
    .assert_eq(&table);
    api.stop().await;
}

#[test]
fn unusable_jwks_files_are_refused_at_start() {
    let (a, b) = (
        rcgen::KeyPair::generate().expect("a P-256 pair"),
        rcgen::KeyPair::generate().expect("a P-256 pair"),
    );
    let two_without_kid = json!({"keys": [ec_jwk(&a, None), ec_jwk(&b, None)]});
    let one_without_kid = json!({"keys": [ec_jwk(&a, None)]});
    let text = [
        flags_with(&two_without_kid, "ES256").map(|_| ()),
        flags_with(&one_without_kid, "ES256").map(|_| ()),
        flags_with(&one_without_kid, "RS256").map(|_| ()),
        flags_with(&one_without_kid, "HS256").map(|_| ()),
        flags_with(&json!({"nope": []}), "ES256").map(|_| ()),
    ]
    .iter()
    .map(|result| match result {
        Ok(()) => "ok".to_owned(),
        Err(error) => error.clone(),
    })
    .collect::<Vec<_>>()
    .join("\n");
    expect_test::expect![[r#"
        the JWKS file FILE holds several ES256 keys, so each needs a distinct `kid`
        ok
        the JWKS file FILE holds no RS256 signing key (RS256: kty RSA; ES256: kty EC, crv P-256)
        a JWKS file is for RS256/ES256; HS256 takes --jwt-secret
        the JWKS file FILE is not a JSON Web Key Set ({"keys": [...]}): missing field `keys` at line 1 column 11"#]].assert_eq(&text);
}
