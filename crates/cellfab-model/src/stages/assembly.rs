//! Cell assembly (winding / stacking), the merge point of the two electrode lines
//! (MODELS.md §8). Anode and cathode `ElectrodeReels` in, one `AssembledCell` per cell out.
