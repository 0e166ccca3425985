//! Partner performance (R6): revenue, transaction counts and contract
//! values by region, tier and month, with totals, for principals holding
//! `metrics:read` — without any row access.
//!
//! Small groups are suppressed: a cell with fewer distinct partners than
//! the policy's `metrics_min_group` shows no figures. A total is suppressed
//! too when it has fewer partners, or when subtracting the cells (or, for
//! the grand total, the totals of any one dimension) it publishes would
//! isolate suppressed figures of fewer partners than the minimum. What
//! this does not guard against: combining totals of different dimensions
//! with each other (the general cell-suppression problem); the grand total
//! is checked against each dimension separately.

use std::collections::{BTreeMap, BTreeSet};

use partnerdb_policy::{Action, NoAttributes, Request, Resource, ResourceType};
use partnerdb_store::metrics as store;
use serde_json::{Value as Json, json};

use crate::Service;
use crate::audit::Target;
use crate::auth::Caller;
use crate::error::ServiceError;

type Key = (String, String, String);

/// A total under construction: its figures and its children, each with
/// whether it is suppressed.
type Partial<'a> = (Figures, Vec<(&'a Figures, bool)>);

/// Figures of one group of partners.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// The distinct partners behind the figures.
    pub partners: BTreeSet<String>,
    /// Transactions.
    pub transactions: i64,
    /// Settled invoices, per currency (minor units).
    pub revenue: BTreeMap<String, i64>,
    /// Contracts started.
    pub contracts: i64,
    /// Value of contracts started, per currency (minor units).
    pub contract_value: BTreeMap<String, i64>,
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.partners.extend(other.partners.iter().cloned());
        self.transactions += other.transactions;
        self.contracts += other.contracts;
        for (currency, amount) in &other.revenue {
            *self.revenue.entry(currency.clone()).or_default() += amount;
        }
        for (currency, amount) in &other.contract_value {
            *self.contract_value.entry(currency.clone()).or_default() += amount;
        }
    }

    fn json(&self, labels: Json, suppressed: bool) -> Json {
        let mut out = labels;
        if suppressed {
            out["suppressed"] = Json::Bool(true);
            for key in [
                "partners",
                "transactions",
                "revenue",
                "contracts",
                "contract_value",
            ] {
                out[key] = Json::Null;
            }
        } else {
            out["suppressed"] = Json::Bool(false);
            out["partners"] = Json::from(self.partners.len());
            out["transactions"] = Json::from(self.transactions);
            out["revenue"] = json!(self.revenue);
            out["contracts"] = Json::from(self.contracts);
            out["contract_value"] = json!(self.contract_value);
        }
        out
    }
}

/// Whether a total over `children` (each with its suppression) must be
/// suppressed: too few partners itself, or a suppressed part that the
/// published children would isolate by subtraction.
fn total_suppressed(total: &Figures, children: &[(&Figures, bool)], min: usize) -> bool {
    if total.partners.len() < min {
        return true;
    }
    let hidden: BTreeSet<&String> = children
        .iter()
        .filter(|(_, suppressed)| *suppressed)
        .flat_map(|(f, _)| f.partners.iter())
        .collect();
    !hidden.is_empty() && hidden.len() < min
}

/// The report over cells keyed by (region, tier, month).
pub fn report(cells: &BTreeMap<Key, Figures>, min: usize) -> Json {
    let suppressed_cell = |f: &Figures| f.partners.len() < min;
    let groups: Vec<Json> = cells
        .iter()
        .map(|((region, tier, month), f)| {
            f.json(
                json!({"region": region, "tier": tier, "month": month}),
                suppressed_cell(f),
            )
        })
        .collect();

    let mut totals = serde_json::Map::new();
    let mut dimension_totals: Vec<Vec<(Figures, bool)>> = Vec::new();
    for (dimension, pick) in [("region", 0usize), ("tier", 1), ("month", 2)] {
        let mut by: BTreeMap<&String, Partial<'_>> = BTreeMap::new();
        for (key, f) in cells {
            let label = match pick {
                0 => &key.0,
                1 => &key.1,
                _ => &key.2,
            };
            let entry = by.entry(label).or_default();
            entry.0.add(f);
            entry.1.push((f, suppressed_cell(f)));
        }
        let mut list = Vec::new();
        let mut computed = Vec::new();
        for (label, (total, children)) in by {
            let suppressed = total_suppressed(&total, &children, min);
            list.push(total.json(json!({ dimension: label }), suppressed));
            computed.push((total, suppressed));
        }
        totals.insert(dimension.into(), Json::Array(list));
        dimension_totals.push(computed);
    }
    let mut all = Figures::default();
    let cell_children: Vec<(&Figures, bool)> =
        cells.values().map(|f| (f, suppressed_cell(f))).collect();
    for f in cells.values() {
        all.add(f);
    }
    let mut all_suppressed = total_suppressed(&all, &cell_children, min);
    for dimension in &dimension_totals {
        let children: Vec<(&Figures, bool)> = dimension.iter().map(|(f, s)| (f, *s)).collect();
        all_suppressed |= total_suppressed(&all, &children, min);
    }
    totals.insert("all".into(), all.json(json!({}), all_suppressed));
    json!({"groups": groups, "totals": totals})
}

/// The report's parameters as the trail keeps them: a month as given, and
/// for anything else (refused after the event is recorded) neither the
/// text given for a month nor an unknown parameter's name, which may hold
/// anything.
fn audited_params(params: &[(String, String)]) -> Vec<String> {
    params
        .iter()
        .map(|(name, value)| match name.as_str() {
            "from" | "to" if month_start(value).is_some() => format!("{name}={value}"),
            "from" | "to" => format!("{name}=(withheld: not a month)"),
            _ => "(withheld: unknown parameter)".to_owned(),
        })
        .collect()
}

fn month_start(text: &str) -> Option<jiff::civil::Date> {
    let (year, month) = text.split_once('-')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    jiff::civil::Date::new(year.parse().ok()?, month.parse().ok()?, 1).ok()
}

impl Service {
    /// Partner performance for `from..=to` months (`YYYY-MM`; default the
    /// last twelve months).
    pub async fn partner_performance(
        &self,
        caller: &Caller,
        params: &[(String, String)],
    ) -> Result<Json, ServiceError> {
        let request = Request {
            principal: caller.engine(),
            action: Action::Read,
            resource: Resource {
                kind: ResourceType::Metrics,
                id: "partner-performance",
                partner_id: None,
                owner: None,
                attrs: &NoAttributes,
            },
            elevated: caller.elevated_for(ResourceType::Metrics, Action::Read, None),
        };
        let decision = caller.policy.decide(&request);
        let reason = caller.policy.deny_reason(&request, &decision);
        let event = self.event(
            caller,
            crate::audit::Draft {
                kind: "decision",
                action: "read",
                resource_type: "metrics",
                resource_id: Some("partner-performance"),
                partner_id: None,
                decision: &decision,
                reason,
                input: crate::audit::input(
                    caller,
                    "read",
                    Target::Object("metrics", Some("partner-performance")),
                    caller.elevated_for(ResourceType::Metrics, Action::Read, None),
                ),
                extra: json!({"params": audited_params(params)}),
            },
        );
        self.record(event).await?;
        if !decision.allowed {
            return Err(ServiceError::forbidden(
                "forbidden",
                "your roles do not allow metrics:read",
            ));
        }
        let today = self.clock().now().to_zoned(jiff::tz::TimeZone::UTC).date();
        let this_month = today.first_of_month();
        let mut to = this_month;
        let mut from = this_month
            .checked_sub(jiff::Span::new().months(11))
            .unwrap_or(this_month);
        for (name, value) in params {
            let month = month_start(value).ok_or_else(|| {
                ServiceError::invalid(
                    "invalid_value",
                    name.as_str(),
                    format!("`{name}` must be a month, YYYY-MM"),
                )
            });
            match name.as_str() {
                "from" => from = month?,
                "to" => to = month?,
                _ => {
                    return Err(ServiceError::invalid(
                        "unknown_parameter",
                        name.as_str(),
                        format!(
                            "unknown query parameter `{name}`; this report takes `from` and `to`"
                        ),
                    ));
                }
            }
        }
        let months = (i32::from(to.year()) - i32::from(from.year())) * 12 + i32::from(to.month())
            - i32::from(from.month());
        if !(0..60).contains(&months) {
            return Err(ServiceError::invalid(
                "invalid_range",
                "from",
                "`from` must not be after `to`, and a report covers at most 60 months",
            ));
        }
        let end = to.checked_add(jiff::Span::new().months(1)).unwrap_or(to);
        let (from_text, end_text) = (format!("{from}T00:00:00"), format!("{end}T00:00:00"));

        let mut cells: BTreeMap<Key, Figures> = BTreeMap::new();
        for (region, tier, month, partner) in
            store::cell_partners(self.db(), &from_text, &end_text).await?
        {
            cells
                .entry((region, tier, month))
                .or_default()
                .partners
                .insert(partner);
        }
        for s in store::transaction_sums(self.db(), &from_text, &end_text).await? {
            let cell = cells.entry((s.region, s.tier, s.month)).or_default();
            cell.transactions += s.count;
            *cell.revenue.entry(s.currency).or_default() += s.amount;
        }
        for s in store::contract_sums(self.db(), &from_text, &end_text).await? {
            let cell = cells.entry((s.region, s.tier, s.month)).or_default();
            cell.contracts += s.count;
            if !s.currency.is_empty() {
                *cell.contract_value.entry(s.currency).or_default() += s.amount;
            }
        }
        for cell in cells.values_mut() {
            cell.revenue.retain(|_, amount| *amount != 0);
        }
        let min = caller.policy.policy().metrics_min_group as usize;
        let mut out = report(&cells, min);
        out["from"] = Json::from(from.strftime("%Y-%m").to_string());
        out["to"] = Json::from(to.strftime("%Y-%m").to_string());
        out["min_group"] = Json::from(min);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(partners: &[&str], transactions: i64) -> Figures {
        Figures {
            partners: partners.iter().map(|p| p.to_string()).collect(),
            transactions,
            revenue: [("EUR".to_owned(), transactions * 100)].into(),
            ..Figures::default()
        }
    }

    fn key(region: &str, tier: &str, month: &str) -> Key {
        (region.into(), tier.into(), month.into())
    }

    #[test]
    fn small_groups_are_suppressed_and_totals_cannot_reveal_them() {
        let mut cells = BTreeMap::new();
        cells.insert(key("emea", "gold", "2026-01"), cell(&["a", "b", "c"], 10));
        cells.insert(key("emea", "silver", "2026-01"), cell(&["d"], 7));
        cells.insert(key("apac", "gold", "2026-01"), cell(&["e", "f", "g"], 5));
        let out = report(&cells, 3);
        let groups = out["groups"].as_array().unwrap();
        let silver = groups.iter().find(|g| g["tier"] == "silver").unwrap();
        assert_eq!(silver["suppressed"], true);
        assert_eq!(silver["transactions"], Json::Null);
        // emea's total minus emea/gold would give emea/silver (1 partner).
        let emea = out["totals"]["region"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["region"] == "emea")
            .unwrap();
        assert_eq!(emea["suppressed"], true);
        // The silver total has one partner itself.
        let silver_total = out["totals"]["tier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tier"] == "silver")
            .unwrap();
        assert_eq!(silver_total["suppressed"], true);
        // apac is shown; the grand total would reveal the hidden partner.
        let apac = out["totals"]["region"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["region"] == "apac")
            .unwrap();
        assert_eq!(apac["transactions"], 5);
        assert_eq!(out["totals"]["all"]["suppressed"], true);
    }

    #[test]
    fn totals_with_enough_hidden_partners_are_shown() {
        let mut cells = BTreeMap::new();
        cells.insert(key("emea", "gold", "2026-01"), cell(&["a", "b"], 1));
        cells.insert(key("emea", "silver", "2026-01"), cell(&["c", "d"], 2));
        cells.insert(key("emea", "bronze", "2026-01"), cell(&["e", "f", "g"], 3));
        let out = report(&cells, 3);
        // gold and silver hidden, but together 4 partners: emea may show.
        let emea = &out["totals"]["region"][0];
        assert_eq!(emea["suppressed"], false);
        assert_eq!(emea["transactions"], 6);
        assert_eq!(emea["partners"], 7);
        assert_eq!(out["totals"]["all"]["suppressed"], false);
    }
}
