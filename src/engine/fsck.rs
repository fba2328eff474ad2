//! `strata system fsck`
