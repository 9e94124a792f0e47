//! The committed SDL (`schemas/schema.graphql`) is the schema the code
//! serves; regenerate with `UPDATE_SCHEMAS=1 cargo test -p imx-gateway --test it`.

use crate::repo_root;

#[test]
fn committed_sdl_matches_the_code() {
    let path = repo_root().join("schemas/schema.graphql");
    let actual = imx_gateway::api::schema::sdl();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &actual).expect("schemas/schema.graphql is writable");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == actual,
        "schemas/schema.graphql differs from the code's schema; run UPDATE_SCHEMAS=1 cargo test -p imx-gateway --test it api_schema"
    );
}
