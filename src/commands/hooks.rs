//! `b2m hooks install|uninstall` (being written).

use std::path::Path;

use crate::cli::HooksAction;
use crate::error::{Error, Result};
use crate::output::Output;

/// `b2m hooks install|uninstall`.
pub fn run(_start: &Path, _out: &Output, _action: HooksAction) -> Result<u8> {
    Err(Error::config("`b2m hooks` is not built yet"))
}
