//! The record tables: for each partner-owned resource type, its table and
//! its columns with their field class, kind and constraints. The API, the
//! OpenAPI document and the SQL are all generated from these tables, and a
//! test keeps them equal to the policy schema's record fields.

use partnerdb_policy::{FieldClass, ResourceType};

/// What a column holds, on the wire and in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string of at most `max` characters.
    Text {
        /// Maximum length in characters.
        max: usize,
    },
    /// One of a fixed set of lowercase words.
    Enum(&'static [&'static str]),
    /// An amount in integer minor units (cents); JSON integer, BIGINT.
    Money,
    /// A three-letter ISO 4217 currency code, upper case.
    Currency,
    /// A rate as a decimal string with at most six decimals
    /// (`"0.125"`), stored as integer millionths.
    Rate,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An instant, RFC 3339 in UTC.
    Timestamp,
    /// An e-mail address.
    Email,
    /// The id of a record of another type.
    Ref(ResourceType),
}

impl Kind {
    /// Whether the database stores it as BIGINT (else TEXT).
    pub const fn is_integer(self) -> bool {
        matches!(self, Kind::Money | Kind::Rate)
    }
}

/// One record column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Its name, in the API and the table.
    pub name: &'static str,
    /// Its field class.
    pub class: FieldClass,
    /// What it holds.
    pub kind: Kind,
    /// Must be given on create.
    pub required: bool,
    /// May be set by clients (false for server-maintained columns).
    pub writable: bool,
    /// Lists may sort on it (only columns that are never NULL).
    pub sortable: bool,
    /// The value a create without it gets (such columns are never NULL).
    pub default: Option<&'static str>,
}

const fn col(name: &'static str, class: FieldClass, kind: Kind) -> Column {
    Column {
        name,
        class,
        kind,
        required: false,
        writable: true,
        sortable: false,
        default: None,
    }
}

const fn default(mut c: Column, value: &'static str) -> Column {
    c.default = Some(value);
    c
}

const fn required(mut c: Column) -> Column {
    c.required = true;
    c
}

const fn sortable(mut c: Column) -> Column {
    c.sortable = true;
    c
}

const fn server(mut c: Column) -> Column {
    c.writable = false;
    c.sortable = true;
    c
}

use FieldClass::{Financial, General, Legal, Pii};

const SHORT: Kind = Kind::Text { max: 200 };
const CODE: Kind = Kind::Text { max: 64 };
const LONG: Kind = Kind::Text { max: 65_536 };

/// Partner statuses.
pub const PARTNER_STATUSES: &[&str] =
    &["prospect", "onboarding", "active", "suspended", "archived"];
const CONTACT_STATUSES: &[&str] = &["active", "inactive"];
const CONTRACT_STATUSES: &[&str] = &["draft", "active", "expired", "terminated"];
const TRANSACTION_KINDS: &[&str] = &["invoice", "payment", "credit_note", "refund", "commission"];
const TRANSACTION_STATUSES: &[&str] = &["pending", "settled", "failed", "refunded"];

const PARTNER: &[Column] = &[
    required(sortable(col("name", General, SHORT))),
    col("legal_name", General, SHORT),
    required(sortable(col("region", General, Kind::Text { max: 32 }))),
    default(
        sortable(col("tier", General, Kind::Text { max: 32 })),
        "standard",
    ),
    default(
        sortable(col("status", General, Kind::Enum(PARTNER_STATUSES))),
        "prospect",
    ),
    col("website", General, Kind::Text { max: 500 }),
    server(col("created_at", General, Kind::Timestamp)),
    server(col("updated_at", General, Kind::Timestamp)),
    col("credit_limit", Financial, Kind::Money),
    col("credit_currency", Financial, Kind::Currency),
    col("payment_terms", Financial, Kind::Text { max: 100 }),
    col("billing_account", Financial, CODE),
    col("bank_account", Financial, CODE),
    col("tax_id", Financial, CODE),
];

const CONTACT: &[Column] = &[
    col("title", General, SHORT),
    col("department", General, SHORT),
    default(
        sortable(col("status", General, Kind::Enum(CONTACT_STATUSES))),
        "active",
    ),
    server(col("created_at", General, Kind::Timestamp)),
    server(col("updated_at", General, Kind::Timestamp)),
    required(col("name", Pii, SHORT)),
    col("email", Pii, Kind::Email),
    col("phone", Pii, Kind::Text { max: 40 }),
];

const CONTRACT: &[Column] = &[
    required(sortable(col("title", General, SHORT))),
    default(
        sortable(col("status", General, Kind::Enum(CONTRACT_STATUSES))),
        "draft",
    ),
    col("start_date", General, Kind::Date),
    col("end_date", General, Kind::Date),
    server(col("created_at", General, Kind::Timestamp)),
    server(col("updated_at", General, Kind::Timestamp)),
    col("value", Financial, Kind::Money),
    col("currency", Financial, Kind::Currency),
    col("commission_rate", Financial, Kind::Rate),
    col("terms", Legal, LONG),
    col("clauses", Legal, LONG),
    col("signed_by", Legal, SHORT),
    col("signed_at", Legal, Kind::Timestamp),
];

const TRANSACTION: &[Column] = &[
    required(sortable(col(
        "kind",
        General,
        Kind::Enum(TRANSACTION_KINDS),
    ))),
    default(
        sortable(col("status", General, Kind::Enum(TRANSACTION_STATUSES))),
        "pending",
    ),
    required(sortable(col("occurred_at", General, Kind::Timestamp))),
    col("contract_id", General, Kind::Ref(ResourceType::Contract)),
    server(col("created_at", General, Kind::Timestamp)),
    server(col("updated_at", General, Kind::Timestamp)),
    required(sortable(col("amount", Financial, Kind::Money))),
    required(col("currency", Financial, Kind::Currency)),
    col("reference", Financial, CODE),
];

/// A record table.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    /// The resource type.
    pub kind: ResourceType,
    /// The table's name.
    pub name: &'static str,
    /// The record columns, beside `id`, `partner_id`, `owner` and the
    /// internal `version`, `p_region` and `p_tier`.
    pub columns: &'static [Column],
}

/// The partner-owned record types.
pub const RECORD_TYPES: [ResourceType; 4] = [
    ResourceType::Partner,
    ResourceType::Contact,
    ResourceType::Contract,
    ResourceType::Transaction,
];

impl Table {
    /// The table of a partner-owned resource type; `None` for other types.
    pub const fn of(kind: ResourceType) -> Option<Table> {
        let (name, columns) = match kind {
            ResourceType::Partner => ("partners", PARTNER),
            ResourceType::Contact => ("contacts", CONTACT),
            ResourceType::Contract => ("contracts", CONTRACT),
            ResourceType::Transaction => ("transactions", TRANSACTION),
            _ => return None,
        };
        Some(Table {
            kind,
            name,
            columns,
        })
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<(usize, &'static Column)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }

    /// Whether records of this type belong to a partner other than
    /// themselves (they carry the partner's region and tier).
    pub const fn is_child(&self) -> bool {
        !matches!(self.kind, ResourceType::Partner)
    }

    /// The SQL expression for a record attribute `when` conditions test:
    /// the record's own general column, or its partner's `region`/`tier`.
    /// `None` when the record has no such attribute (the condition is then
    /// false).
    pub fn attribute_column(&self, attr: &str) -> Option<&'static str> {
        if let Some((_, column)) = self.column(attr)
            && column.class == FieldClass::General
        {
            return Some(column.name);
        }
        match (self.is_child(), attr) {
            (true, "region") => Some("p_region"),
            (true, "tier") => Some("p_tier"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_the_policy_schema() {
        for kind in RECORD_TYPES {
            let table = Table::of(kind).unwrap();
            for &(name, class) in kind.fields() {
                let (_, column) = table
                    .column(name)
                    .unwrap_or_else(|| panic!("{kind}.{name} missing"));
                assert_eq!(column.class, class, "{kind}.{name}");
            }
            for column in table.columns {
                // Extra columns are welcome, but each must have a class the
                // resource type has.
                assert!(
                    kind.classes().contains(column.class),
                    "{kind}.{}",
                    column.name
                );
                // Keyset pagination needs sort columns that are never NULL.
                if column.sortable {
                    assert!(
                        column.required || !column.writable || column.default.is_some(),
                        "{kind}.{} is sortable but may be NULL",
                        column.name
                    );
                }
            }
        }
    }

    #[test]
    fn attributes_map_to_columns() {
        let contact = Table::of(ResourceType::Contact).unwrap();
        assert_eq!(contact.attribute_column("region"), Some("p_region"));
        assert_eq!(contact.attribute_column("status"), Some("status"));
        assert_eq!(
            contact.attribute_column("name"),
            None,
            "pii is not an attribute"
        );
        let partner = Table::of(ResourceType::Partner).unwrap();
        assert_eq!(partner.attribute_column("region"), Some("region"));
    }
}
