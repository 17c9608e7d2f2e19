//! The chain, declared once: which machine hands its product to which.
//!
//! ```text
//!  batch queue ─┬─► TK_Mix_Anode ─► MC_Coat_Anode ═ MC_Dry_Anode ─► MC_Cal_Anode ─► MC_Slit_Anode ─► MC_Inspect_Anode ─► MC_Rewind_Anode ──┐
//!               │                   (coater and dryer: one line, one resource)                                                         ├─► MC_Assembly_Cell ─► MC_ElecFill_Cell ─► MC_Formation_Cell ─► MC_Aging_Cell
//!               └─► TK_Mix_Cathode ─► MC_Coat_Cathode ═ MC_Dry_Cathode ─► MC_Cal_Cathode ─► … ─► MC_Rewind_Cathode ─────────────────────────┘   (assembly starts when both reels of a batch are ready; aging shelves hold every batch)
//! ```
//!
//! Adding a stage is one module in `cellfab-model` and one line here; the types of the
//! products make a missing or wrong hand-off a compile error.

use crate::config::{CellLineConfig, ElectrodeLineConfig};
use crate::engine::{merge_by_time, replay, Exec, Flow, Machine, Token};
use cellfab_model::recipe::Recipe;
use cellfab_model::stages::aging::{AgedCell, Aging};
use cellfab_model::stages::assembly::{Assembly, AssemblyInput};
use cellfab_model::stages::calendaring::Calendaring;
use cellfab_model::stages::coating::Coating;
use cellfab_model::stages::drying::Drying;
use cellfab_model::stages::filling::Filling;
use cellfab_model::stages::formation::Formation;
use cellfab_model::stages::inspection::Inspection;
use cellfab_model::stages::mixing::Mixing;
use cellfab_model::stages::rewinding::{ElectrodeReels, Rewinding};
use cellfab_model::stages::slitting::Slitting;
use cellfab_model::Line;

/// One electrode line: recipe in, reels out.
pub fn electrode_line<'scope>(
    x: &Exec<'scope, '_>,
    line: Line,
    cfg: &ElectrodeLineConfig,
    batches: Flow<Recipe>,
) -> Flow<ElectrodeReels> {
    let f = x.stage(Machine::<Mixing>::new(cfg.mixing.clone(), line), batches);
    let f = coater_dryer(x, line, cfg, f);
    let f = x.stage(Machine::<Calendaring>::new(cfg.calendaring.clone(), line), f);
    let f = x.stage(Machine::<Slitting>::new(cfg.slitting.clone(), line), f);
    let f = x.stage(Machine::<Inspection>::new(cfg.inspection.clone(), line), f);
    x.stage(Machine::<Rewinding>::new(cfg.rewinding.clone(), line), f)
}

/// The cell line: both lines' reels of a batch in, aged cells out.
pub fn cell_line<'scope>(
    x: &Exec<'scope, '_>,
    cfg: &CellLineConfig,
    anode: Flow<ElectrodeReels>,
    cathode: Flow<ElectrodeReels>,
) -> Flow<Vec<AgedCell>> {
    let f = x.join(anode, cathode, |anode, cathode| AssemblyInput { anode, cathode });
    let f = x.stage(Machine::<Assembly>::new(cfg.assembly.clone(), Line::Cell), f);
    let f = x.stage(Machine::<Filling>::new(cfg.filling.clone(), Line::Cell), f);
    let f = x.stage(Machine::<Formation>::new(cfg.formation.clone(), Line::Cell), f);
    x.stage(Machine::<Aging>::unlimited(cfg.aging.clone(), Line::Cell), f)
}

/// Coater and dryer are one physical line and one resource (MODELS.md §3, §14): the first
/// coated metre enters the dryer as it leaves the die, so both start together, and the
/// coater takes the next batch only when the dryer has emptied.
fn coater_dryer<'scope>(
    x: &Exec<'scope, '_>,
    line: Line,
    cfg: &ElectrodeLineConfig,
    slurry: Flow<cellfab_model::stages::mixing::Slurry>,
) -> Flow<cellfab_model::stages::drying::DryElectrode> {
    let mut coater = Machine::<Coating>::new(cfg.coating.clone(), line);
    let mut dryer = Machine::<Drying>::new(cfg.drying.clone(), line);
    x.map(format!("MC_Coat_{}", line.title()), slurry, move |env, token| {
        let start = token.ready_t_s.max(coater.free_t_s()).max(dryer.free_t_s());
        let (film, _, coat_events) = coater.run(env, token.batch, token.ready_t_s, start, token.product);
        let (dry, dry_duration_s, dry_events) = dryer.run(env, token.batch, start, start, film);
        replay(env, merge_by_time(coat_events, dry_events));
        Token { batch: token.batch, ready_t_s: start + dry_duration_s, product: dry }
    })
}
