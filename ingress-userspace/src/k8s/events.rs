//! Warning Events for problems with API objects, so that `kubectl describe`
//! on a skipped Service or a rejected Ingress says why.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tokio::task::JoinHandle;

use crate::manifests::{Snapshot, object_label};
use crate::metrics::Metrics;
use crate::problem::Problem;

/// Events per snapshot at most: a broken rollout can produce a problem per
/// endpoint, and the log and metrics already count every one of them.
const MAX_PER_SNAPSHOT: usize = 10;

pub struct ProblemEvents {
    recorder: Recorder,
    metrics: Arc<Metrics>,
    /// The problems of the last snapshot: a problem is published when it
    /// appears, not again for every snapshot it persists through.
    current: BTreeSet<String>,
}

impl ProblemEvents {
    pub fn new(client: Client, node_name: &str, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: "ebpf-lb".into(),
            instance: Some(node_name.to_owned()),
        };
        ProblemEvents {
            recorder: Recorder::new(client, reporter),
            metrics,
            current: BTreeSet::new(),
        }
    }

    /// Publishes, in the background, an Event for each problem new since the
    /// last call whose object is in `snapshot`.
    pub fn publish(&mut self, snapshot: &Snapshot, problems: &[Problem]) -> JoinHandle<()> {
        let previous = std::mem::take(&mut self.current);
        let mut events = Vec::new();
        for problem in problems {
            let key = problem.to_string();
            if !previous.contains(&key)
                && events.len() < MAX_PER_SNAPSHOT
                && let Some(regarding) = problem.location.object.as_deref().and_then(|o| reference(snapshot, o))
            {
                events.push((event(problem), regarding));
            }
            self.current.insert(key);
        }
        let recorder = self.recorder.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            for (event, regarding) in events {
                if let Err(error) = recorder.publish(&event, &regarding).await {
                    metrics.count_api_error("events");
                    tracing::warn!("publishing an Event failed: {error}");
                }
            }
        })
    }
}

fn event(problem: &Problem) -> Event {
    let mut note = match &problem.field {
        Some(field) => format!("{field}: {}", problem.message),
        None => problem.message.clone(),
    };
    // The API server rejects notes over 1 kB.
    if note.len() > 1024 {
        let mut end = 1021;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    Event {
        type_: EventType::Warning,
        reason: pascal_case(problem.kind.label()),
        note: Some(note),
        action: "Program".into(),
        secondary: None,
    }
}

/// `invalid_port` -> `InvalidPort`, as Event reasons are spelled.
fn pascal_case(label: &str) -> String {
    label
        .split('_')
        .flat_map(|word| {
            let mut chars = word.chars();
            chars.next().map(|first| first.to_ascii_uppercase()).into_iter().chain(chars)
        })
        .collect()
}

/// The object a problem names ("Kind namespace/name"), with its uid: without
/// it `kubectl describe` does not show the Event.
fn reference(snapshot: &Snapshot, object: &str) -> Option<ObjectReference> {
    find(snapshot.services.iter().map(|service| &**service), object)
        .or_else(|| find(snapshot.endpoint_slices.iter().map(|slice| &**slice), object))
        .or_else(|| find(&snapshot.pods, object))
        .or_else(|| find(&snapshot.ingresses, object))
        .or_else(|| find(&snapshot.ingress_classes, object))
        .or_else(|| find(&snapshot.secrets, object))
        .or_else(|| find(&snapshot.nodes, object))
}

fn find<'a, K: Resource<DynamicType = ()> + 'a>(objects: impl IntoIterator<Item = &'a K>, object: &str) -> Option<ObjectReference> {
    let kind = K::kind(&());
    let found = objects.into_iter().find(|candidate| object_label(&kind, candidate.meta()) == object)?;
    Some(found.object_ref(&()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::parse_documents;
    use crate::problem::{Location, ProblemKind};

    #[test]
    fn events_name_the_object_and_the_field() {
        let loaded = parse_documents(
            "a.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: prod, uid: u-1}\n",
        );
        let problem = Problem::error(ProblemKind::InvalidPort, Location::object("Service prod/web"), "invalid port 0")
            .at("spec.ports[0].port");
        let regarding = reference(&loaded.snapshot, problem.location.object.as_deref().unwrap()).unwrap();
        assert_eq!(
            (regarding.kind.as_deref(), regarding.api_version.as_deref(), regarding.uid.as_deref()),
            (Some("Service"), Some("v1"), Some("u-1"))
        );
        assert_eq!(reference(&loaded.snapshot, "Service prod/other"), None);
        assert_eq!(reference(&loaded.snapshot, "Pod prod/web"), None);

        let published = event(&problem);
        assert_eq!(published.reason, "InvalidPort");
        assert_eq!(published.note.as_deref(), Some("spec.ports[0].port: invalid port 0"));
        let long = Problem::warning(ProblemKind::UnknownField, Location::default(), "é".repeat(600));
        assert!(event(&long).note.unwrap().len() <= 1024);
    }
}
