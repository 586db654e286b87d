//! How big the maps are and how many entries a Maglev table has: chosen by
//! the agent's flags, given to the loader, and known to the plan so that a
//! Service that does not fit is left out whole instead of failing mid-write.

use ingress_common::maps::{self, maglev_rows};

use super::maglev::validate_table_size;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// Entries of the services map (a header and one slot per backend, per frontend).
    pub services: u32,
    /// Distinct backends (pod address and port).
    pub backends: u32,
    /// Distinct frontend (address, port) pairs.
    pub rev_nat: u32,
    /// Tracked flows, both directions (LRU: a full map evicts, never fails).
    pub conntrack: u32,
    /// ClientIP affinity entries (LRU).
    pub affinity: u32,
    /// SNAT entries, two per flow to a pod on another node (LRU).
    pub snat: u32,
    /// Maglev tables: one per frontend with endpoints.
    pub maglev_tables: u32,
    /// M, the entries of every Maglev table (prime).
    pub maglev_table_size: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            services: maps::SERVICES_MAX_ENTRIES,
            backends: maps::BACKENDS_MAX_ENTRIES,
            rev_nat: maps::REV_NAT_MAX_ENTRIES,
            conntrack: maps::CONNTRACK_MAX_ENTRIES,
            affinity: maps::AFFINITY_MAX_ENTRIES,
            snat: maps::SNAT_MAX_ENTRIES,
            maglev_tables: maps::MAGLEV_MAX_TABLES,
            maglev_table_size: maps::DEFAULT_MAGLEV_TABLE_SIZE,
        }
    }
}

impl MapSizes {
    /// Rows one Maglev table takes.
    pub fn rows_per_table(&self) -> u32 {
        maglev_rows(self.maglev_table_size)
    }

    /// The Maglev map's capacity in rows.
    pub fn maglev_rows(&self) -> u32 {
        self.maglev_tables.saturating_mul(self.rows_per_table())
    }

    /// `(map name, max_entries)` of every map whose size is configurable.
    /// The per-frontend counters are indexed by rev-NAT id, so they follow it.
    /// The verdict counters have one entry per reason: a pinned one from a
    /// version with fewer reasons is recreated like a resized map.
    pub fn max_entries(&self) -> [(&'static str, u32); 9] {
        [
            (maps::STATS_MAP, ingress_common::stats::REASON_COUNT),
            (maps::SERVICES_MAP, self.services),
            (maps::BACKENDS_MAP, self.backends),
            (maps::REV_NAT_MAP, self.rev_nat),
            (maps::FRONTEND_STATS_MAP, self.rev_nat.saturating_add(1)),
            (maps::CONNTRACK_MAP, self.conntrack),
            (maps::AFFINITY_MAP, self.affinity),
            (maps::SNAT_MAP, self.snat),
            (maps::MAGLEV_MAP, self.maglev_rows()),
        ]
    }

    /// A clear error naming the flag's value that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        validate_table_size(self.maglev_table_size).map_err(anyhow::Error::msg)?;
        for (name, size) in self.max_entries() {
            anyhow::ensure!(size > 0, "the map {name} needs at least one entry");
        }
        Ok(())
    }
}
