//! The node egress policy: every spelling of a denied address, explicit
//! rules, and the `http` executor refusing before it connects (to the URL,
//! to a redirect target, to what a name resolves to). Every address written
//! here is refused before any connection, or is loopback.

use std::net::{IpAddr, TcpListener};

use engine::core::workflow::StepKind;
use engine::executor::egress::{DEFAULT_DENIED_NETS, EgressPolicy};
use engine::executor::http::{HttpConfig, HttpExecutor};
use engine::executor::{Executor, Outcome};
use expect_test::expect;
use reqwest::Url;
use serde_json::json;

use super::http::server::Server;
use super::{attempt, render};

/// The policy's answer for the host of `url` (parsed as the executor parses it).
fn verdict(policy: &EgressPolicy, url: &str) -> String {
    let parsed = Url::parse(url).expect("a valid URL");
    let host = parsed.host_str().unwrap_or_default();
    match policy.check_url_host(host) {
        Ok(()) => format!("{url} -> allowed"),
        Err(refusal) => format!("{url} -> {refusal}"),
    }
}

#[test]
fn default_policy_refuses_every_spelling_of_loopback_link_local_and_metadata() {
    let policy = EgressPolicy::default();
    let urls = [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254./",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[::169.254.169.254]/",
        "http://[64:ff9b::169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.Google.Internal./",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://017700000001/",
        "http://127.1/",
        "http://[::1]/",
        "http://[::ffff:7f00:1]/",
        "http://0.0.0.0/",
        "http://0/",
        "http://[::]/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
    ];
    let lines: Vec<String> = urls.iter().map(|url| verdict(&policy, url)).collect();
    expect![[r#"
        http://169.254.169.254/latest/meta-data/ -> IMX0601: the node egress policy refuses 169.254.169.254: 169.254.0.0/16 (link-local, incl. cloud metadata 169.254.169.254) is denied by default; allow it with `--egress-allow 169.254.169.254/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://169.254.169.254./ -> IMX0601: the node egress policy refuses 169.254.169.254: 169.254.0.0/16 (link-local, incl. cloud metadata 169.254.169.254) is denied by default; allow it with `--egress-allow 169.254.169.254/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://[::ffff:169.254.169.254]/ -> IMX0601: the node egress policy refuses 169.254.169.254: 169.254.0.0/16 (link-local, incl. cloud metadata 169.254.169.254) is denied by default; allow it with `--egress-allow 169.254.169.254/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://[::ffff:a9fe:a9fe]/ -> IMX0601: the node egress policy refuses 169.254.169.254: 169.254.0.0/16 (link-local, incl. cloud metadata 169.254.169.254) is denied by default; allow it with `--egress-allow 169.254.169.254/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://[::169.254.169.254]/ -> IMX0601: the node egress policy refuses 169.254.169.254: 169.254.0.0/16 (link-local, incl. cloud metadata 169.254.169.254) is denied by default; allow it with `--egress-allow 169.254.169.254/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://[64:ff9b::169.254.169.254]/ -> IMX0601: the node egress policy refuses 169.254.169.254: 169.254.0.0/16 (link-local, incl. cloud metadata 169.254.169.254) is denied by default; allow it with `--egress-allow 169.254.169.254/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://[fd00:ec2::254]/ -> IMX0601: the node egress policy refuses fd00:ec2::254: fd00:ec2::254/128 (cloud metadata (AWS IPv6)) is denied by default; allow it with `--egress-allow fd00:ec2::254/128` (IMX_EGRESS_ALLOW) if this node must reach it
        http://[fe80::1]/ -> IMX0601: the node egress policy refuses fe80::1: fe80::/10 (link-local) is denied by default; allow it with `--egress-allow fe80::1/128` (IMX_EGRESS_ALLOW) if this node must reach it
        http://metadata.google.internal/computeMetadata/v1/ -> IMX0601: the node egress policy refuses host `metadata.google.internal`: it is denied by default (cloud metadata service); allow it with `--egress-allow metadata.google.internal` (IMX_EGRESS_ALLOW) if this node must reach it
        http://METADATA.Google.Internal./ -> IMX0601: the node egress policy refuses host `metadata.google.internal`: it is denied by default (cloud metadata service); allow it with `--egress-allow metadata.google.internal` (IMX_EGRESS_ALLOW) if this node must reach it
        http://2130706433/ -> IMX0601: the node egress policy refuses 127.0.0.1: 127.0.0.0/8 (loopback: this node itself (its API and admin ports)) is denied by default; allow it with `--egress-allow 127.0.0.1/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://0x7f.1/ -> IMX0601: the node egress policy refuses 127.0.0.1: 127.0.0.0/8 (loopback: this node itself (its API and admin ports)) is denied by default; allow it with `--egress-allow 127.0.0.1/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://017700000001/ -> IMX0601: the node egress policy refuses 127.0.0.1: 127.0.0.0/8 (loopback: this node itself (its API and admin ports)) is denied by default; allow it with `--egress-allow 127.0.0.1/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://127.1/ -> IMX0601: the node egress policy refuses 127.0.0.1: 127.0.0.0/8 (loopback: this node itself (its API and admin ports)) is denied by default; allow it with `--egress-allow 127.0.0.1/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://[::1]/ -> IMX0601: the node egress policy refuses ::1: ::1/128 (loopback: this node itself (its API and admin ports)) is denied by default; allow it with `--egress-allow ::1/128` (IMX_EGRESS_ALLOW) if this node must reach it
        http://[::ffff:7f00:1]/ -> IMX0601: the node egress policy refuses 127.0.0.1: 127.0.0.0/8 (loopback: this node itself (its API and admin ports)) is denied by default; allow it with `--egress-allow 127.0.0.1/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://0.0.0.0/ -> IMX0601: the node egress policy refuses 0.0.0.0: 0.0.0.0/8 (unspecified ("this network")) is denied by default; allow it with `--egress-allow 0.0.0.0/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://0/ -> IMX0601: the node egress policy refuses 0.0.0.0: 0.0.0.0/8 (unspecified ("this network")) is denied by default; allow it with `--egress-allow 0.0.0.0/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://[::]/ -> IMX0601: the node egress policy refuses ::: ::/128 (unspecified) is denied by default; allow it with `--egress-allow ::/128` (IMX_EGRESS_ALLOW) if this node must reach it
        http://224.0.0.1/ -> IMX0601: the node egress policy refuses 224.0.0.1: 224.0.0.0/4 (multicast) is denied by default; allow it with `--egress-allow 224.0.0.1/32` (IMX_EGRESS_ALLOW) if this node must reach it
        http://255.255.255.255/ -> IMX0601: the node egress policy refuses 255.255.255.255: 240.0.0.0/4 (reserved, incl. broadcast 255.255.255.255) is denied by default; allow it with `--egress-allow 255.255.255.255/32` (IMX_EGRESS_ALLOW) if this node must reach it"#]]
    .assert_eq(&lines.join("\n"));
}

#[test]
fn private_ranges_are_not_denied_by_default() {
    let private: Vec<ipnet::IpNet> = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
        .iter()
        .map(|net| net.parse().expect("a network"))
        .collect();
    for (denied, what) in DEFAULT_DENIED_NETS {
        let denied: ipnet::IpNet = denied.parse().expect("default nets parse");
        for net in &private {
            assert!(
                !denied.contains(net),
                "{denied} ({what}) denies all of {net}"
            );
            // Single metadata addresses inside a private range (fd00:ec2::254) only.
            let single = denied.prefix_len() == denied.max_prefix_len();
            assert!(
                !net.contains(&denied) || single,
                "{denied} ({what}) is in {net}"
            );
        }
    }
}

#[test]
fn explicit_rules_widen_and_narrow_the_default_and_deny_wins() {
    let loopback_one: IpAddr = "127.0.0.1".parse().expect("address");
    let loopback_two: IpAddr = "127.0.0.2".parse().expect("address");
    let policy = EgressPolicy::parse(&["127.0.0.1/32".to_owned()], &[]).expect("rules");
    assert!(policy.check_address(loopback_one, None).is_ok());
    assert!(policy.check_address(loopback_two, None).is_err());
    // A rule written over IPv4-mapped space covers the IPv4 addresses, and back.
    let mapped = EgressPolicy::parse(&["::ffff:127.0.0.0/104".to_owned()], &[]).expect("rules");
    assert!(mapped.check_address(loopback_two, None).is_ok());
    let mapped_address: IpAddr = "::ffff:127.0.0.2".parse().expect("address");
    assert!(policy.check_address(mapped_address, None).is_err());
    // Deny wins over allow.
    let both =
        EgressPolicy::parse(&["127.0.0.0/8".to_owned()], &["127.0.0.2".to_owned()]).expect("rules");
    assert!(both.check_address(loopback_one, None).is_ok());
    let refused = both
        .check_address(loopback_two, None)
        .expect_err("denied explicitly");
    expect!["IMX0601: the node egress policy refuses 127.0.0.2: `--egress-deny 127.0.0.2/32` (IMX_EGRESS_DENY) denies it"]
        .assert_eq(&refused.to_string());
    // A host rule lifts the default denials for what that name resolves to.
    let by_name = EgressPolicy::parse(&["LocalHost.".to_owned()], &[]).expect("rules");
    assert!(
        by_name
            .check_address(loopback_one, Some("localhost"))
            .is_ok()
    );
    assert!(by_name.check_address(loopback_one, Some("other")).is_err());
    assert!(by_name.check_address(loopback_one, None).is_err());
    // Host denials, exact and by domain, before any lookup.
    let hosts =
        EgressPolicy::parse(&[], &["*.internal".to_owned(), "db.local".to_owned()]).expect("rules");
    assert!(hosts.check_host("api.internal").is_err());
    assert!(hosts.check_host("a.b.internal").is_err());
    assert!(hosts.check_host("internal").is_ok());
    assert!(hosts.check_host("db.local").is_err());
    assert!(hosts.check_host("db.locals").is_ok());
    let refused = hosts
        .check_address(loopback_one, Some("x.internal"))
        .expect_err("denied by name");
    expect!["IMX0601: the node egress policy refuses 127.0.0.1 (resolved from `x.internal`): `--egress-deny *.internal` (IMX_EGRESS_DENY) denies it"]
        .assert_eq(&refused.to_string());
}

#[test]
fn malformed_rules_are_refused_with_the_flag_named() {
    let cases = ["127.0.0.0/33", "", "not a host", "a/b", "*.", "::1/129"];
    let errors: Vec<String> = cases
        .iter()
        .map(
            |rule| match EgressPolicy::parse(&[(*rule).to_owned()], &[]) {
                Ok(_) => format!("{rule}: accepted"),
                Err(err) => err,
            },
        )
        .collect();
    expect![[r#"
        --egress-allow: egress rule `127.0.0.0/33` is neither an address, a CIDR network (`10.0.0.0/8`, `fd00::/8`) nor a host name (`api.internal`, `*.internal`)
        --egress-allow: an egress rule is empty
        --egress-allow: egress rule `not a host` is neither an address, a CIDR network (`10.0.0.0/8`, `fd00::/8`) nor a host name (`api.internal`, `*.internal`)
        --egress-allow: egress rule `a/b` is neither an address, a CIDR network (`10.0.0.0/8`, `fd00::/8`) nor a host name (`api.internal`, `*.internal`)
        --egress-allow: egress rule `*.` is neither an address, a CIDR network (`10.0.0.0/8`, `fd00::/8`) nor a host name (`api.internal`, `*.internal`)
        --egress-allow: egress rule `::1/129` is neither an address, a CIDR network (`10.0.0.0/8`, `fd00::/8`) nor a host name (`api.internal`, `*.internal`)"#]]
    .assert_eq(&errors.join("\n"));
}

/// A loopback port that records whether anything connected to it.
struct Bystander(TcpListener);

impl Bystander {
    fn on(address: &str) -> Bystander {
        let listener = TcpListener::bind((address, 0)).expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking");
        Bystander(listener)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().expect("bound address").port()
    }

    /// Whether a connection is waiting (the kernel completes the handshake
    /// before `accept`, so a connect attempt leaves one).
    fn was_connected(&self) -> bool {
        self.0.accept().is_ok()
    }
}

fn executor(policy: EgressPolicy) -> HttpExecutor {
    HttpExecutor::new(HttpConfig {
        egress: policy,
        ..HttpConfig::default()
    })
    .expect("config")
}

async fn get(executor: &HttpExecutor, url: &str) -> Outcome {
    let input = json!({ "method": "GET", "url": url });
    executor.execute(&attempt(StepKind::Http, input)).await
}

#[tokio::test]
async fn a_denied_url_fails_for_good_before_connecting() {
    let target = Bystander::on("127.0.0.1");
    let port = target.port();
    let executor = executor(EgressPolicy::default());
    let mut lines = Vec::new();
    for host in ["127.0.0.1", "2130706433", "[::ffff:127.0.0.1]", "0x7f.1"] {
        let outcome = get(&executor, &format!("http://{host}:{port}/x")).await;
        lines.push(render(&outcome, &[(&port.to_string(), "PORT")]));
    }
    expect![[r#"
        failed(final) GET http://127.0.0.1:PORT/x: IMX0601: the node egress policy refuses 127.0.0.1: 127.0.0.0/8 (loopback: this node itself (its API and admin ports)) is denied by default; allow it with `--egress-allow 127.0.0.1/32` (IMX_EGRESS_ALLOW) if this node must reach it
        failed(final) GET http://127.0.0.1:PORT/x: IMX0601: the node egress policy refuses 127.0.0.1: 127.0.0.0/8 (loopback: this node itself (its API and admin ports)) is denied by default; allow it with `--egress-allow 127.0.0.1/32` (IMX_EGRESS_ALLOW) if this node must reach it
        failed(final) GET http://[::ffff:7f00:1]:PORT/x: IMX0601: the node egress policy refuses 127.0.0.1: 127.0.0.0/8 (loopback: this node itself (its API and admin ports)) is denied by default; allow it with `--egress-allow 127.0.0.1/32` (IMX_EGRESS_ALLOW) if this node must reach it
        failed(final) GET http://127.0.0.1:PORT/x: IMX0601: the node egress policy refuses 127.0.0.1: 127.0.0.0/8 (loopback: this node itself (its API and admin ports)) is denied by default; allow it with `--egress-allow 127.0.0.1/32` (IMX_EGRESS_ALLOW) if this node must reach it"#]]
    .assert_eq(&lines.join("\n"));
    assert!(!target.was_connected(), "a refused request connected");
}

#[tokio::test]
async fn a_redirect_to_a_denied_address_is_refused_before_connecting_there() {
    let server = Server::start().await;
    let target = Bystander::on("127.0.0.2");
    let port = target.port();
    // The server (127.0.0.1) is allowed; the rest of 127.0.0.0/8 is not.
    let executor = executor(EgressPolicy::parse(&["127.0.0.1".to_owned()], &[]).expect("rules"));
    let to_loopback = server.url(&format!("/redirect?to=http://127.0.0.2:{port}/x"));
    let replace = [
        (server.base.as_str(), "http://SERVER"),
        (&*port.to_string(), "PORT"),
    ];
    // Only loopback targets here: were the check broken, a redirect to a
    // non-loopback address would leave this machine. The default denials on
    // redirects run through the same `check_url_host` the policy tests cover,
    // and the metadata address is fetched only inside `unshare -n` (isolation.rs).
    let lines = [render(&get(&executor, &to_loopback).await, &replace)];
    expect![[r#"
        failed(final) GET http://SERVER/redirect: IMX0601: the node egress policy refuses 127.0.0.2: 127.0.0.0/8 (loopback: this node itself (its API and admin ports)) is denied by default; allow it with `--egress-allow 127.0.0.2/32` (IMX_EGRESS_ALLOW) if this node must reach it"#]]
    .assert_eq(&lines.join("\n"));
    assert_eq!(server.requests().len(), 1, "the first hop was sent");
    assert!(
        !target.was_connected(),
        "the redirect target was connected to"
    );
}

#[tokio::test]
async fn a_name_resolving_to_a_denied_address_is_refused_and_a_host_rule_allows_it() {
    let server = Server::start().await;
    let port = server.base.rsplit(':').next().expect("a port").to_owned();
    let url = format!("http://localhost:{port}/json");
    let refused = get(&executor(EgressPolicy::default()), &url).await;
    let line = render(&refused, &[(&port, "PORT")]);
    assert!(
        line.starts_with(
            "failed(final) GET http://localhost:PORT/json: IMX0601: the node egress policy refuses "
        ) && line.contains("(resolved from `localhost`)"),
        "{line}"
    );
    assert!(server.requests().is_empty(), "nothing reached the server");
    let allowed = EgressPolicy::parse(&["localhost".to_owned()], &[]).expect("rules");
    let fetched = get(&executor(allowed), &url).await;
    assert!(
        render(&fetched, &[]).starts_with(r#"ok {"body":{"ok":true}"#),
        "{fetched:?}"
    );
    // A denied name is refused before it is looked up.
    let denied =
        EgressPolicy::parse(&["localhost".to_owned()], &["localhost".to_owned()]).expect("rules");
    let line = render(&get(&executor(denied), &url).await, &[(&port, "PORT")]);
    expect!["failed(final) GET http://localhost:PORT/json: IMX0601: the node egress policy refuses host `localhost`: `--egress-deny localhost` (IMX_EGRESS_DENY) denies it"]
        .assert_eq(&line);
    assert_eq!(
        server.requests().len(),
        1,
        "only the allowed request arrived"
    );
}
