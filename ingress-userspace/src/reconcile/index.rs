//! What the reconciler keeps between passes to find, from the frontends
//! the translator says changed, the Service ports to re-plan and the
//! values of their backends, without a walk of every Service port.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use foldhash::HashMap;

use crate::dataplane::plan::{ServiceFrontends, backend_values};
use crate::model::{Backend, BackendAddr, DesiredState, Frontend, FrontendState, ServicePortRef};

/// The programmed Service ports by frontend and by backend address. A
/// Service port's name is shared by all its entries: a large cluster has
/// hundreds of thousands of them, and three strings each added up.
#[derive(Default)]
pub struct ServiceIndex {
    owners: HashMap<Frontend, Arc<ServicePortRef>>,
    /// The Service ports whose frontends list each backend address.
    users: HashMap<BackendAddr, BTreeSet<Arc<ServicePortRef>>>,
}

/// Service ports with their frontends, in name order.
pub type Groups<'a> = BTreeMap<&'a ServicePortRef, ServiceFrontends<'a>>;

impl ServiceIndex {
    pub fn add(&mut self, service: &ServicePortRef, frontends: &[(Frontend, FrontendState)]) {
        let shared = Arc::new(service.clone());
        for (frontend, state) in frontends {
            self.owners.insert(*frontend, shared.clone());
            for backend in &state.backends {
                self.users.entry(backend.addr).or_default().insert(shared.clone());
            }
        }
    }

    pub fn remove(&mut self, service: &ServicePortRef, frontends: &[(Frontend, FrontendState)]) {
        for (frontend, state) in frontends {
            if self.owners.get(frontend).is_some_and(|owner| **owner == *service) {
                self.owners.remove(frontend);
            }
            for backend in &state.backends {
                if let Some(users) = self.users.get_mut(&backend.addr) {
                    users.remove(service);
                    if users.is_empty() {
                        self.users.remove(&backend.addr);
                    }
                }
            }
        }
    }

    /// The Service ports of `desired` that `changed` frontends belong to
    /// now or belonged to (`programmed` says which frontends each had),
    /// with all their frontends; and those that have none left.
    pub fn regroup<'a, 'p>(
        &self,
        desired: &'a DesiredState,
        changed: &BTreeSet<Frontend>,
        programmed: impl Fn(&ServicePortRef) -> Option<&'p [(Frontend, FrontendState)]>,
    ) -> (Groups<'a>, Vec<ServicePortRef>) {
        let mut affected: BTreeSet<&ServicePortRef> = changed.iter().filter_map(|frontend| self.owners.get(frontend).map(|owner| &**owner)).collect();
        affected.extend(changed.iter().filter_map(|frontend| Some(&desired.frontends.get(frontend)?.service)));
        let mut groups = Groups::new();
        let mut removed = Vec::new();
        for service in affected {
            let before = programmed(service).unwrap_or_default().iter().map(|(frontend, _)| frontend);
            let candidates: BTreeSet<&Frontend> = before.chain(changed).collect();
            let frontends: ServiceFrontends = candidates
                .into_iter()
                .filter_map(|frontend| desired.frontends.get_key_value(frontend))
                .filter(|(_, state)| state.service == *service)
                .collect();
            match frontends.first() {
                Some((_, state)) => {
                    groups.insert(&state.service, frontends);
                }
                None if programmed(service).is_some() => removed.push(service.clone()),
                None => {}
            }
        }
        (groups, removed)
    }

    /// The value each of `addrs` gets from the Service ports naming it (see
    /// [`backend_values`]): those of `groups` as they are now, the others
    /// (but `removed`) as `programmed`.
    pub fn backend_values<'p>(
        &self,
        addrs: impl IntoIterator<Item = BackendAddr>,
        groups: &Groups,
        removed: &[ServicePortRef],
        programmed: impl Fn(&ServicePortRef) -> Option<&'p [(Frontend, FrontendState)]>,
    ) -> HashMap<BackendAddr, Backend> {
        let mut users: BTreeSet<&ServicePortRef> = BTreeSet::new();
        for addr in addrs {
            users.extend(self.users.get(&addr).into_iter().flatten().map(|user| &**user));
        }
        users.extend(groups.keys());
        let frontends: Vec<ServiceFrontends> = users
            .into_iter()
            .filter(|service| !removed.contains(service))
            .filter_map(|service| match groups.get(service) {
                Some(frontends) => Some(frontends.clone()),
                None => Some(programmed(service)?.iter().map(|(frontend, state)| (frontend, state)).collect()),
            })
            .collect();
        backend_values(&frontends)
    }
}
