//! What the agent has programmed, read from its pinned maps: how many
//! backends a frontend has, and waiting until that is what a test expects.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
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

/// Waits until `frontend` has `count` backends in the maps pinned under `pins`.
pub fn wait_for_backends(pins: &Path, frontend: &Frontend, count: usize, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut services = None;
    loop {
        if services.is_none() {
            services = ProgrammedServices::open(pins);
        }
        if services.as_ref().and_then(|s| s.backend_count(frontend)) == Some(count) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{}:{} did not get {count} backends in {} within {limit:?}", frontend.addr, frontend.port, pins.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
