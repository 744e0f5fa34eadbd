//! The asset register as a file: export to CSV and XLSX (`workbook`), import from CSV or XLSX
//! (the first sheet, read with calamine), the way schools keep theirs in Excel. Both have the
//! same columns. An import is all or nothing: the first bad row is reported with its row
//! number (as Excel numbers it, the heading being row 1) and nothing is imported.

use std::collections::HashMap;

use sqlx::{Any, Row};

use super::assets::{self, Asset, NewAsset};
use crate::audit::Actor;
use crate::db::Db;
use crate::error::{Error, Result};

/// The columns, in order: the asset's fields, with the school by its code.
pub const COLUMNS: [&str; 14] = [
    "asset_number",
    "category",
    "brand",
    "model",
    "serial",
    "budget_year",
    "price",
    "funding_source",
    "school_code",
    "room",
    "custodian",
    "state",
    "warranty_end",
    "notes",
];

/// Splits CSV text (RFC 4180: quoted fields, doubled quotes, CRLF or LF) into rows.
///
/// # Errors
/// `Invalid` naming the row of an unterminated quote.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                line += 1;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(Error::invalid(
            &format!("row {line}"),
            "a quoted field is not closed",
        ));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The cells of an asset, in the order of [`COLUMNS`].
pub fn cells(asset: &Asset, school_code: &str) -> [String; 14] {
    [
        asset.asset_number.clone(),
        asset.category.clone(),
        asset.brand.clone(),
        asset.model.clone(),
        asset.serial.clone(),
        asset.budget_year.map(|y| y.to_string()).unwrap_or_default(),
        asset.price.map(|p| p.to_string()).unwrap_or_default(),
        asset.funding_source.clone(),
        school_code.to_owned(),
        asset.room.clone(),
        asset.custodian.clone(),
        asset.state.clone(),
        asset.warranty_end.clone().unwrap_or_default(),
        asset.notes.clone(),
    ]
}

async fn school_codes(db: &Db) -> Result<HashMap<i64, String>> {
    let rows = sqlx::query::<Any>("SELECT id, code FROM schools")
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("code")?)))
        .collect()
}

/// Every asset matching `filter` (in pages, oldest last), with school codes, for export.
pub async fn all(
    db: &Db,
    filter: &assets::Filter,
    school_scope: Option<i64>,
) -> Result<Vec<(Asset, String)>> {
    let codes = school_codes(db).await?;
    let mut out = Vec::new();
    let mut page = assets::Filter {
        limit: Some(500),
        before_id: None,
        q: filter.q.clone(),
        school_id: filter.school_id,
        state: filter.state.clone(),
        category: filter.category.clone(),
    };
    loop {
        let batch = assets::list(db, &page, school_scope).await?;
        let done = batch.len() < 500;
        page.before_id = batch.last().map(|a| a.id);
        for a in batch {
            let code = codes.get(&a.school_id).cloned().unwrap_or_default();
            out.push((a, code));
        }
        if done {
            return Ok(out);
        }
    }
}

/// The assets as CSV, UTF-8 with a byte-order mark so that Excel reads Thai.
pub fn to_csv(rows: &[(Asset, String)]) -> String {
    let mut out = String::from("\u{feff}");
    out.push_str(&COLUMNS.join(","));
    out.push_str("\r\n");
    for (asset, code) in rows {
        out.push_str(&cells(asset, code).map(|c| csv_field(&c)).join(","));
        out.push_str("\r\n");
    }
    out
}

/// Imports a register file as a user sends it: an XLSX workbook (told by its content) or CSV
/// in UTF-8.
///
/// # Errors
/// As [`import_csv`] and [`import_xlsx`]; `Invalid` with field `file` when it is neither.
pub async fn import(
    db: &Db,
    actor: &Actor,
    bytes: &[u8],
    school_scope: Option<i64>,
) -> Result<usize> {
    if bytes.starts_with(b"PK\x03\x04") {
        return import_xlsx(db, actor, bytes, school_scope).await;
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        Error::invalid(
            "file",
            "send the .xlsx workbook itself, or CSV as UTF-8 (Excel: Save As, CSV UTF-8)",
        )
    })?;
    import_csv(db, actor, text, school_scope).await
}

/// Imports a CSV register: every row or none.
///
/// # Errors
/// `Invalid` with field `row N` (or `row N: column`) for the first bad row, `Conflict` naming
/// the row whose asset number is already registered; nothing is imported then.
pub async fn import_csv(
    db: &Db,
    actor: &Actor,
    text: &str,
    school_scope: Option<i64>,
) -> Result<usize> {
    let rows = parse_csv(text)?
        .into_iter()
        .enumerate()
        .map(|(i, row)| (i + 1, row))
        .collect::<Vec<_>>();
    import_rows(db, actor, &rows, school_scope).await
}

/// Imports an XLSX register (its first sheet): every row or none.
///
/// # Errors
/// As [`import_csv`]; `Invalid` with field `file` when it is not a workbook.
pub async fn import_xlsx(
    db: &Db,
    actor: &Actor,
    bytes: &[u8],
    school_scope: Option<i64>,
) -> Result<usize> {
    let rows = parse_xlsx(bytes)?;
    import_rows(db, actor, &rows, school_scope).await
}

/// The first sheet's rows as text, each with its row number as Excel shows it. Numbers read
/// back as they were written (`2567`, `21500.5`), dates as `YYYY-MM-DD`.
///
/// # Errors
/// `Invalid` (field `file`) when the bytes are not an XLSX workbook or it has no sheet; `Invalid`
/// naming the row and cell of an error value such as `#N/A`.
pub fn parse_xlsx(bytes: &[u8]) -> Result<Vec<(usize, Vec<String>)>> {
    use calamine::{Data, Reader, Xlsx};
    let not_a_workbook = |e: &dyn std::fmt::Display| {
        Error::invalid(
            "file",
            format!("not an XLSX workbook ({e}); save it from Excel as .xlsx, or send CSV"),
        )
    };
    let mut workbook: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes))
        .map_err(|e| not_a_workbook(&e))?;
    let range = workbook
        .worksheet_range_at(0)
        .ok_or_else(|| Error::invalid("file", "the workbook has no sheet"))?
        .map_err(|e| not_a_workbook(&e))?;
    let Some((first_row, first_col)) = range.start() else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    for (i, cells) in range.rows().enumerate() {
        let row_no = first_row as usize + i + 1;
        // Cells left of the used range are empty.
        let mut row = vec![String::new(); first_col as usize];
        for (j, cell) in cells.iter().enumerate() {
            row.push(match cell {
                Data::Empty => String::new(),
                Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
                Data::Int(n) => n.to_string(),
                Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
                Data::Float(f) => f.to_string(),
                Data::Bool(b) => (if *b { "TRUE" } else { "FALSE" }).to_owned(),
                Data::DateTime(d) => excel_date(d.as_f64()),
                Data::Error(e) => {
                    let column = first_col as usize + j;
                    return Err(Error::invalid(
                        &format!("row {row_no}"),
                        format!(
                            "cell {}{row_no} holds the error {e}",
                            column_letters(column)
                        ),
                    ));
                }
            });
        }
        rows.push((row_no, row));
    }
    Ok(rows)
}

/// `YYYY-MM-DD` of an Excel serial date (1900 date system).
fn excel_date(serial: f64) -> String {
    jiff::civil::date(1899, 12, 30)
        .checked_add(jiff::Span::new().days(serial.floor() as i64))
        .map(|d| d.to_string())
        .unwrap_or_default()
}

/// Excel's name of a 0-based column: A, B, ..., Z, AA, ...
fn column_letters(mut column: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'A' + (column % 26) as u8);
        if column < 26 {
            break;
        }
        column = column / 26 - 1;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

/// Imports rows (the heading first), each with its row number: every row or none.
async fn import_rows(
    db: &Db,
    actor: &Actor,
    rows: &[(usize, Vec<String>)],
    school_scope: Option<i64>,
) -> Result<usize> {
    let Some(((heading_no, heading), data)) = rows.split_first() else {
        return Err(Error::invalid("row 1", "the file is empty"));
    };
    let heading_field = format!("row {heading_no}");
    let index: HashMap<&str, usize> = heading
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim(), i))
        .collect();
    for (i, h) in heading.iter().enumerate() {
        if !COLUMNS.contains(&h.trim()) {
            return Err(Error::invalid(
                &heading_field,
                format!(
                    "column {} {:?} is not one of {}",
                    i + 1,
                    h,
                    COLUMNS.join(", ")
                ),
            ));
        }
    }
    for required in ["asset_number", "category", "school_code"] {
        if !index.contains_key(required) {
            return Err(Error::invalid(
                &heading_field,
                format!("the column {required} is missing"),
            ));
        }
    }
    let codes: HashMap<String, i64> = school_codes(db)
        .await?
        .into_iter()
        .map(|(id, code)| (code, id))
        .collect();
    let mut tx = db.begin_write().await?;
    let mut count = 0;
    for (row_no, row) in data {
        let row_no = *row_no;
        if row.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let get = |col: &str| -> String {
            index
                .get(col)
                .and_then(|&i| row.get(i))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let bad =
            |col: &str, message: String| Error::invalid(&format!("row {row_no}: {col}"), message);
        let number = |col: &str| -> Result<Option<f64>> {
            let v = get(col).replace(',', "");
            if v.is_empty() {
                return Ok(None);
            }
            v.parse::<f64>()
                .map(Some)
                .map_err(|_| bad(col, format!("{v:?} is not a number")))
        };
        let code = get("school_code");
        let school_id = *codes
            .get(&code)
            .ok_or_else(|| bad("school_code", format!("no school with code {code:?}")))?;
        if school_scope.is_some_and(|s| s != school_id) {
            return Err(bad(
                "school_code",
                "you may import only your own school's assets".into(),
            ));
        }
        let state = get("state");
        let warranty = get("warranty_end");
        let new = NewAsset {
            asset_number: get("asset_number"),
            category: get("category"),
            brand: get("brand"),
            model: get("model"),
            serial: get("serial"),
            budget_year: number("budget_year")?.map(|y| y as i64),
            price: number("price")?,
            funding_source: get("funding_source"),
            school_id,
            room: get("room"),
            custodian: get("custodian"),
            state: if state.is_empty() {
                "in_use".into()
            } else {
                state
            },
            warranty_end: (!warranty.is_empty()).then_some(warranty),
            notes: get("notes"),
        };
        assets::create_in(&mut tx, actor, &new, None)
            .await
            .map_err(|e| match e {
                Error::Invalid { field, message } => bad(&field, message),
                Error::Conflict(message) => Error::Conflict(format!("row {row_no}: {message}")),
                other => other,
            })?;
        count += 1;
    }
    tx.commit().await?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows() {
        let check = |text: &str, expected: &[&[&str]]| {
            let rows = parse_csv(text).unwrap();
            assert_eq!(rows, expected, "{text:?}");
        };
        check("a,b\r\n1,2\r\n", &[&["a", "b"], &["1", "2"]]);
        check("\u{feff}a,b\n1,2", &[&["a", "b"], &["1", "2"]]);
        check("a\n\"x, \"\"y\"\"\nz\"", &[&["a"], &["x, \"y\"\nz"]]);
        check("a,,c\n", &[&["a", "", "c"]]);
        assert!(parse_csv("a\n\"open").is_err());
    }

    #[test]
    fn xlsx_cells_as_text() {
        assert_eq!(excel_date(46022.0), "2025-12-31");
        assert_eq!(excel_date(1.0), "1899-12-31");
        let names: Vec<String> = [0, 1, 25, 26, 27, 51, 52, 701, 702]
            .map(column_letters)
            .to_vec();
        assert_eq!(names, ["A", "B", "Z", "AA", "AB", "AZ", "BA", "ZZ", "AAA"]);
        let bytes = crate::desk::workbook::table(
            "ครุภัณฑ์",
            &["asset_number", "school_code", "budget_year", "price"],
            [[
                "7440-001-0001/67".to_owned(),
                "0107".to_owned(),
                "2567".to_owned(),
                "21500.5".to_owned(),
            ]],
            &[2, 3],
        )
        .unwrap();
        assert_eq!(
            parse_xlsx(&bytes).unwrap(),
            [
                (
                    1,
                    ["asset_number", "school_code", "budget_year", "price"]
                        .map(String::from)
                        .to_vec()
                ),
                (
                    2,
                    ["7440-001-0001/67", "0107", "2567", "21500.5"]
                        .map(String::from)
                        .to_vec()
                ),
            ]
        );
        let err = parse_xlsx(b"asset_number,category\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("file: not an XLSX workbook"), "{err}");
    }
}
