//! One module per command.

pub mod authorize;
pub mod check;
