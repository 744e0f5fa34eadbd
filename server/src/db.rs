//! The database: SQLite (WAL) by default, PostgreSQL when the URL says so, through sqlx's Any
//! driver so that one query text serves both (see `migrations/README.md` for the conventions).

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlSafeStr};

use crate::error::Result;

/// Which engine is behind the pool, for the few places where SQL must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool of connections to the configured database.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

/// The migrations of each engine, embedded in the binary.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "core",
        include_str!("../migrations/sqlite/0001_core.sql"),
    ),
    (
        2,
        "desk",
        include_str!("../migrations/sqlite/0002_desk.sql"),
    ),
    (
        3,
        "devices",
        include_str!("../migrations/sqlite/0003_devices.sql"),
    ),
    (
        4,
        "desk_attachments",
        include_str!("../migrations/sqlite/0004_desk_attachments.sql"),
    ),
    (
        5,
        "desk_search",
        include_str!("../migrations/sqlite/0005_desk_search.sql"),
    ),
    (
        6,
        "device_alerts",
        include_str!("../migrations/sqlite/0006_device_alerts.sql"),
    ),
    (
        7,
        "device_probes",
        include_str!("../migrations/sqlite/0007_device_probes.sql"),
    ),
    (
        9,
        "desk_asset_words_category",
        include_str!("../migrations/sqlite/0009_desk_asset_words_category.sql"),
    ),
    (
        10,
        "device_reports",
        include_str!("../migrations/sqlite/0010_device_reports.sql"),
    ),
    (
        11,
        "school_devices_version",
        include_str!("../migrations/sqlite/0011_school_devices_version.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "core",
        include_str!("../migrations/postgres/0001_core.sql"),
    ),
    (
        2,
        "desk",
        include_str!("../migrations/postgres/0002_desk.sql"),
    ),
    (
        3,
        "devices",
        include_str!("../migrations/postgres/0003_devices.sql"),
    ),
    (
        4,
        "desk_attachments",
        include_str!("../migrations/postgres/0004_desk_attachments.sql"),
    ),
    (
        5,
        "desk_search",
        include_str!("../migrations/postgres/0005_desk_search.sql"),
    ),
    (
        6,
        "device_alerts",
        include_str!("../migrations/postgres/0006_device_alerts.sql"),
    ),
    (
        7,
        "device_probes",
        include_str!("../migrations/postgres/0007_device_probes.sql"),
    ),
    (
        9,
        "desk_asset_words_category",
        include_str!("../migrations/postgres/0009_desk_asset_words_category.sql"),
    ),
    (
        10,
        "device_reports",
        include_str!("../migrations/postgres/0010_device_reports.sql"),
    ),
    (
        11,
        "school_devices_version",
        include_str!("../migrations/postgres/0011_school_devices_version.sql"),
    ),
];

impl Db {
    /// Connects (creating an SQLite file and its folder when needed) and runs the migrations.
    ///
    /// # Errors
    /// The database cannot be reached or opened, or a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers work beside the writer; FULL makes a commit durable
                        // before it returns; the timeout waits out another writer's lock.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        // Reads straight from the operating system's page cache, shared by
                        // every connection, instead of each connection's own 2 MB cache: a
                        // search at a million assets reads thousands of scattered rows.
                        conn.execute("PRAGMA mmap_size = 1073741824").await?;
                        conn.execute("PRAGMA temp_store = MEMORY").await?;
                        // Room for a report group's dirty pages: with the default 2 MiB cache
                        // the writer spilled them to the WAL before its commit and read index
                        // pages back through the kernel (a third of ingestion's time). A
                        // checkpoint every 16 MiB of WAL writes a much-changed index page to the
                        // database once per checkpoint instead of four times. None of this
                        // touches durability.
                        conn.execute("PRAGMA cache_size = -16384").await?;
                        conn.execute("PRAGMA wal_autocheckpoint = 4000").await?;
                    } else {
                        // sqlx prepares every statement; after five runs PostgreSQL may switch
                        // to a generic plan that ignores the values. For the asset search that
                        // plan scans the whole table (EXPLAIN ANALYZE at 200,000 assets: 228 ms
                        // against 25 ms planned with the values): plan each run with its values.
                        conn.execute("SET plan_cache_mode = force_custom_plan")
                            .await?;
                        // The district's data is on SSD or in memory, where a row fetched through
                        // another index costs about what the next row in id order does. With the
                        // default (4, for spinning disks) PostgreSQL walked the whole register by
                        // id to find one state's newest assets rather than use (state, id):
                        // 39 ms against 6.5 ms (EXPLAIN ANALYZE at a million assets).
                        conn.execute("SET random_page_cost = 1.1").await?;
                        no_delay(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let db = Db { pool, backend };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<()> {
        let steps = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations = steps
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of one failing
    /// when it upgrades a read lock.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

impl Db {
    /// [`Db::begin_write`] for the report writer, on a connection it may keep from one
    /// transaction to the next (SQLite's page cache belongs to a connection and stays warm only
    /// while no other connection writes). On PostgreSQL the transaction plans its statements
    /// once (generic plans): they all find rows by key, and planning a multi-row INSERT of
    /// thousands of parameters anew on every run, as the connection's custom-plan setting
    /// asks, cost PostgreSQL more than executing it.
    pub async fn begin_ingest<'c>(
        &self,
        conn: &'c mut sqlx::AnyConnection,
    ) -> Result<sqlx::Transaction<'c, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await?,
            // One round trip: both statements go as one simple query.
            Backend::Postgres => {
                sqlx::Connection::begin_with(
                    conn,
                    "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan",
                )
                .await?
            }
        })
    }
}

/// Turns Nagle's algorithm off for a new PostgreSQL connection over TCP.
///
/// sqlx 0.9.0 leaves it on (sqlx issue 4335; the fix is not in a release yet). A statement that
/// the kernel took in two writes then waited for PostgreSQL's delayed acknowledgement, 40 ms on
/// Linux, before its second part left: a report group's 30 KB insert took 43 ms instead of 1.
/// sqlx gives no access to its socket, so the socket is found among the process's descriptors by
/// the two ports PostgreSQL reports for the connection. A connection through a Unix socket, or
/// one whose socket cannot be found (a proxy between), is left as it is.
async fn no_delay(conn: &mut sqlx::AnyConnection) -> sqlx::Result<()> {
    let Some((local, peer)) = connection_ports(conn).await? else {
        return Ok(());
    };
    if !tcp_no_delay(local, peer) {
        tracing::debug!(
            local,
            peer,
            "no socket found for a PostgreSQL connection: Nagle's algorithm stays on"
        );
    }
    Ok(())
}

/// The local and the server's port of a PostgreSQL connection, as the server sees them; `None`
/// over a Unix socket.
async fn connection_ports(conn: &mut sqlx::AnyConnection) -> sqlx::Result<Option<(u16, u16)>> {
    let row = sqlx::query("SELECT inet_client_port() AS local, inet_server_port() AS peer")
        .fetch_one(&mut *conn)
        .await?;
    let local = row.try_get::<Option<i32>, _>("local")?;
    let peer = row.try_get::<Option<i32>, _>("peer")?;
    Ok(local
        .zip(peer)
        .and_then(|(l, p)| Some((u16::try_from(l).ok()?, u16::try_from(p).ok()?))))
}

/// Sets `TCP_NODELAY` on this process's TCP socket from local port `local` to peer port `peer`;
/// whether there was one.
fn tcp_no_delay(local: u16, peer: u16) -> bool {
    with_tcp_socket(local, peer, |socket| socket.set_tcp_nodelay(true).is_ok()).unwrap_or(false)
}

/// Calls `f` with this process's TCP socket from local port `local` to peer port `peer`, when
/// there is one.
#[cfg(target_os = "linux")]
fn with_tcp_socket<T>(
    local: u16,
    peer: u16,
    f: impl FnOnce(socket2::SockRef<'_>) -> T,
) -> Option<T> {
    use std::os::fd::{BorrowedFd, RawFd};
    let fds = std::fs::read_dir("/proc/self/fd").ok()?;
    for entry in fds.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: only asks for the socket's addresses and reads or sets an option; the
        // descriptor is not closed here. Should another task close it meanwhile, the calls fail
        // (EBADF), and should its number be reused at once, the ports will not match.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let port = |addr: std::io::Result<socket2::SockAddr>| {
            addr.ok().and_then(|a| a.as_socket()).map(|a| a.port())
        };
        if port(socket.local_addr()) == Some(local) && port(socket.peer_addr()) == Some(peer) {
            return Some(f(socket));
        }
    }
    None
}

#[cfg(not(target_os = "linux"))]
fn with_tcp_socket<T>(
    _local: u16,
    _peer: u16,
    _f: impl FnOnce(socket2::SockRef<'_>) -> T,
) -> Option<T> {
    None
}

/// Makes sure an SQLite URL creates its file, and that the file's folder exists.
fn sqlite_url(url: &str) -> Result<String> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if !path.is_empty()
        && path != ":memory:"
        && let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(crate::error::Error::io(format!(
            "creating the database folder {}",
            parent.display()
        )))?;
    }
    Ok(if url.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    })
}

/// Now, as stored: milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A stored time as RFC 3339 in Bangkok time (+07:00), as every interface shows it.
pub fn rfc3339(ms: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.display_with_offset(crate::BANGKOK).to_string()
}

/// A value bound to a [`Where`] condition.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(i64),
    Text(String),
}

/// The conditions of a list query, built from the filters a caller gave, so that the SQL names
/// only the columns it filters on. A `($1 IS NULL OR col = $1)` condition would hide the index
/// of `col` from SQLite's planner and from PostgreSQL's generic plans; at a million rows that
/// turns a page read from an index into a scan of the table.
///
/// Conditions are written with `?` for each argument; [`Where::sql`] numbers them `$1, $2, ...`
/// in order, as both engines accept.
#[derive(Debug, Clone, Default)]
pub struct Where {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    /// Adds a condition with one `?` per argument, in order.
    pub fn push(&mut self, condition: &str, args: impl IntoIterator<Item = Arg>) {
        self.conditions.push(condition.to_owned());
        self.args.extend(args);
    }

    /// Adds `other`'s conditions, together, as one condition of this one: `template` with `{}`
    /// where they go.
    pub fn push_all(&mut self, template: &str, other: &Where) {
        self.push(
            &template.replace("{}", &other.text()),
            other.args.iter().cloned(),
        );
    }

    /// The conditions joined by AND (`1 = 1` when there are none), with `?` placeholders.
    pub fn text(&self) -> String {
        if self.conditions.is_empty() {
            "1 = 1".to_owned()
        } else {
            self.conditions.join(" AND ")
        }
    }

    pub fn args(&self) -> &[Arg] {
        &self.args
    }

    /// The conditions joined by AND (`1 = 1` when there are none), placeholders numbered.
    pub fn sql(&self) -> String {
        numbered(&self.text())
    }

    /// Binds the arguments to a query made from [`Where::sql`].
    pub fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        bind_all(query, &self.args)
    }
}

/// `text` with each `?` numbered `$1, $2, ...` in order (SQL made from several [`Where`]s).
pub fn numbered(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// `rows` split for multi-row statements of at most `max` rows (a power of two): runs of
/// `max`, then the rest in falling powers of two. A few statement texts, each prepared once per
/// connection, then serve every count.
pub fn runs<T>(rows: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    debug_assert!(max.is_power_of_two());
    let mut rest = rows;
    let mut size = max;
    std::iter::from_fn(move || {
        while size > rest.len() && size > 1 {
            size /= 2;
        }
        if rest.is_empty() {
            return None;
        }
        let (chunk, more) = rest.split_at(size);
        rest = more;
        Some(chunk)
    })
}

/// Binds `args` in order.
pub fn bind_all<'q, 'a>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: impl IntoIterator<Item = &'a Arg>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for arg in args {
        query = match arg {
            Arg::Int(i) => query.bind(*i),
            Arg::Text(s) => query.bind(s.clone()),
        };
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pooled PostgreSQL connection over TCP sends without Nagle's delay (see [`no_delay`]).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn postgres_connections_send_without_delay() {
        let Ok(url) = std::env::var("KHETNET_TEST_DATABASE_URL") else {
            eprintln!("skipped: set KHETNET_TEST_DATABASE_URL to a PostgreSQL database over TCP");
            return;
        };
        let db = Db::connect(&url, 1).await.unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        let (local, peer) = connection_ports(&mut conn)
            .await
            .unwrap()
            .expect("a connection over TCP");
        let found = with_tcp_socket(local, peer, |socket| socket.tcp_nodelay().unwrap());
        assert_eq!(
            found,
            Some(true),
            "the connection's socket, with TCP_NODELAY"
        );
    }

    #[test]
    fn where_numbers_placeholders_in_order_across_nested_conditions() {
        let mut inner = Where::default();
        inner.push("school_id = ?", [Arg::Int(3)]);
        inner.push("state = ?", [Arg::Text("in_use".into())]);
        let mut outer = Where::default();
        outer.push_all("id IN (SELECT id FROM assets WHERE {} LIMIT 10)", &inner);
        outer.push("words LIKE ?", [Arg::Text("% dell%".into())]);
        assert_eq!(
            outer.sql(),
            "id IN (SELECT id FROM assets WHERE school_id = $1 AND state = $2 LIMIT 10) AND words LIKE $3"
        );
        assert_eq!(outer.args.len(), 3);
        assert_eq!(Where::default().sql(), "1 = 1");
    }

    #[test]
    fn runs_split_rows_into_few_statement_sizes() {
        let check = |rows: usize, max, expected: &[usize]| {
            let items: Vec<usize> = (0..rows).collect();
            let sizes: Vec<usize> = runs(&items, max).map(<[usize]>::len).collect();
            assert_eq!(sizes, expected);
            assert_eq!(
                runs(&items, max).flatten().copied().collect::<Vec<_>>(),
                items
            );
        };
        check(0, 256, &[]);
        check(1, 256, &[1]);
        check(50, 256, &[32, 16, 2]);
        check(256, 256, &[256]);
        check(1600, 256, &[256, 256, 256, 256, 256, 256, 64]);
        check(7, 4, &[4, 2, 1]);
    }
}
