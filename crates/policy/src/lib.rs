//! partnerdb's policy language, kept as code: a TOML policy file is parsed
//! and checked against the built-in schema ([`parse`]), compiled into an
//! immutable decision structure ([`engine`]), explained ([`explain`]),
//! linted ([`lint`]), diffed ([`diff`]) and tested against expected
//! decisions ([`testcase`]).
//!
//! **Architecture invariant:** this crate does no I/O and has no async code;
//! a decision cannot fail (every problem is rejected when the policy is
//! checked) and defaults to deny.

pub mod batch;
pub mod diagnostic;
pub mod diff;
pub mod effective;
pub mod engine;
pub mod explain;
pub mod lint;
pub mod lint_usage;
pub mod model;
pub mod parse;
mod reader;
pub mod schema;
pub mod simulate;
pub mod testcase;

pub use diagnostic::{Diagnostic, Severity, SourceFile, Span};
pub use engine::{
    Attributes, CompiledPolicy, Decision, Denial, NoAttributes, Principal, Request, Resource,
    RoleSet, RowCondition, RowFilter,
};
pub use model::{GrantRef, Policy};
pub use parse::parse_policy;
pub use schema::{Action, FieldClass, FieldSet, Permission, ResourceType};
