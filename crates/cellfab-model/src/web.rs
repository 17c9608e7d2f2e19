//! Web coordinates and profiles (MODELS.md §0.8). A [`WebGrid`] holds one field of the web
//! (areal mass, porosity, thickness, …) on `n_md` machine-direction segments of
//! `segment_length_m` (coating coordinates) × `n_cd` cross-direction cells across the coated
//! width. Both foil sides carry the same fields (tandem dies with one set point).

use serde::{Deserialize, Serialize};

/// One field on the web grid, row-major (segment × CD cell).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebGrid {
    /// Machine-direction segments.
    pub n_md: usize,
    /// Cross-direction cells.
    pub n_cd: usize,
    /// Segment length in coating coordinates [m].
    pub segment_length_m: f64,
    /// Coated width [m].
    pub width_m: f64,
    values: Vec<f64>,
}

impl WebGrid {
    /// A grid filled with `value`.
    pub fn filled(n_md: usize, n_cd: usize, segment_length_m: f64, width_m: f64, value: f64) -> Self {
        Self { n_md, n_cd, segment_length_m, width_m, values: vec![value; n_md * n_cd] }
    }

    /// A grid of the same shape as `self`, filled with `value`.
    pub fn like(&self, value: f64) -> Self {
        Self::filled(self.n_md, self.n_cd, self.segment_length_m, self.width_m, value)
    }

    /// Number of segments for a roll of `length_m`: `ceil(L / segment_length_m)`.
    pub fn segments_for(length_m: f64, segment_length_m: f64) -> usize {
        ((length_m / segment_length_m) - 1e-9).ceil().max(1.0) as usize
    }

    /// Width of one CD cell [m].
    #[inline]
    pub fn cd_cell_width_m(&self) -> f64 {
        self.width_m / self.n_cd as f64
    }

    /// Value at (segment, CD cell).
    #[inline]
    pub fn get(&self, md: usize, cd: usize) -> f64 {
        self.values[md * self.n_cd + cd]
    }

    /// Sets the value at (segment, CD cell).
    #[inline]
    pub fn set(&mut self, md: usize, cd: usize, v: f64) {
        self.values[md * self.n_cd + cd] = v;
    }

    /// The CD row of one segment.
    #[inline]
    pub fn row(&self, md: usize) -> &[f64] {
        &self.values[md * self.n_cd..(md + 1) * self.n_cd]
    }

    /// The CD row of one segment, mutable.
    #[inline]
    pub fn row_mut(&mut self, md: usize) -> &mut [f64] {
        &mut self.values[md * self.n_cd..(md + 1) * self.n_cd]
    }

    /// All values, row-major.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Mean of one segment's row.
    #[inline]
    pub fn row_mean(&self, md: usize) -> f64 {
        let r = self.row(md);
        r.iter().sum::<f64>() / r.len() as f64
    }

    /// Width-weighted mean over the CD band `[y0, y1]` (metres from the operator edge) of
    /// one segment: each CD cell counts by the width it overlaps (§0.8 lanes).
    pub fn band_mean(&self, md: usize, y0_m: f64, y1_m: f64) -> f64 {
        let w = self.cd_cell_width_m();
        let (lo, hi) = (y0_m.max(0.0), y1_m.min(self.width_m));
        if hi <= lo {
            return self.get(md, ((lo / w) as usize).min(self.n_cd - 1));
        }
        let first = ((lo / w).floor() as usize).min(self.n_cd - 1);
        let last = (((hi / w).ceil() as usize).max(first + 1)).min(self.n_cd);
        let row = self.row(md);
        let (mut sum, mut total) = (0.0, 0.0);
        for (j, v) in row.iter().enumerate().take(last).skip(first) {
            let a = (j as f64 * w).max(lo);
            let b = ((j + 1) as f64 * w).min(hi);
            if b > a {
                sum += v * (b - a);
                total += b - a;
            }
        }
        if total > 0.0 {
            sum / total
        } else {
            row[first]
        }
    }

    /// Mean over the whole grid.
    pub fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len() as f64
    }

    /// Applies `f` to every value.
    pub fn map_in_place(&mut self, mut f: impl FnMut(f64) -> f64) {
        for v in &mut self.values {
            *v = f(*v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_mean_weights_by_overlap() {
        let mut g = WebGrid::filled(1, 4, 0.5, 0.4, 0.0);
        for (j, v) in [1.0, 2.0, 3.0, 4.0].into_iter().enumerate() {
            g.set(0, j, v);
        }
        // cells are 0.1 wide; [0.05, 0.2] overlaps cell 0 by 0.05 and cell 1 by 0.1
        let m = g.band_mean(0, 0.05, 0.2);
        assert!((m - (1.0 * 0.05 + 2.0 * 0.1) / 0.15).abs() < 1e-12);
        assert_eq!(WebGrid::segments_for(1587.5, 0.5), 3175);
        assert_eq!(WebGrid::segments_for(1484.4, 0.5), 2969);
    }
}

/// Per-segment quality flags set upstream and read by inspection (a flagged segment fails
/// `surface_ok`, §6.2) and by assembly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentFlags(pub u8);

impl SegmentFlags {
    /// Start-up scrap of the coater.
    pub const STARTUP_SCRAP: u8 = 1;
    /// Binder migration above the limit (§3.3).
    pub const BLISTER_RISK: u8 = 2;
    /// Over-compaction (§4.3).
    pub const CRACK_RISK: u8 = 4;
    /// Residual solvent above spec (§3.3).
    pub const WET: u8 = 8;
    /// Wrinkled at slitting or rewinding (all lanes of the segment).
    pub const WRINKLE: u8 = 16;
    /// Uncoated streak (coating window broken).
    pub const STREAK: u8 = 32;

    /// True if `flag` is set.
    #[inline]
    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    /// Sets `flag`.
    #[inline]
    pub fn set(&mut self, flag: u8) {
        self.0 |= flag;
    }

    /// True if any flag that scraps the segment is set.
    #[inline]
    pub fn scrap(self) -> bool {
        self.0 != 0
    }
}
