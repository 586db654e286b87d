//! Addresses and client ranges of Services and EndpointSlices, of both
//! families. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is refused: the
//! maps hold IPv4 in exactly that form, so it would silently become the IPv4
//! address it maps.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::ServiceSpec;

use crate::model::SourceRange;
use crate::problem::{Location, Problem, ProblemKind};

/// An address family, as EndpointSlices' `addressType` and Services'
/// `ipFamilies` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// `None` for anything but "IPv4" and "IPv6" (an FQDN slice, say).
    pub fn named(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|family| family.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// One value for each address family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerFamily<T> {
    pub v4: T,
    pub v6: T,
}

impl<T> PerFamily<T> {
    pub fn new(mut make: impl FnMut(Family) -> T) -> PerFamily<T> {
        PerFamily { v4: make(Family::V4), v6: make(Family::V6) }
    }

    pub fn get(&self, family: Family) -> &T {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    fn get_mut(&mut self, family: Family) -> &mut T {
        match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }
}

/// An address of either family; `None` for garbage and for an IPv4-mapped
/// IPv6 address, each reported as a problem naming `field`.
pub fn ip(text: &str, location: &Location, field: String, problems: &mut Vec<Problem>) -> Option<IpAddr> {
    let message = match text.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() => {
            format!("IPv4-mapped IPv6 address {text:?}, address skipped (write it as IPv4)")
        }
        Ok(addr) => return Some(addr),
        Err(_) => format!("invalid IP address {text:?}, address skipped"),
    };
    problems.push(Problem::error(ProblemKind::InvalidAddress, location.clone(), message).at(field));
    None
}

/// The valid addresses of a list field; each invalid one is reported.
pub fn ip_list(texts: &[String], location: &Location, field: &str, problems: &mut Vec<Problem>) -> Vec<IpAddr> {
    let parsed = texts
        .iter()
        .enumerate()
        .map(|(i, text)| ip(text, location, format!("{field}[{i}]"), problems));
    parsed.flatten().collect()
}

/// `spec.loadBalancerSourceRanges` by family: a family without a range is
/// `None` (everyone is served, as kube-proxy filters per family). A
/// malformed entry is reported and left out, and restricts both families
/// (its family cannot be trusted): a restriction the user asked for is never
/// silently lifted.
pub fn source_ranges(
    spec: &ServiceSpec,
    location: &Location,
    problems: &mut Vec<Problem>,
) -> PerFamily<Option<Vec<SourceRange>>> {
    let texts = spec.load_balancer_source_ranges.as_deref().unwrap_or_default();
    let mut ranges: PerFamily<Vec<SourceRange>> = PerFamily::default();
    let mut malformed = false;
    for (index, text) in texts.iter().enumerate() {
        match parse_range(text.trim()) {
            Ok(range) => ranges.get_mut(Family::of(&range.addr)).push(range),
            Err(what) => {
                malformed = true;
                let message = format!("{what} {text:?}, range skipped (the others still apply)");
                let problem = Problem::error(ProblemKind::InvalidAddress, location.clone(), message);
                problems.push(problem.at(format!("spec.loadBalancerSourceRanges[{index}]")));
            }
        }
    }
    PerFamily::new(|family| {
        let mut ranges = ranges.get(family).clone();
        ranges.sort();
        ranges.dedup();
        (malformed || !ranges.is_empty()).then_some(ranges)
    })
}

/// A CIDR of either family, a bare address being a /32 or /128; the error
/// says what is wrong with it.
pub(crate) fn parse_range(text: &str) -> Result<SourceRange, &'static str> {
    let (addr, prefix_len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len.parse::<u8>().map_err(|_| "invalid CIDR")?)),
        None => (text, None),
    };
    let addr = addr.parse::<IpAddr>().map_err(|_| "invalid CIDR")?;
    if let IpAddr::V6(v6) = addr
        && v6.to_ipv4_mapped().is_some()
    {
        return Err("IPv4-mapped IPv6 CIDR (write it as IPv4)");
    }
    let full = if addr.is_ipv4() { 32 } else { 128 };
    SourceRange::new(addr, prefix_len.unwrap_or(full)).ok_or("invalid CIDR")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_both_families_parse_and_ipv4_mapped_ones_are_refused() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("10.96.0.1", Some("10.96.0.1"), ""),
            ("fd00::1", Some("fd00::1"), ""),
            ("2001:DB8::A", Some("2001:db8::a"), ""),
            ("::ffff:10.96.0.1", None, "IPv4-mapped"),
            ("::ffff:a60:1", None, "IPv4-mapped"),
            ("10.96.0.999", None, "invalid IP address"),
            ("fd00::1/64", None, "invalid IP address"),
        ];
        for (text, expected, message) in cases {
            let mut problems = Vec::new();
            let parsed = ip(text, &Location::default(), "f".into(), &mut problems);
            assert_eq!(parsed.map(|addr| addr.to_string()).as_deref(), *expected, "{text}");
            match problems.as_slice() {
                [] => assert!(message.is_empty(), "{text}"),
                [problem] => assert!(problem.message.contains(message), "{text}: {problem}"),
                more => panic!("{text}: {more:?}"),
            }
        }
    }

    #[test]
    fn ranges_parse_per_family() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("10.1.2.3/8", Ok("10.0.0.0/8")),
            ("10.1.2.3", Ok("10.1.2.3/32")),
            ("2001:db8:1::5/48", Ok("2001:db8:1::/48")),
            ("2001:db8::5", Ok("2001:db8::5/128")),
            ("10.0.0.0/33", Err("invalid CIDR")),
            ("2001:db8::/129", Err("invalid CIDR")),
            ("::ffff:10.0.0.0/104", Err("IPv4-mapped IPv6 CIDR (write it as IPv4)")),
            ("10.0.0.0/x", Err("invalid CIDR")),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_range(text).map(|range| range.to_string()).as_deref(), expected.as_deref(), "{text}");
        }
    }
}
