//! Snapshots of the API server's objects, patched in place when only
//! existing Services and EndpointSlices changed: one endpoint change then
//! costs the agent what that change costs (see [`Replaced`]), not a pass
//! over every Service in the cluster.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::manifests::{Replaced, Snapshot, next_version};

/// Namespace and name.
pub type ObjectKey = (String, String);

pub fn key_of(metadata: &ObjectMeta) -> ObjectKey {
    (metadata.namespace.clone().unwrap_or_default(), metadata.name.clone().unwrap_or_default())
}

/// What changed in the stores since the last snapshot.
#[derive(Debug, Default)]
pub struct Dirty {
    /// Services and EndpointSlices created or updated.
    pub services: BTreeSet<ObjectKey>,
    pub endpoint_slices: BTreeSet<ObjectKey>,
    /// Anything that moves objects or is not a Service or slice: a deletion,
    /// a (re-)list, a change of another kind.
    pub structure: bool,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.endpoint_slices.is_empty() && !self.structure
    }
}

/// Where snapshots are read from: the reflector stores (maps in tests).
pub trait Objects {
    /// Every object, Services and slices in namespace/name order, no versions.
    fn everything(&self) -> Snapshot;
    fn service(&self, key: &ObjectKey) -> Option<Arc<Service>>;
    fn endpoint_slice(&self, key: &ObjectKey) -> Option<Arc<EndpointSlice>>;
}

/// How many patches a snapshot names as ones it can be patched from: the
/// agent takes the newest snapshot when it is free, so it may have skipped
/// a few; one that skipped more translates everything.
const CHAIN: usize = 64;

/// Makes the snapshots one after the other, remembering the last.
#[derive(Default)]
pub struct Snapshotter {
    last: Option<Snapshot>,
    /// Indexes of the last snapshot's Services and slices.
    services: HashMap<ObjectKey, usize>,
    endpoint_slices: HashMap<ObjectKey, usize>,
    /// The patches since the last whole snapshot, oldest first.
    chain: VecDeque<Patch>,
}

/// One patch: the revision it was made from and the indexes it replaced.
struct Patch {
    from: u64,
    services: Vec<usize>,
    endpoint_slices: Vec<usize>,
}

impl Snapshotter {
    /// The snapshot after `dirty`, or `None` when it equals the last one
    /// (a re-list after `410 Gone` usually finds what the watch had).
    pub fn next(&mut self, objects: &impl Objects, dirty: &Dirty) -> Option<Snapshot> {
        if !dirty.structure
            && let Some(patched) = self.patched(objects, dirty)
        {
            return patched;
        }
        self.whole(objects)
    }

    /// `Some(None)` when nothing really changed; `None` when a named object
    /// is new or gone, which moves the others: then a whole snapshot is made.
    fn patched(&mut self, objects: &impl Objects, dirty: &Dirty) -> Option<Option<Snapshot>> {
        let last = self.last.as_ref()?;
        let mut snapshot = last.clone();
        let mut patch = Patch { from: last.versions.revision, services: Vec::new(), endpoint_slices: Vec::new() };
        for key in &dirty.services {
            let index = *self.services.get(key)?;
            let object = objects.service(key)?;
            if replace(&mut snapshot.services[index], object) {
                snapshot.versions.services[index] = next_version();
                patch.services.push(index);
            }
        }
        for key in &dirty.endpoint_slices {
            let index = *self.endpoint_slices.get(key)?;
            let object = objects.endpoint_slice(key)?;
            if replace(&mut snapshot.endpoint_slices[index], object) {
                snapshot.versions.endpoint_slices[index] = next_version();
                patch.endpoint_slices.push(index);
            }
        }
        if patch.services.is_empty() && patch.endpoint_slices.is_empty() {
            return Some(None);
        }
        if self.chain.len() == CHAIN {
            self.chain.pop_front();
        }
        self.chain.push_back(patch);
        snapshot.versions.revision = next_version();
        snapshot.versions.replaced = Some(self.replaced());
        self.last = Some(snapshot.clone());
        Some(Some(snapshot))
    }

    /// What the chain replaced, from each revision in it.
    fn replaced(&self) -> Replaced {
        let mut services = BTreeSet::new();
        let mut endpoint_slices = BTreeSet::new();
        for patch in &self.chain {
            services.extend(&patch.services);
            endpoint_slices.extend(&patch.endpoint_slices);
        }
        Replaced {
            since: self.chain.iter().map(|patch| patch.from).collect(),
            services: services.into_iter().collect(),
            endpoint_slices: endpoint_slices.into_iter().collect(),
            others: false,
        }
    }

    /// Every object, keeping the version of each one that is as it was.
    fn whole(&mut self, objects: &impl Objects) -> Option<Snapshot> {
        let mut snapshot = objects.everything();
        if self.last.as_ref() == Some(&snapshot) {
            return None;
        }
        let last = self.last.take();
        let old_services = last.as_ref().map(|last| (&last.services[..], &last.versions.services[..], &self.services));
        let (versions, services) = keep_versions(&snapshot.services, old_services);
        snapshot.versions.services = versions;
        self.services = services;
        let old_slices = last.as_ref().map(|last| (&last.endpoint_slices[..], &last.versions.endpoint_slices[..], &self.endpoint_slices));
        let (versions, endpoint_slices) = keep_versions(&snapshot.endpoint_slices, old_slices);
        snapshot.versions.endpoint_slices = versions;
        self.endpoint_slices = endpoint_slices;
        snapshot.versions.revision = next_version();
        self.chain.clear();
        self.last = Some(snapshot.clone());
        Some(snapshot)
    }
}

/// Puts `new` in `slot` if it differs; whether it did.
fn replace<T: PartialEq>(slot: &mut Arc<T>, new: Arc<T>) -> bool {
    let same = Arc::ptr_eq(slot, &new) || **slot == *new;
    if !same {
        *slot = new;
    }
    !same
}

/// The objects of the last snapshot: themselves, their versions, their indexes.
type Known<'a, T> = (&'a [Arc<T>], &'a [u64], &'a HashMap<ObjectKey, usize>);

/// A version for each object (its old one where it is unchanged) and the
/// objects' indexes.
fn keep_versions<T: Metadata<Ty = ObjectMeta> + PartialEq>(objects: &[Arc<T>], known: Option<Known<T>>) -> (Vec<u64>, HashMap<ObjectKey, usize>) {
    let mut versions = Vec::with_capacity(objects.len());
    let mut indexes = HashMap::with_capacity(objects.len());
    for (index, object) in objects.iter().enumerate() {
        let key = key_of(object.metadata());
        let kept = known.and_then(|(old, old_versions, old_indexes)| {
            let at = *old_indexes.get(&key)?;
            (Arc::ptr_eq(&old[at], object) || old[at] == *object).then_some(old_versions[at])
        });
        versions.push(kept.unwrap_or_else(next_version));
        indexes.insert(key, index);
    }
    (versions, indexes)
}

#[cfg(test)]
#[path = "snapshots_tests.rs"]
mod tests;
