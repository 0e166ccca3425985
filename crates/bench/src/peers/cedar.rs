//! The same roles, scopes and field classes in Cedar (cedar-policy 4).
//!
//! Model: principals are `User` entities whose parents are `Role` entities;
//! records are entities of their type (`Partner`, `Contact`, …) with
//! `partner` (a string), `owner` (a `User`), `region` and `tier`. Cedar has
//! no field classes, so an action is a (resource, action, class) triple —
//! `Action::"partner:read:financial"`.
//!
//! Cedar evaluates every policy of the set for every request, so the
//! translation keeps the set small: the grants of a role that share a reach
//! (scope and conditions) become one `permit`, whose action scope is one
//! action group (`action in Action::"…"`) holding every triple those grants
//! cover — one ancestor check per policy instead of a scan of a long action
//! list. The triples name their resource type, so the resource needs no
//! type constraint; scope conditions guard with `has`. Elevation is
//! `context.elevated`; two `forbid` policies carry the high-risk rule (an
//! action group too) and the partner binding. For the starter policy that
//! is 12 `permit` and 2 `forbid` policies.
//!
//! **How it is called**, in one of two modes, both timed for the whole
//! answer (decision and visible classes):
//!
//! - [`Mode::PerClass`]: once per field class of the record's type (one to
//!   three calls a request); the visible classes are those allowed.
//! - [`Mode::PerRequest`]: actions are (resource, action) pairs, Cedar is
//!   called once, and the visible classes are computed apart from the
//!   determining policies: every grant of a policy shares its reach, so when
//!   the policy holds, all its grants covering the pair hold, and their
//!   classes are looked up in a table built at translation.
//!
//! Every `Request` and all entities are built before timing. The matched
//! grants (checked for agreement, not timed) are the grants of the
//! determining policies that cover the requested action.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet, Request, RestrictedExpression,
};
use partnerdb_policy::effective::Reach;
use partnerdb_policy::model::{ConditionValue, Scope};
use partnerdb_policy::{Action, CompiledPolicy, FieldClass, FieldSet, Permission, ResourceType};

use crate::engines::{Engine, Outcome};
use crate::workload::{WorkRequest, Workload};

/// How Cedar is asked for the visible classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One call per field class of the record's type.
    PerClass,
    /// One call per request; classes from the determining policies.
    PerRequest,
}

/// Cedar with the starter policy translated.
#[derive(Debug)]
pub struct Cedar<'w> {
    mode: Mode,
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
    /// Policy id → the grants it stands for, each with the actions it covers.
    grants: HashMap<String, Vec<(String, HashSet<String>)>>,
    /// (policy id, action id) → classes its grants give there.
    fields: HashMap<(String, String), FieldSet>,
    workload: &'w Workload,
}

/// A request prepared for Cedar: the calls to make (one, or one per field
/// class) with the action id each asks about.
#[derive(Debug)]
pub struct Prepared {
    calls: Vec<(Option<FieldClass>, Request, String)>,
}

fn type_name(kind: ResourceType) -> String {
    let name = kind.name();
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn uid(type_name: &str, id: &str) -> anyhow::Result<EntityUid> {
    Ok(EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(type_name)?,
        EntityId::from_str(id)?,
    ))
}

/// The Cedar action id: `resource:action:class`, or `resource:action`
/// without a class.
fn action_id(resource: ResourceType, action: Action, class: Option<FieldClass>) -> String {
    match class {
        Some(class) => format!("{resource}:{action}:{class}"),
        None => format!("{resource}:{action}"),
    }
}

/// The classes an action id stands for in `mode`: one, or none (all).
fn class_options(mode: Mode, resource: ResourceType) -> Vec<Option<FieldClass>> {
    match mode {
        Mode::PerClass => resource.class_list().iter().copied().map(Some).collect(),
        Mode::PerRequest => vec![None],
    }
}

fn conditions(reach: &Reach) -> String {
    let mut parts = Vec::new();
    match reach.scope {
        Scope::All => {}
        Scope::OwnPartner => parts.push(
            "principal has partner && resource has partner && resource.partner == principal.partner"
                .to_owned(),
        ),
        Scope::Owned => parts.push("resource has owner && resource.owner == principal".to_owned()),
    }
    for condition in &reach.when {
        let attr = &condition.attr;
        parts.push(match &condition.value {
            ConditionValue::Literal(value) => {
                format!("resource has {attr} && resource.{attr} == {value:?}")
            }
            ConditionValue::Principal(p) => format!(
                "resource has {attr} && principal has {p} && resource.{attr} == principal.{p}"
            ),
        });
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" when {{ {} }}", parts.join(" && "))
    }
}

/// Cedar policies for a compiled policy, the action entities (each triple a
/// child of the groups that grant it) and which grants each policy stands
/// for.
#[derive(Debug)]
pub struct Translation {
    /// The policies.
    pub policies: PolicySet,
    /// Action entities with their groups.
    pub actions: Vec<Entity>,
    /// Policy id → grants (`role#index`) with the action ids each covers.
    pub grants: HashMap<String, Vec<(String, HashSet<String>)>>,
    /// (policy id, action id) → the classes its grants give there.
    pub fields: HashMap<(String, String), FieldSet>,
}

/// Translates a compiled policy's model into Cedar policies and action
/// groups.
pub fn translate(policy: &CompiledPolicy, mode: Mode) -> anyhow::Result<Translation> {
    let mut set = PolicySet::new();
    // Action id → the action groups it belongs to.
    let mut parents: HashMap<String, HashSet<String>> = HashMap::new();
    for permission in Permission::all() {
        for class in class_options(mode, permission.resource) {
            parents.insert(
                action_id(permission.resource, permission.action, class),
                HashSet::new(),
            );
        }
    }
    let mut grants: HashMap<String, Vec<(String, HashSet<String>)>> = HashMap::new();
    let mut fields: HashMap<(String, String), FieldSet> = HashMap::new();
    for role in &policy.policy().roles {
        // Reach → the role's grants with it, in file order.
        let mut by_reach: BTreeMap<Reach, Vec<usize>> = BTreeMap::new();
        for (index, grant) in role.grants.iter().enumerate() {
            by_reach.entry(Reach::of(grant)).or_default().push(index);
        }
        for (n, (reach, indices)) in by_reach.iter().enumerate() {
            let id = format!("{}@{n}", role.name);
            let mut members = Vec::new();
            for &index in indices {
                let mut covered = HashSet::new();
                for coverage in role.grants[index].coverage() {
                    for action in coverage.actions.iter() {
                        let classes: Vec<Option<FieldClass>> = match mode {
                            Mode::PerClass => coverage
                                .fields
                                .in_schema_order(coverage.resource)
                                .map(Some)
                                .collect(),
                            Mode::PerRequest => vec![None],
                        };
                        for class in classes {
                            let a = action_id(coverage.resource, action, class);
                            if let Some(groups) = parents.get_mut(&a) {
                                groups.insert(id.clone());
                            }
                            let given = fields.entry((id.clone(), a.clone())).or_default();
                            *given = given.union(coverage.fields);
                            covered.insert(a);
                        }
                    }
                }
                members.push((format!("{}#{index}", role.name), covered));
            }
            let text = format!(
                "permit(principal in Role::\"{}\", action in Action::\"{id}\", resource){};",
                role.name,
                conditions(reach)
            );
            set.add(Policy::parse(Some(PolicyId::new(&id)), text)?)?;
            grants.insert(id, members);
        }
    }
    for permission in Permission::all() {
        if policy.is_high_risk(permission.resource, permission.action) {
            for class in class_options(mode, permission.resource) {
                if let Some(groups) =
                    parents.get_mut(&action_id(permission.resource, permission.action, class))
                {
                    groups.insert("high-risk".to_owned());
                }
            }
        }
    }
    set.add(Policy::parse(
        Some(PolicyId::new("high-risk")),
        "forbid(principal, action in Action::\"high-risk\", resource) unless { context.elevated };",
    )?)?;
    let owned_types: Vec<String> = ResourceType::ALL
        .iter()
        .filter(|k| k.is_partner_owned())
        .map(|&k| format!("resource is {}", type_name(k)))
        .collect();
    let text = format!(
        "forbid(principal, action, resource) when {{ principal has partner && ({}) && !(resource has partner && resource.partner == principal.partner) }};",
        owned_types.join(" || ")
    );
    set.add(Policy::parse(Some(PolicyId::new("partner-binding")), text)?)?;

    let mut actions = Vec::new();
    let mut group_names: HashSet<String> = HashSet::new();
    for (a, groups) in &parents {
        let mut uids = HashSet::new();
        for group in groups {
            uids.insert(uid("Action", group)?);
            group_names.insert(group.clone());
        }
        actions.push(Entity::new_no_attrs(uid("Action", a)?, uids));
    }
    group_names.insert("high-risk".to_owned());
    for group in group_names {
        actions.push(Entity::new_no_attrs(uid("Action", &group)?, HashSet::new()));
    }
    Ok(Translation {
        policies: set,
        actions,
        grants,
        fields,
    })
}

impl<'w> Cedar<'w> {
    /// Translates the policy and loads every principal and record as
    /// entities.
    pub fn new(
        policy: &CompiledPolicy,
        workload: &'w Workload,
        mode: Mode,
    ) -> anyhow::Result<Cedar<'w>> {
        let Translation {
            policies,
            actions: mut entities,
            grants,
            fields,
        } = translate(policy, mode)?;
        for role in &policy.policy().roles {
            entities.push(Entity::new_no_attrs(
                uid("Role", &role.name)?,
                HashSet::new(),
            ));
        }
        let defined: HashSet<&str> = policy
            .policy()
            .roles
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        for principal in &workload.principals {
            let mut attrs = HashMap::new();
            if let Some(partner) = &principal.partner_id {
                attrs.insert(
                    "partner".to_owned(),
                    RestrictedExpression::new_string(partner.clone()),
                );
            }
            for (key, value) in &principal.attrs {
                attrs.insert(
                    (*key).to_owned(),
                    RestrictedExpression::new_string(value.clone()),
                );
            }
            let mut parents = HashSet::new();
            for role in principal.roles.iter().filter(|r| defined.contains(*r)) {
                parents.insert(uid("Role", role)?);
            }
            entities.push(Entity::new(uid("User", &principal.id)?, attrs, parents)?);
        }
        for record in &workload.records {
            let mut attrs = HashMap::new();
            if let Some(partner) = &record.partner_id {
                attrs.insert(
                    "partner".to_owned(),
                    RestrictedExpression::new_string(partner.clone()),
                );
            }
            if let Some(owner) = &record.owner {
                attrs.insert(
                    "owner".to_owned(),
                    RestrictedExpression::new_entity_uid(uid("User", owner)?),
                );
            }
            for (key, value) in &record.attrs {
                attrs.insert(
                    (*key).to_owned(),
                    RestrictedExpression::new_string(value.clone()),
                );
            }
            entities.push(Entity::new(
                uid(&type_name(record.kind), &record.id)?,
                attrs,
                HashSet::new(),
            )?);
        }
        Ok(Cedar {
            mode,
            authorizer: Authorizer::new(),
            policies,
            entities: Entities::from_entities(entities, None)?,
            grants,
            fields,
            workload,
        })
    }

    fn build(&self, request: &WorkRequest) -> anyhow::Result<Prepared> {
        let principal = uid("User", &self.workload.principals[request.principal].id)?;
        let record = &self.workload.records[request.record];
        let resource = uid(&type_name(record.kind), &record.id)?;
        let context = Context::from_pairs([(
            "elevated".to_owned(),
            RestrictedExpression::new_bool(request.elevated),
        )])?;
        let mut calls = Vec::new();
        for class in class_options(self.mode, record.kind) {
            let a = action_id(record.kind, request.action, class);
            let request = Request::new(
                principal.clone(),
                uid("Action", &a)?,
                resource.clone(),
                context.clone(),
                None,
            )?;
            calls.push((class, request, a));
        }
        Ok(Prepared { calls })
    }
}

impl Engine for Cedar<'_> {
    type Prepared = Prepared;

    fn name(&self) -> &'static str {
        match self.mode {
            Mode::PerClass => "cedar-policy 4, a call per class",
            Mode::PerRequest => "cedar-policy 4, a call per request",
        }
    }

    fn prepare(&self, request: &WorkRequest) -> Prepared {
        match self.build(request) {
            Ok(prepared) => prepared,
            Err(error) => unreachable!("cannot build a Cedar request: {error}"),
        }
    }

    #[inline]
    fn decide(&self, prepared: &Prepared) -> Outcome {
        let mut fields = FieldSet::EMPTY;
        for (class, request, action) in &prepared.calls {
            let response = self
                .authorizer
                .is_authorized(request, &self.policies, &self.entities);
            if response.decision() != Decision::Allow {
                continue;
            }
            match class {
                Some(class) => fields.insert(*class),
                None => {
                    for id in response.diagnostics().reason() {
                        let key = (id.to_string(), action.clone());
                        if let Some(given) = self.fields.get(&key) {
                            fields = fields.union(*given);
                        }
                    }
                }
            }
        }
        Outcome {
            allowed: !fields.is_empty(),
            fields,
        }
    }

    fn matched(&self, prepared: &Prepared) -> Option<Vec<String>> {
        let mut labels = HashSet::new();
        for (_, request, action) in &prepared.calls {
            let response = self
                .authorizer
                .is_authorized(request, &self.policies, &self.entities);
            if response.decision() != Decision::Allow {
                continue;
            }
            for id in response.diagnostics().reason() {
                for (label, covered) in self.grants.get(&id.to_string()).into_iter().flatten() {
                    if covered.contains(action) {
                        labels.insert(label.clone());
                    }
                }
            }
        }
        let mut labels: Vec<String> = labels.into_iter().collect();
        labels.sort();
        Some(labels)
    }
}
