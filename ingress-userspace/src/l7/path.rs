//! Request path matching with the Ingress v1 semantics. The query string never
//! takes part: callers pass the path alone.

use std::cmp::Ordering;

use regex::Regex;

#[derive(Clone, Debug)]
pub enum PathMatch {
    /// Byte-exact and case-sensitive.
    Exact(String),
    /// Element-wise on `/`-separated segments, stored without its trailing
    /// `/` (so `/` is stored empty and matches every path).
    Prefix(String),
    /// A regular expression anchored at the start of the path, matched
    /// case-insensitively as ingress-nginx does with `use-regex`.
    Regex { source: String, regex: Regex },
}

impl PathMatch {
    pub fn exact(path: &str) -> PathMatch {
        PathMatch::Exact(path.to_owned())
    }

    pub fn prefix(path: &str) -> PathMatch {
        PathMatch::Prefix(path.trim_end_matches('/').to_owned())
    }

    pub fn regex(source: &str) -> Result<PathMatch, regex::Error> {
        PathMatch::compiled(source, format!("(?i)^(?:{source})"))
    }

    /// A Gateway API `RegularExpression` path: the whole path must match,
    /// case-sensitively.
    pub fn full_regex(source: &str) -> Result<PathMatch, regex::Error> {
        PathMatch::compiled(source, format!("^(?:{source})$"))
    }

    fn compiled(source: &str, pattern: String) -> Result<PathMatch, regex::Error> {
        Ok(PathMatch::Regex { source: source.to_owned(), regex: Regex::new(&pattern)? })
    }

    /// How many leading bytes of `path` the rule matched, or `None`.
    pub fn matched_len(&self, path: &str) -> Option<usize> {
        match self {
            PathMatch::Exact(exact) => (exact == path).then_some(path.len()),
            PathMatch::Prefix(prefix) => {
                let rest = path.strip_prefix(prefix.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then_some(prefix.len())
            }
            PathMatch::Regex { regex, .. } => regex.find(path).map(|found| found.end()),
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        self.matched_len(path).is_some()
    }

    /// The rule's path as written (Prefix without its trailing `/`).
    pub fn as_str(&self) -> &str {
        match self {
            PathMatch::Exact(path) | PathMatch::Prefix(path) => path,
            PathMatch::Regex { source, .. } => source,
        }
    }

    /// The kind label used in conflict keys and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PathMatch::Exact(_) => "Exact",
            PathMatch::Prefix(_) => "Prefix",
            PathMatch::Regex { .. } => "Regex",
        }
    }

    /// Rules sorted with this order are tried first to last: the longest path
    /// first, and on a tie Exact before Prefix (before Regex).
    pub fn precedence(&self, other: &PathMatch) -> Ordering {
        let rank = |rule: &PathMatch| match rule {
            PathMatch::Exact(_) => 0,
            PathMatch::Prefix(_) => 1,
            PathMatch::Regex { .. } => 2,
        };
        other
            .as_str()
            .len()
            .cmp(&self.as_str().len())
            .then(rank(self).cmp(&rank(other)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_is_byte_exact_and_case_sensitive() {
        let rule = PathMatch::exact("/foo");
        let cases = [("/foo", true), ("/foo/", false), ("/Foo", false), ("/foo/bar", false), ("/fo", false)];
        for (path, expected) in cases {
            assert_eq!(rule.matches(path), expected, "{path}");
        }
    }

    #[test]
    fn prefix_is_element_wise() {
        let cases = [
            ("/aaa/bbb", "/aaa/bbb", true),
            ("/aaa/bbb", "/aaa/bbb/", true),
            ("/aaa/bbb", "/aaa/bbb/ccc", true),
            ("/aaa/bbb", "/aaa/bbbxyz", false),
            ("/aaa/bbb", "/aaa", false),
            ("/aaa/bbb/", "/aaa/bbb", true),
            ("/aaa/bbb/", "/aaa/bbb/ccc", true),
            ("/aaa/bbb/", "/aaa/bbbxyz", false),
            ("/", "/", true),
            ("/", "/anything/at/all", true),
            ("/foo", "/FOO", false),
        ];
        for (rule, path, expected) in cases {
            assert_eq!(PathMatch::prefix(rule).matches(path), expected, "{rule} vs {path}");
        }
    }

    #[test]
    fn regex_is_anchored_and_reports_the_matched_length() {
        let rule = PathMatch::regex("/one(/|$)(.*)").unwrap();
        let cases = [
            ("/one", Some(4)),
            ("/one/aaa/bbb", Some(12)),
            ("/ONE/x", Some(6)),
            ("/x/one", None),
            ("/onex", None),
        ];
        for (path, expected) in cases {
            assert_eq!(rule.matched_len(path), expected, "{path}");
        }
        assert!(PathMatch::regex("/bad(").is_err());
    }

    #[test]
    fn longest_first_then_exact_before_prefix() {
        let mut rules = [
            PathMatch::prefix("/"),
            PathMatch::prefix("/foo"),
            PathMatch::exact("/foo"),
            PathMatch::prefix("/foo/bar/"),
            PathMatch::exact("/"),
        ];
        rules.sort_by(PathMatch::precedence);
        let order: Vec<_> = rules.iter().map(|rule| format!("{} {}", rule.kind(), rule.as_str())).collect();
        assert_eq!(order, ["Prefix /foo/bar", "Exact /foo", "Prefix /foo", "Exact /", "Prefix "]);
    }
}
