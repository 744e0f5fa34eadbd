//! One-sheet XLSX workbooks for downloads (the staff live in Excel), written with
//! `rust_xlsxwriter` (pure Rust).

use rust_xlsxwriter::{Format, Workbook};

use crate::error::{Error, Result};

/// Writes a sheet with a bold heading row; cells in `numeric` columns that parse as numbers
/// are written as numbers, all others as text (so school codes keep their leading zeros).
///
/// # Errors
/// `Io` when the workbook cannot be written.
pub fn table<const N: usize>(
    sheet: &str,
    headings: &[&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
    numeric: &[usize],
) -> Result<Vec<u8>> {
    let fail = |e: rust_xlsxwriter::XlsxError| Error::Io {
        context: "writing the XLSX workbook".into(),
        source: std::io::Error::other(e.to_string()),
    };
    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold();
    let ws = workbook.add_worksheet();
    ws.set_name(sheet).map_err(fail)?;
    for (col, heading) in headings.iter().enumerate() {
        ws.write_string_with_format(0, col as u16, *heading, &bold)
            .map_err(fail)?;
    }
    for (r, row) in rows.into_iter().enumerate() {
        let r = r as u32 + 1;
        for (col, cell) in row.iter().enumerate() {
            let col16 = col as u16;
            match cell.parse::<f64>() {
                Ok(n) if numeric.contains(&col) && !cell.is_empty() => {
                    ws.write_number(r, col16, n).map_err(fail)?;
                }
                _ if cell.is_empty() => {}
                _ => {
                    ws.write_string(r, col16, cell).map_err(fail)?;
                }
            }
        }
    }
    ws.autofit();
    workbook.save_to_buffer().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xlsx_is_a_zip_with_the_sheet() {
        let bytes = table(
            "ปีงบประมาณ 2570",
            &["code", "count"],
            [["0107".to_owned(), "3".to_owned()]],
            &[1],
        )
        .unwrap();
        assert_eq!(&bytes[..4], b"PK\x03\x04", "a zip file");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("xl/worksheets/sheet1.xml"));
    }
}
