//! The client side: `steelcutd token` and `steelcutd get`.

use anyhow::{bail, Result};

use crate::cli::{GetArgs, TokenArgs};

pub fn token_command(_args: &TokenArgs) -> Result<()> {
    bail!("not available yet")
}

pub fn get_command(_args: &GetArgs) -> Result<()> {
    bail!("not available yet")
}
