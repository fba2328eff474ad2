//! (stub, being written)
use super::*;
use std::io::{Read, Write};
use std::path::Path;
pub fn apply_layer(
    _root: &Path,
    _stream: impl Read,
    _f: WhiteoutFormat,
    _split: &mut dyn Write,
) -> Result<AppliedLayer, ArchiveError> {
    todo!()
}
