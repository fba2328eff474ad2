//! `strata import`
