//! (stub, being written)
use super::*;
use std::io::Write;
use std::path::Path;
pub fn tar_directory(
    _dir: &Path,
    _out: impl Write,
    _f: Option<WhiteoutFormat>,
) -> Result<(), ArchiveError> {
    todo!()
}
