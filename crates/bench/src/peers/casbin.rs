//! The same roles, scopes and field classes in casbin (casbin-rs 2).
//!
//! Model: RBAC with ABAC attributes. A request is `(sub, obj, act, cls)`,
//! `sub` and `obj` being structs of the principal's and the record's
//! attributes; a policy line is `(role, resource, actions, classes, scope,
//! condition, high-risk actions)`, one per grant and covered resource type,
//! its lists `|`-separated and tested by a registered `inList` function; `g`
//! binds principals to roles. The high-risk rule and the partner binding are
//! part of the matcher, so that the effect can be "some allow" and casbin
//! can stop at the first line that allows. casbin evaluates the matcher once
//! per policy line (pushing the line's fields into a script scope first),
//! so the matcher tests the cheapest, most selective things first.
//!
//! **How it is called:** once per field class of the record's type (one to
//! three `enforce` calls a request), the visible classes being those
//! allowed. The request structs are built before timing.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use casbin::function_map::OperatorFunction;
use casbin::rhai::Dynamic;
use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi, RbacApi};
use partnerdb_policy::model::{ConditionValue, Scope};
use partnerdb_policy::{CompiledPolicy, FieldClass, FieldSet};
use serde::Serialize;

use crate::engines::{Engine, Outcome};
use crate::workload::{WorkRequest, Workload};

const MODEL: &str = r#"
[request_definition]
r = sub, obj, act, cls

[policy_definition]
p = role, res, acts, classes, scope, cond, hr

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = p.res == r.obj.kind && inList(r.act, p.acts) && inList(r.cls, p.classes) && g(r.sub.id, p.role) && (p.scope == "all" || (p.scope == "own_partner" && r.sub.partner != "" && r.obj.partner == r.sub.partner) || (p.scope == "owned" && r.obj.owner == r.sub.id)) && (p.cond == "-" || (p.cond == "region" && r.obj.region != "" && r.obj.region == r.sub.region)) && (r.sub.partner == "" || !r.obj.po || r.obj.partner == r.sub.partner) && (r.obj.elevated || !inList(r.act, p.hr))
"#;

/// `inList(item, "a|b|c")`: whether `item` is one of the `|`-separated
/// names.
fn in_list(item: Dynamic, list: Dynamic) -> Dynamic {
    match (item.into_immutable_string(), list.into_immutable_string()) {
        (Ok(item), Ok(list)) => Dynamic::from(list.split('|').any(|name| name == item.as_str())),
        _ => Dynamic::from(false),
    }
}

/// The principal as casbin sees it.
#[derive(Clone, Debug, Serialize, Hash)]
pub struct Sub {
    id: String,
    partner: String,
    region: String,
}

/// The record as casbin sees it.
#[derive(Clone, Debug, Serialize, Hash)]
pub struct Obj {
    kind: String,
    po: bool,
    partner: String,
    owner: String,
    region: String,
    elevated: bool,
}

/// casbin with the starter policy translated.
#[allow(
    missing_debug_implementations,
    reason = "casbin's Enforcer is not Debug"
)]
pub struct Casbin<'w> {
    enforcer: Enforcer,
    workload: &'w Workload,
}

/// Runs a future that needs no I/O (casbin's set-up is async in name only
/// with a memory adapter).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
        std::thread::yield_now();
    }
}

fn line(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl<'w> Casbin<'w> {
    /// Translates the policy and binds every principal to its roles.
    pub fn new(policy: &CompiledPolicy, workload: &'w Workload) -> anyhow::Result<Casbin<'w>> {
        let mut lines = BTreeSet::new();
        for role in &policy.policy().roles {
            for grant in &role.grants {
                let scope = match grant.scope {
                    Scope::All => "all",
                    Scope::OwnPartner => "own_partner",
                    Scope::Owned => "owned",
                };
                let condition = match grant.when.as_slice() {
                    [] => "-",
                    [c] if c.attr == "region"
                        && c.value == ConditionValue::Principal("region".into()) =>
                    {
                        "region"
                    }
                    other => anyhow::bail!("the casbin model has no case for conditions {other:?}"),
                };
                for coverage in grant.coverage() {
                    let actions: Vec<&str> = coverage.actions.iter().map(|a| a.name()).collect();
                    let high_risk: Vec<&str> = coverage
                        .actions
                        .iter()
                        .filter(|&a| policy.is_high_risk(coverage.resource, a))
                        .map(|a| a.name())
                        .collect();
                    let classes: Vec<&str> = coverage
                        .fields
                        .in_schema_order(coverage.resource)
                        .map(FieldClass::name)
                        .collect();
                    lines.insert(line(&[
                        &role.name,
                        coverage.resource.name(),
                        &actions.join("|"),
                        &classes.join("|"),
                        scope,
                        condition,
                        &high_risk.join("|"),
                    ]));
                }
            }
        }

        let mut enforcer = block_on(async {
            let model = DefaultModel::from_str(MODEL).await?;
            Enforcer::new(model, MemoryAdapter::default()).await
        })?;
        enforcer.add_function("inList", OperatorFunction::Arg2(in_list));
        block_on(enforcer.add_policies(lines.into_iter().collect()))?;
        let bindings: Vec<Vec<String>> = workload
            .principals
            .iter()
            .flat_map(|p| {
                p.roles
                    .iter()
                    .map(move |role| vec![p.id.clone(), (*role).to_owned()])
            })
            .collect();
        block_on(enforcer.add_grouping_policies(bindings))?;
        // Make sure the role links are built before timing.
        let _ = enforcer.get_roles_for_user("u0", None);
        Ok(Casbin { enforcer, workload })
    }
}

fn attr(attrs: &[(&str, String)], name: &str) -> String {
    attrs
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

impl Engine for Casbin<'_> {
    type Prepared = (Sub, Obj, &'static str, Vec<FieldClass>);

    fn name(&self) -> &'static str {
        "casbin 2"
    }

    fn prepare(&self, request: &WorkRequest) -> Self::Prepared {
        let principal = &self.workload.principals[request.principal];
        let record = &self.workload.records[request.record];
        let sub = Sub {
            id: principal.id.clone(),
            partner: principal.partner_id.clone().unwrap_or_default(),
            region: attr(&principal.attrs, "region"),
        };
        let obj = Obj {
            kind: record.kind.name().to_owned(),
            po: record.kind.is_partner_owned(),
            partner: record.partner_id.clone().unwrap_or_default(),
            owner: record.owner.clone().unwrap_or_default(),
            region: attr(&record.attrs, "region"),
            elevated: request.elevated,
        };
        (
            sub,
            obj,
            request.action.name(),
            record.kind.class_list().to_vec(),
        )
    }

    #[inline]
    fn decide(&self, (sub, obj, action, classes): &Self::Prepared) -> Outcome {
        let mut fields = FieldSet::EMPTY;
        for &class in classes {
            if let Ok(true) = self.enforcer.enforce((sub, obj, *action, class.name())) {
                fields.insert(class);
            }
        }
        Outcome {
            allowed: !fields.is_empty(),
            fields,
        }
    }
}
