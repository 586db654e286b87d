//! ReferenceGrant: a reference to an object in another namespace is
//! allowed only when a ReferenceGrant in that namespace names the
//! referring kind and namespace, and the referred kind (and name, if given).

use super::types::ReferenceGrant;

/// One side of a reference: group ("" for the core group), kind, namespace.
#[derive(Clone, Copy, Debug)]
pub struct Kind<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
}

/// Whether `from` may refer to the object `name` of `to`.
pub fn allowed(grants: &[ReferenceGrant], from: Kind, to: Kind, name: &str) -> bool {
    if from.namespace == to.namespace {
        return true;
    }
    grants
        .iter()
        .filter(|grant| grant.metadata.namespace.as_deref().unwrap_or("default") == to.namespace)
        .any(|grant| {
            let spec = &grant.spec;
            let from_ok = spec.from.iter().any(|entry| entry.group == from.group && entry.kind == from.kind && entry.namespace == from.namespace);
            let to_ok = spec.to.iter().any(|entry| entry.group == to.group && entry.kind == to.kind && entry.name.as_deref().is_none_or(|granted| granted == name));
            from_ok && to_ok
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::types::{ReferenceGrantFrom, ReferenceGrantSpec, ReferenceGrantTo};

    fn grant(namespace: &str, from_namespace: &str, to_name: Option<&str>) -> ReferenceGrant {
        let mut grant = ReferenceGrant::default();
        grant.metadata.namespace = Some(namespace.into());
        grant.spec = ReferenceGrantSpec {
            from: vec![ReferenceGrantFrom { group: "gateway.networking.k8s.io".into(), kind: "HTTPRoute".into(), namespace: from_namespace.into() }],
            to: vec![ReferenceGrantTo { group: String::new(), kind: "Service".into(), name: to_name.map(Into::into) }],
        };
        grant
    }

    #[test]
    fn cross_namespace_references_need_a_grant_in_the_target_namespace() {
        let route = |namespace| Kind { group: "gateway.networking.k8s.io", kind: "HTTPRoute", namespace };
        let service = |namespace| Kind { group: "", kind: "Service", namespace };
        let cases = [
            (vec![], "apps", "svc", true),
            (vec![], "backends", "svc", false),
            (vec![grant("backends", "apps", None)], "backends", "svc", true),
            (vec![grant("backends", "apps", Some("svc"))], "backends", "svc", true),
            (vec![grant("backends", "apps", Some("other"))], "backends", "svc", false),
            (vec![grant("backends", "elsewhere", None)], "backends", "svc", false),
            (vec![grant("apps", "apps", None)], "backends", "svc", false),
        ];
        for (index, (grants, namespace, name, expected)) in cases.into_iter().enumerate() {
            assert_eq!(allowed(&grants, route("apps"), service(namespace), name), expected, "case {index}");
        }
    }
}
