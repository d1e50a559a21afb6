//! API tokens: random 256-bit bearer secrets, each with a role, a name, an expiry and, for a
//! recorder, the one device it may write for. Only a SHA-256 of each secret is stored
//! (`<data>/tokens.json`, 0600), and a presented secret is compared with it in constant time.
//!
//! A token reads `tvk_<id>_<secret>`: the id (16 hex digits) names the token in the audit log,
//! in `token list` and `token revoke`; the secret (64 hex digits) is shown once, at creation.
//!
//! The file is written by `tracevault token` (an atomic rewrite under `tokens.lock`) while a
//! server may be running; the server re-reads it whenever it changed, so a revocation takes
//! effect at the next request.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracevault_core::Role;

pub const TOKENS_FILE: &str = "tokens.json";
const TOKENS_LOCK: &str = "tokens.lock";
const FORMAT_VERSION: u32 = 1;
const PREFIX: &str = "tvk_";

/// One token, as stored: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// For a recorder: the device whose sessions it may create and append to.
    pub device: Option<String>,
    /// For a subject: the person (user id) whose access history it reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub created_unix_s: u64,
    pub expires_unix_s: Option<u64>,
    pub revoked_unix_s: Option<u64>,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
}

impl TokenRecord {
    /// Whether the token is usable at `now` (seconds since the epoch).
    pub fn state(&self, now: u64) -> TokenState {
        if self.revoked_unix_s.is_some() {
            TokenState::Revoked
        } else if self.expires_unix_s.is_some_and(|e| now >= e) {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a tokens file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("no token {0:?} (give its id or its name; `tracevault token list` shows them)")]
    Unknown(String),
    #[error("the OS random source failed: {0}")]
    Random(String),
}

/// Why a request's token was not accepted (always 401, the reason said to the caller).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token: send `Authorization: Bearer tvk_...`")]
    Missing,
    #[error("the bearer token is malformed: expected tvk_<16 hex digits>_<64 hex digits>")]
    Malformed,
    #[error("the bearer token is not valid")]
    Invalid,
    #[error("the bearer token {0} has expired")]
    Expired(String),
    #[error("the bearer token {0} was revoked")]
    Revoked(String),
    #[error("the tokens file could not be read: {0}")]
    Store(String),
}

pub fn now_unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TokenError + '_ {
    move |source| TokenError::Io { path: path.to_owned(), source }
}

fn read_file(path: &Path) -> Result<TokenFile, TokenError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TokenFile { version: FORMAT_VERSION, tokens: Vec::new() });
        }
        Err(e) => return Err(io(path)(e)),
    };
    let file: TokenFile = serde_json::from_slice(&bytes)
        .map_err(|e| TokenError::Format { path: path.to_owned(), reason: e.to_string() })?;
    if file.version != FORMAT_VERSION {
        return Err(TokenError::Format {
            path: path.to_owned(),
            reason: format!("version {}, expected {FORMAT_VERSION}", file.version),
        });
    }
    Ok(file)
}

/// Rewrites the file atomically (a new file, synced, renamed over the old, the directory synced).
fn write_file(path: &Path, file: &TokenFile) -> Result<(), TokenError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(file).expect("tokens serialise");
    write_private(&tmp, &text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Writes `bytes` to `path` (created or truncated, mode 0600: never more, whatever the umask) and syncs it: the
/// first half of an atomic replacement of a private file.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    out.write_all(bytes)?;
    out.sync_all()
}

/// Runs `f` on the tokens file under its lock (one writer at a time), writing back what it returns.
fn update<R>(data: &Path, f: impl FnOnce(&mut TokenFile) -> Result<R, TokenError>) -> Result<R, TokenError> {
    use std::os::unix::fs::OpenOptionsExt;
    if !data.is_dir() {
        tracevault_core::storage::create_private_dir(data).map_err(io(data))?;
    }
    let lock_path = data.join(TOKENS_LOCK);
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    let path = data.join(TOKENS_FILE);
    let mut file = read_file(&path)?;
    let out = f(&mut file)?;
    write_file(&path, &file)?;
    Ok(out)
}

fn sha256_hex(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// What `token create` is asked for.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub role: Role,
    pub name: String,
    pub device: Option<String>,
    /// For a subject token: the person it belongs to.
    pub user: Option<String>,
    /// Seconds from now; `None`: never expires.
    pub expires_in_s: Option<u64>,
}

/// Mints a token: returns its text (shown once) and its record.
pub fn create(data: &Path, new: NewToken) -> Result<(String, TokenRecord), TokenError> {
    match (new.role, &new.device) {
        (Role::Recorder, None) => {
            return Err(TokenError::Invalid(
                "a recorder token writes for one device: give it with --device".into(),
            ));
        }
        (Role::Recorder, Some(d)) if d.is_empty() => {
            return Err(TokenError::Invalid("--device must not be empty".into()));
        }
        (Role::Recorder, Some(_)) => {}
        (Role::System, _) => return Err(TokenError::Invalid("no token has the system role".into())),
        (_, Some(_)) => {
            return Err(TokenError::Invalid("--device is for recorder tokens only".into()));
        }
        (_, None) => {}
    }
    match (new.role, &new.user) {
        (Role::Subject, None) => {
            return Err(TokenError::Invalid(
                "a subject token shows one person their own access history: give the person with --user"
                    .into(),
            ));
        }
        (Role::Subject, Some(u)) if u.trim().is_empty() => {
            return Err(TokenError::Invalid("--user must not be empty".into()));
        }
        (Role::Subject, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(TokenError::Invalid("--user is for subject tokens only".into())),
    }
    if new.name.trim().is_empty() {
        return Err(TokenError::Invalid(
            "a token's name must not be empty (it names the actor in the audit log)".into(),
        ));
    }
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)
        .and_then(|()| getrandom::fill(&mut secret))
        .map_err(|e| TokenError::Random(e.to_string()))?;
    let id = hex::encode(id);
    let secret_hex = hex::encode(secret);
    let now = now_unix_s();
    let record = TokenRecord {
        id: id.clone(),
        name: new.name,
        role: new.role,
        device: new.device,
        user: new.user,
        created_unix_s: now,
        expires_unix_s: new.expires_in_s.map(|s| now.saturating_add(s)),
        revoked_unix_s: None,
        sha256: sha256_hex(secret_hex.as_bytes()),
    };
    let stored = record.clone();
    update(data, move |file| {
        file.tokens.push(stored);
        Ok(())
    })?;
    Ok((format!("{PREFIX}{id}_{secret_hex}"), record))
}

/// Every token (active, expired and revoked), oldest first.
pub fn list(data: &Path) -> Result<Vec<TokenRecord>, TokenError> {
    Ok(read_file(&data.join(TOKENS_FILE))?.tokens)
}

/// Revokes the token with this id or name (a name shared by several tokens revokes them all).
pub fn revoke(data: &Path, id_or_name: &str) -> Result<Vec<TokenRecord>, TokenError> {
    update(data, |file| {
        let now = now_unix_s();
        let mut revoked = Vec::new();
        for t in &mut file.tokens {
            if (t.id == id_or_name || t.name == id_or_name) && t.revoked_unix_s.is_none() {
                t.revoked_unix_s = Some(now);
                revoked.push(t.clone());
            }
        }
        if revoked.is_empty() {
            return Err(TokenError::Unknown(id_or_name.to_owned()));
        }
        Ok(revoked)
    })
}

/// What identifies a version of the file: a rewrite changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        ino: m.ino(),
        len: m.len(),
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    })
}

/// Tokens by id.
type ById = Arc<HashMap<String, Arc<TokenRecord>>>;

/// The server's view of the tokens file, re-read when it changes.
pub struct Tokens {
    path: PathBuf,
    cache: RwLock<(Option<Stamp>, ById)>,
}

impl Tokens {
    pub fn new(data: &Path) -> Result<Tokens, TokenError> {
        let tokens =
            Tokens { path: data.join(TOKENS_FILE), cache: RwLock::new((None, Arc::new(HashMap::new()))) };
        tokens.current()?;
        Ok(tokens)
    }

    fn current(&self) -> Result<ById, TokenError> {
        let now = stamp(&self.path);
        {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if cache.0 == now && now.is_some() {
                return Ok(cache.1.clone());
            }
        }
        let file = read_file(&self.path)?;
        let map: HashMap<String, Arc<TokenRecord>> =
            file.tokens.into_iter().map(|t| (t.id.clone(), Arc::new(t))).collect();
        let map = Arc::new(map);
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = (now, map.clone());
        Ok(map)
    }

    /// The token a request's `Authorization` header value presents.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Arc<TokenRecord>, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let text = header.strip_prefix("Bearer ").ok_or(AuthError::Missing)?.trim();
        let rest = text.strip_prefix(PREFIX).ok_or(AuthError::Malformed)?;
        let (id, secret) = rest.split_once('_').ok_or(AuthError::Malformed)?;
        let hex_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_digits(id, 16) || !hex_digits(secret, 64) {
            return Err(AuthError::Malformed);
        }
        let tokens = self.current().map_err(|e| AuthError::Store(e.to_string()))?;
        let presented = sha256_hex(secret.to_ascii_lowercase().as_bytes());
        let Some(token) = tokens.get(&id.to_ascii_lowercase()) else {
            // The same work as for a known id, so timing does not tell ids apart.
            let _ = presented.as_bytes().ct_eq(sha256_hex(b"").as_bytes());
            return Err(AuthError::Invalid);
        };
        if !bool::from(presented.as_bytes().ct_eq(token.sha256.as_bytes())) {
            return Err(AuthError::Invalid);
        }
        match token.state(now_unix_s()) {
            TokenState::Active => Ok(token.clone()),
            TokenState::Expired => Err(AuthError::Expired(token.id.clone())),
            TokenState::Revoked => Err(AuthError::Revoked(token.id.clone())),
        }
    }
}

/// Parses a lifetime such as `30d`, `12h`, `90m`, `3600s` (a plain number is days).
pub fn parse_lifetime(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{text:?}: expected a lifetime such as 30d, 12h or 90m"))?;
    let scale = match unit {
        "" | "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        other => return Err(format!("{text:?}: unknown unit {other:?}, expected d, h, m or s")),
    };
    n.checked_mul(scale).filter(|&s| s > 0).ok_or_else(|| format!("{text:?}: expected a lifetime above zero"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_authenticates_until_revoked_and_only_its_hash_is_stored() {
        let dir = std::env::temp_dir().join(format!("tv-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let new = NewToken {
            role: Role::Auditor,
            name: "ada".into(),
            device: None,
            user: None,
            expires_in_s: None,
        };
        let (text, record) = create(&dir, new).unwrap();
        let stored = std::fs::read_to_string(dir.join(TOKENS_FILE)).unwrap();
        let secret = text.rsplit('_').next().unwrap();
        assert!(!stored.contains(secret), "the secret is stored");
        let tokens = Tokens::new(&dir).unwrap();
        let bearer = format!("Bearer {text}");
        assert_eq!(tokens.authenticate(Some(&bearer)).unwrap().id, record.id);
        let mut wrong = text.clone();
        wrong.pop();
        wrong.push(if text.ends_with('0') { '1' } else { '0' });
        assert_eq!(tokens.authenticate(Some(&format!("Bearer {wrong}"))), Err(AuthError::Invalid));
        assert_eq!(tokens.authenticate(Some("Bearer nonsense")), Err(AuthError::Malformed));
        assert_eq!(tokens.authenticate(None), Err(AuthError::Missing));
        revoke(&dir, "ada").unwrap();
        assert_eq!(tokens.authenticate(Some(&bearer)), Err(AuthError::Revoked(record.id.clone())));
        assert!(matches!(revoke(&dir, "nobody"), Err(TokenError::Unknown(_))));
        let recorder =
            NewToken { role: Role::Recorder, name: "r".into(), device: None, user: None, expires_in_s: None };
        assert!(create(&dir, recorder).unwrap_err().to_string().contains("--device"));
        let subject = |user: Option<&str>, role| NewToken {
            role,
            name: "s".into(),
            device: None,
            user: user.map(str::to_owned),
            expires_in_s: None,
        };
        assert!(create(&dir, subject(None, Role::Subject)).unwrap_err().to_string().contains("--user"));
        assert!(
            create(&dir, subject(Some("u-1"), Role::Auditor)).unwrap_err().to_string().contains("subject")
        );
        let (_, record) = create(&dir, subject(Some("u-1"), Role::Subject)).unwrap();
        assert_eq!(list(&dir).unwrap().last().unwrap().user.as_deref(), Some("u-1"));
        assert_eq!(record.role, Role::Subject);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lifetimes_take_units() {
        assert_eq!(parse_lifetime("30d"), Ok(30 * 86_400));
        assert_eq!(parse_lifetime("12h"), Ok(12 * 3_600));
        assert_eq!(parse_lifetime("7"), Ok(7 * 86_400));
        assert!(
            parse_lifetime("0d").is_err() && parse_lifetime("soon").is_err() && parse_lifetime("3y").is_err()
        );
    }
}
