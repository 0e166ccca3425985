//! The engines compared by the decision benchmark, behind one trait: each
//! prepares a request once (outside the timing) into its own input form and
//! answers the full question — allowed or not, and which field classes are
//! visible — for every call that is timed.

use arrayvec::ArrayString;
use partnerdb_policy::model::{ConditionValue, Scope};
use partnerdb_policy::{
    Action, CompiledPolicy, FieldSet, Principal, Request, Resource, ResourceType, RoleSet,
};

use crate::workload::{WorkRequest, Workload};

/// What every engine answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The visible classes (empty when denied).
    pub fields: FieldSet,
}

/// A decision engine under benchmark.
pub trait Engine {
    /// A request in the engine's own input form, built once.
    type Prepared;
    /// The engine's name in reports.
    fn name(&self) -> &'static str;
    /// Builds the engine's input for a request (not timed).
    fn prepare(&self, request: &WorkRequest) -> Self::Prepared;
    /// Decides a prepared request (timed).
    fn decide(&self, prepared: &Self::Prepared) -> Outcome;
    /// The matched grants (`role#index`, sorted), for engines that say.
    fn matched(&self, _prepared: &Self::Prepared) -> Option<Vec<String>> {
        None
    }
}

/// partnerdb's compiled engine. Like the floor, it keeps its own compact
/// copy of the principals and records, built once: each principal's id,
/// partner and attributes with its roles resolved against the policy (as the
/// server caches them per principal and policy version), each record's id,
/// partner, owner and attributes, short strings stored inline in the row. A
/// request is decided from a [`Request`] borrowing from those two rows.
#[derive(Debug)]
pub struct Partnerdb<'p> {
    policy: &'p CompiledPolicy,
    principals: Vec<PrincipalRow>,
    records: Vec<RecordRow>,
}

type Short = ArrayString<15>;

#[derive(Debug)]
struct PrincipalRow {
    roles: RoleSet,
    id: Short,
    partner: Option<Short>,
    attrs: [(&'static str, Short); 2],
}

#[derive(Debug)]
struct RecordRow {
    kind: ResourceType,
    id: Short,
    partner: Option<Short>,
    owner: Option<Short>,
    attrs: [(&'static str, Short); 2],
}

fn short(text: &str) -> Short {
    Short::from(text)
        .unwrap_or_else(|_| unimplemented!("workload string `{text}` is longer than 15 bytes"))
}

fn row_attrs(
    attrs: &[(&'static str, String)],
    names: [&'static str; 2],
) -> [(&'static str, Short); 2] {
    names.map(|name| {
        let value = attrs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str());
        // A missing attribute gets no entry: the name is blanked.
        match value {
            Some(value) => (name, short(value)),
            None => ("", Short::new()),
        }
    })
}

impl<'p> Partnerdb<'p> {
    /// Copies the workload into compact rows and resolves every principal's
    /// roles.
    pub fn new(policy: &'p CompiledPolicy, workload: &Workload) -> Partnerdb<'p> {
        let principals = workload
            .principals
            .iter()
            .map(|p| PrincipalRow {
                roles: policy.resolve_roles(p.roles.iter().copied()),
                id: short(&p.id),
                partner: p.partner_id.as_deref().map(short),
                attrs: row_attrs(&p.attrs, ["region", "dept"]),
            })
            .collect();
        let records = workload
            .records
            .iter()
            .map(|r| RecordRow {
                kind: r.kind,
                id: short(&r.id),
                partner: r.partner_id.as_deref().map(short),
                owner: r.owner.as_deref().map(short),
                attrs: row_attrs(&r.attrs, ["region", "tier"]),
            })
            .collect();
        Partnerdb {
            policy,
            principals,
            records,
        }
    }

    #[inline]
    fn with_request<T>(&self, w: &WorkRequest, f: impl FnOnce(&Request<'_>) -> T) -> T {
        let p = &self.principals[w.principal];
        let r = &self.records[w.record];
        let request = Request {
            principal: Principal {
                id: &p.id,
                roles: &p.roles,
                partner_id: p.partner.as_deref(),
                attrs: &p.attrs,
            },
            action: w.action,
            resource: Resource {
                kind: r.kind,
                id: &r.id,
                partner_id: r.partner.as_deref(),
                owner: r.owner.as_deref(),
                attrs: &r.attrs,
            },
            elevated: w.elevated,
        };
        f(&request)
    }
}

impl Engine for Partnerdb<'_> {
    type Prepared = WorkRequest;

    fn name(&self) -> &'static str {
        "partnerdb"
    }

    fn prepare(&self, request: &WorkRequest) -> WorkRequest {
        *request
    }

    #[inline]
    fn decide(&self, w: &WorkRequest) -> Outcome {
        self.with_request(w, |request| {
            let decision = self.policy.decide(request);
            Outcome {
                allowed: decision.allowed,
                fields: decision.fields,
            }
        })
    }

    fn matched(&self, w: &WorkRequest) -> Option<Vec<String>> {
        self.with_request(w, |request| {
            let decision = self.policy.decide(request);
            let mut labels: Vec<String> = if decision.allowed {
                decision
                    .matched
                    .iter()
                    .map(|&g| self.policy.label(g).to_owned())
                    .collect()
            } else {
                Vec::new()
            };
            labels.sort();
            Some(labels)
        })
    }
}

/// The floor: a hand-written evaluator for the starter policy's shapes
/// (scopes, plus `region = $principal.region` conditions), with every id
/// interned to an integer and every (role, resource, action) reduced to four
/// class bitmasks. No engine can do less work and still answer the
/// question; it does not say which grants matched.
#[derive(Debug)]
pub struct Floor {
    cells: Vec<[u8; 4]>,
    high_risk: [u32; ResourceType::COUNT],
    principals: Vec<FloorPrincipal>,
    records: Vec<FloorRecord>,
}

#[derive(Debug)]
struct FloorPrincipal {
    id: u32,
    partner: u32,
    region: u32,
    roles: [u16; 2],
    role_count: u8,
}

#[derive(Debug)]
struct FloorRecord {
    kind: ResourceType,
    partner: u32,
    owner: u32,
    region: u32,
}

const NONE: u32 = u32::MAX;
const ALL: usize = 0;
const OWN_PARTNER: usize = 1;
const OWNED: usize = 2;
const SAME_REGION: usize = 3;
const CELLS: usize = ResourceType::COUNT * Action::COUNT;

impl Floor {
    /// Builds the tables from the starter policy and interns the workload.
    ///
    /// # Panics
    /// On a grant shape the floor was not written for.
    pub fn new(policy: &CompiledPolicy, workload: &Workload) -> Floor {
        let model = policy.policy();
        let mut cells = vec![[0u8; 4]; model.roles.len() * CELLS];
        for (role_index, role) in model.roles.iter().enumerate() {
            for grant in &role.grants {
                let slot = match (grant.scope, grant.when.as_slice()) {
                    (Scope::All, []) => ALL,
                    (Scope::OwnPartner, []) => OWN_PARTNER,
                    (Scope::Owned, []) => OWNED,
                    (Scope::All, [c])
                        if c.attr == "region"
                            && c.value == ConditionValue::Principal("region".into()) =>
                    {
                        SAME_REGION
                    }
                    other => unimplemented!("the floor has no case for {other:?}"),
                };
                for coverage in grant.coverage() {
                    for action in coverage.actions.iter() {
                        let index = role_index * CELLS
                            + coverage.resource.index() * Action::COUNT
                            + action.index();
                        cells[index][slot] |= coverage.fields.bits();
                    }
                }
            }
        }
        let mut high_risk = [0u32; ResourceType::COUNT];
        for &resource in ResourceType::ALL {
            for &action in resource.action_list() {
                if policy.is_high_risk(resource, action) {
                    high_risk[resource.index()] |= 1 << action.index();
                }
            }
        }

        let mut interner: std::collections::HashMap<String, u32> = Default::default();
        let mut intern = |s: Option<&str>| -> u32 {
            match s {
                None => NONE,
                Some(s) => {
                    let next = interner.len() as u32;
                    *interner.entry(s.to_owned()).or_insert(next)
                }
            }
        };
        let principals = workload
            .principals
            .iter()
            .map(|p| {
                let set = policy.resolve_roles(p.roles.iter().copied());
                let ids = set.ids();
                let region = p
                    .attrs
                    .iter()
                    .find(|(k, _)| *k == "region")
                    .map(|(_, v)| v.as_str());
                FloorPrincipal {
                    id: intern(Some(&p.id)),
                    partner: intern(p.partner_id.as_deref()),
                    region: intern(region),
                    roles: [
                        ids.first().copied().unwrap_or(0),
                        ids.get(1).copied().unwrap_or(0),
                    ],
                    role_count: ids.len() as u8,
                }
            })
            .collect();
        let records = workload
            .records
            .iter()
            .map(|r| {
                let region = r
                    .attrs
                    .iter()
                    .find(|(k, _)| *k == "region")
                    .map(|(_, v)| v.as_str());
                FloorRecord {
                    kind: r.kind,
                    partner: intern(r.partner_id.as_deref()),
                    owner: intern(r.owner.as_deref()),
                    region: intern(region),
                }
            })
            .collect();
        Floor {
            cells,
            high_risk,
            principals,
            records,
        }
    }
}

impl Engine for Floor {
    type Prepared = WorkRequest;

    fn name(&self) -> &'static str {
        "bitset floor"
    }

    fn prepare(&self, request: &WorkRequest) -> WorkRequest {
        *request
    }

    #[inline]
    fn decide(&self, w: &WorkRequest) -> Outcome {
        let p = &self.principals[w.principal];
        let r = &self.records[w.record];
        let denied = Outcome {
            allowed: false,
            fields: FieldSet::EMPTY,
        };
        if p.partner != NONE && r.kind.is_partner_owned() && r.partner != p.partner {
            return denied;
        }
        let offset = r.kind.index() * Action::COUNT + w.action.index();
        let mut fields = 0u8;
        for &role in &p.roles[..usize::from(p.role_count)] {
            let cell = &self.cells[usize::from(role) * CELLS + offset];
            fields |= cell[ALL];
            if p.partner != NONE && r.partner == p.partner {
                fields |= cell[OWN_PARTNER];
            }
            if r.owner == p.id {
                fields |= cell[OWNED];
            }
            if r.region != NONE && r.region == p.region {
                fields |= cell[SAME_REGION];
            }
        }
        let high_risk = self.high_risk[r.kind.index()] & (1 << w.action.index()) != 0;
        if fields == 0 || (high_risk && !w.elevated) {
            return denied;
        }
        Outcome {
            allowed: true,
            fields: FieldSet::from_bits(fields),
        }
    }
}
