//! The request kinds and the fields of each, after the district manuals' forms (seeds): what a
//! requester must fill in is checked here, and a missing or unknown field is named
//! (`fields.from`, `fields.items[0].quantity`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// A kind of request. All share one workflow; they differ in fields and approval steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// แบบแจ้งซ่อมวัสดุอุปกรณ์
    Repair,
    /// แบบบันทึกขอยืมวัสดุอุปกรณ์
    Loan,
    /// แบบบันทึกขอใช้จัดซื้อวัสดุอุปกรณ์ / ระบบอินเทอร์เน็ต / พื้นที่เว็บไซต์
    Purchase,
    /// แบบบันทึกขอใช้วัสดุอุปกรณ์
    UseOfMaterials,
    /// แบบคำขออนุมัติบัตรประจำตัวในการใช้งาน
    Account,
    /// แบบคำร้องขอเข้าถึงระบบข้อมูลสารสนเทศ
    SystemAccess,
    /// แบบคำขอใช้บริการข้อมูล
    DataService,
    /// แบบบันทึกขอให้ดำเนินการ
    General,
}

pub const KINDS: [Kind; 8] = [
    Kind::Repair,
    Kind::Loan,
    Kind::Purchase,
    Kind::UseOfMaterials,
    Kind::Account,
    Kind::SystemAccess,
    Kind::DataService,
    Kind::General,
];

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Repair => "repair",
            Kind::Loan => "loan",
            Kind::Purchase => "purchase",
            Kind::UseOfMaterials => "use_of_materials",
            Kind::Account => "account",
            Kind::SystemAccess => "system_access",
            Kind::DataService => "data_service",
            Kind::General => "general",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.as_str() == s)
    }

    /// The approval steps a request of this kind needs by default, in order; each is taken by
    /// a different approver. `desk.approval_steps` in the configuration overrides them.
    pub fn default_approval_steps(self) -> &'static [&'static str] {
        match self {
            Kind::Repair | Kind::General => &[],
            Kind::Purchase => &["group_director", "district_director"],
            Kind::Loan
            | Kind::UseOfMaterials
            | Kind::Account
            | Kind::SystemAccess
            | Kind::DataService => &["group_director"],
        }
    }

    /// Checks `fields` against this kind's form and returns them normalised.
    ///
    /// # Errors
    /// `Invalid` naming the field (`fields.purpose`, `fields.items[0].quantity`).
    pub fn validate(self, fields: &Value) -> Result<Value> {
        match self {
            Kind::Repair => check::<RepairFields>(fields),
            Kind::Loan => check::<LoanFields>(fields),
            Kind::Purchase => check::<PurchaseFields>(fields),
            Kind::UseOfMaterials => check::<MaterialsFields>(fields),
            Kind::Account => check::<AccountFields>(fields),
            Kind::SystemAccess => check::<AccessFields>(fields),
            Kind::DataService => check::<DataFields>(fields),
            Kind::General => check::<GeneralFields>(fields),
        }
    }
}

trait Form: DeserializeOwned + Serialize {
    /// Rules beyond the types: (field, message) of the first broken one.
    fn rules(&self) -> Option<(String, &'static str)>;
}

fn check<F: Form>(fields: &Value) -> Result<Value> {
    let form: F = serde_path_to_error::deserialize(fields).map_err(|e| {
        let message = e.inner().to_string();
        let path = e.path().to_string();
        let field = if path == "." {
            message.split('`').nth(1).unwrap_or("").to_owned()
        } else {
            path
        };
        let field = if field.is_empty() {
            "fields".to_owned()
        } else {
            format!("fields.{field}")
        };
        Error::invalid(&field, message)
    })?;
    if let Some((field, message)) = form.rules() {
        return Err(Error::invalid(&format!("fields.{field}"), message));
    }
    Ok(serde_json::to_value(&form).expect("fields serialize"))
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn required(name: &str, value: &str) -> Option<(String, &'static str)> {
    blank(value).then(|| (name.to_owned(), "must not be empty"))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepairFields {
    /// What is broken and how it shows.
    problem: String,
    /// Building and room.
    #[serde(default)]
    location: String,
}

impl Form for RepairFields {
    fn rules(&self) -> Option<(String, &'static str)> {
        required("problem", &self.problem)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoanFields {
    /// First day (YYYY-MM-DD) or instant (RFC 3339) of the loan.
    from: String,
    /// Last day (inclusive) or instant of the loan.
    to: String,
    purpose: String,
    /// Where the items will be used.
    #[serde(default)]
    place: String,
}

impl Form for LoanFields {
    fn rules(&self) -> Option<(String, &'static str)> {
        required("purpose", &self.purpose)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseItem {
    /// Specification (แบบการกำหนดคุณสมบัติ).
    pub spec: String,
    pub quantity: u32,
    pub unit: String,
    /// Estimated unit price in baht.
    pub estimated_price: f64,
    /// Reference unit price (ราคากลาง) in baht, when known.
    #[serde(default)]
    pub reference_price: Option<f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseFields {
    /// materials, internet or website: the three purchase forms.
    category: String,
    purpose: String,
    items: Vec<PurchaseItem>,
}

impl Form for PurchaseFields {
    fn rules(&self) -> Option<(String, &'static str)> {
        if !["materials", "internet", "website"].contains(&self.category.as_str()) {
            return Some(("category".into(), "must be materials, internet or website"));
        }
        if let Some(e) = required("purpose", &self.purpose) {
            return Some(e);
        }
        if self.items.is_empty() {
            return Some(("items".into(), "list at least one item"));
        }
        for (i, item) in self.items.iter().enumerate() {
            if blank(&item.spec) {
                return Some((format!("items[{i}].spec"), "must not be empty"));
            }
            if item.quantity == 0 {
                return Some((format!("items[{i}].quantity"), "must be at least 1"));
            }
            if blank(&item.unit) {
                return Some((format!("items[{i}].unit"), "must not be empty"));
            }
            if !(item.estimated_price >= 0.0 && item.estimated_price.is_finite()) {
                return Some((format!("items[{i}].estimated_price"), "must be 0 or more"));
            }
            if item
                .reference_price
                .is_some_and(|p| !(p >= 0.0 && p.is_finite()))
            {
                return Some((format!("items[{i}].reference_price"), "must be 0 or more"));
            }
        }
        None
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaterialItem {
    name: String,
    quantity: u32,
    unit: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaterialsFields {
    purpose: String,
    items: Vec<MaterialItem>,
}

impl Form for MaterialsFields {
    fn rules(&self) -> Option<(String, &'static str)> {
        if let Some(e) = required("purpose", &self.purpose) {
            return Some(e);
        }
        if self.items.is_empty() {
            return Some(("items".into(), "list at least one item"));
        }
        for (i, item) in self.items.iter().enumerate() {
            if blank(&item.name) {
                return Some((format!("items[{i}].name"), "must not be empty"));
            }
            if item.quantity == 0 {
                return Some((format!("items[{i}].quantity"), "must be at least 1"));
            }
        }
        None
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFields {
    /// The network user ID asked for: 3-32 of a-z, 0-9, '.', '_', '-'.
    login: String,
    full_name: String,
    #[serde(default)]
    position: String,
    #[serde(default)]
    email: String,
}

impl Form for AccountFields {
    fn rules(&self) -> Option<(String, &'static str)> {
        let ok = (3..=32).contains(&self.login.len())
            && self
                .login
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if !ok {
            return Some((
                "login".into(),
                "must be 3 to 32 of a-z, 0-9, '.', '_' and '-'",
            ));
        }
        required("full_name", &self.full_name)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessFields {
    /// The information system (e.g. DMC, e-Office).
    system: String,
    /// read, write or admin.
    access_level: String,
    reason: String,
}

impl Form for AccessFields {
    fn rules(&self) -> Option<(String, &'static str)> {
        if let Some(e) = required("system", &self.system) {
            return Some(e);
        }
        if !["read", "write", "admin"].contains(&self.access_level.as_str()) {
            return Some(("access_level".into(), "must be read, write or admin"));
        }
        required("reason", &self.reason)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataFields {
    /// Which data (e.g. student counts by school, 2567).
    data: String,
    purpose: String,
    /// How to deliver it: file type or paper.
    #[serde(default)]
    format: String,
}

impl Form for DataFields {
    fn rules(&self) -> Option<(String, &'static str)> {
        required("data", &self.data).or_else(|| required("purpose", &self.purpose))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneralFields {
    /// What the requester asks the ICT group to do.
    task: String,
}

impl Form for GeneralFields {
    fn rules(&self) -> Option<(String, &'static str)> {
        required("task", &self.task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `Ok(())` or the field the error names.
    fn check_fields(kind: Kind, fields: Value, expected: Result<(), &str>) {
        let got = kind.validate(&fields).map(|_| ()).map_err(|e| match e {
            Error::Invalid { field, .. } => field,
            other => panic!("{other}"),
        });
        assert_eq!(got, expected.map_err(str::to_owned), "{kind:?} {fields}");
    }

    #[test]
    fn each_form_names_what_is_wrong() {
        use Kind::*;
        check_fields(Repair, json!({"problem": "จอไม่ติด"}), Ok(()));
        check_fields(Repair, json!({"problem": " "}), Err("fields.problem"));
        check_fields(Repair, json!({}), Err("fields.problem"));
        check_fields(
            Repair,
            json!({"problem": "x", "colour": 1}),
            Err("fields.colour"),
        );
        check_fields(
            Loan,
            json!({"from": "2026-12-01", "to": "2026-12-02", "purpose": "อบรม"}),
            Ok(()),
        );
        check_fields(
            Loan,
            json!({"from": "2026-12-01", "purpose": "อบรม"}),
            Err("fields.to"),
        );
        let item = json!({"spec": "Notebook i5", "quantity": 2, "unit": "เครื่อง", "estimated_price": 22000.0});
        check_fields(
            Purchase,
            json!({"category": "materials", "purpose": "ห้องคอม", "items": [item]}),
            Ok(()),
        );
        check_fields(
            Purchase,
            json!({"category": "car", "purpose": "x", "items": [item]}),
            Err("fields.category"),
        );
        check_fields(
            Purchase,
            json!({"category": "materials", "purpose": "x", "items": []}),
            Err("fields.items"),
        );
        check_fields(
            Purchase,
            json!({"category": "materials", "purpose": "x", "items": [item, {"spec": "x", "quantity": 0, "unit": "ชิ้น", "estimated_price": 1.0}]}),
            Err("fields.items[1].quantity"),
        );
        check_fields(
            Purchase,
            json!({"category": "materials", "purpose": "x", "items": [{"spec": "x", "quantity": "two", "unit": "ชิ้น", "estimated_price": 1.0}]}),
            Err("fields.items[0].quantity"),
        );
        check_fields(
            UseOfMaterials,
            json!({"purpose": "x", "items": [{"name": "กระดาษ A4", "quantity": 5, "unit": "รีม"}]}),
            Ok(()),
        );
        check_fields(
            Account,
            json!({"login": "somchai.k", "full_name": "สมชาย ก"}),
            Ok(()),
        );
        check_fields(
            Account,
            json!({"login": "Somchai K", "full_name": "สมชาย ก"}),
            Err("fields.login"),
        );
        check_fields(
            SystemAccess,
            json!({"system": "DMC", "access_level": "read", "reason": "งานทะเบียน"}),
            Ok(()),
        );
        check_fields(
            SystemAccess,
            json!({"system": "DMC", "access_level": "root", "reason": "x"}),
            Err("fields.access_level"),
        );
        check_fields(
            DataService,
            json!({"data": "จำนวนนักเรียน", "purpose": "รายงาน"}),
            Ok(()),
        );
        check_fields(
            DataService,
            json!({"data": "จำนวนนักเรียน"}),
            Err("fields.purpose"),
        );
        check_fields(General, json!({"task": "ติดตั้งโปรเจคเตอร์"}), Ok(()));
        check_fields(General, json!("task"), Err("fields"));
    }
}
