//! Electrolyte filling: evacuate, dose, vent and soak (MODELS.md §9).
//! `AssembledCell`s in, `FilledCell`s out.
