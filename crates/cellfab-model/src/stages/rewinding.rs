//! Rewinding: cut out rejected segments, splice, and wind each lane onto a reel with taper
//! tension (MODELS.md §7). `InspectedLanes` in, `ElectrodeReels` out.

use crate::stages::inspection::InspectedLanes;
use serde::{Deserialize, Serialize};

/// A kept piece of a lane on its reel: reel positions `[reel_start_m, reel_start_m +
/// length_m)` hold coating positions `[coating_start_m, coating_start_m +
/// length_m/length_scale)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReelPiece {
    /// Start on the reel [m].
    pub reel_start_m: f64,
    /// Start in coating coordinates [m].
    pub coating_start_m: f64,
    /// Length on the reel [m].
    pub length_m: f64,
}

/// One wound reel (one lane).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reel {
    /// Lane index.
    pub lane: u32,
    /// Reel id, e.g. `B1-A-L3` (batch, line initial, lane).
    pub reel_id: String,
    /// Wound length [m].
    pub length_m: f64,
    /// Map reel position → coating position, in reel order.
    pub pieces: Vec<ReelPiece>,
    /// Splice positions on the reel [m].
    pub splices_m: Vec<f64>,
    /// Discarded length (cut-outs, short pieces) [m].
    pub discarded_length_m: f64,
    /// Outer diameter [m].
    pub reel_diameter_m: f64,
    /// Core pressure [Pa].
    pub core_pressure_pa: f64,
    /// Water content of the wound electrode coating [kg water / kg coating].
    pub moisture_mass_frac: f64,
    /// Scrapped (telescoped beyond 3 × limit).
    pub scrapped: bool,
}

impl Reel {
    /// Coating position of reel position `reel_m` (None beyond the wound length).
    pub fn coating_position_m(&self, reel_m: f64, length_scale: f64) -> Option<f64> {
        let i = self.pieces.partition_point(|p| p.reel_start_m <= reel_m);
        let p = self.pieces.get(i.checked_sub(1)?)?;
        let off = reel_m - p.reel_start_m;
        (off <= p.length_m + 1e-9).then(|| p.coating_start_m + off / length_scale)
    }
}

/// The reels of one line and batch (MODELS.md §0.9), with the inspected web they came
/// from so that cells can look up local electrode properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElectrodeReels {
    /// The inspected lanes (properties per lane-segment, defects).
    pub inspected: InspectedLanes,
    /// One reel per lane, same order as the lanes.
    pub reels: Vec<Reel>,
}
