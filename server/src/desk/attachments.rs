//! Files attached to requests: a photo of the broken projector taken with a phone, a scanned
//! form. Only what the limits allow is kept (`desk.attachment_max_bytes`,
//! `desk.attachment_types`), and the type is told from the file's first bytes, never from the
//! name or the Content-Type the client sent.
//!
//! On-disk invariants (`<data_dir>/attachments`):
//! - A file is stored once, under the SHA-256 of its content: `ab/abcdef...` (64 hex digits),
//!   never under a name a user chose. Two uploads of the same photo share the file.
//! - Bytes are written to `tmp/` as they arrive, fsynced, and renamed into place only when whole,
//!   of an allowed type, and its row is written (the rename happens inside the transaction that
//!   records it, just before the commit), so a file under its hash always has that hash. A
//!   refused or broken upload, or a request form that is refused, leaves nothing behind (the
//!   temporary file is removed when the upload is dropped).
//! - Files are never deleted: the rows in `desk_attachments` that point to them are kept like
//!   the rest of a request's record.
//!
//! Who may attach: whoever may comment on the request (the workflow's `comment` rule). Who may
//! download: whoever may see the request; anyone else gets the same `NotFound` as for the
//! request itself.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{Any, Row};

use super::requests::{self, Who};
use super::workflow::{self, Action, Refusal};
use crate::audit::{self, Actor, Change};
use crate::db::{Db, now_ms, rfc3339};
use crate::error::{Error, Result};

/// A file type the desk accepts, recognised by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Jpeg,
    Png,
    Gif,
    Webp,
    Heic,
    Pdf,
}

pub const FILE_TYPES: [FileType; 6] = [
    FileType::Jpeg,
    FileType::Png,
    FileType::Gif,
    FileType::Webp,
    FileType::Heic,
    FileType::Pdf,
];

impl FileType {
    /// The name `desk.attachment_types` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Jpeg => "jpeg",
            FileType::Png => "png",
            FileType::Gif => "gif",
            FileType::Webp => "webp",
            FileType::Heic => "heic",
            FileType::Pdf => "pdf",
        }
    }

    pub fn parse(s: &str) -> Option<FileType> {
        FILE_TYPES.into_iter().find(|t| t.as_str() == s)
    }

    pub fn mime(self) -> &'static str {
        match self {
            FileType::Jpeg => "image/jpeg",
            FileType::Png => "image/png",
            FileType::Gif => "image/gif",
            FileType::Webp => "image/webp",
            FileType::Heic => "image/heic",
            FileType::Pdf => "application/pdf",
        }
    }

    fn from_mime(mime: &str) -> Option<FileType> {
        FILE_TYPES.into_iter().find(|t| t.mime() == mime)
    }

    pub fn extension(self) -> &'static str {
        match self {
            FileType::Jpeg => "jpg",
            other => other.as_str(),
        }
    }

    /// Whether a browser shows it as a picture (HEIC it does not).
    pub fn is_picture(self) -> bool {
        matches!(
            self,
            FileType::Jpeg | FileType::Png | FileType::Gif | FileType::Webp
        )
    }

    /// The type of a file from its first bytes (at least [`SNIFF_BYTES`] when the file has
    /// them), or `None` when it is none of the known types.
    pub fn sniff(head: &[u8]) -> Option<FileType> {
        if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(FileType::Jpeg)
        } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(FileType::Png)
        } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
            Some(FileType::Gif)
        } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            Some(FileType::Webp)
        } else if head.len() >= 12
            && &head[4..8] == b"ftyp"
            && [
                b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1",
            ]
            .iter()
            .any(|brand| &head[8..12] == *brand)
        {
            Some(FileType::Heic)
        } else if head.starts_with(b"%PDF-") {
            Some(FileType::Pdf)
        } else {
            None
        }
    }
}

/// The most files one request carries.
pub const MAX_PER_REQUEST: i64 = 30;

/// How many leading bytes [`FileType::sniff`] looks at.
pub const SNIFF_BYTES: usize = 16;

/// What may be attached and where it is kept.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `<data_dir>/attachments`.
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub types: Vec<FileType>,
}

impl Default for Limits {
    fn default() -> Self {
        let c = khetnet_config::DeskConfig::default();
        Limits {
            dir: PathBuf::from("./khetnet-data/attachments"),
            max_bytes: c.attachment_max_bytes,
            types: c
                .attachment_types
                .iter()
                .filter_map(|t| FileType::parse(t))
                .collect(),
        }
    }
}

impl Limits {
    /// The limit as people read it: "10 MiB (10485760 bytes)".
    pub fn max_size_text(&self) -> String {
        let bytes = self.max_bytes;
        if bytes >= 1024 * 1024 {
            let mib = bytes as f64 / (1024.0 * 1024.0);
            format!("{mib:.1} MiB ({bytes} bytes)")
        } else {
            format!("{} KiB ({bytes} bytes)", bytes / 1024)
        }
    }

    /// The error for a file over the limit.
    pub fn too_large(&self) -> Error {
        Error::TooLarge(format!(
            "the file is larger than the limit of {} (desk.attachment_max_bytes); send a smaller \
             file or a photo at a lower resolution",
            self.max_size_text()
        ))
    }

    fn allowed_text(&self) -> String {
        self.types
            .iter()
            .map(|t| t.as_str().to_uppercase())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `accept` attribute of a file input.
    pub fn accept(&self) -> String {
        self.types
            .iter()
            .map(|t| t.mime())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir.join(&sha256[..2]).join(sha256)
    }
}

/// A file received whole, of an allowed type, stored under its hash.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sha256: String,
    pub size: u64,
    pub file_type: FileType,
}

/// An upload in progress: its bytes go to a temporary file as they arrive, counted against the
/// limit and hashed. Dropped before [`Upload::finish`], it removes its temporary file.
pub struct Upload {
    limits: Limits,
    file: Option<std::fs::File>,
    tmp: PathBuf,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
}

impl Upload {
    /// Starts an upload.
    ///
    /// # Errors
    /// `Io` when the attachments folder cannot be written.
    pub fn begin(limits: &Limits) -> Result<Upload> {
        let tmp_dir = limits.dir.join("tmp");
        std::fs::create_dir_all(&tmp_dir)
            .map_err(Error::io(format!("creating {}", tmp_dir.display())))?;
        let tmp = tmp_dir.join(format!(
            "upload-{}",
            hex::encode(rand::random::<[u8; 12]>())
        ));
        let file = std::fs::File::create_new(&tmp)
            .map_err(Error::io(format!("creating {}", tmp.display())))?;
        Ok(Upload {
            limits: limits.clone(),
            file: Some(file),
            tmp,
            hasher: Sha256::new(),
            size: 0,
            head: Vec::with_capacity(SNIFF_BYTES),
        })
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds the next bytes.
    ///
    /// # Errors
    /// `TooLarge` naming the limit as soon as the file passes it; `Invalid` as soon as its first
    /// bytes show a type that is not allowed; `Io` when the disk refuses.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.size += chunk.len() as u64;
        if self.size > self.limits.max_bytes {
            return Err(self.limits.too_large());
        }
        if self.head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            if self.head.len() == SNIFF_BYTES {
                self.file_type()?;
            }
        }
        self.hasher.update(chunk);
        if let Some(file) = &mut self.file {
            file.write_all(chunk)
                .map_err(Error::io(format!("writing {}", self.tmp.display())))?;
        }
        Ok(())
    }

    fn file_type(&self) -> Result<FileType> {
        match FileType::sniff(&self.head) {
            Some(t) if self.limits.types.contains(&t) => Ok(t),
            found => Err(Error::invalid(
                "file",
                format!(
                    "{}; allowed (desk.attachment_types): {}",
                    match found {
                        Some(t) => format!("{} files are not accepted", t.as_str().to_uppercase()),
                        None => "the file is none of the known types".to_owned(),
                    },
                    self.limits.allowed_text()
                ),
            )),
        }
    }

    /// Checks the whole file and syncs it; it stays in `tmp/` until [`Received::store`].
    ///
    /// # Errors
    /// `Invalid` for an empty file or a type that is not allowed; `Io` when the disk refuses.
    pub fn finish(mut self) -> Result<Received> {
        if self.size == 0 {
            return Err(Error::invalid("file", "the file is empty"));
        }
        let file_type = self.file_type()?;
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(Error::io(format!("syncing {}", self.tmp.display())))?;
        }
        let stored = Stored {
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
            size: self.size,
            file_type,
        };
        Ok(Received {
            upload: self,
            stored,
        })
    }
}

/// A file received whole, of an allowed type and synced, still in `tmp/`: [`Received::store`]
/// puts it under its hash; dropped before that, it is removed.
pub struct Received {
    upload: Upload,
    pub stored: Stored,
}

impl Received {
    /// Moves the file under its hash (blocking: call it off the async threads).
    ///
    /// # Errors
    /// `Io` when the disk refuses.
    pub fn store(self) -> Result<Stored> {
        let path = self.upload.limits.path_of(&self.stored.sha256);
        let parent = path.parent().expect("a folder per prefix");
        std::fs::create_dir_all(parent)
            .map_err(Error::io(format!("creating {}", parent.display())))?;
        std::fs::rename(&self.upload.tmp, &path)
            .map_err(Error::io(format!("storing {}", path.display())))?;
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
        Ok(self.stored.clone())
    }
}

impl Drop for Upload {
    /// After [`Received::store`] the temporary file has been renamed and this finds nothing.
    fn drop(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// An attached file as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    pub id: i64,
    pub request_id: i64,
    pub file_name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub uploaded_by: Option<i64>,
    pub uploader: String,
    pub uploaded_at: String,
    /// Where to download it (`GET`, with the same token).
    pub url: String,
}

impl Attachment {
    pub fn file_type(&self) -> Option<FileType> {
        FileType::from_mime(&self.content_type)
    }
}

/// A name safe to show and to put in a Content-Disposition header: no folders, no control
/// characters or quotes, at most 100 characters, ending in the extension of the type found.
pub fn safe_name(given: &str, file_type: FileType) -> String {
    let base = given.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_control() || "\"'<>:|?*;%`".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let stem = match cleaned.rsplit_once('.') {
        Some((stem, ext))
            if FileType::parse(&ext.to_ascii_lowercase()).is_some()
                || ext.eq_ignore_ascii_case("jpg")
                || ext.eq_ignore_ascii_case("jpeg") =>
        {
            stem
        }
        _ => cleaned,
    };
    let stem: String = stem.chars().take(100).collect();
    let stem = if stem.trim().is_empty() {
        "attachment".to_owned()
    } else {
        stem
    };
    format!("{stem}.{}", file_type.extension())
}

/// Checks that the user may attach files to the request, before the upload is read.
///
/// # Errors
/// `NotFound` for a request the user may not see; `Forbidden` when the workflow does not let
/// them comment on it.
pub async fn check_may_attach(db: &Db, who: &Who, request_id: i64) -> Result<()> {
    let mut conn = db.pool.acquire().await?;
    let row = requests::load_visible(&mut conn, who, request_id).await?;
    may_attach(&mut conn, who, &row).await
}

async fn may_attach(conn: &mut sqlx::AnyConnection, who: &Who, row: &requests::Row_) -> Result<()> {
    workflow::check(Action::Comment, row.state, &who.parties(row)).map_err(|r| match r {
        Refusal::NotYours => Error::Forbidden,
        Refusal::NotNow => Error::Conflict("no files may be attached now".into()),
    })?;
    let count: i64 = sqlx::query_scalar::<Any, i64>(
        "SELECT COUNT(*) FROM desk_attachments WHERE request_id = $1",
    )
    .bind(row.id)
    .fetch_one(conn)
    .await?;
    if count >= MAX_PER_REQUEST {
        return Err(Error::Conflict(format!(
            "the request already carries {MAX_PER_REQUEST} files, the most one may; add what \
             else is needed to a new request"
        )));
    }
    Ok(())
}

/// Records a received file as attached to a request, with an entry in its history and the
/// audit, and stores it under its hash before the commit.
///
/// # Errors
/// As [`check_may_attach`]; `Io` when the file cannot be stored (nothing is recorded then).
pub async fn attach(
    db: &Db,
    actor: &Actor,
    who: &Who,
    request_id: i64,
    given_name: &str,
    received: Received,
) -> Result<Attachment> {
    let stored = received.stored.clone();
    let file_name = safe_name(given_name, stored.file_type);
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let row = requests::load_visible(&mut tx, who, request_id).await?;
    may_attach(&mut tx, who, &row).await?;
    let id: i64 = sqlx::query_scalar::<Any, i64>(
        "INSERT INTO desk_attachments (request_id, sha256, size, content_type, file_name, uploaded_by, uploader, uploaded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(request_id)
    .bind(&stored.sha256)
    .bind(stored.size as i64)
    .bind(stored.file_type.mime())
    .bind(&file_name)
    .bind(actor.user_id)
    .bind(&actor.username)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let detail = json!({ "attachment_id": id, "file_name": file_name, "size": stored.size,
                         "content_type": stored.file_type.mime(), "sha256": stored.sha256 });
    requests::add_event(
        &mut tx,
        actor,
        request_id,
        "attach",
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
            action: "request.attach",
            entity: "request",
            entity_id: Some(request_id),
            before: None,
            after: Some(detail),
        },
    )
    .await?;
    tokio::task::spawn_blocking(move || received.store())
        .await
        .map_err(|e| Error::Io {
            context: "storing an attachment".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
    tx.commit().await?;
    Ok(Attachment {
        id,
        request_id,
        url: url(request_id, id),
        file_name,
        content_type: stored.file_type.mime().to_owned(),
        size: stored.size as i64,
        sha256: stored.sha256.clone(),
        uploaded_by: actor.user_id,
        uploader: actor.username.clone(),
        uploaded_at: rfc3339(now),
    })
}

fn url(request_id: i64, id: i64) -> String {
    format!("/api/v1/requests/{request_id}/attachments/{id}")
}

const COLUMNS: &str =
    "id, request_id, sha256, size, content_type, file_name, uploaded_by, uploader, uploaded_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Attachment> {
    let request_id = row.try_get("request_id")?;
    let id = row.try_get("id")?;
    Ok(Attachment {
        id,
        request_id,
        url: url(request_id, id),
        file_name: row.try_get("file_name")?,
        content_type: row.try_get("content_type")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        uploaded_by: row.try_get("uploaded_by")?,
        uploader: row.try_get("uploader")?,
        uploaded_at: rfc3339(row.try_get("uploaded_at")?),
    })
}

/// The files of a request the caller has already been allowed to see, oldest first.
pub(super) async fn of_request(
    conn: &mut sqlx::AnyConnection,
    request_id: i64,
) -> Result<Vec<Attachment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM desk_attachments WHERE request_id = $1 ORDER BY id LIMIT 1000"
    );
    let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(request_id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

/// An attachment and where its bytes are, for a user who may see its request.
///
/// # Errors
/// `NotFound` when the request is not visible to the user or carries no such attachment (or
/// its file is missing from the disk, which is logged).
pub async fn open(
    db: &Db,
    limits: &Limits,
    who: &Who,
    request_id: i64,
    id: i64,
) -> Result<(Attachment, PathBuf)> {
    let mut conn = db.pool.acquire().await?;
    requests::load_visible(&mut conn, who, request_id).await?;
    let sql = format!("SELECT {COLUMNS} FROM desk_attachments WHERE id = $1 AND request_id = $2");
    let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(request_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(Error::NotFound)?;
    let attachment = from_row(&row)?;
    if attachment.sha256.len() != 64 || !attachment.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::NotFound);
    }
    let path = limits.path_of(&attachment.sha256);
    if !Path::new(&path).is_file() {
        tracing::error!(path = %path.display(), attachment = id, "an attachment's file is missing");
        return Err(Error::NotFound);
    }
    Ok((attachment, path))
}

/// The `Content-Disposition` value of a download: an ASCII fallback name and the real one in
/// UTF-8 (RFC 6266, RFC 8187).
pub fn content_disposition(file_name: &str) -> String {
    let ascii: String = file_name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in file_name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_from_content() {
        let check = |head: &[u8], expected: Option<FileType>| {
            assert_eq!(FileType::sniff(head), expected, "{head:?}");
        };
        check(b"\xFF\xD8\xFF\xE0\0\x10JFIF\0", Some(FileType::Jpeg));
        check(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some(FileType::Png));
        check(b"GIF89a\x01\0\x01\0", Some(FileType::Gif));
        check(b"RIFF\x24\0\0\0WEBPVP8 ", Some(FileType::Webp));
        check(b"\0\0\0\x18ftypheic\0\0\0\0", Some(FileType::Heic));
        check(b"\0\0\0\x18ftypmp42\0\0\0\0", None); // an MP4 video
        check(b"%PDF-1.7\n%\xE2\xE3", Some(FileType::Pdf));
        check(b"MZ\x90\0\x03\0\0\0", None); // a Windows program
        check(b"<html><script>", None);
        check(b"PK\x03\x04", None);
        check(b"", None);
    }

    #[test]
    fn safe_names() {
        let check = |given: &str, t: FileType, expected: &str| {
            assert_eq!(safe_name(given, t), expected, "{given:?}");
        };
        check("IMG_2041.JPG", FileType::Jpeg, "IMG_2041.jpg");
        check("โปรเจคเตอร์เสีย.jpeg", FileType::Jpeg, "โปรเจคเตอร์เสีย.jpg");
        check("../../etc/passwd", FileType::Png, "passwd.png");
        check("C:\\Users\\ครู\\scan.pdf", FileType::Pdf, "scan.pdf");
        check("photo.html", FileType::Jpeg, "photo.html.jpg");
        check("a\"b\r\nc.png", FileType::Png, "a_b__c.png");
        check("", FileType::Pdf, "attachment.pdf");
        check("...", FileType::Gif, "attachment.gif");
        check(
            &"x".repeat(300),
            FileType::Jpeg,
            &format!("{}.jpg", "x".repeat(100)),
        );
    }

    #[test]
    fn disposition_header() {
        assert_eq!(
            content_disposition("รูป 1.jpg"),
            "attachment; filename=\"___ 1.jpg\"; filename*=UTF-8''%E0%B8%A3%E0%B8%B9%E0%B8%9B%201.jpg"
        );
    }

    fn limits(dir: &Path, max_bytes: u64) -> Limits {
        Limits {
            dir: dir.to_owned(),
            max_bytes,
            types: vec![FileType::Jpeg, FileType::Pdf],
        }
    }

    #[test]
    fn uploads_are_stored_whole_under_their_hash_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let l = limits(dir.path(), 64);
        let jpeg = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0 the rest";
        let mut up = Upload::begin(&l).unwrap();
        for chunk in jpeg.chunks(5) {
            up.write(chunk).unwrap();
        }
        let received = up.finish().unwrap();
        let tmp_path = received.upload.tmp.clone();
        assert!(tmp_path.exists(), "received, not yet stored");
        let stored = received.store().unwrap();
        assert!(!tmp_path.exists());
        assert_eq!(stored.sha256, hex::encode(Sha256::digest(jpeg)));
        assert_eq!(std::fs::read(l.path_of(&stored.sha256)).unwrap(), jpeg);

        let mut up = Upload::begin(&l).unwrap();
        let err = up.write(&[0xFF; 65]).unwrap_err().to_string();
        assert!(err.contains("(64 bytes)"), "{err}");
        drop(up);
        let mut up = Upload::begin(&l).unwrap();
        let err = up.write(b"GIF89a\x01\0\x01\0\0\0\0\0\0\0\0").unwrap_err();
        assert!(err.to_string().contains("GIF files"), "{err}");
        drop(up);
        assert!(Upload::begin(&l).unwrap().finish().is_err(), "empty");
        let mut up = Upload::begin(&l).unwrap();
        up.write(b"%PDF-1.4\n%%EOF\n").unwrap();
        drop(up.finish().unwrap()); // received, then the request form was refused
        let tmp: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
        assert!(tmp.is_empty(), "refused uploads leave nothing: {tmp:?}");
    }
}
