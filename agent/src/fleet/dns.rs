//! Fleet members behind a DNS name: every A/AAAA record of `HOST:PORT` is one member (a
//! StatefulSet's headless service), resolved again at each query.

use std::fmt;
use std::net::ToSocketAddrs;

use super::FleetError;

/// `HOST:PORT` whose every A/AAAA record is one fleet member (a StatefulSet's headless service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    pub host: String,
    pub port: u16,
}

impl DnsTarget {
    /// Parses `keplor-agent.ns.svc:8686` (an IPv6 literal goes in brackets: `[::1]:8686`).
    pub fn parse(s: &str) -> Result<DnsTarget, String> {
        let bad = || format!("{s:?} is not HOST:PORT, e.g. keplor-agent.ns.svc:8686");
        let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(bad)?;
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(DnsTarget {
            host: host.to_string(),
            port,
        })
    }

    /// Every address the name resolves to now, as `http://IP:PORT`, without duplicates.
    pub fn resolve(&self) -> Result<Vec<String>, FleetError> {
        let failed = |error: String| FleetError::Resolve {
            target: self.to_string(),
            error,
        };
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| failed(e.to_string()))?;
        let mut out: Vec<String> = Vec::new();
        for a in addrs {
            let url = format!("http://{a}");
            if !out.contains(&url) {
                out.push(url);
            }
        }
        if out.is_empty() {
            return Err(failed("no A or AAAA record".into()));
        }
        Ok(out)
    }
}

impl fmt::Display for DnsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where the members of a fleet come from, to name a shortfall: the DNS target when there is
/// exactly one, else `fleet`.
pub fn members_source(dns: &[DnsTarget]) -> String {
    match dns {
        [one] => one.to_string(),
        _ => "fleet".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_targets_parse_and_resolve() {
        let t = DnsTarget::parse("keplor-agent.ns.svc:8686").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("keplor-agent.ns.svc", 8686));
        let t = DnsTarget::parse("[::1]:9").unwrap();
        assert_eq!((t.host.as_str(), t.to_string()), ("::1", "[::1]:9".into()));
        for bad in ["host", "host:", ":80", "host:0", "host:http", "http://h:1"] {
            assert!(DnsTarget::parse(bad).is_err(), "{bad}");
        }
        let t = DnsTarget::parse("127.0.0.1:8686").unwrap();
        assert_eq!(t.resolve().unwrap(), ["http://127.0.0.1:8686"]);
        let e = DnsTarget::parse("no-such-host.invalid:1")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("no-such-host.invalid:1"), "{e}");
    }
}
