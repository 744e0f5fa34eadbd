//! Files on the desk, over real HTTP on SQLite and (when configured) PostgreSQL: photos attached
//! to a request and who may fetch them back, and the asset register imported from XLSX.

mod common;

use common::{TestServer, databases, multipart};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Uploads parts to a request; returns the status and the JSON answer.
async fn upload(
    s: &TestServer,
    token: &str,
    request_id: i64,
    parts: &[(&str, &str, &str, &[u8])],
) -> (StatusCode, Value) {
    let (content_type, body) = multipart(parts);
    let resp = s
        .client
        .post(format!(
            "{}/api/v1/requests/{request_id}/attachments",
            s.url
        ))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    if !status.is_success() {
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "refusals are problem+json"
        );
    }
    (status, resp.json().await.unwrap())
}

/// Something that starts like a JPEG from a phone's camera, `len` bytes long.
fn photo(len: usize) -> Vec<u8> {
    let mut bytes = b"\xFF\xD8\xFF\xE1\x00\x16Exif\x00\x00MM\x00\x2A".to_vec();
    bytes.extend((0..len.saturating_sub(bytes.len() + 2)).map(|i| (i * 7 % 251) as u8));
    bytes.extend_from_slice(b"\xFF\xD9");
    bytes
}

#[tokio::test]
async fn a_photo_on_a_repair_is_served_only_to_those_who_see_the_request() {
    for db in databases() {
        let s = TestServer::start_with(&db, |c| c.desk.attachment_max_bytes = 64 * 1024).await;
        let admin = s.admin().await;
        let school_a = s.school(&admin, "A1001").await;
        let school_b = s.school(&admin, "B2002").await;
        s.user(&admin, "ra", "requester", Some(school_a)).await;
        s.user(&admin, "rb", "requester", Some(school_b)).await;
        s.user(&admin, "tech", "technician", None).await;
        let ra = s.login("ra", "password-of-ra").await;
        let rb = s.login("rb", "password-of-rb").await;
        let tech = s.login("tech", "password-of-tech").await;
        let (status, request) = s
            .post(
                &ra,
                "/api/v1/requests",
                json!({ "kind": "repair", "title": "โปรเจคเตอร์ห้อง 2 ไม่ติด",
                        "fields": { "problem": "เปิดแล้วไฟกะพริบ", "location": "ห้อง 2" } }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{request}");
        let id = request["id"].as_i64().unwrap();

        // The requester attaches a photo from the phone.
        let bytes = photo(40 * 1024);
        let (status, created) = upload(
            &s,
            &ra,
            id,
            &[("file", "โปรเจคเตอร์.JPG", "image/jpeg", &bytes)],
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let attachment = &created[0];
        assert_eq!(attachment["file_name"], "โปรเจคเตอร์.jpg");
        assert_eq!(attachment["content_type"], "image/jpeg");
        assert_eq!(attachment["size"], bytes.len());
        let url = attachment["url"].as_str().unwrap().to_owned();

        // The technician downloads the same bytes, as a download that is never sniffed.
        let resp = s
            .client
            .get(format!("{}{url}", s.url))
            .bearer_auth(&tech)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let headers = resp.headers().clone();
        assert_eq!(headers["content-type"], "image/jpeg");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let disposition = headers["content-disposition"].to_str().unwrap();
        assert!(
            disposition.starts_with("attachment; filename=\"")
                && disposition.contains("filename*=UTF-8''%E0%B9%82"),
            "{disposition}"
        );
        assert_eq!(resp.bytes().await.unwrap().as_ref(), &bytes[..]);

        // The request shows it, and its history and the audit trail say who attached what.
        let (_, full) = s.get(&tech, &format!("/api/v1/requests/{id}")).await;
        assert_eq!(full["attachments"][0]["url"], url.as_str(), "{full}");
        let attach = full["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "attach")
            .expect("an attach entry in the history");
        assert_eq!(attach["actor"], "ra");
        assert_eq!(attach["detail"]["file_name"], "โปรเจคเตอร์.jpg");
        let (_, audit) = s
            .get(
                &admin,
                &format!("/api/v1/audit?entity=request&entity_id={id}"),
            )
            .await;
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == "request.attach"),
            "{audit}"
        );

        // A requester of another school sees neither the file nor the request, nor may add one.
        let (status, _) = s.get(&rb, &url).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = s
            .get(&rb, &format!("/api/v1/requests/{id}/attachments"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) =
            upload(&s, &rb, id, &[("file", "x.jpg", "image/jpeg", &photo(100))]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Nor does an attachment id taken to another request.
        let (status, other) = s
            .post(
                &rb,
                "/api/v1/requests",
                json!({ "kind": "repair", "title": "เครื่องพิมพ์", "fields": { "problem": "กระดาษติด" } }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let other_id = other["id"].as_i64().unwrap();
        let attachment_id = attachment["id"].as_i64().unwrap();
        let (status, _) = s
            .get(
                &rb,
                &format!("/api/v1/requests/{other_id}/attachments/{attachment_id}"),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = s.call(None, reqwest::Method::GET, &url, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Too large, whether found while reading or from the declared length: 413 naming the limit.
        for len in [100 * 1024, 300 * 1024] {
            let (status, problem) = upload(
                &s,
                &ra,
                id,
                &[("file", "big.jpg", "image/jpeg", &photo(len))],
            )
            .await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{len}: {problem}");
            let detail = problem["detail"].as_str().unwrap();
            assert!(
                detail.contains("65536 bytes") && detail.contains("desk.attachment_max_bytes"),
                "{detail}"
            );
        }
        // A program called a photo, sent as image/jpeg: refused by its content.
        let program =
            b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xFF\xFF\x00\x00 and more".to_vec();
        let (status, problem) = upload(
            &s,
            &ra,
            id,
            &[("file", "photo.jpg", "image/jpeg", &program)],
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["field"], "file");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("JPEG, PNG, WEBP, HEIC, PDF")
                && detail.contains("desk.attachment_types"),
            "{detail}"
        );
        // A GIF is a picture, but not an allowed type here.
        let (status, problem) = upload(
            &s,
            &ra,
            id,
            &[(
                "file",
                "a.gif",
                "image/gif",
                b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00;",
            )],
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("GIF files are not accepted")
        );
        // Without a file.
        let (status, problem) = upload(&s, &ra, id, &[]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

        // A hostile name is cleaned; the type comes from the content, not the name.
        let pdf = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n";
        let (status, created) = upload(
            &s,
            &tech,
            id,
            &[("file", "../../etc/ใบเสนอราคา<1>.html", "text/html", pdf)],
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created[0]["file_name"], "ใบเสนอราคา_1_.html.pdf");
        assert_eq!(created[0]["content_type"], "application/pdf");

        // Refused uploads left nothing behind: two files on the request, two on the disk.
        let (_, list) = s
            .get(&ra, &format!("/api/v1/requests/{id}/attachments"))
            .await;
        assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
        let store = s.dir.path().join("attachments");
        let tmp = std::fs::read_dir(store.join("tmp")).unwrap().count();
        assert_eq!(tmp, 0, "no partial uploads are left");
        let stored: usize = std::fs::read_dir(&store)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap() != "tmp")
            .map(|p| std::fs::read_dir(p).unwrap().count())
            .sum();
        assert_eq!(stored, 2);

        // A request carries at most 30 files.
        for i in 2..30 {
            let pdf = format!("%PDF-1.4\n% page {i}\n%%EOF\n");
            let (status, body) = upload(
                &s,
                &tech,
                id,
                &[("file", "scan.pdf", "application/pdf", pdf.as_bytes())],
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{i}: {body}");
        }
        let (status, problem) = upload(
            &s,
            &tech,
            id,
            &[("file", "one-more.pdf", "application/pdf", pdf)],
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("30 files"),
            "{problem}"
        );
        s.stop().await;
    }
}

/// Sends a register file to the import.
async fn import(s: &TestServer, token: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let resp = s
        .client
        .post(format!("{}/api/v1/assets/import", s.url))
        .bearer_auth(token)
        .header(
            "content-type",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
        .body(bytes)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

async fn export(s: &TestServer, token: &str, format: &str) -> Vec<u8> {
    let resp = s
        .client
        .get(format!("{}/api/v1/assets/export?format={format}", s.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes().await.unwrap().to_vec()
}

/// A register as a school keeps it in Excel: text asset numbers and codes, numbers for years
/// and prices, a real date cell for the warranty. `school` is each row's school code.
fn workbook(schools: &[&str]) -> Vec<u8> {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("ทะเบียนครุภัณฑ์").unwrap();
    let heading = [
        "asset_number",
        "category",
        "brand",
        "model",
        "budget_year",
        "price",
        "school_code",
        "room",
        "warranty_end",
    ];
    for (c, h) in heading.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    let date = Format::new().set_num_format("dd/mm/yyyy");
    for (i, school) in schools.iter().enumerate() {
        let r = i as u32 + 1;
        sheet
            .write_string(r, 0, format!("7440-001-000{}/67", i + 1))
            .unwrap();
        sheet.write_string(r, 1, "คอมพิวเตอร์โน้ตบุ๊ก").unwrap();
        sheet.write_string(r, 2, "Lenovo").unwrap();
        sheet.write_string(r, 3, "ThinkPad E14").unwrap();
        sheet.write_number(r, 4, 2567).unwrap();
        sheet.write_number(r, 5, 21500.5).unwrap();
        sheet.write_string(r, 6, *school).unwrap();
        sheet.write_string(r, 7, "ห้องคอม 1").unwrap();
        let warranty = ExcelDateTime::from_ymd(2029, 9, 30).unwrap();
        sheet
            .write_datetime_with_format(r, 8, &warranty, &date)
            .unwrap();
    }
    book.save_to_buffer().unwrap()
}

#[tokio::test]
async fn asset_register_imports_from_xlsx_all_or_nothing_and_round_trips() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        s.school(&admin, "0107").await;

        // Row 4 names an unknown school: the error names it, and rows 2-3 are not kept either.
        let (status, problem) = import(&s, &admin, workbook(&["0107", "0107", "9999"])).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{db:?} {problem}");
        assert_eq!(problem["field"], "row 4: school_code", "{problem}");
        let exported = String::from_utf8(export(&s, &admin, "csv").await).unwrap();
        assert_eq!(
            exported.trim_end().lines().count(),
            1,
            "nothing half-imported: {exported}"
        );

        // Not a workbook at all (a zip of something else): said plainly.
        let (status, problem) = import(&s, &admin, b"PK\x03\x04 not really a zip".to_vec()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["field"], "file");

        let (status, body) = import(&s, &admin, workbook(&["0107", "0107"])).await;
        assert_eq!(
            (status, body["imported"].as_i64()),
            (StatusCode::CREATED, Some(2)),
            "{body}"
        );
        let (_, assets) = s.get(&admin, "/api/v1/assets?q=7440-001-0001/67").await;
        let asset = &assets[0];
        assert_eq!(asset["category"], "คอมพิวเตอร์โน้ตบุ๊ก");
        assert_eq!(asset["budget_year"], 2567);
        assert_eq!(asset["price"], 21500.5);
        assert_eq!(
            asset["warranty_end"], "2029-09-30",
            "a date cell reads as a date"
        );

        // The export, imported into another district's server, gives the same register.
        let xlsx = export(&s, &admin, "xlsx").await;
        let other = TestServer::start(&db).await;
        let other_admin = other.admin().await;
        other.school(&other_admin, "0107").await;
        let (status, body) = import(&other, &other_admin, xlsx).await;
        assert_eq!(
            (status, body["imported"].as_i64()),
            (StatusCode::CREATED, Some(2)),
            "{body}"
        );
        // The export lists the newest first, so the import reverses the order: compare the rows.
        let rows = |csv: Vec<u8>| {
            let mut lines: Vec<String> = String::from_utf8(csv)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            lines.sort();
            lines
        };
        let original = rows(export(&s, &admin, "csv").await);
        assert_eq!(original.len(), 3);
        assert_eq!(
            rows(export(&other, &other_admin, "csv").await),
            original,
            "the register survives an XLSX round trip"
        );
        other.stop().await;
        s.stop().await;
    }
}
