//! The node egress policy: which addresses and host names `http` steps may
//! reach (docs/executors.md, "Egress policy"). Pure: the executor checks the
//! URL's host before sending, every redirect target, and every address a
//! name resolves to (so a connection only ever goes to a checked address).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv6Net};

/// The flag (of `imx serve`, `imx run`, `imx bench run`) that adds an allow rule.
pub const EGRESS_ALLOW_FLAG: &str = "--egress-allow";
/// The flag that adds a deny rule.
pub const EGRESS_DENY_FLAG: &str = "--egress-deny";
/// Comma-separated allow rules (the same as repeated `--egress-allow`).
pub const EGRESS_ALLOW_ENV: &str = "IMX_EGRESS_ALLOW";
/// Comma-separated deny rules (the same as repeated `--egress-deny`).
pub const EGRESS_DENY_ENV: &str = "IMX_EGRESS_DENY";
/// Most explicit rules (allow and deny together): each address is matched
/// against every rule, so the list stays small.
pub const EGRESS_RULES_MAX: usize = 1_024;
/// Longest host rule, in bytes (a DNS name is at most 253).
pub const EGRESS_HOST_BYTES_MAX: usize = 253;
/// The stable code of a refusal.
pub const EGRESS_REFUSED_CODE: &str = "IMX0601";

/// Networks refused unless an explicit allow rule covers the address.
/// Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) are not here:
/// internal services are what workflows call.
pub const DEFAULT_DENIED_NETS: [(&str, &str); 12] = [
    ("0.0.0.0/8", "unspecified (\"this network\")"),
    (
        "127.0.0.0/8",
        "loopback: this node itself (its API and admin ports)",
    ),
    (
        "169.254.0.0/16",
        "link-local, incl. cloud metadata 169.254.169.254",
    ),
    ("100.100.100.200/32", "cloud metadata (Alibaba)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, incl. broadcast 255.255.255.255"),
    ("::/128", "unspecified"),
    (
        "::1/128",
        "loopback: this node itself (its API and admin ports)",
    ),
    ("fe80::/10", "link-local"),
    ("fd00:ec2::254/128", "cloud metadata (AWS IPv6)"),
    ("ff00::/8", "multicast"),
    ("100::/64", "discard-only"),
];

/// Host names refused unless an explicit allow rule names them (their
/// addresses are link-local and refused too; this refuses before any lookup).
pub const DEFAULT_DENIED_HOSTS: [&str; 2] = ["metadata.google.internal", "metadata"];

/// The well-known NAT64 prefix (RFC 6052): `64:ff9b::a.b.c.d` reaches `a.b.c.d`.
const NAT64_PREFIX: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// One `--egress-allow` / `--egress-deny` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// An address (`127.0.0.1`, a /32 or /128) or a network (`10.0.0.0/8`).
    Net(IpNet),
    /// A host name as written in URLs (`localhost`), or `*.example.com` for
    /// every name below `example.com` (not `example.com` itself).
    Host(String),
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(text: &str) -> Result<Rule, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an egress rule is empty".to_owned());
        }
        if let Ok(address) = text.parse::<IpAddr>() {
            return Ok(Rule::Net(IpNet::from(canonical(address))));
        }
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Rule::Net(canonical_net(net.trunc())));
        }
        let host = normalise_host(text);
        if let Ok(address) = host.parse::<IpAddr>() {
            // `127.0.0.1.`: URLs spell it without the dot, so it is an address.
            return Ok(Rule::Net(IpNet::from(canonical(address))));
        }
        let name = host.strip_prefix("*.").unwrap_or(&host);
        let valid = !name.is_empty()
            && host.len() <= EGRESS_HOST_BYTES_MAX
            && name
                .split('.')
                .all(|label| !label.is_empty() && label.bytes().all(is_host_byte));
        if !valid || text.contains('/') {
            return Err(format!(
                "egress rule `{text}` is neither an address, a CIDR network \
                 (`10.0.0.0/8`, `fd00::/8`) nor a host name (`api.internal`, `*.internal`)"
            ));
        }
        Ok(Rule::Host(host))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Net(net) => write!(f, "{net}"),
            Rule::Host(host) => f.write_str(host),
        }
    }
}

impl Rule {
    fn matches_address(&self, address: IpAddr) -> bool {
        matches!(self, Rule::Net(net) if net.contains(&address))
    }

    fn matches_host(&self, host: &str) -> bool {
        match self {
            Rule::Host(rule) => match rule.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|prefix| prefix.ends_with('.')),
                None => rule == host,
            },
            Rule::Net(_) => false,
        }
    }
}

/// What this node's `http` steps may reach: the default denials, widened by
/// `allow` and narrowed by `deny` (an explicit deny wins over an explicit allow).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

/// Why a destination was refused; shown as the attempt's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The address or host name refused.
    pub target: String,
    /// The host name the address came from, for a resolved name.
    pub resolved_from: Option<String>,
    /// The rule that refused it and how to widen the policy.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{EGRESS_REFUSED_CODE}: the node egress policy refuses {}",
            self.target
        )?;
        if let Some(host) = &self.resolved_from {
            write!(f, " (resolved from `{host}`)")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for Refusal {}

impl EgressPolicy {
    /// The default denials plus these explicit rules.
    pub fn new(allow: Vec<Rule>, deny: Vec<Rule>) -> Result<EgressPolicy, String> {
        if allow.len() + deny.len() > EGRESS_RULES_MAX {
            return Err(format!(
                "{} egress rules, more than the limit of {EGRESS_RULES_MAX}",
                allow.len() + deny.len()
            ));
        }
        Ok(EgressPolicy { allow, deny })
    }

    /// Parses `--egress-allow` and `--egress-deny` entries.
    pub fn parse(allow: &[String], deny: &[String]) -> Result<EgressPolicy, String> {
        let rules = |texts: &[String], flag: &str| -> Result<Vec<Rule>, String> {
            texts
                .iter()
                .map(|text| text.parse().map_err(|err| format!("{flag}: {err}")))
                .collect()
        };
        EgressPolicy::new(
            rules(allow, EGRESS_ALLOW_FLAG)?,
            rules(deny, EGRESS_DENY_FLAG)?,
        )
    }

    /// The default policy with loopback (127.0.0.0/8 and ::1) allowed: for
    /// local development and tests against servers on this machine.
    pub fn allowing_loopback() -> EgressPolicy {
        let loopback = ["127.0.0.0/8", "::1/128"]
            .map(|net| Rule::Net(net.parse().expect("loopback networks parse")));
        EgressPolicy {
            allow: loopback.to_vec(),
            deny: Vec::new(),
        }
    }

    pub fn allow_rules(&self) -> &[Rule] {
        &self.allow
    }

    pub fn deny_rules(&self) -> &[Rule] {
        &self.deny
    }

    /// Checks a URL's host (`host_str`: a name, an IPv4 address or a bracketed
    /// IPv6 address) before anything is sent or resolved.
    pub fn check_url_host(&self, host: &str) -> Result<(), Refusal> {
        let bare = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(address) => self.check_address(address, None),
            Err(_) => self.check_host(bare),
        }
    }

    /// Checks a host name before it is resolved.
    pub fn check_host(&self, host: &str) -> Result<(), Refusal> {
        let host = normalise_host(host);
        let refuse = |reason: String| Refusal {
            target: format!("host `{host}`"),
            resolved_from: None,
            reason,
        };
        if let Some(rule) = self.deny.iter().find(|rule| rule.matches_host(&host)) {
            return Err(refuse(explicit_denial(rule)));
        }
        if self.allow.iter().any(|rule| rule.matches_host(&host)) {
            return Ok(());
        }
        if DEFAULT_DENIED_HOSTS.contains(&host.as_str()) {
            return Err(refuse(format!(
                "it is denied by default (cloud metadata service); allow it with \
                 `{EGRESS_ALLOW_FLAG} {host}` ({EGRESS_ALLOW_ENV}) if this node must reach it"
            )));
        }
        Ok(())
    }

    /// Checks an address to connect to; `host` is the name it was resolved
    /// from (an allow rule naming the host lifts the default denials for it).
    pub fn check_address(&self, address: IpAddr, host: Option<&str>) -> Result<(), Refusal> {
        let address = canonical(address);
        let host = host.map(normalise_host);
        let refuse = |reason: String| Refusal {
            target: address.to_string(),
            resolved_from: host.clone(),
            reason,
        };
        let explicit_deny = self.deny.iter().find(|rule| {
            rule.matches_address(address) || host.as_deref().is_some_and(|h| rule.matches_host(h))
        });
        if let Some(rule) = explicit_deny {
            return Err(refuse(explicit_denial(rule)));
        }
        let allowed = self.allow.iter().any(|rule| {
            rule.matches_address(address) || host.as_deref().is_some_and(|h| rule.matches_host(h))
        });
        if allowed {
            return Ok(());
        }
        match default_denial(address) {
            Some((net, what)) => Err(refuse(format!(
                "{net} ({what}) is denied by default; allow it with `{EGRESS_ALLOW_FLAG} {}` \
                 ({EGRESS_ALLOW_ENV}) if this node must reach it",
                IpNet::from(address)
            ))),
            None => Ok(()),
        }
    }
}

/// The default-denied network holding `address` (already canonical), and what it is.
fn default_denial(address: IpAddr) -> Option<(IpNet, &'static str)> {
    DEFAULT_DENIED_NETS.iter().find_map(|(net, what)| {
        let net: IpNet = net.parse().ok()?;
        net.contains(&address).then_some((net, *what))
    })
}

fn explicit_denial(rule: &Rule) -> String {
    format!("`{EGRESS_DENY_FLAG} {rule}` ({EGRESS_DENY_ENV}) denies it")
}

/// IPv4 addresses written as IPv6 (mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) as the IPv4 address they reach, so
/// that one rule covers every spelling.
pub fn canonical(address: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = address else {
        return address;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let segments = v6.segments();
    let embedded = Ipv4Addr::from(v6.to_bits() as u32);
    // `::` and `::1` are IPv6's own unspecified and loopback addresses.
    let compatible = segments[..6].iter().all(|s| *s == 0) && v6.to_bits() > 1;
    if compatible || NAT64_PREFIX.contains(&v6) {
        return IpAddr::V4(embedded);
    }
    address
}

/// A network rule over IPv4-mapped space as the IPv4 network it covers.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match canonical(IpAddr::V6(v6.addr())) {
            IpAddr::V4(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            IpAddr::V6(_) => net,
        },
        other => other,
    }
}

/// Lower case, without a trailing dot (`Metadata.Google.Internal.` is `metadata.google.internal`).
fn normalise_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn is_host_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}
