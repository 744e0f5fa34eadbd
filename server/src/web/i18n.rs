//! The web UI's words in Thai and English. Every text is a field, so a page cannot use a
//! string that one language lacks: the compiler checks both.

use axum::http::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Th,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Th => "th",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "th" => Some(Lang::Th),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The first of Thai or English in `Accept-Language`, by the client's order of preference.
    pub fn from_accept_language(headers: &HeaderMap) -> Option<Lang> {
        let value = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)?
            .to_str()
            .ok()?;
        let mut ranked: Vec<(f32, Lang)> = value
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.trim().split(';');
                let tag = pieces.next()?.trim().to_ascii_lowercase();
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                let lang = Lang::parse(tag.split('-').next()?)?;
                Some((q, lang))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranked.first().map(|(_, l)| *l)
    }

    pub fn text(self) -> &'static Text {
        match self {
            Lang::Th => &TH,
            Lang::En => &EN,
        }
    }
}

pub struct Text {
    pub app_name: &'static str,
    pub district_desk: &'static str,
    pub sign_in: &'static str,
    pub sign_out: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub bad_login: &'static str,
    pub locked: &'static str,
    pub too_many: &'static str,
    pub home: &'static str,
    pub schools: &'static str,
    pub users: &'static str,
    pub audit: &'static str,
    pub account: &'static str,
    pub welcome: &'static str,
    pub role: &'static str,
    pub school: &'static str,
    pub code: &'static str,
    pub name_th: &'static str,
    pub name_en: &'static str,
    pub district: &'static str,
    pub add_school: &'static str,
    pub add_user: &'static str,
    pub display_name: &'static str,
    pub save: &'static str,
    pub when: &'static str,
    pub who: &'static str,
    pub what: &'static str,
    pub change_password: &'static str,
    pub current_password: &'static str,
    pub new_password: &'static str,
    pub password_changed: &'static str,
    pub language: &'static str,
    pub none: &'static str,
    pub saved: &'static str,
    /// The service desk's pages.
    pub desk: &'static super::desk::DeskText,
    /// The device-health pages.
    pub devices: &'static super::devices::DevicesText,
}

pub static TH: Text = Text {
    app_name: "เขตเน็ต",
    district_desk: "ระบบงานบริการ ICT สำนักงานเขตพื้นที่การศึกษา",
    sign_in: "เข้าสู่ระบบ",
    sign_out: "ออกจากระบบ",
    username: "ชื่อผู้ใช้",
    password: "รหัสผ่าน",
    bad_login: "ชื่อผู้ใช้หรือรหัสผ่านไม่ถูกต้อง",
    locked: "บัญชีถูกระงับชั่วคราวเพราะเข้าสู่ระบบผิดหลายครั้ง กรุณารอหรือติดต่อผู้ดูแลระบบ",
    too_many: "พยายามเข้าสู่ระบบบ่อยเกินไป กรุณารอสักครู่",
    home: "หน้าหลัก",
    schools: "โรงเรียนและหน่วยงาน",
    users: "ผู้ใช้",
    audit: "บันทึกการเปลี่ยนแปลง",
    account: "บัญชีของฉัน",
    welcome: "ยินดีต้อนรับ",
    role: "บทบาท",
    school: "โรงเรียน",
    code: "รหัส",
    name_th: "ชื่อ (ไทย)",
    name_en: "ชื่อ (อังกฤษ)",
    district: "อำเภอ",
    add_school: "เพิ่มโรงเรียน/หน่วยงาน",
    add_user: "เพิ่มผู้ใช้",
    display_name: "ชื่อที่แสดง",
    save: "บันทึก",
    when: "เวลา",
    who: "ผู้ดำเนินการ",
    what: "รายการ",
    change_password: "เปลี่ยนรหัสผ่าน",
    current_password: "รหัสผ่านปัจจุบัน",
    new_password: "รหัสผ่านใหม่",
    password_changed: "เปลี่ยนรหัสผ่านแล้ว",
    language: "ภาษา",
    none: "ไม่มีข้อมูล",
    saved: "บันทึกแล้ว",
    desk: &super::desk::TH,
    devices: &super::devices::TH,
};

pub static EN: Text = Text {
    app_name: "khetnet",
    district_desk: "District ICT service desk",
    sign_in: "Sign in",
    sign_out: "Sign out",
    username: "User name",
    password: "Password",
    bad_login: "Wrong user name or password",
    locked: "The account is locked after too many failed sign-ins. Wait, or ask an administrator.",
    too_many: "Too many sign-in attempts. Please wait a moment.",
    home: "Home",
    schools: "Schools and offices",
    users: "Users",
    audit: "Audit trail",
    account: "My account",
    welcome: "Welcome",
    role: "Role",
    school: "School",
    code: "Code",
    name_th: "Name (Thai)",
    name_en: "Name (English)",
    district: "District",
    add_school: "Add a school or office",
    add_user: "Add a user",
    display_name: "Display name",
    save: "Save",
    when: "When",
    who: "Who",
    what: "What",
    change_password: "Change password",
    current_password: "Current password",
    new_password: "New password",
    password_changed: "Password changed",
    language: "Language",
    none: "Nothing here yet",
    saved: "Saved",
    desk: &super::desk::EN,
    devices: &super::devices::EN,
};

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(accept: &str, expected: Option<Lang>) {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::ACCEPT_LANGUAGE,
            HeaderValue::from_str(accept).unwrap(),
        );
        assert_eq!(Lang::from_accept_language(&h), expected, "{accept}");
    }

    #[test]
    fn accept_language() {
        check("th-TH,th;q=0.9,en;q=0.8", Some(Lang::Th));
        check("en-US,en;q=0.9,th;q=0.5", Some(Lang::En));
        check("th;q=0.4, en;q=0.6", Some(Lang::En));
        check("fr-FR", None);
        check("", None);
    }
}
