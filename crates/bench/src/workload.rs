//! A realistic decision workload on the starter policy: 10,000 principals
//! with one or two roles, 1,000 partners with their contacts, contracts and
//! transactions, and a stream of random requests. Deterministic for a seed,
//! so every engine sees exactly the same requests.

use partnerdb_policy::{Action, ResourceType};

/// A small, fast, seedable generator (SplitMix64): enough for workloads,
/// and no dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// An index drawn with the given weights.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(total as usize) as u32;
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// The regions partners and principals are in.
pub const REGIONS: &[&str] = &["emea", "apac", "amer", "latam"];
/// Partner tiers.
pub const TIERS: &[&str] = &["gold", "silver", "bronze"];

/// The roles principals are drawn from, with their weights.
const ROLE_WEIGHTS: &[(&str, u32)] = &[
    ("partner_manager", 30),
    ("api_client", 25),
    ("finance", 10),
    ("analyst", 8),
    ("legal", 6),
    ("read_only", 6),
    ("read_write", 6),
    ("maintenance", 3),
    ("auditor", 3),
    ("admin", 1),
    // A role the policy does not define: it grants nothing.
    ("retired_role", 2),
];

/// A principal of the workload.
#[derive(Clone, Debug)]
pub struct WorkPrincipal {
    /// `u<n>`.
    pub id: String,
    /// One or two role names.
    pub roles: Vec<&'static str>,
    /// The partner of a partner-bound principal.
    pub partner_id: Option<String>,
    /// `region` (all of them) and `dept`.
    pub attrs: Vec<(&'static str, String)>,
}

/// A record (or a non-record resource such as `metrics`).
#[derive(Clone, Debug)]
pub struct WorkRecord {
    /// Its type.
    pub kind: ResourceType,
    /// Its id.
    pub id: String,
    /// Its partner.
    pub partner_id: Option<String>,
    /// Its partner's manager.
    pub owner: Option<String>,
    /// `region` and `tier` of its partner (partner-owned records only).
    pub attrs: Vec<(&'static str, String)>,
}

/// One request: indices into the workload's principals and records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkRequest {
    /// Index into [`Workload::principals`].
    pub principal: usize,
    /// The action (one of the record type's actions).
    pub action: Action,
    /// Index into [`Workload::records`].
    pub record: usize,
    /// Whether the principal holds an elevation for it.
    pub elevated: bool,
}

/// Principals and records, generated from a seed.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The principals.
    pub principals: Vec<WorkPrincipal>,
    /// The records: partners first, then contacts, contracts, transactions,
    /// then one resource of each non-record type.
    pub records: Vec<WorkRecord>,
    /// For each partner index, the indices of its records (itself first).
    pub by_partner: Vec<Vec<usize>>,
    /// Indices of the non-record resources.
    pub singletons: Vec<usize>,
}

/// The workload's size.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// Principals.
    pub principals: usize,
    /// Partners.
    pub partners: usize,
    /// Contacts per partner.
    pub contacts: usize,
    /// Contracts per partner.
    pub contracts: usize,
    /// Transactions per partner.
    pub transactions: usize,
}

impl Size {
    /// The size the issue asks for: 10,000 principals, 1,000 partners.
    pub const STANDARD: Size = Size {
        principals: 10_000,
        partners: 1_000,
        contacts: 4,
        contracts: 2,
        transactions: 10,
    };
}

impl Workload {
    /// Generates principals and records.
    pub fn generate(size: Size, seed: u64) -> Workload {
        let mut rng = Rng::new(seed);
        let weights: Vec<u32> = ROLE_WEIGHTS.iter().map(|&(_, w)| w).collect();
        let mut principals = Vec::with_capacity(size.principals);
        for n in 0..size.principals {
            let first = ROLE_WEIGHTS[rng.weighted(&weights)].0;
            let mut roles = vec![first];
            if rng.chance(0.3) {
                let second = ROLE_WEIGHTS[rng.weighted(&weights)].0;
                if second != first {
                    roles.push(second);
                }
            }
            let partner_id = roles
                .contains(&"api_client")
                .then(|| format!("p{}", rng.below(size.partners)));
            principals.push(WorkPrincipal {
                id: format!("u{n}"),
                roles,
                partner_id,
                attrs: vec![
                    ("region", (*rng.pick(REGIONS)).to_owned()),
                    ("dept", format!("d{}", rng.below(20))),
                ],
            });
        }
        let managers: Vec<usize> = principals
            .iter()
            .enumerate()
            .filter(|(_, p)| p.roles.contains(&"partner_manager"))
            .map(|(i, _)| i)
            .collect();

        let mut records = Vec::new();
        let mut by_partner = vec![Vec::new(); size.partners];
        for (p, own) in by_partner.iter_mut().enumerate() {
            let owner = principals[*rng.pick(&managers)].id.clone();
            let attrs = vec![
                ("region", (*rng.pick(REGIONS)).to_owned()),
                ("tier", (*rng.pick(TIERS)).to_owned()),
            ];
            let partner_id = format!("p{p}");
            let mut add = |kind: ResourceType, id: String, records: &mut Vec<WorkRecord>| {
                own.push(records.len());
                records.push(WorkRecord {
                    kind,
                    id,
                    partner_id: Some(partner_id.clone()),
                    owner: Some(owner.clone()),
                    attrs: attrs.clone(),
                });
            };
            add(ResourceType::Partner, partner_id.clone(), &mut records);
            for i in 0..size.contacts {
                add(ResourceType::Contact, format!("c{p}-{i}"), &mut records);
            }
            for i in 0..size.contracts {
                add(ResourceType::Contract, format!("k{p}-{i}"), &mut records);
            }
            for i in 0..size.transactions {
                add(ResourceType::Transaction, format!("t{p}-{i}"), &mut records);
            }
        }
        let mut singletons = Vec::new();
        for &kind in ResourceType::ALL.iter().filter(|k| !k.is_partner_owned()) {
            singletons.push(records.len());
            records.push(WorkRecord {
                kind,
                id: kind.name().to_owned(),
                partner_id: None,
                owner: None,
                attrs: Vec::new(),
            });
        }
        Workload {
            principals,
            records,
            by_partner,
            singletons,
        }
    }

    /// `count` random requests: mostly on partner records, read-heavy, with
    /// principals often asking about partners they manage or belong to (so
    /// that allows and denies both occur), and 10% elevated.
    pub fn requests(&self, count: usize, seed: u64) -> Vec<WorkRequest> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(count);
        let owned_by: std::collections::HashMap<&str, Vec<usize>> = {
            let mut map: std::collections::HashMap<&str, Vec<usize>> = Default::default();
            for (p, records) in self.by_partner.iter().enumerate() {
                if let Some(owner) = self.records[records[0]].owner.as_deref() {
                    map.entry(owner).or_default().push(p);
                }
            }
            map
        };
        for _ in 0..count {
            let principal = rng.below(self.principals.len());
            let who = &self.principals[principal];
            let record = if rng.chance(0.1) {
                *rng.pick(&self.singletons)
            } else {
                let partner = match (&who.partner_id, owned_by.get(who.id.as_str())) {
                    (Some(own), _) if rng.chance(0.5) => own[1..].parse().unwrap_or(0),
                    (_, Some(owned)) if rng.chance(0.5) => *rng.pick(owned),
                    _ => rng.below(self.by_partner.len()),
                };
                *rng.pick(&self.by_partner[partner])
            };
            let kind = self.records[record].kind;
            let actions = kind.action_list();
            let action = if actions.contains(&Action::Read) && rng.chance(0.6) {
                Action::Read
            } else {
                *rng.pick(actions)
            };
            out.push(WorkRequest {
                principal,
                action,
                record,
                elevated: rng.chance(0.1),
            });
        }
        out
    }

    /// A request as a line of the batch format.
    pub fn to_json(&self, request: &WorkRequest) -> String {
        let principal = &self.principals[request.principal];
        let record = &self.records[request.record];
        let attrs = |attrs: &[(&str, String)]| -> serde_json::Map<String, serde_json::Value> {
            attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v.as_str())))
                .collect()
        };
        serde_json::json!({
            "principal": {
                "id": principal.id,
                "roles": principal.roles,
                "partner_id": principal.partner_id,
                "attrs": attrs(&principal.attrs),
            },
            "action": request.action.name(),
            "resource": {
                "type": record.kind.name(),
                "id": record.id,
                "partner_id": record.partner_id,
                "owner": record.owner,
                "attrs": attrs(&record.attrs),
            },
            "elevated": request.elevated,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a = Workload::generate(Size::STANDARD, 7);
        let b = Workload::generate(Size::STANDARD, 7);
        assert_eq!(a.principals.len(), 10_000);
        assert_eq!(a.by_partner.len(), 1_000);
        assert_eq!(a.requests(100, 1), b.requests(100, 1));
        assert!(
            a.principals
                .iter()
                .all(|p| !p.roles.is_empty() && p.roles.len() <= 2)
        );
        assert!(
            a.principals
                .iter()
                .all(|p| p.roles.contains(&"api_client") == p.partner_id.is_some())
        );
    }
}
