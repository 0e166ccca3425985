//! The built-in schema: resource types, the actions each one has and the
//! field classes its fields fall into.
//!
//! Everything here is a closed enum backed by a small bitset, so that the
//! compiled engine can index tables by it and the rest of the code cannot
//! hold a resource, action or class that does not exist.

use std::fmt;

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// How many values there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The name used in policy files and on the wire.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a name as written in policy files and requests.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// Position of this value in [`Self::ALL`].
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_enum! {
    /// A type of record or service object that a policy grants access to.
    ResourceType {
        Partner = "partner",
        Contact = "contact",
        Contract = "contract",
        Transaction = "transaction",
        Metrics = "metrics",
        Workflow = "workflow",
        Elevation = "elevation",
        Principal = "principal",
        Policy = "policy",
        Audit = "audit",
        System = "system",
    }
}

named_enum! {
    /// Something a principal may do to a resource.
    Action {
        Read = "read",
        Create = "create",
        Update = "update",
        Delete = "delete",
        Export = "export",
        Erase = "erase",
        Propose = "propose",
        Approve = "approve",
        Reject = "reject",
        Refund = "refund",
        Trigger = "trigger",
        Request = "request",
        Assign = "assign",
        Apply = "apply",
        Rollback = "rollback",
        Verify = "verify",
        Backup = "backup",
        Restore = "restore",
        Vacuum = "vacuum",
        Reindex = "reindex",
        Check = "check",
    }
}

named_enum! {
    /// The sensitivity class of a field; grants name the classes they cover.
    FieldClass {
        General = "general",
        Financial = "financial",
        Pii = "pii",
        Legal = "legal",
    }
}

impl FieldClass {
    /// Whether fields of this class are sensitive (lint wants such grants to
    /// name their classes explicitly).
    pub const fn is_sensitive(self) -> bool {
        !matches!(self, FieldClass::General)
    }
}

use Action as A;
use FieldClass as F;

const PARTNER_ACTIONS: &[Action] = &[A::Read, A::Create, A::Update, A::Delete, A::Export];
const CONTACT_ACTIONS: &[Action] = &[
    A::Read,
    A::Create,
    A::Update,
    A::Delete,
    A::Export,
    A::Erase,
];
const CONTRACT_ACTIONS: &[Action] = &[
    A::Read,
    A::Create,
    A::Update,
    A::Delete,
    A::Export,
    A::Propose,
    A::Approve,
    A::Reject,
];
const TRANSACTION_ACTIONS: &[Action] = &[A::Read, A::Create, A::Update, A::Refund, A::Export];
const PRINCIPAL_ACTIONS: &[Action] = &[A::Read, A::Create, A::Update, A::Delete, A::Assign];
const POLICY_ACTIONS: &[Action] = &[A::Read, A::Propose, A::Apply, A::Rollback];
const AUDIT_ACTIONS: &[Action] = &[A::Read, A::Export, A::Verify];
const SYSTEM_ACTIONS: &[Action] = &[A::Backup, A::Restore, A::Vacuum, A::Reindex, A::Check];

impl ResourceType {
    /// The actions this resource type has, in schema order.
    pub const fn action_list(self) -> &'static [Action] {
        match self {
            ResourceType::Partner => PARTNER_ACTIONS,
            ResourceType::Contact => CONTACT_ACTIONS,
            ResourceType::Contract => CONTRACT_ACTIONS,
            ResourceType::Transaction => TRANSACTION_ACTIONS,
            ResourceType::Metrics => &[A::Read],
            ResourceType::Workflow => &[A::Trigger],
            ResourceType::Elevation => &[A::Request, A::Approve],
            ResourceType::Principal => PRINCIPAL_ACTIONS,
            ResourceType::Policy => POLICY_ACTIONS,
            ResourceType::Audit => AUDIT_ACTIONS,
            ResourceType::System => SYSTEM_ACTIONS,
        }
    }

    /// The actions this resource type has, as a set.
    pub fn actions(self) -> ActionSet {
        ActionSet::from_iter(self.action_list().iter().copied())
    }

    /// Whether `action` is one of this resource type's actions.
    pub fn has_action(self, action: Action) -> bool {
        self.action_list().contains(&action)
    }

    /// The field classes of this resource type, in schema order (the order
    /// decisions report visible fields in).
    pub const fn class_list(self) -> &'static [FieldClass] {
        match self {
            ResourceType::Partner => &[F::General, F::Financial],
            ResourceType::Contact => &[F::General, F::Pii],
            ResourceType::Contract => &[F::General, F::Legal, F::Financial],
            ResourceType::Transaction => &[F::General, F::Financial],
            _ => &[F::General],
        }
    }

    /// The field classes of this resource type, as a set.
    pub fn classes(self) -> FieldSet {
        FieldSet::from_iter(self.class_list().iter().copied())
    }

    /// Whether records of this type belong to a partner (carry `partner_id`
    /// and `owner`), so that scopes other than `all`, `when` conditions and
    /// partner binding apply to them.
    pub const fn is_partner_owned(self) -> bool {
        matches!(
            self,
            ResourceType::Partner
                | ResourceType::Contact
                | ResourceType::Contract
                | ResourceType::Transaction
        )
    }
}

const PARTNER_FIELDS: &[(&str, FieldClass)] = &[
    ("name", F::General),
    ("legal_name", F::General),
    ("region", F::General),
    ("tier", F::General),
    ("status", F::General),
    ("website", F::General),
    ("created_at", F::General),
    ("updated_at", F::General),
    ("credit_limit", F::Financial),
    ("payment_terms", F::Financial),
    ("billing_account", F::Financial),
    ("bank_account", F::Financial),
    ("tax_id", F::Financial),
];
const CONTACT_FIELDS: &[(&str, FieldClass)] = &[
    ("title", F::General),
    ("department", F::General),
    ("status", F::General),
    ("created_at", F::General),
    ("name", F::Pii),
    ("email", F::Pii),
    ("phone", F::Pii),
];
const CONTRACT_FIELDS: &[(&str, FieldClass)] = &[
    ("title", F::General),
    ("status", F::General),
    ("start_date", F::General),
    ("end_date", F::General),
    ("created_at", F::General),
    ("value", F::Financial),
    ("currency", F::Financial),
    ("commission_rate", F::Financial),
    ("terms", F::Legal),
    ("clauses", F::Legal),
    ("signed_by", F::Legal),
    ("signed_at", F::Legal),
];
const TRANSACTION_FIELDS: &[(&str, FieldClass)] = &[
    ("kind", F::General),
    ("status", F::General),
    ("occurred_at", F::General),
    ("contract_id", F::General),
    ("amount", F::Financial),
    ("currency", F::Financial),
    ("reference", F::Financial),
];

/// Attributes every partner-owned record has from its partner.
pub const PARTNER_ATTRIBUTES: &[&str] = &["region", "tier"];

impl ResourceType {
    /// The record fields of this type with their classes (beside `id`,
    /// `partner_id` and `owner`, which every reader sees). Empty for types
    /// that are not records.
    pub const fn fields(self) -> &'static [(&'static str, FieldClass)] {
        match self {
            ResourceType::Partner => PARTNER_FIELDS,
            ResourceType::Contact => CONTACT_FIELDS,
            ResourceType::Contract => CONTRACT_FIELDS,
            ResourceType::Transaction => TRANSACTION_FIELDS,
            _ => &[],
        }
    }

    /// The class of field `name`, if this type has that field.
    pub fn field_class(self, name: &str) -> Option<FieldClass> {
        self.fields()
            .iter()
            .find(|(field, _)| *field == name)
            .map(|&(_, class)| class)
    }

    /// The attributes `when` conditions can test on this type: its own
    /// general fields plus its partner's `region` and `tier`.
    pub fn attributes(self) -> impl Iterator<Item = &'static str> {
        let own = self
            .fields()
            .iter()
            .filter(|(_, class)| *class == FieldClass::General)
            .map(|&(name, _)| name);
        let inherited = if self.is_partner_owned() {
            PARTNER_ATTRIBUTES
        } else {
            &[]
        };
        own.chain(
            inherited
                .iter()
                .copied()
                .filter(move |name| self.field_class(name) != Some(FieldClass::General)),
        )
    }
}

/// A concrete permission, `resource:action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission {
    /// The resource type.
    pub resource: ResourceType,
    /// The action on it.
    pub action: Action,
}

impl Permission {
    /// Every permission the schema has, resource by resource in schema order.
    pub fn all() -> impl Iterator<Item = Permission> {
        ResourceType::ALL.iter().flat_map(|&resource| {
            resource
                .action_list()
                .iter()
                .map(move |&action| Permission { resource, action })
        })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)
    }
}

/// A set of actions (a bitset over [`Action`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionSet(u32);

/// A set of field classes (a bitset over [`FieldClass`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldSet(u8);

macro_rules! bitset {
    ($set:ident, $item:ident, $bits:ty) => {
        impl $set {
            /// The empty set.
            pub const EMPTY: $set = $set(0);

            /// A set holding one value.
            pub const fn of(item: $item) -> $set {
                $set(1 << item as u8)
            }

            /// Whether the set holds `item`.
            pub const fn contains(self, item: $item) -> bool {
                self.0 & (1 << item as u8) != 0
            }

            /// Adds `item`.
            pub fn insert(&mut self, item: $item) {
                self.0 |= 1 << item as u8;
            }

            /// Whether the set is empty.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// How many values the set holds.
            pub const fn len(self) -> usize {
                self.0.count_ones() as usize
            }

            /// The values both sets hold.
            pub const fn intersection(self, other: $set) -> $set {
                $set(self.0 & other.0)
            }

            /// The values either set holds.
            pub const fn union(self, other: $set) -> $set {
                $set(self.0 | other.0)
            }

            /// The values of `self` that `other` lacks.
            pub const fn difference(self, other: $set) -> $set {
                $set(self.0 & !other.0)
            }

            /// Whether every value of `self` is in `other`.
            pub const fn is_subset(self, other: $set) -> bool {
                self.0 & !other.0 == 0
            }

            /// The raw bits, for compact storage and hashing.
            pub const fn bits(self) -> $bits {
                self.0
            }

            /// The values in the set, in the enum's order.
            pub fn iter(self) -> impl Iterator<Item = $item> {
                $item::ALL
                    .iter()
                    .copied()
                    .filter(move |&item| self.contains(item))
            }
        }

        impl FromIterator<$item> for $set {
            fn from_iter<I: IntoIterator<Item = $item>>(iter: I) -> Self {
                let mut set = $set::EMPTY;
                for item in iter {
                    set.insert(item);
                }
                set
            }
        }

        impl fmt::Debug for $set {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_set().entries(self.iter()).finish()
            }
        }
    };
}

bitset!(ActionSet, Action, u32);
bitset!(FieldSet, FieldClass, u8);

impl FieldSet {
    /// The set whose raw bits are `bits` (bits of no class are dropped).
    pub const fn from_bits(bits: u8) -> FieldSet {
        FieldSet(bits & ((1 << FieldClass::COUNT) - 1))
    }

    /// The classes of the set that `resource` has, in that resource's schema
    /// order (the order decisions report).
    pub fn in_schema_order(self, resource: ResourceType) -> impl Iterator<Item = FieldClass> {
        resource
            .class_list()
            .iter()
            .copied()
            .filter(move |&class| self.contains(class))
    }
}

/// The closest name among `candidates` to a misspelt `input`, if one is close
/// enough to be a likely typo.
pub fn suggest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (input.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(input, candidate), candidate))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_has_actions_and_general_fields() {
        for &resource in ResourceType::ALL {
            assert!(!resource.action_list().is_empty(), "{resource}");
            assert!(
                resource.classes().contains(FieldClass::General),
                "{resource}"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for &resource in ResourceType::ALL {
            assert_eq!(ResourceType::parse(resource.name()), Some(resource));
        }
        for &action in Action::ALL {
            assert_eq!(Action::parse(action.name()), Some(action));
        }
        for &class in FieldClass::ALL {
            assert_eq!(FieldClass::parse(class.name()), Some(class));
        }
        assert_eq!(ResourceType::parse("Partner"), None);
    }

    #[test]
    fn contract_classes_are_reported_in_schema_order() {
        let all = FieldSet::from_iter(FieldClass::ALL.iter().copied());
        let order: Vec<_> = all.in_schema_order(ResourceType::Contract).collect();
        assert_eq!(
            order,
            [
                FieldClass::General,
                FieldClass::Legal,
                FieldClass::Financial
            ]
        );
    }

    #[test]
    fn every_action_belongs_to_some_resource() {
        for &action in Action::ALL {
            assert!(
                ResourceType::ALL.iter().any(|r| r.has_action(action)),
                "{action}"
            );
        }
    }

    #[test]
    fn record_fields_cover_their_classes() {
        for &resource in ResourceType::ALL {
            if resource.is_partner_owned() {
                let classes = FieldSet::from_iter(resource.fields().iter().map(|&(_, c)| c));
                assert_eq!(classes, resource.classes(), "{resource}");
            } else {
                assert!(resource.fields().is_empty());
            }
        }
        let contract: Vec<_> = ResourceType::Contract.attributes().collect();
        assert!(contract.contains(&"status") && contract.contains(&"region"));
        assert!(!contract.contains(&"value"));
        let partner: Vec<_> = ResourceType::Partner.attributes().collect();
        assert_eq!(partner.iter().filter(|&&a| a == "region").count(), 1);
    }

    #[test]
    fn suggestions_find_typos_only() {
        let actions = Action::ALL.iter().map(|a| a.name());
        assert_eq!(suggest("aprove", actions.clone()), Some("approve"));
        assert_eq!(suggest("raed", actions.clone()), Some("read"));
        let partner_actions = ResourceType::Partner.action_list().iter().map(|a| a.name());
        assert_eq!(suggest("refund", partner_actions), None);
        assert_eq!(suggest("xyzzy", actions), None);
    }
}
