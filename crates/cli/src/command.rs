//! One module per command.

pub mod audit;
pub mod authorize;
pub mod check;
pub mod data;
pub mod diff;
pub mod explain;
pub mod init;
pub mod lint;
pub mod serve;
pub mod test;
pub mod versions;
