//! Realistic demo data: partners across regions and tiers, managed by a few
//! partner managers, with contacts, contracts and transactions; and one
//! principal with a token for every role of the policy, including api
//! clients of two partners.

use partnerdb_policy::ResourceType;
use partnerdb_store::principals::{self as store, PrincipalRow};
use partnerdb_store::records::{self, Record};
use partnerdb_store::schema::Table;
use partnerdb_store::{Db, StoreError, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::principals::issue_credential;

/// How much data.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Partners.
    pub partners: usize,
    /// Contacts per partner.
    pub contacts_per_partner: usize,
    /// Contracts in all (spread over partners).
    pub contracts: usize,
    /// Transactions in all (spread over partners).
    pub transactions: usize,
}

impl Sizes {
    /// The demo: 200 partners, 2,000 contacts, 500 contracts, 20,000
    /// transactions; `scale` multiplies them all (50 gives the load
    /// benchmark's 10,000 partners and 1,000,000 transactions).
    pub fn scaled(scale: usize) -> Sizes {
        let scale = scale.max(1);
        Sizes {
            partners: 200 * scale,
            contacts_per_partner: 10,
            contracts: 500 * scale,
            transactions: 20_000 * scale,
        }
    }
}

/// A demo principal and its token.
#[derive(Clone, Debug, Serialize)]
pub struct DemoPrincipal {
    /// Its role.
    pub role: String,
    /// Its token (demo only: written to `demo-tokens.json`, mode 0600).
    pub token: String,
    /// Its id.
    pub principal_id: String,
    /// Its partner, for api clients.
    pub partner_id: Option<String>,
    /// Its display name.
    pub name: String,
}

const REGIONS: &[&str] = &["emea", "apac", "amer", "latam"];
const TIERS: &[&str] = &["gold", "silver", "bronze", "standard"];
const PREFIXES: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Hooli",
    "Vandelay",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Massive",
    "Nakatomi",
    "Monarch",
    "Aperture",
];
const SUFFIXES: &[&str] = &[
    "Systems",
    "Trading",
    "Partners",
    "Logistics",
    "Labs",
    "Networks",
    "Holdings",
    "Retail",
    "Solutions",
    "Industries",
];
const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloé", "Dev", "Eva", "Farid", "Grace", "Hiro", "Ines", "Jon", "Kemi", "Lars",
];
const LAST: &[&str] = &[
    "Silva", "Okafor", "Müller", "Tanaka", "Rossi", "Nguyen", "Smith", "Kowalski", "Haddad", "Berg",
];
const CURRENCIES: &[&str] = &["EUR", "USD", "GBP"];

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn blank(kind: ResourceType, id: String, now: &str) -> Record {
    let table = Table::of(kind).unwrap_or(Table {
        kind,
        name: "partners",
        columns: &[],
    });
    let mut record = Record {
        kind,
        id: id.clone(),
        partner_id: id,
        owner: None,
        version: 1,
        values: table.columns.iter().map(records::column_default).collect(),
        partner_region: None,
        partner_tier: None,
    };
    set(&mut record, "created_at", now);
    set(&mut record, "updated_at", now);
    record
}

fn set(record: &mut Record, name: &str, value: impl Into<Value>) {
    if let Some((index, _)) = record.table().column(name)
        && let Some(slot) = record.values.get_mut(index)
    {
        *slot = value.into();
    }
}

fn child_of(kind: ResourceType, partner: &Record, now: &str) -> Record {
    let mut record = blank(kind, partnerdb_store::new_id(), now);
    record.adopt_partner(partner);
    record
}

/// Fills an initialised, empty database with demo data and principals.
/// Returns one principal per role (two api clients) with their tokens.
pub async fn seed(
    db: &Db,
    policy: &partnerdb_policy::CompiledPolicy,
    sizes: Sizes,
    now: jiff::Timestamp,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<Vec<DemoPrincipal>, StoreError> {
    let mut rng = StdRng::seed_from_u64(2026);
    let now_text = partnerdb_store::format_time(now);
    let expires = now
        .checked_add(jiff::SignedDuration::from_hours(24 * 30))
        .ok()
        .map(partnerdb_store::format_time);
    let mut out = Vec::new();

    // Partner managers first: they own the partners.
    let mut tx = db.begin().await?;
    let mut managers = Vec::new();
    for i in 0..5 {
        let name = format!("{} {}", FIRST[i % FIRST.len()], LAST[i % LAST.len()]);
        let principal = PrincipalRow {
            id: partnerdb_store::new_id(),
            kind: "user".into(),
            name,
            partner_id: None,
            attrs: [("region".to_owned(), REGIONS[i % REGIONS.len()].to_owned())].into(),
            created_at: now_text.clone(),
            roles: vec!["partner_manager".into()],
        };
        store::insert(&mut tx, &principal).await?;
        store::bind_role(&mut tx, &principal.id, "partner_manager", &now_text, None).await?;
        managers.push(principal);
    }
    tx.commit().await?;

    let mut partners = Vec::with_capacity(sizes.partners);
    let mut tx = db.begin().await?;
    for i in 0..sizes.partners {
        let mut partner = blank(ResourceType::Partner, partnerdb_store::new_id(), &now_text);
        partner.owner = Some(managers[i % managers.len()].id.clone());
        let name = format!(
            "{} {} {}",
            pick(&mut rng, PREFIXES),
            pick(&mut rng, SUFFIXES),
            i + 1
        );
        set(&mut partner, "legal_name", format!("{name} Ltd"));
        set(&mut partner, "name", name);
        set(&mut partner, "region", pick(&mut rng, REGIONS));
        set(&mut partner, "tier", pick(&mut rng, TIERS));
        set(
            &mut partner,
            "status",
            if rng.random_bool(0.85) {
                "active"
            } else {
                "prospect"
            },
        );
        set(
            &mut partner,
            "website",
            format!("https://partner{}.example", i + 1),
        );
        set(
            &mut partner,
            "credit_limit",
            rng.random_range(10_000i64..5_000_000) * 100,
        );
        set(&mut partner, "credit_currency", pick(&mut rng, CURRENCIES));
        set(&mut partner, "payment_terms", "net 30");
        set(&mut partner, "billing_account", format!("BA-{:06}", i + 1));
        set(
            &mut partner,
            "bank_account",
            format!("DE{:02} 5001 0517 {:010}", rng.random_range(10..99), i + 1),
        );
        set(
            &mut partner,
            "tax_id",
            format!("VAT{:09}", rng.random_range(0..999_999_999)),
        );
        records::insert(&mut tx, &partner).await?;
        partners.push(partner);
    }
    tx.commit().await?;
    progress("partners", sizes.partners, sizes.partners);

    let mut tx = db.begin().await?;
    let contacts = sizes.partners * sizes.contacts_per_partner;
    for (n, partner) in partners
        .iter()
        .flat_map(|p| std::iter::repeat_n(p, sizes.contacts_per_partner))
        .enumerate()
    {
        let mut contact = child_of(ResourceType::Contact, partner, &now_text);
        let (first, last) = (pick(&mut rng, FIRST), pick(&mut rng, LAST));
        set(&mut contact, "name", format!("{first} {last}"));
        set(
            &mut contact,
            "email",
            format!(
                "{}.{}{n}@partner.example",
                first.to_lowercase(),
                last.to_lowercase()
            ),
        );
        set(
            &mut contact,
            "phone",
            format!("+49 30 {:07}", rng.random_range(0..9_999_999)),
        );
        set(
            &mut contact,
            "title",
            pick(
                &mut rng,
                &[
                    "CFO",
                    "Head of Partnerships",
                    "Buyer",
                    "CTO",
                    "Account Lead",
                ],
            ),
        );
        set(
            &mut contact,
            "department",
            pick(&mut rng, &["finance", "sales", "it", "legal"]),
        );
        records::insert(&mut tx, &contact).await?;
    }
    tx.commit().await?;
    progress("contacts", contacts, contacts);

    let mut contracts = Vec::with_capacity(sizes.contracts);
    let mut tx = db.begin().await?;
    for i in 0..sizes.contracts {
        let partner = &partners[i % partners.len()];
        let mut contract = child_of(ResourceType::Contract, partner, &now_text);
        let start = jiff::civil::date(2024, 1, 1)
            .checked_add(jiff::Span::new().days(rng.random_range(0i64..700)))
            .unwrap_or(jiff::civil::date(2024, 1, 1));
        set(
            &mut contract,
            "title",
            format!("Reseller agreement {}", i + 1),
        );
        set(
            &mut contract,
            "status",
            pick(
                &mut rng,
                &["active", "active", "active", "draft", "expired"],
            ),
        );
        set(&mut contract, "start_date", start.to_string());
        set(
            &mut contract,
            "end_date",
            start
                .checked_add(jiff::Span::new().years(2))
                .unwrap_or(start)
                .to_string(),
        );
        set(
            &mut contract,
            "value",
            rng.random_range(1_000i64..2_000_000) * 100,
        );
        set(&mut contract, "currency", pick(&mut rng, CURRENCIES));
        set(
            &mut contract,
            "commission_rate",
            rng.random_range(1i64..25) * 10_000,
        );
        set(
            &mut contract,
            "terms",
            "Standard reseller terms, version 3.",
        );
        set(
            &mut contract,
            "signed_by",
            format!("{} {}", pick(&mut rng, FIRST), pick(&mut rng, LAST)),
        );
        records::insert(&mut tx, &contract).await?;
        contracts.push(contract);
    }
    tx.commit().await?;
    progress("contracts", sizes.contracts, sizes.contracts);

    let batch = 20_000;
    let mut done = 0;
    while done < sizes.transactions {
        let mut tx = db.begin().await?;
        let end = (done + batch).min(sizes.transactions);
        for i in done..end {
            // Contract j belongs to partner j mod the number of partners.
            let (contract, partner) = if contracts.is_empty() {
                (None, &partners[i % partners.len()])
            } else {
                let j = i % contracts.len();
                (Some(&contracts[j]), &partners[j % partners.len()])
            };
            let mut transaction = child_of(ResourceType::Transaction, partner, &now_text);
            let at = now
                .checked_sub(jiff::SignedDuration::from_secs(
                    rng.random_range(0i64..730 * 86_400),
                ))
                .unwrap_or(now);
            set(
                &mut transaction,
                "kind",
                pick(
                    &mut rng,
                    &[
                        "invoice",
                        "invoice",
                        "payment",
                        "payment",
                        "credit_note",
                        "commission",
                    ],
                ),
            );
            set(
                &mut transaction,
                "status",
                pick(
                    &mut rng,
                    &["settled", "settled", "settled", "pending", "failed"],
                ),
            );
            set(
                &mut transaction,
                "occurred_at",
                partnerdb_store::format_time(at),
            );
            if let Some(contract) = contract {
                set(&mut transaction, "contract_id", contract.id.as_str());
            }
            set(
                &mut transaction,
                "amount",
                rng.random_range(100i64..500_000) * 100,
            );
            set(&mut transaction, "currency", pick(&mut rng, CURRENCIES));
            set(&mut transaction, "reference", format!("TX-{:08}", i + 1));
            records::insert(&mut tx, &transaction).await?;
        }
        tx.commit().await?;
        done = end;
        progress("transactions", done, sizes.transactions);
    }

    // One principal per role, with a token (the first manager stands for
    // partner_manager; two api clients for two partners).
    let mut tx = db.begin().await?;
    let first_manager = &managers[0];
    let credential =
        issue_credential(&mut tx, &first_manager.id, &now_text, expires.clone()).await?;
    out.push(DemoPrincipal {
        role: "partner_manager".into(),
        token: credential.token,
        principal_id: first_manager.id.clone(),
        partner_id: None,
        name: first_manager.name.clone(),
    });
    for role in &policy.policy().roles {
        let clients: Vec<Option<&Record>> = if role.partner_bound {
            partners.iter().take(2).map(Some).collect()
        } else if role.name == "partner_manager" {
            continue;
        } else {
            vec![None]
        };
        for partner in clients {
            let principal = PrincipalRow {
                id: partnerdb_store::new_id(),
                kind: if partner.is_some() {
                    "api_client"
                } else {
                    "user"
                }
                .into(),
                name: match partner {
                    Some(p) => format!(
                        "{} portal",
                        p.value("name")
                            .and_then(Value::as_text)
                            .unwrap_or("partner")
                    ),
                    None => format!("demo {}", role.name),
                },
                partner_id: partner.map(|p| p.id.clone()),
                attrs: [("region".to_owned(), "emea".to_owned())].into(),
                created_at: now_text.clone(),
                roles: vec![role.name.clone()],
            };
            store::insert(&mut tx, &principal).await?;
            store::bind_role(&mut tx, &principal.id, &role.name, &now_text, None).await?;
            let credential =
                issue_credential(&mut tx, &principal.id, &now_text, expires.clone()).await?;
            out.push(DemoPrincipal {
                role: role.name.clone(),
                token: credential.token,
                principal_id: principal.id,
                partner_id: principal.partner_id,
                name: principal.name,
            });
        }
    }
    tx.commit().await?;
    Ok(out)
}
