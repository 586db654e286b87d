//! The translator's incremental step: a snapshot that only replaced objects
//! of the last one in place (an endpoint moved) is translated by
//! re-translating the Services those objects belong to and putting their
//! frontends over the old ones, when that is certain to give what
//! translating everything gives; otherwise the caller translates everything.

use std::collections::BTreeSet;

use foldhash::{HashSet, HashSetExt};

use super::{Family, Indexed, Inputs, Item, ServiceKey, Translated, Translator, name_of, slice_service};
use crate::manifests::{Snapshot, Versions};
use crate::model::{DesiredState, Frontend, ServicePortRef};

impl Translator {
    /// The frontends whose state changed, or `None` (and nothing done) when
    /// `snapshot` cannot be translated from the last one this way.
    pub(super) fn patch(&mut self, snapshot: &Snapshot) -> Option<BTreeSet<Frontend>> {
        let replaced = snapshot.versions.replaced.as_ref()?;
        let versions = Versions::of(snapshot)?;
        if self.revision == 0 || !replaced.since.contains(&self.revision) {
            return None;
        }
        let node = self.node.as_ref()?;
        let mut affected: BTreeSet<&ServiceKey> = BTreeSet::new();
        for &index in &replaced.services {
            let (namespace, name) = name_of(snapshot.services.get(index)?);
            affected.insert(self.services.get_key_value(&(namespace.to_owned(), name.to_owned()))?.0);
        }
        for &index in &replaced.endpoint_slices {
            // A slice that served no Service, or now names another one or
            // no family, changes which slices are whose: not for this path.
            let served = self.slice_services.get(index)?.as_ref()?;
            let slice = snapshot.endpoint_slices.get(index)?;
            Family::named(&slice.address_type)?;
            let (namespace, service) = slice_service(slice);
            if (namespace, service?) != (served.0.as_str(), served.1.as_str()) {
                return None;
            }
            affected.insert(served);
        }

        let mut fresh = Vec::with_capacity(affected.len());
        for key in affected {
            let old = &self.services[key];
            let service = (old.service, snapshot.services.get(old.service)?);
            let slices: Vec<Indexed<_>> =
                old.slices.iter().map(|&index| Some((index, snapshot.endpoint_slices.get(index)?))).collect::<Option<_>>()?;
            let slice_versions = old.slices.iter().map(|&index| versions.endpoint_slices[index]).collect();
            let inputs = Inputs::Versions(versions.services[old.service], slice_versions);
            let new = Translated::new(snapshot, service, &slices, node, Some(inputs));
            if !old.replaceable_by(&new, key, &self.desired) {
                return None;
            }
            fresh.push((key.clone(), new));
        }

        let mut changed = BTreeSet::new();
        for (key, new) in fresh {
            new.put_over(&mut self.desired, &mut changed);
            self.services.insert(key, new);
        }
        Some(changed)
    }
}

/// What a Service asks for, whatever it is given: the frontends (with the
/// Service port naming them) and health check ports.
#[derive(PartialEq, Eq)]
enum Claim<'a> {
    Frontend(&'a Frontend, &'a ServicePortRef),
    HealthCheck(u16),
}

impl Translated {
    /// Whether putting `new` over this translation of Service `key` gives
    /// what translating everything would: both without problems (so the
    /// problem list stays), claiming the same frontends and ports under the
    /// same names (so no conflict with another Service changes), all of which
    /// this Service holds in `desired`.
    fn replaceable_by(&self, new: &Translated, (namespace, name): &ServiceKey, desired: &DesiredState) -> bool {
        let holds = |claim: Claim| match claim {
            Claim::Frontend(frontend, service) => desired.frontends.get(frontend).is_some_and(|state| state.service == *service),
            Claim::HealthCheck(port) => {
                desired.health_checks.get(&port).is_some_and(|check| check.namespace == *namespace && check.name == *name)
            }
        };
        self.clean() && new.clean() && self.claims().eq(new.claims()) && self.claims().all(holds)
    }

    fn clean(&self) -> bool {
        self.slice_problems.iter().all(Vec::is_empty) && !self.items.iter().any(|item| matches!(item, Item::Problem(_)))
    }

    fn claims(&self) -> impl Iterator<Item = Claim<'_>> {
        self.items.iter().filter_map(|item| match item {
            Item::Problem(_) => None,
            Item::Frontend { frontend, state, .. } => Some(Claim::Frontend(frontend, &state.service)),
            Item::HealthCheck { port, .. } => Some(Claim::HealthCheck(*port)),
        })
    }

    /// Writes this translation's frontends and health check over those it
    /// held, the first of a frontend listed twice winning as in `add_to`;
    /// adds the frontends whose state changed to `changed`.
    fn put_over(&self, desired: &mut DesiredState, changed: &mut BTreeSet<Frontend>) {
        let mut seen = HashSet::new();
        for item in &self.items {
            match item {
                Item::Frontend { frontend, state, .. } if seen.insert(*frontend) && desired.frontends.get(frontend) != Some(state) => {
                    desired.frontends.insert(*frontend, state.clone());
                    changed.insert(*frontend);
                }
                Item::HealthCheck { port, check } => {
                    desired.health_checks.insert(*port, check.clone());
                }
                _ => {}
            }
        }
    }
}
