//! Problems found in the input (manifests, Services, EndpointSlices). None of
//! them stops the agent: the faulty object or part is dropped (or kept, for a
//! warning) and the rest is programmed, so one bad manifest cannot take the
//! node's Services down.

use std::collections::BTreeSet;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The object is used anyway.
    Warning,
    /// The object, or the part named by the field path, is dropped.
    Error,
}

/// What went wrong, as a stable label for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    UnreadableFile,
    YamlSyntax,
    /// A `.json` file that is not JSON (read as YAML, of which JSON is a
    /// subset, so the message is the YAML parser's, with line and column).
    JsonSyntax,
    InvalidDocument,
    InvalidField,
    UnknownField,
    InvalidPort,
    InvalidAddress,
    UnsupportedProtocol,
    UnknownService,
    DuplicateFrontend,
    /// A pod routing annotation entry, or an Ingress annotation's value,
    /// that cannot be used.
    InvalidAnnotation,
    /// An `nginx.ingress.kubernetes.io/*` annotation this controller does not know.
    UnknownAnnotation,
    /// An annotation this controller knows and deliberately does not apply.
    UnsupportedAnnotation,
    /// An L7 host+path already claimed by an older Ingress.
    DuplicateRoute,
    /// A Service port left out of the dataplane whole: a map is full.
    MapFull,
}

impl ProblemKind {
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::UnreadableFile => "unreadable_file",
            ProblemKind::YamlSyntax => "yaml_syntax",
            ProblemKind::JsonSyntax => "json_syntax",
            ProblemKind::InvalidDocument => "invalid_document",
            ProblemKind::InvalidField => "invalid_field",
            ProblemKind::UnknownField => "unknown_field",
            ProblemKind::InvalidPort => "invalid_port",
            ProblemKind::InvalidAddress => "invalid_address",
            ProblemKind::UnsupportedProtocol => "unsupported_protocol",
            ProblemKind::UnknownService => "unknown_service",
            ProblemKind::DuplicateFrontend => "duplicate_frontend",
            ProblemKind::InvalidAnnotation => "invalid_annotation",
            ProblemKind::UnknownAnnotation => "unknown_annotation",
            ProblemKind::UnsupportedAnnotation => "unsupported_annotation",
            ProblemKind::DuplicateRoute => "duplicate_route",
            ProblemKind::MapFull => "map_full",
        }
    }
}

/// Where a problem is: as much of file, document and object as is known
/// (objects from the API server have no file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub file: Option<String>,
    /// 1-based index of the YAML document in the file.
    pub document: Option<usize>,
    /// "Kind namespace/name".
    pub object: Option<String>,
}

impl Location {
    pub fn object(object: impl Into<String>) -> Self {
        Location {
            object: Some(object.into()),
            ..Location::default()
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            f.write_str(file)?;
        }
        if let Some(document) = self.document {
            write!(f, " doc {document}")?;
        }
        match (&self.object, self.file.is_some()) {
            (Some(object), true) => write!(f, " ({object})"),
            (Some(object), false) => f.write_str(object),
            (None, _) => Ok(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub kind: ProblemKind,
    pub location: Location,
    /// Path of the offending field inside the object, e.g. `spec.ports[0].port`.
    pub field: Option<String>,
    /// What happened and what was done about it.
    pub message: String,
}

impl Problem {
    pub fn error(kind: ProblemKind, location: Location, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            kind,
            location,
            field: None,
            message: message.into(),
        }
    }

    pub fn warning(kind: ProblemKind, location: Location, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            kind,
            location,
            field: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The problems of the last pass, so that one that lasts (an Ingress with
/// an unknown annotation, say) is reported when it appears, not every pass.
#[derive(Debug, Default)]
pub struct Reported {
    last: BTreeSet<String>,
}

impl Reported {
    /// The problems of this pass that the last pass did not have.
    pub fn new_ones<'a>(&mut self, problems: &'a [Problem]) -> Vec<&'a Problem> {
        let current: BTreeSet<String> = problems.iter().map(ToString::to_string).collect();
        let new = problems.iter().filter(|problem| !self.last.contains(&problem.to_string())).collect();
        self.last = current;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_problem_is_new_once_and_again_after_it_went_away() {
        let unknown = Problem::warning(ProblemKind::UnknownAnnotation, Location::object("Ingress a/b"), "x");
        let other = Problem::error(ProblemKind::InvalidAnnotation, Location::object("Ingress a/b"), "y");
        let mut reported = Reported::default();
        let passes = [vec![unknown.clone()], vec![unknown.clone(), other.clone()], vec![other.clone()], vec![unknown.clone()]];
        let new: Vec<Vec<String>> = passes
            .iter()
            .map(|pass| reported.new_ones(pass).into_iter().map(|problem| problem.message.clone()).collect())
            .collect();
        assert_eq!(new, [vec!["x"], vec!["y"], vec![], vec!["x"]]);
    }

    #[test]
    fn display() {
        let full = Location {
            file: Some("deploy/examples/web.yaml".into()),
            document: Some(2),
            object: Some("Service default/web".into()),
        };
        let cases = [
            (
                Problem::error(ProblemKind::InvalidPort, full, "invalid port 0, port skipped").at("spec.ports[0].port"),
                "deploy/examples/web.yaml doc 2 (Service default/web): spec.ports[0].port: \
                 invalid port 0, port skipped",
            ),
            (
                Problem::warning(
                    ProblemKind::UnknownService,
                    Location::object("EndpointSlice a/b"),
                    "no Service a/c",
                ),
                "EndpointSlice a/b: no Service a/c",
            ),
            (
                Problem::error(
                    ProblemKind::UnreadableFile,
                    Location {
                        file: Some("x.yaml".into()),
                        ..Location::default()
                    },
                    "cannot read: denied",
                ),
                "x.yaml: cannot read: denied",
            ),
        ];
        for (problem, expected) in cases {
            assert_eq!(problem.to_string(), expected);
        }
    }
}
