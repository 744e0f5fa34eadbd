//! The purchase chain after approval: vendors' quotes compared item by item against the
//! specification and the reference price (ราคากลาง), then the receipt, which registers the
//! received items as assets under their asset numbers.
//!
//! Quotes and receipts are entries of the request's history (`quote`, `receive`), so the chain
//! is kept with actor and time like every other step; a receipt registers all its assets in one
//! transaction or none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{Any, AnyConnection};

use super::assets::{self, Asset, NewAsset};
use super::kinds::{Kind, PurchaseItem};
use super::requests::{self, Row_, Who};
use super::workflow::{Party, State};
use crate::audit::{self, Actor, Change};
use crate::db::Db;
use crate::error::{Error, Result};

/// States in which quotes may be added and goods received.
const OPEN: [State; 4] = [
    State::Approved,
    State::Assigned,
    State::InProgress,
    State::Waiting,
];

/// One vendor's quote. Unknown fields are refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quote {
    pub vendor: String,
    pub items: Vec<QuoteItem>,
}

/// A vendor's offer for one item of the request (by its index in `fields.items`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteItem {
    pub item: usize,
    /// Unit price in baht.
    pub unit_price: f64,
    /// Whether the offer meets the specification (แบบสรุปเปรียบเทียบคุณสมบัติ).
    pub meets_spec: bool,
    #[serde(default)]
    pub note: String,
}

/// One vendor's offer for an item, in the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Offer {
    pub vendor: String,
    pub unit_price: f64,
    pub meets_spec: bool,
    pub note: String,
    /// Above the reference price (ราคากลาง), when the item has one.
    pub over_reference: bool,
}

/// One item compared across vendors.
#[derive(Debug, Clone, Serialize)]
pub struct ItemComparison {
    pub item: usize,
    pub spec: String,
    pub quantity: u32,
    pub unit: String,
    pub estimated_price: f64,
    pub reference_price: Option<f64>,
    pub offers: Vec<Offer>,
    /// The cheapest offer that meets the specification and the reference price.
    pub best_vendor: Option<String>,
}

/// One vendor's whole quote, summed.
#[derive(Debug, Clone, Serialize)]
pub struct VendorTotal {
    pub vendor: String,
    pub total: f64,
    /// Quoted every item, each meeting the specification and the reference price.
    pub complete_and_compliant: bool,
}

/// The comparison table of a purchase request.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub items: Vec<ItemComparison>,
    pub vendors: Vec<VendorTotal>,
    /// The complete, compliant quote with the lowest total, if any.
    pub recommended_vendor: Option<String>,
}

fn items_of(row: &Row_) -> Vec<PurchaseItem> {
    serde_json::from_value(row.fields["items"].clone()).unwrap_or_default()
}

async fn quotes(conn: &mut AnyConnection, request_id: i64) -> Result<Vec<Quote>> {
    let details = sqlx::query_scalar::<Any, Option<String>>(
        "SELECT detail FROM desk_events WHERE request_id = $1 AND action = 'quote' ORDER BY id",
    )
    .bind(request_id)
    .fetch_all(conn)
    .await?;
    Ok(details
        .into_iter()
        .flatten()
        .filter_map(|d| serde_json::from_str(&d).ok())
        .collect())
}

/// Compares the quotes (the latest of each vendor) item by item.
fn compare(items: &[PurchaseItem], quotes: &[Quote]) -> Comparison {
    let mut latest: BTreeMap<String, &Quote> = BTreeMap::new();
    for q in quotes {
        latest.insert(q.vendor.clone(), q);
    }
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let items: Vec<ItemComparison> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let offers: Vec<Offer> = latest
                .values()
                .filter_map(|q| q.items.iter().find(|o| o.item == i).map(|o| (q, o)))
                .map(|(q, o)| Offer {
                    vendor: q.vendor.clone(),
                    unit_price: o.unit_price,
                    meets_spec: o.meets_spec,
                    note: o.note.clone(),
                    over_reference: item.reference_price.is_some_and(|r| o.unit_price > r),
                })
                .collect();
            let best_vendor = offers
                .iter()
                .filter(|o| o.meets_spec && !o.over_reference)
                .min_by(|a, b| a.unit_price.total_cmp(&b.unit_price))
                .map(|o| o.vendor.clone());
            ItemComparison {
                item: i,
                spec: item.spec.clone(),
                quantity: item.quantity,
                unit: item.unit.clone(),
                estimated_price: item.estimated_price,
                reference_price: item.reference_price,
                offers,
                best_vendor,
            }
        })
        .collect();
    let vendors: Vec<VendorTotal> = latest
        .keys()
        .map(|vendor| {
            let mut total = 0.0;
            let mut ok = true;
            for item in &items {
                match item.offers.iter().find(|o| &o.vendor == vendor) {
                    Some(o) => {
                        total += o.unit_price * f64::from(item.quantity);
                        ok &= o.meets_spec && !o.over_reference;
                    }
                    None => ok = false,
                }
            }
            VendorTotal {
                vendor: vendor.clone(),
                total: round2(total),
                complete_and_compliant: ok,
            }
        })
        .collect();
    let recommended_vendor = vendors
        .iter()
        .filter(|v| v.complete_and_compliant)
        .min_by(|a, b| a.total.total_cmp(&b.total))
        .map(|v| v.vendor.clone());
    Comparison {
        items,
        vendors,
        recommended_vendor,
    }
}

/// Loads a purchase request the user may see and checks that a worker may add to its chain now.
async fn open_purchase(conn: &mut AnyConnection, who: &Who, id: i64) -> Result<Row_> {
    let row = requests::load_visible(conn, who, id).await?;
    if row.kind != Kind::Purchase {
        return Err(Error::Conflict(format!(
            "request {id} is not a purchase request"
        )));
    }
    if !who.parties(&row).contains(&Party::Worker) {
        return Err(Error::Forbidden);
    }
    if !OPEN.contains(&row.state) {
        return Err(Error::Conflict(format!(
            "quotes and receipts follow approval; the request is {}",
            row.state.as_str()
        )));
    }
    Ok(row)
}

/// The comparison table of a purchase request's quotes.
pub async fn comparison(db: &Db, who: &Who, id: i64) -> Result<Comparison> {
    let mut conn = db.pool.acquire().await?;
    let row = requests::load_visible(&mut conn, who, id).await?;
    if row.kind != Kind::Purchase {
        return Err(Error::NotFound);
    }
    let quotes = quotes(&mut conn, id).await?;
    Ok(compare(&items_of(&row), &quotes))
}

/// Adds (or replaces) a vendor's quote and returns the comparison.
///
/// # Errors
/// `Invalid` naming the field; `Forbidden` for non-workers; `Conflict` before approval.
pub async fn add_quote(
    db: &Db,
    actor: &Actor,
    who: &Who,
    id: i64,
    quote: Quote,
) -> Result<Comparison> {
    if quote.vendor.trim().is_empty() {
        return Err(Error::invalid("vendor", "must not be empty"));
    }
    let mut tx = db.begin_write().await?;
    let row = open_purchase(&mut tx, who, id).await?;
    let items = items_of(&row);
    if quote.items.is_empty() {
        return Err(Error::invalid("items", "quote at least one item"));
    }
    for (i, o) in quote.items.iter().enumerate() {
        if o.item >= items.len() {
            return Err(Error::invalid(
                &format!("items[{i}].item"),
                format!("the request has items 0 to {}", items.len() - 1),
            ));
        }
        if !(o.unit_price.is_finite() && o.unit_price >= 0.0) {
            return Err(Error::invalid(
                &format!("items[{i}].unit_price"),
                "must be 0 or more",
            ));
        }
    }
    let quote = Quote {
        vendor: quote.vendor.trim().to_owned(),
        ..quote
    };
    let detail = serde_json::to_value(&quote).expect("quote serializes");
    requests::add_event(
        &mut tx,
        actor,
        id,
        "quote",
        Some(row.state),
        row.state,
        None,
        Some(detail.clone()),
    )
    .await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "request.quote",
            entity: "request",
            entity_id: Some(id),
            before: None,
            after: Some(detail),
        },
    )
    .await?;
    let all = quotes(&mut tx, id).await?;
    tx.commit().await?;
    Ok(compare(&items, &all))
}

/// What was received: one entry per asset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The vendor delivered; its quoted unit prices become the assets' prices.
    pub vendor: Option<String>,
    #[serde(default)]
    pub funding_source: String,
    /// Budget year (พ.ศ.); the current fiscal year by default.
    pub budget_year: Option<i64>,
    pub assets: Vec<ReceivedAsset>,
}

/// One received asset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceivedAsset {
    /// Index of the request's item it is one of.
    pub item: usize,
    pub asset_number: String,
    /// The item's category by default: the purchase's category.
    pub category: Option<String>,
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub serial: String,
    #[serde(default)]
    pub room: String,
    #[serde(default)]
    pub custodian: String,
    pub warranty_end: Option<String>,
}

/// Registers the received items as assets of the request's school, linked to the request:
/// all of them or, on any error, none.
///
/// # Errors
/// `Invalid` naming the asset (`assets[2].asset_number`); `Conflict` when an asset number is
/// taken or an item would be received more times than ordered.
pub async fn receive(
    db: &Db,
    actor: &Actor,
    who: &Who,
    id: i64,
    receipt: Receipt,
) -> Result<Vec<Asset>> {
    if receipt.assets.is_empty() {
        return Err(Error::invalid("assets", "list the received assets"));
    }
    let mut tx = db.begin_write().await?;
    let row = open_purchase(&mut tx, who, id).await?;
    let items = items_of(&row);
    let comparison = compare(&items, &quotes(&mut tx, id).await?);
    let received_before: Vec<Option<String>> = sqlx::query_scalar::<Any, Option<String>>(
        "SELECT detail FROM desk_events WHERE request_id = $1 AND action = 'receive'",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let mut count: BTreeMap<usize, u32> = BTreeMap::new();
    for detail in received_before.into_iter().flatten() {
        let v: Value = serde_json::from_str(&detail).unwrap_or(Value::Null);
        for item in v["items"].as_array().into_iter().flatten() {
            if let Some(i) = item.as_u64() {
                *count.entry(i as usize).or_default() += 1;
            }
        }
    }
    let budget_year = receipt
        .budget_year
        .unwrap_or_else(|| i64::from(super::reports::fiscal_year_of(crate::db::now_ms())));
    let category = row.fields["category"]
        .as_str()
        .unwrap_or("materials")
        .to_owned();
    let mut created = Vec::new();
    for (i, a) in receipt.assets.iter().enumerate() {
        let Some(item) = items.get(a.item) else {
            return Err(Error::invalid(
                &format!("assets[{i}].item"),
                format!(
                    "the request has items 0 to {}",
                    items.len().saturating_sub(1)
                ),
            ));
        };
        let n = count.entry(a.item).or_default();
        *n += 1;
        if *n > item.quantity {
            return Err(Error::Conflict(format!(
                "item {} ({}) was ordered {} times; assets[{i}] would be one more",
                a.item, item.spec, item.quantity
            )));
        }
        let price = receipt
            .vendor
            .as_ref()
            .and_then(|v| {
                comparison.items[a.item]
                    .offers
                    .iter()
                    .find(|o| &o.vendor == v)
            })
            .map(|o| o.unit_price)
            .unwrap_or(item.estimated_price);
        let new = NewAsset {
            asset_number: a.asset_number.clone(),
            category: a.category.clone().unwrap_or_else(|| category.clone()),
            brand: a.brand.clone(),
            model: a.model.clone(),
            serial: a.serial.clone(),
            budget_year: Some(budget_year),
            price: Some(price),
            funding_source: receipt.funding_source.clone(),
            school_id: row.school_id,
            room: a.room.clone(),
            custodian: a.custodian.clone(),
            state: "in_stock".into(),
            warranty_end: a.warranty_end.clone(),
            notes: format!(
                "{} ({})",
                item.spec,
                receipt.vendor.clone().unwrap_or_default()
            ),
        };
        let asset = assets::create_in(&mut tx, actor, &new, Some(id))
            .await
            .map_err(|e| match e {
                Error::Invalid { field, message } => {
                    Error::invalid(&format!("assets[{i}].{field}"), message)
                }
                other => other,
            })?;
        sqlx::query("INSERT INTO desk_request_assets (request_id, asset_id) VALUES ($1, $2)")
            .bind(id)
            .bind(asset.id)
            .execute(&mut *tx)
            .await?;
        created.push(asset);
    }
    let detail = json!({
        "vendor": receipt.vendor,
        "asset_ids": created.iter().map(|a| a.id).collect::<Vec<_>>(),
        "items": receipt.assets.iter().map(|a| a.item).collect::<Vec<_>>(),
    });
    requests::add_event(
        &mut tx,
        actor,
        id,
        "receive",
        Some(row.state),
        row.state,
        None,
        Some(detail.clone()),
    )
    .await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "request.receive",
            entity: "request",
            entity_id: Some(id),
            before: None,
            after: Some(detail),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(spec: &str, quantity: u32, reference: Option<f64>) -> PurchaseItem {
        PurchaseItem {
            spec: spec.into(),
            quantity,
            unit: "เครื่อง".into(),
            estimated_price: 20000.0,
            reference_price: reference,
        }
    }

    fn quote(vendor: &str, offers: &[(usize, f64, bool)]) -> Quote {
        Quote {
            vendor: vendor.into(),
            items: offers
                .iter()
                .map(|&(item, unit_price, meets_spec)| QuoteItem {
                    item,
                    unit_price,
                    meets_spec,
                    note: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn quotes_compared_item_by_item() {
        let items = [item("Notebook", 2, Some(21000.0)), item("Printer", 1, None)];
        let quotes = [
            quote("A", &[(0, 20500.0, true), (1, 5000.0, true)]),
            quote("B", &[(0, 19000.0, false), (1, 4500.0, true)]),
            quote("C", &[(0, 21500.0, true), (1, 4000.0, true)]),
            quote("D", &[(0, 20000.0, true)]),
            // A's second quote replaces its first.
            quote("A", &[(0, 20400.0, true), (1, 4900.0, true)]),
        ];
        let c = compare(&items, &quotes);
        let best: Vec<Option<&str>> = c.items.iter().map(|i| i.best_vendor.as_deref()).collect();
        // B fails the spec, C is over the reference price: D is cheapest for the notebook.
        assert_eq!(best, [Some("D"), Some("C")]);
        let c_notebook = c.items[0].offers.iter().find(|o| o.vendor == "C").unwrap();
        assert!(c_notebook.over_reference);
        let totals: Vec<(&str, f64, bool)> = c
            .vendors
            .iter()
            .map(|v| (v.vendor.as_str(), v.total, v.complete_and_compliant))
            .collect();
        assert_eq!(
            totals,
            [
                ("A", 45700.0, true),
                ("B", 42500.0, false),
                ("C", 47000.0, false),
                ("D", 40000.0, false)
            ]
        );
        assert_eq!(c.recommended_vendor.as_deref(), Some("A"));
    }
}
