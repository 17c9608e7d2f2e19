//! The lumped-stoichiometry cell model that links the process to cell performance
//! (MODELS.md §12): open-circuit potentials, SEI growth, plating, resistance.
