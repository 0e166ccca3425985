//! One module per command.

pub mod authorize;
pub mod check;
pub mod diff;
pub mod explain;
pub mod lint;
pub mod test;
