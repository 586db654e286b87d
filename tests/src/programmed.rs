//! What the agent has programmed, read from its pinned maps: how many
//! backends a frontend has.

use std::path::Path;

use aya::maps::{HashMap, Map, MapData};
use ingress_common::maps::{SERVICES_MAP, ServiceKey, ServiceValue};
use ingress_userspace::dataplane::abi;
use ingress_userspace::model::Frontend;

/// The pinned services map of one agent, opened once it exists.
pub struct ProgrammedServices {
    map: HashMap<MapData, ServiceKey, ServiceValue>,
}

impl ProgrammedServices {
    /// `None` until the agent has created its maps under `pins`.
    pub fn open(pins: &Path) -> Option<ProgrammedServices> {
        let data = MapData::from_pin(pins.join(SERVICES_MAP)).ok()?;
        let map = HashMap::try_from(Map::from_map_data(data).ok()?).ok()?;
        Some(ProgrammedServices { map })
    }

    /// The backends `frontend` has, or `None` when it is not programmed.
    pub fn backend_count(&self, frontend: &Frontend) -> Option<usize> {
        self.map.get(&abi::service_key(frontend, 0), 0).ok().map(|header| usize::from(header.count))
    }
}
