//! The cell model of MODELS.md §12 against the §15 reference numbers of the default cell
//! (deterministic) and its physical invariants.

mod common_formed;

use cellfab_model::electrochem::*;
use common_formed::{assert_rel, nominal_filled_cell};
use proptest::prelude::*;

const A: f64 = 0.005;
const B: f64 = 0.01;

#[test]
fn ocv_before_formation_is_1_104_v() {
    let c = CellConstants::from_filled(&nominal_filled_cell());
    assert_rel("OCV0", CellState::pristine(&c).ocv_v(), 1.104, A);
}

#[test]
fn design_metrics_match_section_12_1() {
    let m = DesignMetrics::of(&nominal_filled_cell().assembled);
    assert_rel("c_c", m.cathode_areal_capacity_ah_m2, 37.94, A);
    assert_rel("c_a", m.anode_areal_capacity_ah_m2, 42.13, A);
    assert_rel("N/P", m.np_ratio, 1.110, A);
    assert_rel("Q_design", m.design_capacity_ah, 3.749, A);
    assert_rel("eps_AM,c", m.cathode_am_volume_frac, 0.630, A);
    assert_rel("eps_AM,a", m.anode_am_volume_frac, 0.628, A);
}

#[test]
fn resistance_before_formation_matches_section_12_3() {
    let cell = nominal_filled_cell();
    assert_rel("R_cc (centre / both-ends tabs)", cell.assembled.current_collector_resistance_ohm, 4.53e-3, A);
    let c = CellConstants::from_filled(&cell);
    let r = c.resistance(&CellState::pristine(&c), &ThermalFactors::reference());
    assert_rel("R_tab", r.tab_ohm, 2.0e-3, A);
    assert_rel("R_cc", r.collector_ohm, 4.53e-3, A);
    assert_rel("ionic", r.ionic_ohm, 3.43e-3, A);
    assert_rel("charge transfer", r.charge_transfer_ohm, 13.58e-3, A);
    assert_eq!(r.sei_ohm, 0.0);
    assert_rel("R0", r.r0_ohm, 23.53e-3, A);
    assert_rel("R1", r.r1_ohm, 5.98e-3, A);
}

#[test]
fn sei_film_of_0_370_ah_is_68_nm_and_0_69_mohm() {
    let c = CellConstants::from_filled(&nominal_filled_cell());
    assert_rel("delta", sei_thickness_m(0.370, c.sei_surface_m2), 68e-9, B);
    assert_rel("R_SEI", sei_resistance_ohm(0.370, c.sei_surface_m2), 0.69e-3, B);
}

#[test]
fn capacities_follow_wetting() {
    let cell = nominal_filled_cell();
    let c = CellConstants::from_filled(&cell);
    let m_c = cell.assembled.cathode.am_mass_kg;
    assert_rel("Q_p", c.cathode_capacity_ah, 0.99901 * m_c * 305.0, 1e-12);
    let mut wet = cell.clone();
    wet.wetting_frac = 0.9;
    let c9 = CellConstants::from_filled(&wet);
    assert_rel("Q_n scales with w", c9.anode_capacity_ah / c.anode_capacity_ah, 0.9 / 0.99901, 1e-12);
    assert!(c9.ionic_resistance_ohm > c.ionic_resistance_ohm);
}

#[test]
fn cold_cells_have_higher_resistance() {
    let c = CellConstants::from_filled(&nominal_filled_cell());
    let s = CellState::pristine(&c);
    assert!(c.r0_ohm(&s, &ThermalFactors::at(10.0)) > c.r0_ohm(&s, &ThermalFactors::reference()));
    assert!(c.r0_ohm(&s, &ThermalFactors::at(45.0)) < c.r0_ohm(&s, &ThermalFactors::reference()));
}

#[test]
fn a_short_moves_lithium_from_anode_to_cathode() {
    let mut cell = nominal_filled_cell();
    cell.assembled.latent_short_resistance_ohm = 100.0;
    let c = CellConstants::from_filled(&cell);
    let mut s = CellState { y: 0.6, x: 0.3, q1_ah: c.passivation_max_ah, q2_ah: 0.01, q_pl_ah: 0.0, v1_v: 0.0 };
    let (y0, x0, ocv) = (s.y, s.x, s.ocv_v());
    let side = s.step(&c, &ThermalFactors::reference(), 0.0, s.anode_potential_v(), ocv, 60.0);
    assert_rel("I_sh", side.short_a, ocv / 100.0, 1e-12);
    assert!(s.y > y0 && s.x < x0);
}

#[test]
fn plating_only_near_a_full_anode_while_charging() {
    let c = CellConstants::from_filled(&nominal_filled_cell());
    let tf = ThermalFactors::reference();
    let full = CellState { y: 0.2, x: 0.985, q1_ah: c.passivation_max_ah, q2_ah: 0.01, q_pl_ah: 0.0, v1_v: 0.0 };
    let u = full.anode_potential_v();
    assert!(full.side_currents(&c, &tf, 1.0, u, 0.0).plating_a > 0.4);
    assert_eq!(full.side_currents(&c, &tf, -1.0, u, 0.0).plating_a, 0.0);
    let half = CellState { x: 0.5, ..full };
    assert_eq!(half.side_currents(&c, &tf, 1.0, half.anode_potential_v(), 0.0).plating_a, 0.0);
}

#[test]
fn cell_outputs_of_the_default_cell() {
    let o = CellOutputs::of(&nominal_filled_cell(), 13.48);
    assert_rel("can volume", o.volume_m3, 24.24e-6, A);
    assert_rel("Wh/kg", o.specific_energy_wh_kg, 223.0, B);
    assert_rel("Wh/L", o.energy_density_wh_l, 556.0, B);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Charge conservation in a step: lithium leaving the cathode equals lithium entering
    /// the anode plus what the side reactions consume; SEI and plating never shrink.
    #[test]
    fn a_step_conserves_lithium(y in 0.2f64..1.0, x in 0.0f64..0.95, i in -5.0f64..5.0, dt in 1.0f64..60.0, t in -10.0f64..60.0) {
        let c = CellConstants::from_filled(&nominal_filled_cell());
        let tf = ThermalFactors::at(t);
        let mut s = CellState { y, x, q1_ah: 0.1, q2_ah: 0.001, q_pl_ah: 0.0, v1_v: 0.0 };
        let before = s;
        let side = s.step(&c, &tf, i, before.anode_potential_v(), before.ocv_v(), dt);
        let cathode_out = -(s.y - before.y) * c.cathode_capacity_ah;
        let anode_in = (s.x - before.x) * c.anode_capacity_ah;
        let lost = (s.q1_ah - before.q1_ah) + (s.q2_ah - before.q2_ah) + (s.q_pl_ah - before.q_pl_ah);
        prop_assert!((cathode_out - anode_in - lost).abs() < 1e-12);
        prop_assert!(side.passivation_a >= 0.0 && side.growth_a >= 0.0 && side.plating_a >= 0.0);
        prop_assert!(s.q1_ah <= c.passivation_max_ah.max(before.q1_ah) + 1e-12);
    }

    /// The OCV is finite and rises with cathode delithiation and anode lithiation.
    #[test]
    fn ocv_is_monotonic_in_state_of_charge(y in 0.25f64..0.99, x in 0.01f64..0.9) {
        let v = open_circuit_voltage_v(y, x);
        prop_assert!(v.is_finite());
        prop_assert!(open_circuit_voltage_v(y - 0.01, x) > v);
        prop_assert!(open_circuit_voltage_v(y, x + 0.01) > v);
    }
}
