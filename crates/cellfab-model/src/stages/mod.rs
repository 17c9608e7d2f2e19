//! One module per stage, all of the same shape (see [`crate::stage::Stage`]). The chain —
//! which stage hands its product to which — is declared once, in `cellfab-plant`.

pub mod aging;
pub mod assembly;
pub mod calendaring;
pub mod coating;
pub mod drying;
pub mod filling;
pub mod formation;
pub mod inspection;
pub mod mixing;
pub mod rewinding;
pub mod slitting;
