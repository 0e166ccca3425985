//! What can go wrong in a use case, each with a stable code that the API
//! turns into problem+json. Messages never carry personal data or secrets.

use partnerdb_policy::FieldClass;
use partnerdb_store::StoreError;

/// A refused or failed use case.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No valid credential.
    #[error("authentication required: {0}")]
    Unauthenticated(&'static str),
    /// The principal may not do this (and may know the record exists).
    #[error("{detail}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// Why, in words.
        detail: String,
    },
    /// A field of the request the principal may not write or read.
    #[error("field `{field}` is {class} data, which {what}")]
    Field {
        /// Stable code: `field_not_writable` or `field_not_readable`.
        code: &'static str,
        /// The field.
        field: String,
        /// Its class.
        class: FieldClass,
        /// What the principal lacks, in words.
        what: &'static str,
    },
    /// A high-risk action without an active elevation.
    #[error("{permission} is high-risk and needs an active elevation")]
    ElevationRequired {
        /// `resource:action`.
        permission: String,
    },
    /// Not found, or not visible to this principal (indistinguishable).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Invalid input: the problem, at a field path (JSON pointer).
    #[error("{detail}")]
    Invalid {
        /// Stable code.
        code: &'static str,
        /// JSON pointer to the offending value, or the parameter's name.
        path: String,
        /// What is wrong and what was expected.
        detail: String,
    },
    /// The request conflicts with the current state.
    #[error("{detail}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Why.
        detail: String,
    },
    /// `If-Match` did not match the record's current ETag.
    #[error("the record changed since it was read (ETag {current})")]
    PreconditionFailed {
        /// The current ETag.
        current: String,
    },
    /// An `Idempotency-Key` reused with another request.
    #[error("Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    /// The audit trail cannot be written: the request is refused rather
    /// than served unrecorded.
    #[error("the audit trail cannot be written: {0}")]
    AuditUnavailable(String),
    /// Storage failed.
    #[error("storage failed")]
    Store(#[from] StoreError),
}

impl ServiceError {
    /// Invalid input at `path`.
    pub fn invalid(
        code: &'static str,
        path: impl Into<String>,
        detail: impl Into<String>,
    ) -> ServiceError {
        ServiceError::Invalid {
            code,
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// A refusal.
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> ServiceError {
        ServiceError::Forbidden {
            code,
            detail: detail.into(),
        }
    }

    /// A conflict.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> ServiceError {
        ServiceError::Conflict {
            code,
            detail: detail.into(),
        }
    }

    /// A page size outside 1..=`max`.
    pub fn page_limit(value: &str, max: usize) -> Result<usize, ServiceError> {
        value
            .parse()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ServiceError::invalid(
                    "invalid_limit",
                    "limit",
                    format!("`limit` must be a number from 1 to {max}"),
                )
            })
    }

    /// A query parameter the operation does not take.
    pub fn unknown_parameter(name: &str) -> ServiceError {
        ServiceError::invalid(
            "unknown_parameter",
            name,
            format!("unknown or invalid query parameter `{name}`"),
        )
    }

    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Unauthenticated(_) => "unauthenticated",
            ServiceError::Forbidden { code, .. }
            | ServiceError::Field { code, .. }
            | ServiceError::Invalid { code, .. }
            | ServiceError::Conflict { code, .. } => code,
            ServiceError::ElevationRequired { .. } => "elevation_required",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::PreconditionFailed { .. } => "precondition_failed",
            ServiceError::IdempotencyMismatch => "idempotency_key_reused",
            ServiceError::AuditUnavailable(_) => "audit_unavailable",
            ServiceError::Store(StoreError::Reference) => "reference_conflict",
            ServiceError::Store(StoreError::Conflict) => "conflict",
            ServiceError::Store(_) => "storage_failed",
        }
    }
}
