//! One typed `Settings`, loaded from defaults → `.env` → the environment, validated at start-up with
//! every problem listed at once.
//!
//! Parsing works on a plain map of variables so the rules are unit-tested without touching the process
//! environment. `*_FILE` variants read secrets from files (Docker/systemd credentials).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use url::Url;

/// Where the process runs; production refuses anything unsafe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    pub fn is_production(self) -> bool {
        self == Environment::Production
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, one line per event with the request's span fields.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Who must use two-factor authentication (`REQUIRE_MFA`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MfaPolicy {
    Off,
    /// Operators only: the accounts named in `ADMIN_EMAILS`.
    Admins,
    All,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub environment: Environment,
    /// The address people reach the app at; every link in an email is built from it.
    pub public_url: Url,
    pub data_dir: PathBuf,
    pub database: DatabaseSettings,
    /// The scaled-out mode: sessions, rate limits and lock-out counters in Redis (`REDIS_URL`), shared
    /// by every instance. `None`: in the database and in process (the embedded default).
    pub redis: Option<RedisSettings>,
    pub secret_key: SecretKey,
    pub encryption_key: SecretKey,
    /// Earlier encryption keys: they still open what they sealed, until a rotation re-seals it.
    pub encryption_keys_previous: Vec<SecretKey>,
    pub cookie_secure: bool,
    /// Host names (without port) the app answers to. `*` (development only) accepts any.
    pub allowed_hosts: Vec<String>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// How long a client may take to send a request's headers, and how long a kept-alive connection
    /// may wait for its next request (see `server::serve`).
    pub header_timeout: Duration,
    /// At most this many client connections at once (`MAX_CONNECTIONS`); unset, as many as the
    /// open-file limit leaves room for (see `server::serve::connection_cap`).
    pub max_connections: Option<usize>,
    pub shutdown_timeout: Duration,
    pub session_idle_timeout: Duration,
    /// A signed-in session ends this long after the sign-in, however active it is.
    pub session_absolute_lifetime: Duration,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// Proxies whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Other sites (exact origins) whose pages may call the JSON endpoints with the visitor's cookies.
    pub cors_origins: Vec<String>,
    /// Keys generated on this machine because none was configured (development only).
    pub generated_keys: Vec<String>,
    /// Security events older than this are deleted by the nightly purge.
    pub audit_retention_days: u32,
    /// How often each instance looks for due background jobs.
    pub jobs_tick: Duration,
    /// Where the nightly SQLite backups go, and how many are kept (0: no nightly backup).
    pub backup_dir: PathBuf,
    pub backups_keep: u32,
    /// Where Prometheus scrapes `/metrics` (a separate listener), or `None` when turned off.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub metrics_user: String,
    pub metrics_password: Password,
    /// Operators of this deployment (normalized addresses), from `ADMIN_EMAILS`.
    pub admin_emails: Vec<String>,
    pub accounts: AccountSettings,
    pub rate_limits: RateLimitSettings,
    pub mail: MailSettings,
}

#[derive(Clone, Debug)]
pub struct AccountSettings {
    /// The operator's kill switch for sign-ups.
    pub registration_open: bool,
    pub require_email_verification: bool,
    pub terms_version: i32,
    pub privacy_version: i32,
    pub password_min_length: usize,
    pub lockout_threshold: u32,
    pub lockout_duration: Duration,
    pub hash_cost: crate::server::services::crypto::HashCost,
    pub hash_concurrency: usize,
    pub require_mfa: MfaPolicy,
    /// How long after entering the password sensitive actions (two-factor changes) stay allowed.
    pub sudo_window: Duration,
}

/// Requests per client IP (and per account for reset requests).
#[derive(Clone, Copy, Debug)]
pub struct RateLimitSettings {
    pub sign_in_per_minute: u32,
    pub register_per_hour: u32,
    pub reset_per_hour: u32,
    pub reset_per_account_per_hour: u32,
    pub api_per_minute: u32,
    /// Page loads (server-rendered pages, the not-found page included) per client IP.
    pub pages_per_minute: u32,
    /// Second-factor attempts per client IP.
    pub mfa_per_minute: u32,
    /// Data exports per account.
    pub exports_per_hour: u32,
    /// Household invitations sent per account.
    pub invitations_per_hour: u32,
}

#[derive(Clone, Debug)]
pub struct MailSettings {
    /// `smtp://` or `smtps://` with optional credentials; unset = write `.eml` files under `outbox_dir`.
    pub smtp_url: Option<DatabaseUrl>,
    pub from: String,
    pub max_attempts: u32,
    pub outbox_dir: PathBuf,
    /// Development without SMTP: print links from emails to the console so they can be clicked.
    pub log_links: bool,
}

#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout: Duration,
    pub idle_timeout: Duration,
    pub sqlite_busy_timeout: Duration,
    pub run_migrations: bool,
}

#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub url: DatabaseUrl,
    /// Put before every key Nest Egg writes (but the session records, which the tower-sessions store
    /// names itself), so one Redis can serve several deployments — and each test its own space.
    pub key_prefix: String,
}

/// A database URL; its password never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }

    /// The SQLite file this URL points at, if it is a file database.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.0.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// The URL with any password (in the user part or a `password=` parameter) replaced, safe to log.
    pub fn redacted(&self) -> String {
        let Ok(mut url) = Url::parse(&self.0) else {
            return "<unparsable database URL>".to_owned();
        };
        if url.password().is_some() {
            let _ = url.set_password(Some("hidden"));
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        "hidden".to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The `/metrics` password outside production, so a fresh clone can scrape its own metrics.
pub const DEV_METRICS_PASSWORD: &str = "nestegg-dev-metrics";

/// A password from the configuration. Not `Serialize`, and `Debug` prints `<hidden>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Key material of at least 32 bytes. Not `Serialize`, and `Debug` prints `<hidden>`, so it cannot reach
/// the browser or a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    pub const MIN_BYTES: usize = 32;

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Generates a fresh random key (development only; production keys come from the operator).
    pub fn generate() -> SecretKey {
        use rand::RngCore as _;
        let mut bytes = vec![0u8; Self::MIN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        SecretKey(bytes)
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }

    /// Decodes base64 (standard or URL-safe, padded or not) and checks length and randomness.
    pub fn parse(value: &str) -> Result<SecretKey, String> {
        let value = value.trim();
        if is_placeholder(value) {
            return Err("is a placeholder; generate one with `openssl rand -base64 32`".into());
        }
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let bytes = engines
            .iter()
            .find_map(|engine| engine.decode(value).ok())
            .ok_or("is not base64; generate one with `openssl rand -base64 32`")?;
        if bytes.len() < Self::MIN_BYTES {
            return Err(format!(
                "is {} bytes; at least {} random bytes are required (`openssl rand -base64 32`)",
                bytes.len(),
                Self::MIN_BYTES
            ));
        }
        // Random 32-byte keys have ~28 distinct byte values; a handful means a pattern, not randomness.
        let mut distinct = bytes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 12 {
            return Err("does not look random (too few distinct bytes)".into());
        }
        Ok(SecretKey(bytes))
    }

    /// [`SecretKey::parse`], and refused if it looks typed rather than generated
    /// ([`typed_not_generated`]): for the keys production runs with. Not for keys being rotated
    /// away from (`ENCRYPTION_KEYS_PREVIOUS`), which must stay readable whatever they were.
    pub fn parse_current(value: &str) -> Result<SecretKey, String> {
        let key = SecretKey::parse(value)?;
        if let Some(why) = typed_not_generated(value.trim(), &key.0) {
            return Err(format!(
                "does not look random ({why}); generate one with `openssl rand -base64 32`"
            ));
        }
        Ok(key)
    }
}

/// Why a key looks written by hand rather than generated, judged on its text as well as its bytes: any
/// 44 letters and digits decode to 33 varied-looking bytes, so the bytes alone let "nesteggnestegg…"
/// through. Each test fails for a generated key (`openssl rand -base64 32`, or `-hex 32`) with odds
/// of about one in a million or less.
fn typed_not_generated(text: &str, bytes: &[u8]) -> Option<&'static str> {
    // 32 random bytes are all printable ASCII once in 10^13 tries; the base64 of a sentence always.
    if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Some("it is the base64 of readable text");
    }
    let chars: Vec<char> = text.trim_end_matches('=').chars().collect();
    let hex = chars.iter().all(char::is_ascii_hexdigit);
    let mixed_case =
        chars.iter().any(char::is_ascii_uppercase) && chars.iter().any(char::is_ascii_lowercase);
    // The same 5 characters twice (8 for hex, with its 16 symbols, 6 for letters of one case and
    // digits, with 36): in 44 random base64 characters, 64 hex digits or 44 of one case and digits,
    // odds of about 1 in 1.4 million, 2.7 million and 3 million.
    let window = if hex {
        8
    } else if mixed_case {
        5
    } else {
        6
    };
    let mut seen = HashSet::new();
    if chars.windows(window).any(|window| !seen.insert(window)) {
        return Some("part of it repeats");
    }
    // Random base64 has both upper- and lower-case letters (all but once in 10^9 tries). Random hex,
    // or letters of one case and digits from a password generator, have one case but digits (none in
    // 44 such characters about once in 1.2 million tries); a phrase in one case often has none.
    let digits = chars.iter().any(char::is_ascii_digit);
    if !(hex || mixed_case || digits) {
        return Some("its letters are all of one case");
    }
    None
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Values from documentation and tutorials that must never guard a real deployment.
fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    const MARKERS: [&str; 8] = [
        "changeme",
        "change-me",
        "change_me",
        "replace",
        "placeholder",
        "example",
        "secret",
        "insecure",
    ];
    MARKERS.iter().any(|marker| lower.contains(marker))
}

/// Every configuration problem found, each naming its variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

/// The variables the process sees, after `.env` has been merged under the real environment.
pub type Vars = BTreeMap<String, String>;

/// What to do when a development key is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMode {
    /// Generate it once and keep it under `DATA_DIR` (serving, migrating).
    GenerateAndKeep,
    /// Use a throw-away key and write nothing (`check-config` must not change the machine).
    ReadOnly,
}

/// Reads `.env` from the working directory only — never a parent's, so a stray file elsewhere cannot
/// configure the app. Returns the variables of the well-formed lines, and a problem for each malformed
/// one, by line number (never its text: the line may hold a secret). The good lines count even then,
/// so that the other problems reported with these are the real ones (`ENVIRONMENT=production` from
/// `.env` still applies).
pub fn read_dotenv(path: &Path) -> (Vars, Vec<Problem>) {
    let problem = |message: String| Problem {
        variable: ".env".to_owned(),
        message,
    };
    let (iter, text) = match (dotenvy::from_path_iter(path), std::fs::read_to_string(path)) {
        (Ok(iter), Ok(text)) => (iter, text),
        (Err(dotenvy::Error::Io(e)), _) if e.kind() == std::io::ErrorKind::NotFound => {
            return (Vars::new(), vec![]);
        }
        _ => {
            let problems = vec![problem(format!("cannot read {}", path.display()))];
            return (Vars::new(), problems);
        }
    };
    let mut vars = Vars::new();
    let mut problems = vec![];
    // Where the next malformed line is looked for: dotenvy hands back the line's text, not its number.
    let mut searched_to = 0;
    for item in iter {
        match item {
            Ok((key, value)) => {
                vars.insert(key, value);
            }
            Err(dotenvy::Error::LineParse(line, _)) => {
                let line = line.trim_end();
                let found = line_start_of(&text, line, searched_to);
                // An unclosed quote takes in the lines after it, to the end of the file.
                let unclosed = |quote: char| line.matches(quote).count() % 2 == 1;
                let why = if line.contains('\n') || unclosed('\'') || unclosed('"') {
                    "an unclosed quote takes in the lines after it"
                } else {
                    "expected NAME=value"
                };
                problems.push(problem(match found {
                    Some(at) => {
                        searched_to = at + line.len();
                        let number = text[..at].matches('\n').count() + 1;
                        format!("line {number} is malformed ({why})")
                    }
                    None => format!("a line is malformed ({why})"),
                }));
            }
            Err(_) => problems.push(problem("a line is malformed".to_owned())),
        }
    }
    (vars, problems)
}

/// Where `line` is a whole line of `text` (but for trailing blanks), at or after `from`.
fn line_start_of(text: &str, line: &str, from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(found) = text.get(at..)?.find(line) {
        let start = at + found;
        let rest = &text[start + line.len()..];
        let ends_line = rest
            .chars()
            .next()
            .is_none_or(|c| c == '\n' || c == '\r' || c.is_whitespace());
        if (start == 0 || text[..start].ends_with('\n')) && ends_line {
            return Some(start);
        }
        // Past the first character of the match, whatever its width in bytes.
        at = start + line.chars().next().map_or(1, char::len_utf8);
    }
    None
}

impl Settings {
    /// `.env` (working directory) under the real environment, which wins.
    pub fn load(key_mode: KeyMode) -> Result<Settings, ConfigError> {
        let (mut vars, mut problems) = read_dotenv(Path::new(".env"));
        // A configuration refused anyway leaves no generated development keys behind.
        let key_mode = if problems.is_empty() {
            key_mode
        } else {
            KeyMode::ReadOnly
        };
        // Variables that are not UTF-8 cannot be ours; skip them rather than panic.
        vars.extend(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        );
        match Settings::from_vars_with(&vars, key_mode) {
            Ok(settings) if problems.is_empty() => Ok(settings),
            Ok(_) => Err(ConfigError { problems }),
            Err(mut err) => {
                problems.append(&mut err.problems);
                Err(ConfigError { problems })
            }
        }
    }

    pub fn from_vars(vars: &Vars) -> Result<Settings, ConfigError> {
        Settings::from_vars_with(vars, KeyMode::GenerateAndKeep)
    }

    /// Parses and validates; in development, missing keys are generated once under the data directory.
    pub fn from_vars_with(vars: &Vars, key_mode: KeyMode) -> Result<Settings, ConfigError> {
        let mut p = Parser {
            vars,
            problems: vec![],
            key_mode,
            generated_keys: vec![],
        };

        let environment = p.parse("ENVIRONMENT", "development", |v| match v {
            "development" | "dev" => Ok(Environment::Development),
            "production" | "prod" => Ok(Environment::Production),
            _ => Err("must be `development` or `production`".to_owned()),
        });
        let production = environment.is_some_and(Environment::is_production);

        let data_dir = PathBuf::from(p.raw("DATA_DIR").unwrap_or("./data"));
        let public_url = p.parse("PUBLIC_URL", "http://127.0.0.1:3000", |v| {
            parse_public_url(v, production)
        });

        let default_db = format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("nestegg.db").display()
        );
        let database_url = p.secret_or("DATABASE_URL", &default_db).and_then(|url| {
            p.check("DATABASE_URL", validate_database_url(&url, production))
                .map(|()| DatabaseUrl(url))
        });
        let max_connections = p.parse("DB_MAX_CONNECTIONS", "10", |v| parse_range(v, 1, 1000));
        let min_connections = p.parse("DB_MIN_CONNECTIONS", "1", |v| parse_range(v, 0, 1000));
        if let (Some(min), Some(max)) = (min_connections, max_connections)
            && min > max
        {
            p.problem(
                "DB_MIN_CONNECTIONS",
                format!("is {min}, more than DB_MAX_CONNECTIONS ({max})"),
            );
        }
        let acquire_timeout = p.parse("DB_ACQUIRE_TIMEOUT_MS", "1000", |v| {
            parse_millis(v, 50, 60_000)
        });
        let idle_timeout = p.parse("DB_IDLE_TIMEOUT_SECS", "600", |v| parse_secs(v, 1, 86_400));
        // Writes take the database lock up front (`BEGIN IMMEDIATE`), so with no wait at all any two
        // that overlap would fail.
        let sqlite_busy_timeout = p.parse("SQLITE_BUSY_TIMEOUT_MS", "5000", |v| {
            parse_millis(v, 100, 60_000)
        });
        let run_migrations = p.parse("RUN_MIGRATIONS", "true", parse_bool);

        let secret_key = p.key("SECRET_KEY", production, &data_dir);
        let encryption_key = p.key("ENCRYPTION_KEY", production, &data_dir);
        if let (Some(a), Some(b)) = (&secret_key, &encryption_key)
            && a == b
        {
            p.problem("ENCRYPTION_KEY", "must differ from SECRET_KEY".to_owned());
        }

        let encryption_keys_previous = p.parse("ENCRYPTION_KEYS_PREVIOUS", "", |v| {
            v.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .enumerate()
                .map(|(i, k)| SecretKey::parse(k).map_err(|m| format!("key {} {m}", i + 1)))
                .collect::<Result<Vec<_>, _>>()
        });
        let cookie_secure = p.parse(
            "COOKIE_SECURE",
            if production { "true" } else { "false" },
            parse_bool,
        );
        if production && cookie_secure == Some(false) {
            p.problem(
                "COOKIE_SECURE",
                "must be true in production (cookies would travel over plain HTTP)".to_owned(),
            );
        }

        let default_hosts = match (&public_url, production) {
            (Some(url), true) => url.host_str().unwrap_or_default().to_owned(),
            _ => "localhost,127.0.0.1,[::1]".to_owned(),
        };
        let allowed_hosts = p.parse("ALLOWED_HOSTS", &default_hosts, |v| {
            parse_hosts(v, production)
        });

        let max_body_bytes = p.parse("MAX_BODY_BYTES", "65536", |v| {
            parse_range(v, 1024, 100 * 1024 * 1024)
        });
        let request_timeout = p.parse("REQUEST_TIMEOUT_SECS", "30", |v| parse_secs(v, 1, 3600));
        let shutdown_timeout = p.parse("SHUTDOWN_TIMEOUT_SECS", "20", |v| parse_secs(v, 1, 3600));
        let max_client_connections = p.parse("MAX_CONNECTIONS", "", |v| match v {
            "" => Ok(None),
            v => parse_range(v, 1, 1_000_000).map(Some),
        });
        let session_idle_timeout = p.parse("SESSION_IDLE_TIMEOUT_MINS", "30", |v| {
            parse_range(v, 1, 7 * 24 * 60).map(|m: u64| Duration::from_secs(m * 60))
        });
        let session_absolute_lifetime = p.parse("SESSION_LIFETIME_HOURS", "12", |v| {
            parse_range(v, 1, 30 * 24).map(|h: u64| Duration::from_secs(h * 3600))
        });
        let log_format = p.parse(
            "LOG_FORMAT",
            if production { "json" } else { "pretty" },
            |v| match v {
                "pretty" => Ok(LogFormat::Pretty),
                "json" => Ok(LogFormat::Json),
                _ => Err("must be `pretty` or `json`".to_owned()),
            },
        );
        let log_filter = p.parse("RUST_LOG", "info", |v| {
            tracing_subscriber::EnvFilter::try_new(v)
                .map(|_| v.to_owned())
                .map_err(|e| format!("is not a valid log filter ({e})"))
        });

        let trusted_proxies = p.parse("TRUSTED_PROXIES", "", |v| {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| {
                    let net = n
                        .parse::<ipnet::IpNet>()
                        .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| format!("`{n}` is not an IP address or CIDR range"))?;
                    // Trusting a range this wide trusts clients: the left-most `X-Forwarded-For`
                    // entry, which they write themselves, would become their address for every
                    // per-IP limit.
                    let widest = match net {
                        ipnet::IpNet::V4(_) => 8,
                        ipnet::IpNet::V6(_) => 16,
                    };
                    // Private IPv6 (fc00::/7, as container networks use) and link-local ranges
                    // hold no client of the internet, however wide.
                    let private = ["fc00::/7", "fe80::/10"]
                        .iter()
                        .filter_map(|range| range.parse::<ipnet::IpNet>().ok())
                        .any(|range| range.contains(&net));
                    if production && net.prefix_len() < widest && !private {
                        return Err(format!(
                            "`{n}` is too wide for production (at most /{widest}): it would let \
                             clients choose the address that rate limits count"
                        ));
                    }
                    Ok(net)
                })
                .collect::<Result<Vec<_>, _>>()
        });
        // Behind a proxy, the app must keep an idle connection open longer than the proxy does (60 s on
        // common load balancers and in nginx's upstream keep-alive), or the proxy sends a request down
        // a connection the app is just closing and answers 502. Facing clients itself, a short limit
        // is what stops slow ones.
        let default_header_timeout = match &trusted_proxies {
            Some(proxies) if !proxies.is_empty() => "75",
            _ => "10",
        };
        let header_timeout = p.parse("HEADER_TIMEOUT_SECS", default_header_timeout, |v| {
            parse_secs(v, 1, 300)
        });
        let cors_origins = p.parse("CORS_ORIGINS", "", |v| {
            let origins = parse_cors_origins(v)?;
            match origins
                .iter()
                .find(|o| production && o.starts_with("http://"))
            {
                Some(plain) => Err(format!(
                    "`{plain}`: production accepts only https:// origins"
                )),
                None => Ok(origins),
            }
        });
        let jobs_tick = p.parse("JOBS_TICK_SECS", "30", |v| {
            parse_range(v, 1u64, 3600).map(Duration::from_secs)
        });
        let audit_retention_days = p.parse("AUDIT_RETENTION_DAYS", "400", |v| {
            parse_range(v, 30, 36_500)
        });
        let backups_keep = p.parse("BACKUPS_KEEP", "7", |v| parse_range(v, 0, 1000));
        let backup_dir = p.parse(
            "BACKUP_DIR",
            &data_dir.join("backups").display().to_string(),
            |v| Ok::<_, String>(PathBuf::from(v)),
        );
        let metrics_addr = p.parse("METRICS_ADDR", "127.0.0.1:9464", |v| match v {
            "off" => Ok(None),
            _ => v
                .parse::<std::net::SocketAddr>()
                .map(Some)
                .map_err(|_| "must be an address like 127.0.0.1:9464, or `off`".to_owned()),
        });
        let metrics_user = p.parse("METRICS_USER", "metrics", |v| {
            if v.is_empty() || v.contains(':') {
                Err("must be a user name without `:`".to_owned())
            } else {
                Ok(v.to_owned())
            }
        });
        let metrics_password = p
            .secret_or("METRICS_PASSWORD", DEV_METRICS_PASSWORD)
            .and_then(|v| {
                let mut distinct: Vec<char> = v.chars().collect();
                distinct.sort_unstable();
                distinct.dedup();
                // "aaaaaaaaaaaaaaaa" is 16 characters too.
                let weak = v == DEV_METRICS_PASSWORD
                    || v.chars().count() < 16
                    || distinct.len() < 8
                    || is_placeholder(&v);
                if production && weak {
                    p.problem(
                        "METRICS_PASSWORD",
                        "production needs a password of at least 16 characters for /metrics, at \
                         least 8 of them different, and neither a placeholder nor the development \
                         default"
                            .to_owned(),
                    );
                    None
                } else {
                    Some(Password(v))
                }
            });
        // Each variable is parsed on its own so that every problem is reported, then combined.
        let registration_open = p.parse("REGISTRATION_OPEN", "true", parse_bool);
        let require_email_verification = p.parse("REQUIRE_EMAIL_VERIFICATION", "false", parse_bool);
        let terms_version = p.parse("TERMS_VERSION", "1", |v| parse_range(v, 1, 1_000_000));
        let privacy_version = p.parse("PRIVACY_VERSION", "1", |v| parse_range(v, 1, 1_000_000));
        let password_min_length = p.parse("PASSWORD_MIN_LENGTH", "12", |v| parse_range(v, 8, 64));
        let lockout_threshold = p.parse("LOCKOUT_THRESHOLD", "5", |v| parse_range(v, 1, 100));
        let lockout_duration = p.parse("LOCKOUT_MINUTES", "30", |v| {
            parse_range(v, 1, 24 * 60).map(|m: u64| Duration::from_secs(m * 60))
        });
        // OWASP's floor for argon2id: configuration may raise the cost, never lower it.
        let memory_kib = p.parse("ARGON2_MEMORY_KIB", "19456", |v| {
            parse_range(v, 19_456, 4 * 1024 * 1024)
        });
        let iterations = p.parse("ARGON2_ITERATIONS", "2", |v| parse_range(v, 2, 100));
        let parallelism = p.parse("ARGON2_PARALLELISM", "1", |v| parse_range(v, 1, 64));
        let cores = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .to_string();
        let hash_concurrency =
            p.parse("ARGON2_MAX_CONCURRENT", &cores, |v| parse_range(v, 1, 1024));
        let require_mfa = p.parse(
            "REQUIRE_MFA",
            if production { "admins" } else { "off" },
            |v| match v.to_ascii_lowercase().as_str() {
                "off" => Ok(MfaPolicy::Off),
                "admins" => Ok(MfaPolicy::Admins),
                "all" => Ok(MfaPolicy::All),
                _ => Err("must be off, admins or all".to_owned()),
            },
        );
        let sudo_window = p.parse("SUDO_WINDOW_MINUTES", "10", |v| {
            parse_range(v, 1, 24 * 60).map(|m: u64| Duration::from_secs(m * 60))
        });
        let admin_emails = p.parse("ADMIN_EMAILS", "", |v| {
            v.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(|e| {
                    crate::server::services::auth::normalize_email(e, "ADMIN_EMAILS")
                        .map_err(|_| format!("`{e}` is not an email address"))
                })
                .collect::<Result<Vec<_>, _>>()
        });
        let accounts = (|| {
            Some(AccountSettings {
                registration_open: registration_open?,
                require_email_verification: require_email_verification?,
                terms_version: terms_version?,
                privacy_version: privacy_version?,
                password_min_length: password_min_length?,
                lockout_threshold: lockout_threshold?,
                lockout_duration: lockout_duration?,
                hash_cost: crate::server::services::crypto::HashCost {
                    memory_kib: memory_kib?,
                    iterations: iterations?,
                    parallelism: parallelism?,
                },
                hash_concurrency: hash_concurrency?,
                require_mfa: require_mfa?,
                sudo_window: sudo_window?,
            })
        })();
        let limit = |p: &mut Parser, name: &str, default: &str| {
            p.parse(name, default, |v| parse_range(v, 1, 1_000_000))
        };
        let sign_in_per_minute = limit(&mut p, "RATE_LIMIT_SIGN_IN_PER_MINUTE", "5");
        let register_per_hour = limit(&mut p, "RATE_LIMIT_REGISTER_PER_HOUR", "3");
        let reset_per_hour = limit(&mut p, "RATE_LIMIT_RESET_PER_HOUR", "3");
        let reset_per_account_per_hour =
            limit(&mut p, "RATE_LIMIT_RESET_PER_ACCOUNT_PER_HOUR", "3");
        let api_per_minute = limit(&mut p, "RATE_LIMIT_API_PER_MINUTE", "100");
        let pages_per_minute = limit(&mut p, "RATE_LIMIT_PAGES_PER_MINUTE", "300");
        let mfa_per_minute = limit(&mut p, "RATE_LIMIT_MFA_PER_MINUTE", "3");
        let exports_per_hour = limit(&mut p, "RATE_LIMIT_EXPORTS_PER_HOUR", "3");
        let invitations_per_hour = limit(&mut p, "RATE_LIMIT_INVITATIONS_PER_HOUR", "10");
        let rate_limits = (|| {
            Some(RateLimitSettings {
                sign_in_per_minute: sign_in_per_minute?,
                register_per_hour: register_per_hour?,
                reset_per_hour: reset_per_hour?,
                reset_per_account_per_hour: reset_per_account_per_hour?,
                api_per_minute: api_per_minute?,
                pages_per_minute: pages_per_minute?,
                mfa_per_minute: mfa_per_minute?,
                exports_per_hour: exports_per_hour?,
                invitations_per_hour: invitations_per_hour?,
            })
        })();
        // An explicit choice, for a Redis that nothing but Nest Egg can reach (its own host or a
        // private network): production takes a Redis URL without a password only with it.
        let redis_without_password = p.parse("REDIS_ALLOW_NO_PASSWORD", "false", parse_bool);
        let needs_password = production && redis_without_password != Some(true);
        let redis_url = match p.secret_or("REDIS_URL", "") {
            Some(url) if url.is_empty() => Some(None),
            Some(url) => p
                .check("REDIS_URL", validate_redis_url(&url, needs_password))
                .map(|()| Some(DatabaseUrl(url))),
            None => None,
        };
        let redis_key_prefix = p.parse("REDIS_KEY_PREFIX", "nestegg", |v| {
            let ok = (1..=64).contains(&v.len())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
            ok.then(|| v.to_owned())
                .ok_or_else(|| "must be 1 to 64 letters, digits, `_`, `-`, `.` or `:`".to_owned())
        });
        let redis = match (redis_url, redis_key_prefix) {
            (Some(Some(url)), Some(key_prefix)) => Some(Some(RedisSettings { url, key_prefix })),
            (Some(None), Some(_)) => Some(None),
            _ => None,
        };
        let smtp_allow_plaintext = p.parse("SMTP_ALLOW_PLAINTEXT", "false", parse_bool);
        let smtp_url = match p.secret_or("SMTP_URL", "") {
            Some(url) if url.is_empty() => Some(None),
            Some(url) if url.starts_with("smtp://") || url.starts_with("smtps://") => {
                let plaintext_allowed = !production || smtp_allow_plaintext == Some(true);
                match check_smtp_url(&url, plaintext_allowed) {
                    Ok(()) => Some(Some(DatabaseUrl(url))),
                    Err(message) => {
                        p.problem("SMTP_URL", message);
                        None
                    }
                }
            }
            Some(_) => {
                p.problem("SMTP_URL", "must start with smtp:// or smtps://".to_owned());
                None
            }
            None => None,
        };
        let mail_from = p.parse("MAIL_FROM", "Nest Egg <no-reply@localhost>", |v| {
            v.parse::<lettre::message::Mailbox>()
                .map(|_| v.to_owned())
                .map_err(|_| {
                    "is not a valid sender, e.g. `Nest Egg <no-reply@example.org>`".to_owned()
                })
        });
        // About two days of retries (1, 2, 4, 8, then every 10 minutes): a relay down overnight
        // must not fail every queued email for good, each then to be retried by hand (8 attempts
        // were 45 minutes).
        let max_attempts = p.parse("EMAIL_MAX_ATTEMPTS", "300", |v| parse_range(v, 1, 1000));
        let mail = match (smtp_url, mail_from, max_attempts) {
            (Some(smtp_url), Some(from), Some(max_attempts)) => Some(MailSettings {
                log_links: !production && smtp_url.is_none(),
                smtp_url,
                from,
                max_attempts,
                outbox_dir: data_dir.join("outbox"),
            }),
            _ => None,
        };

        // Every value was parsed (and every problem collected) above; assemble only if all succeeded.
        let problems = p.problems;
        let generated_keys = p.generated_keys;
        let settings = (|| {
            Some(Settings {
                generated_keys,
                environment: environment?,
                public_url: public_url?,
                data_dir,
                database: DatabaseSettings {
                    url: database_url?,
                    max_connections: max_connections?,
                    min_connections: min_connections?,
                    acquire_timeout: acquire_timeout?,
                    idle_timeout: idle_timeout?,
                    sqlite_busy_timeout: sqlite_busy_timeout?,
                    run_migrations: run_migrations?,
                },
                redis: redis?,
                secret_key: secret_key?,
                encryption_key: encryption_key?,
                encryption_keys_previous: encryption_keys_previous?,
                cookie_secure: cookie_secure?,
                allowed_hosts: allowed_hosts?,
                max_body_bytes: max_body_bytes?,
                request_timeout: request_timeout?,
                header_timeout: header_timeout?,
                max_connections: max_client_connections?,
                shutdown_timeout: shutdown_timeout?,
                session_idle_timeout: session_idle_timeout?,
                session_absolute_lifetime: session_absolute_lifetime?,
                log_format: log_format?,
                log_filter: log_filter?,
                trusted_proxies: trusted_proxies?,
                cors_origins: cors_origins?,
                audit_retention_days: audit_retention_days?,
                jobs_tick: jobs_tick?,
                backup_dir: backup_dir?,
                backups_keep: backups_keep?,
                metrics_addr: metrics_addr?,
                metrics_user: metrics_user?,
                metrics_password: metrics_password?,
                admin_emails: admin_emails?,
                accounts: accounts?,
                rate_limits: rate_limits?,
                mail: mail?,
            })
        })();
        match settings {
            Some(settings) if problems.is_empty() => Ok(settings),
            _ => Err(ConfigError { problems }),
        }
    }

    /// The origin (`scheme://host[:port]`) of `PUBLIC_URL`, as browsers send it in `Origin`.
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    /// Whether `ADMIN_EMAILS` names `email` (normalized). Operators granted from the command line are
    /// in the database: ask `services::operators::is_operator`.
    pub fn is_admin(&self, email: &str) -> bool {
        self.admin_emails.iter().any(|a| a == email)
    }

    /// The session cookie's name: `__Host-` makes browsers insist on Secure, Path=/ and no Domain.
    pub fn session_cookie_name(&self) -> &'static str {
        if self.cookie_secure {
            "__Host-nestegg_session"
        } else {
            "nestegg_session"
        }
    }

    /// The device cookie's name (`services::device_cookies`), `__Host-` as for the session's.
    pub fn device_cookie_name(&self) -> &'static str {
        if self.cookie_secure {
            "__Host-nestegg_device"
        } else {
            "nestegg_device"
        }
    }
}

struct Parser<'a> {
    vars: &'a Vars,
    problems: Vec<Problem>,
    key_mode: KeyMode,
    /// Keys made up on this machine because none was configured (development only).
    generated_keys: Vec<String>,
}

impl Parser<'_> {
    fn raw(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    fn problem(&mut self, variable: &str, message: String) {
        self.problems.push(Problem {
            variable: variable.to_owned(),
            message,
        });
    }

    fn check(&mut self, name: &str, result: Result<(), String>) -> Option<()> {
        result.map_err(|message| self.problem(name, message)).ok()
    }

    fn parse<T>(
        &mut self,
        name: &str,
        default: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.raw(name).unwrap_or(default).trim().to_owned();
        match f(&value) {
            Ok(v) => Some(v),
            Err(message) => {
                self.problem(name, format!("{message} (got `{}`)", shown(name, &value)));
                None
            }
        }
    }

    /// A value that may also come from `NAME_FILE`.
    fn secret_or(&mut self, name: &str, default: &str) -> Option<String> {
        match self.read_file_variant(name) {
            Ok(Some(value)) => Some(value),
            Ok(None) => Some(self.raw(name).unwrap_or(default).trim().to_owned()),
            Err(message) => {
                self.problem(&format!("{name}_FILE"), message);
                None
            }
        }
    }

    fn read_file_variant(&self, name: &str) -> Result<Option<String>, String> {
        let Some(path) = self.raw(&format!("{name}_FILE")) else {
            return Ok(None);
        };
        std::fs::read_to_string(path)
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|e| format!("cannot read `{path}`: {e}"))
    }

    /// A key from `NAME`, `NAME_FILE`, or (development only) a file generated once under `data_dir`.
    fn key(&mut self, name: &str, production: bool, data_dir: &Path) -> Option<SecretKey> {
        let value = match self.read_file_variant(name) {
            Ok(Some(value)) => Some(value),
            Ok(None) => self.raw(name).map(str::to_owned),
            Err(message) => {
                self.problem(&format!("{name}_FILE"), message);
                return None;
            }
        };
        match value {
            Some(value) if production => SecretKey::parse_current(&value)
                .map_err(|m| self.problem(name, m))
                .ok(),
            Some(value) => SecretKey::parse(&value)
                .map_err(|m| self.problem(name, m))
                .ok(),
            None if production => {
                self.problem(
                    name,
                    "is required in production (`openssl rand -base64 32`)".to_owned(),
                );
                None
            }
            None if self.key_mode == KeyMode::ReadOnly => {
                self.generated_keys.push(name.to_owned());
                Some(SecretKey::generate())
            }
            None => match load_or_create_dev_key(data_dir, name) {
                Ok(key) => {
                    self.generated_keys.push(name.to_owned());
                    Some(key)
                }
                Err(message) => {
                    self.problem(name, message);
                    None
                }
            },
        }
    }
}

/// Values of secret variables are never echoed back in a problem report.
fn shown<'v>(name: &str, value: &'v str) -> &'v str {
    if name.contains("KEY")
        || name.contains("PASSWORD")
        || name.starts_with("DATABASE_URL")
        || name.starts_with("SMTP_URL")
        || name.starts_with("REDIS_URL")
    {
        "<hidden>"
    } else {
        value
    }
}

/// Development keys live in `DATA_DIR/<name>` (mode 0600) so restarts keep sessions valid.
fn load_or_create_dev_key(data_dir: &Path, name: &str) -> Result<SecretKey, String> {
    let path = data_dir.join(name.to_ascii_lowercase());
    match std::fs::read_to_string(&path) {
        Ok(content) => SecretKey::parse(&content)
            .map_err(|m| format!("generated key in {} {m}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            match write_private_file(&path, &key.to_base64()) {
                Ok(()) => Ok(key),
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let content = std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    SecretKey::parse(&content)
                        .map_err(|m| format!("generated key in {} {m}", path.display()))
                }
                Err(e) => Err(format!(
                    "cannot store a generated key in {}: {e}",
                    path.display()
                )),
            }
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_private_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    }
}

fn parse_range<T>(v: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let n: T = v.parse().map_err(|_| "must be a whole number".to_owned())?;
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(n)
}

fn parse_millis(v: &str, min: u64, max: u64) -> Result<Duration, String> {
    parse_range(v, min, max).map(Duration::from_millis)
}

fn parse_secs(v: &str, min: u64, max: u64) -> Result<Duration, String> {
    parse_range(v, min, max).map(Duration::from_secs)
}

fn parse_public_url(v: &str, production: bool) -> Result<Url, String> {
    let url = Url::parse(v).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http(s) URL with a host".to_owned());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("must be an origin only, without path, query or fragment".to_owned());
    }
    if production && url.scheme() != "https" {
        return Err("must use https in production".to_owned());
    }
    Ok(url)
}

/// `SMTP_URL` as lettre will read it at start-up (a typo in `?tls=` or the port is reported with the
/// other problems, by `check-config` too), and, unless `plaintext_allowed`, encrypted: without TLS the
/// relay's password and every reset and sign-in link would cross the network readable. A relay on
/// this machine (loopback) is exempt. Messages never contain the URL, which may hold a password.
fn check_smtp_url(url: &str, plaintext_allowed: bool) -> Result<(), String> {
    crate::server::mail::transport::Mailer::check_url(url)?;
    let parsed = Url::parse(url).map_err(|err| format!("is not a valid SMTP URL: {err}"))?;
    let tls = parsed
        .query_pairs()
        .find(|(key, _)| key == "tls")
        .map(|(_, value)| value.into_owned());
    let encrypted = parsed.scheme() == "smtps" || tls.as_deref() == Some("required");
    // smtp:// is not a scheme the URL standard knows, so its host stays text ("127.0.0.1", "[::1]").
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if encrypted || loopback || plaintext_allowed {
        Ok(())
    } else {
        Err(
            "would send mail without (or with downgradable) encryption; production needs \
             smtps:// or smtp://…?tls=required, or SMTP_ALLOW_PLAINTEXT=true for a relay that only \
             Nest Egg can reach"
                .to_owned(),
        )
    }
}

/// Passwords refused in production, for the database and for Redis (compared in lower case).
const WEAK_PASSWORDS: [&str; 8] = [
    "", "postgres", "password", "changeme", "secret", "admin", "root", "nestegg",
];

/// In production Redis needs a password (unless `REDIS_ALLOW_NO_PASSWORD`): whoever can write to it
/// can sign in as anyone (a session record names its user, and the signed cookie only names the
/// record) and clear every lock-out.
fn validate_redis_url(url: &str, needs_password: bool) -> Result<(), String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("must start with redis:// or rediss://".to_owned());
    }
    let config = fred::types::config::Config::from_url(url)
        .map_err(|_| "is not a valid Redis URL, e.g. `redis://127.0.0.1:6379/0`".to_owned())?;
    if needs_password {
        let password = config.password.unwrap_or_default();
        if WEAK_PASSWORDS.contains(&password.to_ascii_lowercase().as_str()) {
            return Err(
                "has an empty or default password; production needs a strong one, e.g. \
                 `redis://:PASSWORD@host:6379/0` (see requirepass or ACL users in Redis); for a \
                 Redis nothing else can reach, REDIS_ALLOW_NO_PASSWORD=true"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

fn validate_database_url(url: &str, production: bool) -> Result<(), String> {
    if url.starts_with("sqlite:") {
        return Ok(());
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must start with sqlite:, postgres:// or postgresql://".to_owned());
    }
    let parsed = Url::parse(url).map_err(|_| "is not a valid PostgreSQL URL".to_owned())?;
    if production {
        // The driver also takes `?password=`; that one wins when both are given.
        let from_query = parsed
            .query_pairs()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.into_owned());
        let password = from_query.unwrap_or_else(|| {
            percent_encoding::percent_decode_str(parsed.password().unwrap_or_default())
                .decode_utf8_lossy()
                .into_owned()
        });
        if WEAK_PASSWORDS.contains(&password.to_ascii_lowercase().as_str()) {
            return Err(
                "has an empty or default password; production needs a strong one".to_owned(),
            );
        }
    }
    Ok(())
}

fn parse_hosts(v: &str, production: bool) -> Result<Vec<String>, String> {
    let hosts: Vec<String> = v
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() {
        return Err("must list at least one host name".to_owned());
    }
    if production && hosts.iter().any(|h| h == "*") {
        return Err("must not be a wildcard in production".to_owned());
    }
    // Host names only: a port or an unbracketed IPv6 address could never match a request.
    if let Some(bad) = hosts.iter().find(|h| {
        *h != "*" && crate::server::middleware::host::host_name(h).as_deref() != Some(h.as_str())
    }) {
        return Err(format!(
            "`{bad}` is not a host name (no port; IPv6 in brackets)"
        ));
    }
    Ok(hosts)
}

/// `https://app.example.org,http://localhost:5173`: exact origins (scheme, host, optional port), no
/// wildcard (with credentials allowed, a wildcard would let any site read signed-in answers).
fn parse_cors_origins(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            if origin.contains('*') {
                return Err(format!(
                    "`{origin}`: list exact origins such as https://app.example.org; wildcards are \
                     refused"
                ));
            }
            let url = Url::parse(origin).map_err(|_| format!("`{origin}` is not an origin"))?;
            let exact = url.origin().ascii_serialization();
            if !matches!(url.scheme(), "http" | "https") || exact != origin.trim_end_matches('/') {
                return Err(format!(
                    "`{origin}` must be just scheme://host[:port], like https://app.example.org"
                ));
            }
            Ok(exact)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn production_accepts_only_https_cors_origins() {
        assert_eq!(
            problems_of(&production(&[("CORS_ORIGINS", "http://app.example.org")])),
            vec!["CORS_ORIGINS"]
        );
        assert!(
            Settings::from_vars(&production(&[("CORS_ORIGINS", "https://app.example.org")]))
                .is_ok()
        );
    }

    #[test]
    fn cors_origins_are_exact() {
        assert_eq!(
            parse_cors_origins(" https://app.example.org, http://localhost:5173 ").unwrap(),
            vec!["https://app.example.org", "http://localhost:5173"]
        );
        assert_eq!(parse_cors_origins("").unwrap(), Vec::<String>::new());
        for bad in [
            "*",
            "https://*.example.org",
            "app.example.org",
            "https://app.example.org/path",
            "ftp://app.example.org",
        ] {
            assert!(parse_cors_origins(bad).is_err(), "{bad}");
        }
    }

    const KEY_A: &str = "q83vEjq6GyxXKjvZ1sYkB2b8Vw9mN4pR7tU0cD5eF6g=";
    const KEY_B: &str = "9/G1JBt7ZIyNgD2sfIxll35ctR2YO2ZiZAf8UQnASrM=";

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn production(extra: &[(&str, &str)]) -> Vars {
        let mut v = vars(&[
            ("ENVIRONMENT", "production"),
            ("PUBLIC_URL", "https://nestegg.example.org"),
            ("SECRET_KEY", KEY_A),
            ("ENCRYPTION_KEY", KEY_B),
            (
                "DATABASE_URL",
                "postgres://app:Str0ng-Passw0rd-9@db:5432/nestegg",
            ),
            ("METRICS_PASSWORD", "scrape-me-9f2c1e7a4b"),
        ]);
        v.extend(vars(extra));
        v
    }

    fn problems_of(v: &Vars) -> Vec<String> {
        Settings::from_vars(v)
            .unwrap_err()
            .problems
            .into_iter()
            .map(|p| p.variable)
            .collect()
    }

    #[test]
    fn development_defaults_work_and_generate_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let v = vars(&[("DATA_DIR", dir.path().to_str().unwrap())]);
        let first = Settings::from_vars(&v).unwrap();
        assert_eq!(first.environment, Environment::Development);
        assert!(first.database.url.is_sqlite());
        assert_eq!(first.allowed_hosts, vec!["localhost", "127.0.0.1", "[::1]"]);
        assert_eq!(first.max_body_bytes, 65536);
        assert!(!first.cookie_secure);
        assert_eq!(first.session_cookie_name(), "nestegg_session");
        assert_ne!(first.secret_key, first.encryption_key);
        let second = Settings::from_vars(&v).unwrap();
        assert_eq!(
            first.secret_key, second.secret_key,
            "restarts keep the generated key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("secret_key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn by_default_emails_are_retried_through_a_relay_down_overnight() {
        let dir = tempfile::tempdir().unwrap();
        let settings =
            Settings::from_vars(&vars(&[("DATA_DIR", dir.path().to_str().unwrap())])).unwrap();
        // The waits between the attempts an email gets before it is marked failed.
        let waited: i64 = (1..settings.mail.max_attempts)
            .map(crate::server::mail::worker::backoff_secs)
            .sum();
        assert!(waited >= 24 * 3600, "{waited} s");
    }

    #[test]
    fn the_header_timeout_outlasts_a_proxys_idle_connections() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let direct = Settings::from_vars(&vars(&[("DATA_DIR", data_dir)])).unwrap();
        assert_eq!(direct.header_timeout, Duration::from_secs(10));
        let proxied = Settings::from_vars(&vars(&[
            ("DATA_DIR", data_dir),
            ("TRUSTED_PROXIES", "10.0.0.0/8"),
        ]))
        .unwrap();
        assert_eq!(proxied.header_timeout, Duration::from_secs(75));
        let chosen = Settings::from_vars(&vars(&[
            ("DATA_DIR", data_dir),
            ("TRUSTED_PROXIES", "10.0.0.0/8"),
            ("HEADER_TIMEOUT_SECS", "120"),
        ]))
        .unwrap();
        assert_eq!(chosen.header_timeout, Duration::from_secs(120));
        assert_eq!(
            problems_of(&vars(&[
                ("DATA_DIR", data_dir),
                ("HEADER_TIMEOUT_SECS", "0")
            ])),
            vec!["HEADER_TIMEOUT_SECS"]
        );
        // Writes take SQLite's lock up front: with no wait, two at once would fail.
        assert_eq!(
            problems_of(&vars(&[
                ("DATA_DIR", data_dir),
                ("SQLITE_BUSY_TIMEOUT_MS", "0")
            ])),
            vec!["SQLITE_BUSY_TIMEOUT_MS"]
        );
    }

    #[test]
    fn a_valid_production_configuration_passes() {
        let s = Settings::from_vars(&production(&[])).unwrap();
        assert!(s.cookie_secure);
        assert_eq!(s.session_cookie_name(), "__Host-nestegg_session");
        assert_eq!(s.allowed_hosts, vec!["nestegg.example.org"]);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.public_origin(), "https://nestegg.example.org");
    }

    #[test]
    fn metrics_are_protected_by_a_real_password_in_production() {
        for weak in [
            "",
            DEV_METRICS_PASSWORD,
            "short-password",
            "aaaaaaaaaaaaaaaaaaaa",
            "abababababababababab",
            "change-me-metrics-password",
        ] {
            assert_eq!(
                problems_of(&production(&[("METRICS_PASSWORD", weak)])),
                vec!["METRICS_PASSWORD"],
                "{weak:?}"
            );
        }
        let dev = Settings::from_vars(&vars(&[])).unwrap();
        assert_eq!(dev.metrics_password.expose(), DEV_METRICS_PASSWORD);
        assert_eq!(dev.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        let off = Settings::from_vars(&vars(&[("METRICS_ADDR", "off")])).unwrap();
        assert_eq!(off.metrics_addr, None);
        assert_eq!(
            problems_of(&vars(&[("METRICS_ADDR", "everywhere")])),
            vec!["METRICS_ADDR"]
        );
        assert_eq!(format!("{:?}", dev.metrics_password), "<hidden>");
    }

    #[test]
    fn production_refuses_missing_keys() {
        let mut v = production(&[]);
        v.remove("SECRET_KEY");
        v.remove("ENCRYPTION_KEY");
        assert_eq!(problems_of(&v), vec!["SECRET_KEY", "ENCRYPTION_KEY"]);
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(
            problems_of(&production(&[("SECRET_KEY", "c2hvcnQta2V5")])),
            vec!["SECRET_KEY"]
        );
    }

    #[test]
    fn placeholder_and_patterned_keys_are_refused() {
        for bad in [
            "change-me-change-me-change-me-change-me-change-me",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "not base64 at all!!",
        ] {
            assert_eq!(
                problems_of(&production(&[("ENCRYPTION_KEY", bad)])),
                vec!["ENCRYPTION_KEY"],
                "{bad}"
            );
        }
        assert_eq!(
            problems_of(&production(&[("ENCRYPTION_KEY", KEY_A)])),
            vec!["ENCRYPTION_KEY"]
        );
    }

    #[test]
    fn production_refuses_default_database_passwords() {
        for url in [
            "postgres://postgres@db/nestegg",
            "postgres://postgres:postgres@db/nestegg",
            "postgresql://app:password@db/nestegg",
            "postgres://app@db/nestegg?password=postgres",
            "postgres://app:p%61ssword@db/nestegg",
        ] {
            assert_eq!(
                problems_of(&production(&[("DATABASE_URL", url)])),
                vec!["DATABASE_URL"],
                "{url}"
            );
        }
        assert_eq!(
            problems_of(&production(&[("DATABASE_URL", "mysql://x")])),
            vec!["DATABASE_URL"]
        );
    }

    #[test]
    fn production_refuses_redis_without_a_strong_password() {
        for url in [
            "redis://redis:6379/0",
            "redis://:password@redis:6379",
            "rediss://app:changeme@redis:6380",
        ] {
            assert_eq!(
                problems_of(&production(&[("REDIS_URL", url)])),
                vec!["REDIS_URL"],
                "{url}"
            );
        }
        for url in [
            "redis://:Sup3r-s3cret-9@redis:6379/0",
            "rediss://app:Sup3r-s3cret-9@redis",
        ] {
            let settings = Settings::from_vars(&production(&[("REDIS_URL", url)]));
            assert!(settings.is_ok(), "{url}: {:?}", settings.err());
        }
        // Unless the operator says nothing else can reach it.
        let settings = Settings::from_vars(&production(&[
            ("REDIS_URL", "redis://redis:6379/0"),
            ("REDIS_ALLOW_NO_PASSWORD", "true"),
        ]));
        assert!(settings.is_ok(), "{:?}", settings.err());
        // Development keeps the plain local Redis.
        let mut dev = vars(&[("REDIS_URL", "redis://127.0.0.1:6379")]);
        dev.extend(vars(&[("ENVIRONMENT", "development")]));
        assert!(Settings::from_vars(&dev).is_ok());
    }

    #[test]
    fn production_refuses_insecure_cookies_http_and_wildcard_hosts() {
        assert_eq!(
            problems_of(&production(&[("COOKIE_SECURE", "false")])),
            vec!["COOKIE_SECURE"]
        );
        assert_eq!(
            problems_of(&production(&[("PUBLIC_URL", "http://nestegg.example.org")])),
            vec!["PUBLIC_URL"]
        );
        assert_eq!(
            problems_of(&production(&[("ALLOWED_HOSTS", "*")])),
            vec!["ALLOWED_HOSTS"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_and_secrets_are_not_echoed() {
        let v = production(&[
            ("ENVIRONMENT", "production"),
            ("DB_MAX_CONNECTIONS", "zero"),
            ("MAX_BODY_BYTES", "10"),
            ("RUN_MIGRATIONS", "maybe"),
            ("LOG_FORMAT", "xml"),
            ("SECRET_KEY", "c2hvcnQ="),
            ("COOKIE_SECURE", "false"),
        ]);
        let err = Settings::from_vars(&v).unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "DB_MAX_CONNECTIONS",
                "RUN_MIGRATIONS",
                "SECRET_KEY",
                "COOKIE_SECURE",
                "MAX_BODY_BYTES",
                "LOG_FORMAT"
            ]
        );
        let text = err.to_string();
        assert!(
            text.contains("MAX_BODY_BYTES: must be between 1024"),
            "{text}"
        );
        assert!(
            !text.contains("c2hvcnQ="),
            "key values must not be echoed: {text}"
        );
    }

    #[test]
    fn two_factor_policy_defaults_by_environment_and_admins_are_normalized() {
        let dir = tempfile::tempdir().unwrap();
        let dev =
            Settings::from_vars(&vars(&[("DATA_DIR", dir.path().to_str().unwrap())])).unwrap();
        assert_eq!(dev.accounts.require_mfa, MfaPolicy::Off);
        assert_eq!(dev.accounts.sudo_window, Duration::from_secs(600));
        assert_eq!(dev.rate_limits.mfa_per_minute, 3);

        let prod = Settings::from_vars(&production(&[(
            "ADMIN_EMAILS",
            " Ops@Example.org, root@example.org ",
        )]))
        .unwrap();
        assert_eq!(prod.accounts.require_mfa, MfaPolicy::Admins);
        assert_eq!(
            prod.admin_emails,
            vec!["ops@example.org", "root@example.org"]
        );
        assert!(prod.is_admin("ops@example.org"));
        assert!(!prod.is_admin("someone@example.org"));

        assert_eq!(
            problems_of(&production(&[
                ("REQUIRE_MFA", "sometimes"),
                ("ADMIN_EMAILS", "ops@example.org,not-an-address"),
                ("SUDO_WINDOW_MINUTES", "0"),
            ])),
            vec!["REQUIRE_MFA", "SUDO_WINDOW_MINUTES", "ADMIN_EMAILS"]
        );
    }

    #[test]
    fn unknown_environment_and_bad_numbers_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let v = vars(&[
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("ENVIRONMENT", "staging"),
            ("DB_MIN_CONNECTIONS", "20"),
            ("DB_MAX_CONNECTIONS", "5"),
            ("PUBLIC_URL", "ftp://x"),
        ]);
        let names = problems_of(&v);
        assert_eq!(
            names,
            vec!["ENVIRONMENT", "PUBLIC_URL", "DB_MIN_CONNECTIONS"]
        );
    }

    #[test]
    fn redacted_urls_hide_passwords_in_either_place() {
        let url = DatabaseUrl("postgres://app@db/x?password=Sup3r-s3cret&sslmode=require".into());
        assert!(!url.redacted().contains("Sup3r"), "{}", url.redacted());
        assert!(url.redacted().contains("sslmode=require"));
        let url = DatabaseUrl("postgres://app:Sup3r-s3cret@db/x".into());
        assert!(!url.redacted().contains("Sup3r"), "{}", url.redacted());
    }

    #[test]
    fn allowed_hosts_must_be_bare_host_names() {
        assert_eq!(
            problems_of(&production(&[("ALLOWED_HOSTS", "app.example:443")])),
            vec!["ALLOWED_HOSTS"]
        );
        assert_eq!(
            problems_of(&production(&[("ALLOWED_HOSTS", "::1")])),
            vec!["ALLOWED_HOSTS"]
        );
        assert!(
            Settings::from_vars(&production(&[("ALLOWED_HOSTS", "app.example,[::1]")])).is_ok()
        );
    }

    #[test]
    fn keys_that_look_typed_are_refused_and_generated_ones_are_not() {
        for typed in [
            "nesteggnesteggnesteggnesteggnesteggnesteggne",
            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqr",
            "NestEggNestEggNestEggNestEggNestEggNestEggNe",
            // The base64 of "foobarbazqux1234567890abcdefghij": readable text.
            "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo=",
            "ourproductionkeyforthefamilybudgetdeployment",
            "OURPRODUCTIONKEYFORTHEFAMILYBUDGETDEPLOYMENT",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let problems = Settings::from_vars(&production(&[("SECRET_KEY", typed)]))
                .unwrap_err()
                .problems;
            assert_eq!(problems.len(), 1, "{typed}: {problems:?}");
            assert_eq!(problems[0].variable, "SECRET_KEY");
            assert!(
                problems[0].message.contains("does not look random"),
                "{typed}"
            );
            assert!(
                !problems[0].message.contains(typed),
                "the key is not echoed"
            );
        }
        // A key in use before this check can still be rotated away from, and development takes it.
        let typed = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo=";
        let rotating = Settings::from_vars(&production(&[("ENCRYPTION_KEYS_PREVIOUS", typed)]));
        assert!(rotating.is_ok(), "{:?}", rotating.err());
        let dir = tempfile::tempdir().unwrap();
        let dev = vars(&[
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("SECRET_KEY", typed),
        ]);
        assert!(Settings::from_vars(&dev).is_ok());
        // Generated keys pass, in base64 and in hex (`openssl rand -base64 32`, `-hex 32`).
        use rand::{Rng as _, RngCore as _, SeedableRng as _};
        // Seeded: the odds of refusing a generated key are small but not nil, and the test must
        // not fail once in a while.
        let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
        for _ in 0..500 {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            let base64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            // A password generator's letters of one case and digits.
            let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
            let generated: String = (0..44)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
                .collect();
            for key in [base64, hex.clone(), hex.to_ascii_uppercase(), generated] {
                assert!(SecretKey::parse_current(&key).is_ok(), "{key}");
            }
        }
    }

    #[test]
    fn production_mail_goes_encrypted_unless_the_relay_is_local_or_allowed_plain() {
        let plain = "smtp://nestegg:hunter2-relay@mail.example.org:587";
        for refused in [plain.to_owned(), format!("{plain}?tls=opportunistic")] {
            let problems = Settings::from_vars(&production(&[("SMTP_URL", &refused)]))
                .unwrap_err()
                .problems;
            assert_eq!(problems.len(), 1, "{refused}: {problems:?}");
            assert_eq!(problems[0].variable, "SMTP_URL");
            assert!(problems[0].message.contains("encryption"), "{problems:?}");
            assert!(!problems[0].message.contains("hunter2"), "{problems:?}");
        }
        for accepted in [
            format!("{plain}?tls=required"),
            "smtps://nestegg:hunter2-relay@mail.example.org".to_owned(),
            "smtp://127.0.0.1:2525".to_owned(),
            "smtp://localhost:25".to_owned(),
            "smtp://[::1]:25".to_owned(),
        ] {
            let result = Settings::from_vars(&production(&[("SMTP_URL", &accepted)]));
            assert!(result.is_ok(), "{accepted}: {:?}", result.err());
        }
        assert!(
            Settings::from_vars(&production(&[
                ("SMTP_URL", plain),
                ("SMTP_ALLOW_PLAINTEXT", "true")
            ]))
            .is_ok()
        );
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        assert!(Settings::from_vars(&vars(&[("DATA_DIR", data_dir), ("SMTP_URL", plain)])).is_ok());
        // What lettre would refuse at start-up is reported with the rest, in development too.
        for malformed in [
            format!("{plain}?tls=requried"),
            "smtp://nestegg:hunter2-relay@mail.example.org:99999".to_owned(),
            "smtp://nestegg:hunter2-relay@:587".to_owned(),
        ] {
            let problems =
                Settings::from_vars(&vars(&[("DATA_DIR", data_dir), ("SMTP_URL", &malformed)]))
                    .unwrap_err()
                    .problems;
            assert_eq!(problems.len(), 1, "{malformed}: {problems:?}");
            assert_eq!(problems[0].variable, "SMTP_URL");
            assert!(!problems[0].message.contains("hunter2"), "{problems:?}");
        }
    }

    #[test]
    fn production_refuses_trusting_proxies_as_wide_as_the_internet() {
        for wide in [
            "0.0.0.0/0",
            "::/0",
            "10.0.0.0/8, 0.0.0.0/1",
            "2000::/3",
            "8000::/1",
        ] {
            assert_eq!(
                problems_of(&production(&[("TRUSTED_PROXIES", wide)])),
                vec!["TRUSTED_PROXIES"],
                "{wide}"
            );
        }
        let s = Settings::from_vars(&production(&[(
            "TRUSTED_PROXIES",
            "10.0.0.0/8, 127.0.0.1, 2a06:98c0::/29, fd00::/8, fe80::/10",
        )]))
        .unwrap();
        assert_eq!(s.trusted_proxies.len(), 5);
        let dir = tempfile::tempdir().unwrap();
        let dev = vars(&[
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("TRUSTED_PROXIES", "0.0.0.0/0"),
        ]);
        assert!(Settings::from_vars(&dev).is_ok());
    }

    #[test]
    fn read_only_mode_writes_no_keys() {
        let dir = tempfile::tempdir().unwrap();
        let v = vars(&[("DATA_DIR", dir.path().to_str().unwrap())]);
        Settings::from_vars_with(&v, KeyMode::ReadOnly).unwrap();
        assert!(!dir.path().join("secret_key").exists());
    }

    #[test]
    fn dotenv_comes_from_the_given_file_and_malformed_lines_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "RUST_LOG=debug\n# comment\nSECRET_KEY='unterminated\n",
        )
        .unwrap();
        let (vars, problems) = read_dotenv(&path);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].variable, ".env");
        assert!(problems[0].message.contains("line 3 "), "{problems:?}");
        assert!(
            !problems[0].message.contains("unterminated"),
            "no line content echoed"
        );
        assert_eq!(vars["RUST_LOG"], "debug", "the good lines still count");
        // Each bad line by its number, the good ones around them kept.
        std::fs::write(
            &path,
            "ENVIRONMENT=production\n# not a setting\nnot a setting\nRUST_LOG=debug\nnot a setting\n",
        )
        .unwrap();
        let (vars, problems) = read_dotenv(&path);
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "line 3 is malformed (expected NAME=value)",
                "line 5 is malformed (expected NAME=value)"
            ]
        );
        assert_eq!(vars["ENVIRONMENT"], "production");
        assert_eq!(vars["RUST_LOG"], "debug");
        // A whole line, not the start of an earlier one.
        std::fs::write(&path, "SMTP_URL=smtp://127.0.0.1:25\nSMTP_URL\n").unwrap();
        let (_, problems) = read_dotenv(&path);
        assert_eq!(
            problems[0].message,
            "line 2 is malformed (expected NAME=value)"
        );
        // An unclosed quote on the last line.
        std::fs::write(&path, "A=1\nB='open").unwrap();
        let (_, problems) = read_dotenv(&path);
        assert_eq!(
            problems[0].message,
            "line 2 is malformed (an unclosed quote takes in the lines after it)"
        );
        // An unclosed quote swallows what follows it, and says so.
        std::fs::write(&path, "A=1\nB='open\nC=3\n").unwrap();
        let (vars, problems) = read_dotenv(&path);
        assert_eq!(
            problems[0].message,
            "line 2 is malformed (an unclosed quote takes in the lines after it)"
        );
        assert_eq!(vars["A"], "1");
        std::fs::write(&path, "RUST_LOG=debug\n").unwrap();
        let (vars, problems) = read_dotenv(&path);
        assert!(problems.is_empty());
        assert_eq!(vars["RUST_LOG"], "debug");
        let (vars, problems) = read_dotenv(&dir.path().join("missing.env"));
        assert!(vars.is_empty() && problems.is_empty());
    }

    #[test]
    fn file_variants_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("sk");
        std::fs::write(&key_file, format!("{KEY_A}\n")).unwrap();
        let mut v = production(&[("SECRET_KEY_FILE", key_file.to_str().unwrap())]);
        v.remove("SECRET_KEY");
        let s = Settings::from_vars(&v).unwrap();
        assert_eq!(s.secret_key, SecretKey::parse(KEY_A).unwrap());

        let mut v = production(&[("SECRET_KEY_FILE", "/nonexistent/key")]);
        v.remove("SECRET_KEY");
        assert_eq!(problems_of(&v), vec!["SECRET_KEY_FILE"]);
    }

    #[test]
    fn secrets_are_hidden_in_debug_output() {
        let s = Settings::from_vars(&production(&[])).unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("Str0ng-Passw0rd-9"), "{debug}");
        assert!(debug.contains("<hidden>"));
    }

    #[test]
    fn sqlite_paths_are_extracted() {
        let url = DatabaseUrl("sqlite://data/nestegg.db?mode=rwc".into());
        assert_eq!(url.sqlite_path(), Some(PathBuf::from("data/nestegg.db")));
        assert_eq!(DatabaseUrl("sqlite::memory:".into()).sqlite_path(), None);
    }
}
