//! A synthetic district of any size for the desk benchmark (`bench/desk.sh` runs the hidden
//! `khetnet seed-desk`): 300 schools, their users, assets and requests spread over years, in
//! Thai and English, written through the real schema in bulk `INSERT`s.
//!
//! Invariant: the data is the same on every run and engine (a counter-based generator, no
//! clock but the given `now`); assets get their search words from [`assets::words`], as the
//! server writes them.

use sqlx::{Any, AnyConnection, Executor, Row};

use super::assets;
use crate::db::{Backend, Db};
use crate::error::Result;

/// How many schools the district has.
pub const SCHOOLS: i64 = 300;
/// Technicians; the first is `tech`, the one the benchmark signs in as.
const TECHNICIANS: i64 = 20;

/// A number from 0 to `n - 1`, the same for the same `(i, salt)` (splitmix64).
fn pick(i: i64, salt: u64, n: usize) -> usize {
    let mut z = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n as u64) as usize
}

/// One of `choices`, by weight.
fn weighted<'a>(i: i64, salt: u64, choices: &[(&'a str, usize)]) -> &'a str {
    let total = choices.iter().map(|c| c.1).sum();
    let mut at = pick(i, salt, total);
    for (value, weight) in choices {
        if at < *weight {
            return value;
        }
        at -= weight;
    }
    choices[0].0
}

/// The index of a school, larger schools more often: the 30 largest have a fifth of the
/// assets and requests besides their even share.
fn school_of(i: i64, salt: u64) -> usize {
    if pick(i, salt, 5) == 0 {
        pick(i, salt + 1, 30)
    } else {
        pick(i, salt + 2, SCHOOLS as usize)
    }
}

/// The ids of the district's schools and users, in the order [`seed_district`] made them.
struct People {
    schools: Vec<i64>,
    /// A requester per school, by the school's index.
    requesters: Vec<i64>,
    teacher: i64,
    technicians: Vec<i64>,
}

impl People {
    async fn load(conn: &mut AnyConnection) -> Result<People> {
        let ids = |sql: &'static str| sqlx::query_scalar::<Any, i64>(sql);
        let schools = ids("SELECT id FROM schools WHERE code LIKE 'S%' ORDER BY code")
            .fetch_all(&mut *conn)
            .await?;
        let requesters = ids("SELECT id FROM users WHERE username LIKE 'req%' ORDER BY username")
            .fetch_all(&mut *conn)
            .await?;
        let technicians = ids(
            "SELECT id FROM users WHERE role = 'technician' AND username LIKE 'tech%' ORDER BY username",
        )
        .fetch_all(&mut *conn)
        .await?;
        let teacher = ids("SELECT id FROM users WHERE username = 'teacher'")
            .fetch_one(&mut *conn)
            .await?;
        Ok(People {
            schools,
            requesters,
            teacher,
            technicians,
        })
    }
}

const VILLAGES: [&str; 12] = [
    "หนองบัว",
    "โนนสูง",
    "ดอนแก้ว",
    "ห้วยทราย",
    "นาคำ",
    "บ่อทอง",
    "โคกสว่าง",
    "หัวฝาย",
    "ท่าช้าง",
    "วังน้ำเย็น",
    "สามัคคี",
    "ป่าตาล",
];

/// (category, asset class code, [(brand, [models])]).
type Catalogue = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static [&'static str])],
);
const CATALOGUE: [Catalogue; 10] = [
    (
        "คอมพิวเตอร์ตั้งโต๊ะ",
        "7440-001",
        &[
            ("Dell", &["OptiPlex 3080", "OptiPlex 7090", "Vostro 3910"]),
            ("HP", &["ProDesk 400 G7", "EliteDesk 800 G6"]),
            ("Lenovo", &["ThinkCentre M70t", "ThinkCentre neo 50s"]),
            ("Acer", &["Veriton M4660G", "Veriton X2690G"]),
        ],
    ),
    (
        "คอมพิวเตอร์โน้ตบุ๊ก",
        "7440-002",
        &[
            ("Lenovo", &["ThinkPad E14-G2", "IdeaPad Slim 3"]),
            ("Acer", &["Aspire 5 A515", "TravelMate P214"]),
            ("Asus", &["VivoBook 15 X515", "ExpertBook B1"]),
            ("HP", &["ProBook 440 G8", "250 G9"]),
        ],
    ),
    (
        "เครื่องพิมพ์",
        "7430-001",
        &[
            ("Epson", &["L3210", "L6270"]),
            ("Canon", &["PIXMA G2010", "imageCLASS LBP2900"]),
            ("Brother", &["HL-L2370DN", "DCP-T720DW"]),
            ("HP", &["LaserJet Pro M404dn"]),
        ],
    ),
    (
        "เครื่องฉายภาพ (โปรเจคเตอร์)",
        "6730-001",
        &[
            ("Epson", &["EB-X51", "EB-E01"]),
            ("BenQ", &["MX560", "MW560"]),
            ("Optoma", &["X400LVe"]),
        ],
    ),
    (
        "อุปกรณ์กระจายสัญญาณ (Switch)",
        "5805-010",
        &[
            ("Cisco", &["CBS350-24T-4G", "CBS250-8T-D"]),
            ("TP-Link", &["TL-SG1024D", "TL-SG3428"]),
            ("HPE Aruba", &["2530-24G", "1930-24G"]),
            ("MikroTik", &["CRS326-24G-2S+"]),
        ],
    ),
    (
        "อุปกรณ์กระจายสัญญาณไร้สาย (Access Point)",
        "5805-011",
        &[
            ("Ubiquiti", &["UniFi U6-Lite", "UniFi U6-Pro"]),
            ("TP-Link", &["EAP245", "EAP670"]),
            ("Ruijie", &["RG-AP820-L"]),
            ("Aruba", &["AP-505"]),
        ],
    ),
    (
        "แท็บเล็ต",
        "7440-003",
        &[
            ("Samsung", &["Galaxy Tab A8", "Galaxy Tab S6 Lite"]),
            ("Apple", &["iPad 9th gen", "iPad 10th gen"]),
        ],
    ),
    (
        "จอภาพ",
        "7440-004",
        &[
            ("Dell", &["P2222H", "E2222H"]),
            ("Samsung", &["S24R350"]),
            ("AOC", &["24B2XH"]),
        ],
    ),
    (
        "เครื่องสำรองไฟฟ้า (UPS)",
        "6130-001",
        &[
            ("APC", &["BX1000MI", "SRV2KI"]),
            ("CyberPower", &["UT1050E"]),
        ],
    ),
    (
        "กล้องโทรทัศน์วงจรปิด",
        "5836-001",
        &[
            ("Hikvision", &["DS-2CD1043G0-I", "DS-2CE16D0T"]),
            ("Dahua", &["IPC-HFW1230S"]),
        ],
    ),
];

const ROOMS: [&str; 12] = [
    "ห้องคอมพิวเตอร์",
    "ห้องสมุด",
    "ห้องพักครู",
    "ห้องธุรการ",
    "ห้องผู้อำนวยการ",
    "ห้องวิทยาศาสตร์",
    "ห้องประชุม",
    "ห้องเรียน",
    "ห้องเรียน",
    "ห้องเรียน",
    "Server room",
    "Multimedia room",
];

const FIRST_NAMES: [&str; 10] = [
    "สมชาย",
    "สมหญิง",
    "วิชัย",
    "มาลี",
    "ประเสริฐ",
    "กาญจนา",
    "สุรชัย",
    "นงลักษณ์",
    "อนุชา",
    "ปราณี",
];
const LAST_NAMES: [&str; 8] = [
    "ใจดี",
    "ศรีสุข",
    "แก้วมณี",
    "บุญมา",
    "ทองคำ",
    "สายสุวรรณ",
    "พรหมมา",
    "วงศ์ไทย",
];

const SERIAL_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// The district's start of records and the span the rows are spread over: eight years.
const SPAN_MS: i64 = 8 * 365 * 86_400_000;

/// Adds the district (schools and users) to a new database, then `assets` assets and
/// `requests` requests. Users are `tech` (technician), `teacher` (requester at school 1) and
/// one requester per school and 19 more technicians, all with `password`.
///
/// # Errors
/// A database error.
pub async fn seed(db: &Db, password: &str, assets: i64, requests: i64, now: i64) -> Result<()> {
    let mut conn = db.pool.acquire().await?;
    if db.backend == Backend::Sqlite {
        conn.execute("PRAGMA cache_size = -262144").await?;
        conn.execute("PRAGMA synchronous = NORMAL").await?;
    }
    let start = now - SPAN_MS;
    let hash = crate::auth::hash_password(password.to_owned()).await?;
    seed_district(&mut conn, &hash, now).await?;
    let people = People::load(&mut conn).await?;
    let mut done = 0;
    while done < assets {
        let n = (assets - done).min(20_000);
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        for from in (done..done + n).step_by(500) {
            let to = (done + n).min(from + 500);
            insert_assets(&mut tx, &people, from, to, assets, start, now).await?;
        }
        tx.commit().await?;
        done += n;
    }
    let mut done = 0;
    while done < requests {
        let n = (requests - done).min(20_000);
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        for from in (done..done + n).step_by(500) {
            let to = (done + n).min(from + 500);
            insert_requests(&mut tx, &people, from, to, requests, start, now).await?;
        }
        tx.commit().await?;
        done += n;
    }
    // As autovacuum would leave them soon after: PostgreSQL's index-only scans read the heap
    // for every row until a VACUUM has marked its pages all-visible.
    match db.backend {
        Backend::Sqlite => conn.execute("ANALYZE").await?,
        Backend::Postgres => conn.execute("VACUUM ANALYZE").await?,
    };
    Ok(())
}

async fn seed_district(conn: &mut AnyConnection, hash: &str, now: i64) -> Result<()> {
    let have: i64 = sqlx::query_scalar::<Any, i64>("SELECT COUNT(*) FROM schools")
        .fetch_one(&mut *conn)
        .await?;
    if have > 0 {
        return Err(crate::error::Error::invalid(
            "database",
            "the sample district goes into a new, empty database",
        ));
    }
    for school in 1..=SCHOOLS {
        let village = VILLAGES[pick(school, 1, VILLAGES.len())];
        sqlx::query(
            "INSERT INTO schools (code, kind, name_th, name_en, district, created_at, updated_at) \
             VALUES ($1, 'school', $2, $3, $4, $5, $5)",
        )
        .bind(format!("S{school:03}"))
        .bind(format!("โรงเรียนบ้าน{village} {school}"))
        .bind(format!("Ban {school} School"))
        .bind(format!(
            "อำเภอ{}",
            VILLAGES[pick(school, 2, VILLAGES.len())]
        ))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    let mut users = vec![
        ("tech".to_owned(), "technician", None),
        ("teacher".to_owned(), "requester", Some(1)),
    ];
    users.extend((2..=TECHNICIANS).map(|t| (format!("tech{t:02}"), "technician", None)));
    users.extend((1..=SCHOOLS).map(|s| (format!("req{s:03}"), "requester", Some(s))));
    for (username, role, school) in users {
        sqlx::query(
            "INSERT INTO users (username, display_name, role, school_id, password_hash, password_changed_at, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $6)",
        )
        .bind(&username)
        .bind(&username)
        .bind(role)
        .bind(school)
        .bind(hash)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The time of row `i` of `n`, oldest first, spread from `start` to `now`.
fn time_of(i: i64, n: i64, start: i64, now: i64) -> i64 {
    start + ((now - start) as i128 * i128::from(i) / i128::from(n.max(1))) as i64
}

fn values(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({cells})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

struct SampleAsset {
    number: String,
    category: &'static str,
    brand: &'static str,
    model: &'static str,
    serial: String,
    budget_year: i64,
    price_satang: i64,
    funding: &'static str,
    school: i64,
    room: String,
    custodian: String,
    state: &'static str,
    warranty_end: String,
    at: i64,
}

fn sample_asset(people: &People, i: i64, n: i64, start: i64, now: i64) -> SampleAsset {
    let (category, code, brands) = CATALOGUE[pick(i, 10, CATALOGUE.len())];
    let (brand, models) = brands[pick(i, 11, brands.len())];
    let model = models[pick(i, 12, models.len())];
    let at = time_of(i, n, start, now);
    let year = jiff::Timestamp::from_millisecond(at)
        .map(|t| i64::from(t.to_zoned(jiff::tz::TimeZone::UTC).year()))
        .unwrap_or(2020);
    let serial_prefix = &brand[..2.min(brand.len())].to_uppercase();
    let serial: String = (0..8)
        .map(|k| SERIAL_CHARS[pick(i, 20 + k, SERIAL_CHARS.len())] as char)
        .collect();
    let room = match pick(i, 13, 3) {
        0 => format!(
            "ห้อง {}{}{:02}",
            1 + pick(i, 14, 4),
            1 + pick(i, 15, 3),
            1 + pick(i, 16, 12)
        ),
        _ => {
            let r = ROOMS[pick(i, 17, ROOMS.len())];
            format!("{r} {}", 1 + pick(i, 18, 4))
        }
    };
    SampleAsset {
        number: format!("{code}-{i:07}/{}", year + 543),
        category,
        brand,
        model,
        serial: format!("{serial_prefix}{serial}"),
        budget_year: year + 543,
        price_satang: 100 * (3_000 + 500 * pick(i, 30, 90) as i64),
        funding: weighted(
            i,
            31,
            &[("เงินงบประมาณ", 7), ("เงินรายได้สถานศึกษา", 2), ("เงินบริจาค", 1)],
        ),
        school: people.schools[school_of(i, 32)],
        room,
        custodian: format!(
            "ครู{} {}",
            FIRST_NAMES[pick(i, 33, FIRST_NAMES.len())],
            LAST_NAMES[pick(i, 34, LAST_NAMES.len())]
        ),
        state: weighted(
            i,
            35,
            &[
                ("in_use", 70),
                ("in_stock", 10),
                ("in_repair", 5),
                ("on_loan", 3),
                ("lost", 1),
                ("disposed", 11),
            ],
        ),
        warranty_end: format!("{}-{:02}-28", year + 3, 1 + pick(i, 36, 12)),
        at,
    }
}

async fn insert_assets(
    conn: &mut AnyConnection,
    people: &People,
    from: i64,
    to: i64,
    n: i64,
    start: i64,
    now: i64,
) -> Result<()> {
    let rows: Vec<SampleAsset> = (from..to)
        .map(|i| sample_asset(people, i, n, start, now))
        .collect();
    let words: Vec<Vec<String>> = rows
        .iter()
        .map(|a| assets::words(&a.number, a.category, &a.serial, a.brand, a.model, &a.room))
        .collect();
    let sql = format!(
        "INSERT INTO assets (asset_number, category, brand, model, serial, budget_year, price_satang, \
         funding_source, school_id, room, custodian, state, warranty_end, notes, created_at, updated_at, words) \
         VALUES {} RETURNING id, asset_number",
        values(rows.len(), 17)
    );
    let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
    for (a, w) in rows.iter().zip(&words) {
        query = query
            .bind(a.number.as_str())
            .bind(a.category)
            .bind(a.brand)
            .bind(a.model)
            .bind(a.serial.as_str())
            .bind(a.budget_year)
            .bind(a.price_satang)
            .bind(a.funding)
            .bind(a.school)
            .bind(a.room.as_str())
            .bind(a.custodian.as_str())
            .bind(a.state)
            .bind(a.warranty_end.as_str())
            .bind("")
            .bind(a.at)
            .bind(a.at)
            .bind(assets::words_column(w));
    }
    let ids: std::collections::HashMap<String, i64> = query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("asset_number")?, r.try_get("id")?)))
        .collect::<Result<_>>()?;
    let pairs: Vec<(&str, i64)> = rows
        .iter()
        .zip(&words)
        .flat_map(|(a, w)| {
            let id = ids.get(&a.number).copied().unwrap_or_default();
            w.iter().map(move |w| (w.as_str(), id))
        })
        .collect();
    for chunk in pairs.chunks(1000) {
        let sql = format!(
            "INSERT INTO asset_words (word, asset_id) VALUES {}",
            values(chunk.len(), 2)
        );
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for (word, id) in chunk {
            query = query.bind(*word).bind(*id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

const REQUEST_TITLES: [(&str, &[&str]); 8] = [
    (
        "repair",
        &[
            "คอมพิวเตอร์เปิดไม่ติด",
            "เครื่องพิมพ์กระดาษติด",
            "โปรเจคเตอร์ไม่มีสัญญาณภาพ",
            "Wi-Fi ใช้งานไม่ได้ในอาคาร 2",
            "Projector shows no signal",
            "Switch port down in the computer room",
        ],
    ),
    (
        "loan",
        &[
            "ขอยืมโปรเจคเตอร์ไปใช้งานกิจกรรม",
            "ขอยืมโน้ตบุ๊กสำหรับอบรมครู",
            "Borrow a tablet set for the science class",
        ],
    ),
    (
        "purchase",
        &[
            "ขอจัดซื้อหมึกเครื่องพิมพ์",
            "ขอจัดซื้อคอมพิวเตอร์ห้องเรียน",
            "Purchase a replacement UPS",
        ],
    ),
    (
        "use_of_materials",
        &["ขอเบิกสาย LAN และหัว RJ45", "ขอเบิกเมาส์และคีย์บอร์ด"],
    ),
    (
        "account",
        &[
            "ขอบัญชีผู้ใช้ Wi-Fi สำหรับครูใหม่",
            "Network account for a new teacher",
        ],
    ),
    (
        "system_access",
        &["ขอสิทธิ์เข้าระบบ DMC", "Access to the student records system"],
    ),
    (
        "data_service",
        &[
            "ขอข้อมูลการใช้งานอินเทอร์เน็ตย้อนหลัง",
            "Export of last term's traffic report",
        ],
    ),
    (
        "general",
        &[
            "สอบถามการตั้งค่าอีเมลโรงเรียน",
            "Question about the e-learning site",
        ],
    ),
];

async fn insert_requests(
    conn: &mut AnyConnection,
    people: &People,
    from: i64,
    to: i64,
    n: i64,
    start: i64,
    now: i64,
) -> Result<()> {
    const COLUMNS: usize = 19;
    let sql = format!(
        "INSERT INTO desk_requests (kind, state, priority, title, description, fields_json, school_id, \
         requester_id, assignee_id, approvals_done, wait_reason, waiting_since, clock_start_at, responded_at, \
         resolved_at, closed_at, rating, created_at, updated_at) VALUES {}",
        values((to - from) as usize, COLUMNS)
    );
    let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
    for i in from..to {
        let (kind, titles) = REQUEST_TITLES[pick(
            i,
            40,
            REQUEST_TITLES.len() + 4, // repairs are the most common
        )
        .saturating_sub(4)];
        let title = titles[pick(i, 41, titles.len())];
        let created = time_of(i, n, start, now);
        // Old requests are finished; the last weeks hold the open ones.
        let age_days = (now - created) / 86_400_000;
        let state = if age_days > 45 {
            weighted(
                i,
                42,
                &[
                    ("closed", 85),
                    ("cancelled", 7),
                    ("rejected", 5),
                    ("resolved", 3),
                ],
            )
        } else {
            weighted(
                i,
                43,
                &[
                    ("submitted", 15),
                    ("pending_approval", 8),
                    ("approved", 5),
                    ("assigned", 15),
                    ("in_progress", 15),
                    ("waiting", 7),
                    ("resolved", 15),
                    ("closed", 15),
                    ("cancelled", 3),
                    ("rejected", 2),
                ],
            )
        };
        let worked = !matches!(
            state,
            "submitted" | "pending_approval" | "approved" | "rejected" | "cancelled"
        );
        let at = school_of(i, 44);
        let school = people.schools[at];
        // `teacher` files half of the first school's requests.
        let requester = if at == 0 && pick(i, 45, 2) == 0 {
            people.teacher
        } else {
            people.requesters[at]
        };
        let assignee = worked.then(|| people.technicians[pick(i, 46, people.technicians.len())]);
        let hours = 3_600_000;
        let responded = worked.then_some(created + (1 + pick(i, 47, 8) as i64) * hours);
        let resolved = matches!(state, "resolved" | "closed")
            .then_some(created + (4 + pick(i, 48, 60) as i64) * hours);
        let closed = (state == "closed").then_some(created + 96 * hours);
        let waiting = state == "waiting";
        query = query
            .bind(kind)
            .bind(state)
            .bind(weighted(
                i,
                49,
                &[("low", 15), ("normal", 60), ("high", 20), ("urgent", 5)],
            ))
            .bind(format!("{title} ({})", ROOMS[pick(i, 50, ROOMS.len())]))
            .bind("แจ้งโดยครูผู้รับผิดชอบ / reported by the teacher in charge")
            .bind("{}")
            .bind(school)
            .bind(requester)
            .bind(assignee)
            .bind(i64::from(!matches!(
                state,
                "submitted" | "pending_approval"
            )))
            .bind(waiting.then_some(if pick(i, 51, 2) == 0 {
                "requester"
            } else {
                "vendor"
            }))
            .bind(waiting.then_some(created + 2 * hours))
            .bind(created)
            .bind(responded)
            .bind(resolved)
            .bind(closed)
            .bind((state == "closed").then(|| 1 + pick(i, 52, 5) as i64))
            .bind(created)
            .bind(closed.or(resolved).or(responded).unwrap_or(created));
    }
    query.execute(&mut *conn).await?;
    Ok(())
}
