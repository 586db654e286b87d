//! One entry of a host's rules in the route table, from an Ingress path, a
//! pod annotation or a Gateway API HTTPRoute match, and the order in which
//! a host's rules are tried.

use std::cmp::Ordering;
use std::sync::Arc;

use hyper::Request;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::canary::CanaryRoute;
use super::conditions::Conditions;
use super::path::PathMatch;
use super::route::Route;

#[derive(Debug)]
pub struct Rule {
    pub path: PathMatch,
    pub conditions: Conditions,
    /// Decides between rules equally specific.
    pub seniority: Seniority,
    /// A Gateway API wildcard host (`*.foo.com`) matches any number of
    /// labels in place of the `*`; an Ingress one exactly one.
    pub any_depth: bool,
    pub route: Arc<Route>,
    /// A canary Ingress's route for the same host+path.
    pub canary: Option<CanaryRoute<Route>>,
}

/// Which of two equally specific rules wins: the older object (objects
/// without a timestamp, from files, after the API server's), then
/// namespace/name, then the rule's and the match's position in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seniority {
    pub undated: bool,
    pub created: Option<Time>,
    /// `namespace/name`.
    pub object: String,
    pub position: (usize, usize),
}

impl Seniority {
    pub fn of(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, position: (usize, usize)) -> Seniority {
        let created = metadata.creation_timestamp.clone();
        let namespace = metadata.namespace.as_deref().unwrap_or("default");
        let object = format!("{namespace}/{}", metadata.name.as_deref().unwrap_or(""));
        Seniority { undated: created.is_none(), created, object, position }
    }
}

impl Rule {
    pub fn new(path: PathMatch, route: Arc<Route>, seniority: Seniority) -> Rule {
        Rule { path, conditions: Conditions::default(), seniority, any_depth: false, route, canary: None }
    }

    pub fn matches<B>(&self, path: &str, request: &Request<B>, scheme: &str) -> bool {
        self.path.matches(path) && self.conditions.matches(request, scheme)
    }

    /// The order rules are tried in, as the Gateway API's HTTPRouteRule
    /// documents it (Ingress rules being the special case without
    /// conditions): the path (exact, then the longest), then a method, more
    /// headers, more query parameters, then seniority.
    pub fn precedence(&self, other: &Rule) -> Ordering {
        self.path
            .precedence(&other.path)
            .then_with(|| other.conditions.specificity().cmp(&self.conditions.specificity()))
            .then_with(|| self.seniority.cmp(&other.seniority))
    }
}
