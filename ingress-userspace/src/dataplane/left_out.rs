//! A Service port left out of the dataplane because a map is full, as a
//! problem with its Service: a Warning Event on the Service (with the API
//! server) says why its frontends do not answer, and which flag makes room.

use ingress_common::maps::{BACKENDS_MAP, MAGLEV_MAP, REV_NAT_MAP, SERVICES_MAP};

use super::plan::LeftOut;
use crate::problem::{Location, Problem, ProblemKind};

pub fn problem(left_out: &LeftOut) -> Problem {
    let service = &left_out.service;
    let port = match service.port_name.as_str() {
        "" => "its port".to_owned(),
        name => format!("port {name}"),
    };
    Problem::error(
        ProblemKind::MapFull,
        Location::object(format!("Service {}/{}", service.namespace, service.name)),
        format!(
            "the map {} is full: {port} is left out of this node's dataplane whole (its packets pass untranslated); {}",
            left_out.map,
            room(left_out.map)
        ),
    )
}

/// What makes room in `map`.
fn room(map: &str) -> &'static str {
    match map {
        SERVICES_MAP => "raise --services-map-size",
        BACKENDS_MAP => "raise --backends-map-size",
        REV_NAT_MAP => "raise --rev-nat-map-size",
        MAGLEV_MAP => "raise --maglev-tables",
        _ => "raise its --*-map-size flag",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServicePortRef;

    #[test]
    fn a_left_out_port_is_an_error_on_its_service_naming_the_map_and_the_flag() {
        let cases = [
            ("web", "http", SERVICES_MAP, "Service prod/web: the map lb_services is full: port http is left out of \
              this node's dataplane whole (its packets pass untranslated); raise --services-map-size"),
            ("dns", "", BACKENDS_MAP, "Service prod/dns: the map lb_backends is full: its port is left out of this \
              node's dataplane whole (its packets pass untranslated); raise --backends-map-size"),
            ("a", "x", REV_NAT_MAP, "Service prod/a: the map lb_rev_nat is full: port x is left out of this \
              node's dataplane whole (its packets pass untranslated); raise --rev-nat-map-size"),
            ("b", "y", MAGLEV_MAP, "Service prod/b: the map lb_maglev_v4 is full: port y is left out of this \
              node's dataplane whole (its packets pass untranslated); raise --maglev-tables"),
        ];
        for (name, port_name, map, expected) in cases {
            let service = ServicePortRef { namespace: "prod".into(), name: name.into(), port_name: port_name.into() };
            let problem = problem(&LeftOut { service, map });
            assert_eq!(problem.to_string(), expected);
            assert_eq!((problem.severity, problem.kind), (crate::problem::Severity::Error, ProblemKind::MapFull));
            assert_eq!(problem.location.object.as_deref(), Some(format!("Service prod/{name}").as_str()));
        }
    }
}
