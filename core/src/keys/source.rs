//! Where the master key and the signing key come from: key files in a key directory (mode 0600 in
//! a 0700 directory, written atomically, created on first use), or keys given in the environment.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{KeyError, KeyTextError, Secret, hex, parse_hex32, random_fill};

/// Where the master key and the signing key come from.
#[derive(Clone)]
pub struct KeySource {
    /// The key directory: `master.key`, `signing.key` (and `signing.pub`, the public half).
    pub dir: PathBuf,
    /// A master key given directly (`$TRACEVAULT_MASTER_KEY`), used instead of `master.key`.
    pub master: Option<Secret>,
    /// A signing key given directly (`$TRACEVAULT_SIGNING_KEY`), used instead of `signing.key`.
    pub signing: Option<Secret>,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = |s: &Option<Secret>| if s.is_some() { "given" } else { "key file" };
        f.debug_struct("KeySource")
            .field("dir", &self.dir)
            .field("master", &given(&self.master))
            .field("signing", &given(&self.signing))
            .finish()
    }
}

/// The master key file of a store: `master-<store id in hex>.key` in the key directory.
pub fn master_key_file(store: &[u8; STORE_ID_BYTES]) -> String {
    format!("master-{}.key", hex(store))
}
/// Bytes of a store id.
pub const STORE_ID_BYTES: usize = 16;
pub const SIGNING_KEY_FILE: &str = "signing.key";
pub const SIGNING_PUB_FILE: &str = "signing.pub";
pub const ENV_KEY_DIR: &str = "TRACEVAULT_KEY_DIR";
pub const ENV_MASTER_KEY: &str = "TRACEVAULT_MASTER_KEY";
pub const ENV_SIGNING_KEY: &str = "TRACEVAULT_SIGNING_KEY";

impl KeySource {
    /// Keys in files under `dir`, created on first use.
    pub fn dir(dir: impl Into<PathBuf>) -> KeySource {
        KeySource { dir: dir.into(), master: None, signing: None }
    }

    /// Both keys given directly; nothing is read from or written to a key directory (except by
    /// [`KeyStore::rotate`], which refuses: a given key cannot be replaced from here).
    pub fn given(master: Secret, signing: Secret) -> KeySource {
        KeySource { dir: PathBuf::new(), master: Some(master), signing: Some(signing) }
    }

    /// The default: `$TRACEVAULT_KEY_DIR`, else `$XDG_CONFIG_HOME/tracevault`, else
    /// `$HOME/.config/tracevault`; keys from `$TRACEVAULT_MASTER_KEY` / `$TRACEVAULT_SIGNING_KEY`
    /// when set.
    pub fn from_env() -> Result<KeySource, KeyError> {
        KeySource::from_vars(&|name| std::env::var_os(name))
    }

    /// As [`KeySource::from_env`], with the variables from `vars` (a front end's resolved
    /// settings, a test's) instead of the process's.
    pub fn from_vars(vars: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Result<KeySource, KeyError> {
        let var = |name: &str| vars(name).filter(|v| !v.is_empty());
        let dir = if let Some(d) = var(ENV_KEY_DIR) {
            PathBuf::from(d)
        } else if let Some(d) = var("XDG_CONFIG_HOME") {
            PathBuf::from(d).join("tracevault")
        } else if let Some(home) = var("HOME") {
            PathBuf::from(home).join(".config").join("tracevault")
        } else {
            return Err(KeyError::Config(format!(
                "no key directory: set ${ENV_KEY_DIR} (or $HOME), or give ${ENV_MASTER_KEY} and ${ENV_SIGNING_KEY}"
            )));
        };
        let secret = |name: &str| -> Result<Option<Secret>, KeyError> {
            match var(name) {
                Some(v) => {
                    let v = Zeroizing::new(v.to_string_lossy().into_owned());
                    Secret::from_hex(&v)
                        .map(Some)
                        .map_err(|reason| KeyError::Config(format!("${name}: {reason}")))
                }
                None => Ok(None),
            }
        };
        Ok(KeySource { dir, master: secret(ENV_MASTER_KEY)?, signing: secret(ENV_SIGNING_KEY)? })
    }

    /// A store's master keys: the current one, and the previous one while a rotation is under
    /// way. With `create`, a store without a key file gets a new key (never replacing a file that
    /// appeared meanwhile).
    pub(crate) fn master_keys(
        &self,
        store: &[u8; STORE_ID_BYTES],
        create: bool,
    ) -> Result<MasterKeys, KeyError> {
        if let Some(m) = &self.master {
            return Ok(MasterKeys { current: m.clone(), previous: None, file: None });
        }
        let path = self.dir.join(master_key_file(store));
        if let Some(lines) = read_key_file(&path)? {
            return MasterKeys::parse(&path, &lines);
        }
        if !create {
            return Err(KeyError::Config(format!(
                "no master key for this data directory: {} does not exist (is --key-dir / ${ENV_KEY_DIR} the \
                 directory its keys were created in, or was the key given in ${ENV_MASTER_KEY}?)",
                path.display()
            )));
        }
        let keys = MasterKeys { current: Secret::random()?, previous: None, file: Some(path.clone()) };
        if keys.write_new()? {
            Ok(keys)
        } else {
            // Another process created it first: use theirs.
            let lines = read_key_file(&path)?.ok_or_else(|| KeyError::format(&path, "vanished"))?;
            MasterKeys::parse(&path, &lines)
        }
    }

    /// The public half of the signing key, without creating anything: from the given key, else
    /// `signing.pub`, else `signing.key` in the key directory.
    pub fn public_key(&self) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
        if let Some(s) = &self.signing {
            return Ok(ed25519_dalek::SigningKey::from_bytes(s.expose()).verifying_key());
        }
        let pub_path = self.dir.join(SIGNING_PUB_FILE);
        match std::fs::read_to_string(&pub_path) {
            Ok(text) => {
                return parse_public_key(&text).map_err(|r| KeyError::format(&pub_path, r.0));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(KeyError::Io { path: pub_path, source }),
        }
        let path = self.dir.join(SIGNING_KEY_FILE);
        match read_key_file(&path)? {
            Some(lines) => {
                let line = lines.first().ok_or_else(|| KeyError::format(&path, "no key in the file"))?;
                let secret = Secret::from_hex(line).map_err(|r| KeyError::format(&path, r.0))?;
                Ok(ed25519_dalek::SigningKey::from_bytes(secret.expose()).verifying_key())
            }
            None => Err(KeyError::Config(format!(
                "no signing key in {}: give the public key (the signing.pub of the key directory the log was \
                 written with)",
                self.dir.display()
            ))),
        }
    }

    /// The signing key (created on first use when `create`).
    pub(crate) fn signing_key(&self, create: bool) -> Result<ed25519_dalek::SigningKey, KeyError> {
        if let Some(s) = &self.signing {
            return Ok(ed25519_dalek::SigningKey::from_bytes(s.expose()));
        }
        let path = self.dir.join(SIGNING_KEY_FILE);
        let secret = match read_key_file(&path)? {
            Some(lines) => {
                let line = lines.first().ok_or_else(|| KeyError::format(&path, "no key in the file"))?;
                Secret::from_hex(line).map_err(|r| KeyError::format(&path, r.0))?
            }
            None if !create => {
                return Err(KeyError::Config(format!(
                    "no signing key: {} does not exist (is --key-dir / ${ENV_KEY_DIR} the directory this log's keys \
                     were created in?)",
                    path.display()
                )));
            }
            None => {
                let secret = Secret::random()?;
                let text = Zeroizing::new(format!(
                    "# tracevault signing key (Ed25519). Signs the log's tree heads; keep it secret.\n{}\n",
                    secret.to_hex().as_str()
                ));
                if write_private(&self.dir, SIGNING_KEY_FILE, text.as_bytes(), true)? {
                    secret
                } else {
                    // Another process created it first: use theirs.
                    return self.signing_key(create);
                }
            }
        };
        let key = ed25519_dalek::SigningKey::from_bytes(secret.expose());
        // The public half, for auditors who verify without any secret.
        let public = format!("{}\n", hex(key.verifying_key().as_bytes()));
        let pub_path = self.dir.join(SIGNING_PUB_FILE);
        if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(public.as_str()) {
            write_private(&self.dir, SIGNING_PUB_FILE, public.as_bytes(), false)?;
        }
        Ok(key)
    }
}

/// The lines of a key file without comments; `None` if it does not exist.
fn read_key_file(path: &Path) -> Result<Option<Vec<Zeroizing<String>>>, KeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KeyError::Io { path: path.to_owned(), source }),
    };
    check_private(path)?;
    Ok(Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| Zeroizing::new(l.to_owned()))
            .collect(),
    ))
}

/// Refuses a key file others can read.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| KeyError::Io { path: path.to_owned(), source })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::format(
            path,
            format!("mode {:o}: a key file must be readable by its owner only (chmod 600)", mode & 0o777),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// Writes `name` in `dir` atomically (a temporary file of its own, fsync, then rename, or with
/// `create_new` a hard link that fails if the file exists; then a directory fsync), mode 0600,
/// the directory created mode 0700. Returns false when `create_new` found the file there already.
fn write_private(dir: &Path, name: &str, bytes: &[u8], create_new: bool) -> Result<bool, KeyError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Io { path, source }
    };
    if !dir.is_dir() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io(dir))?;
    }
    let path = dir.join(name);
    let mut unique = [0u8; 8];
    random_fill(&mut unique)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", hex(&unique)));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    let placed = if create_new {
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io(&path)(e)),
        }
    } else {
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        true
    };
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(placed)
}

/// The master key file's keys.
pub(crate) struct MasterKeys {
    pub current: Secret,
    /// The key being rotated away from, kept until every slot is re-wrapped.
    pub previous: Option<Secret>,
    /// The file they came from (`None` when given directly).
    pub(crate) file: Option<PathBuf>,
}

impl MasterKeys {
    fn parse(path: &Path, lines: &[Zeroizing<String>]) -> Result<MasterKeys, KeyError> {
        let mut current = None;
        let mut previous = None;
        for (i, line) in lines.iter().enumerate() {
            let (name, value) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            let slot = match name {
                "current" => &mut current,
                "previous" => &mut previous,
                // Never quote the line: it may be a bare key.
                _ => {
                    return Err(KeyError::format(
                        path,
                        format!(
                            "key line {} ({} characters): expected \"current <64 hex digits>\" or \"previous <64 hex \
                             digits>\"",
                            i + 1,
                            line.len()
                        ),
                    ));
                }
            };
            *slot =
                Some(Secret::from_hex(value).map_err(|r| KeyError::format(path, format!("{name}: {r}")))?);
        }
        let current = current.ok_or_else(|| KeyError::format(path, "no \"current\" key"))?;
        Ok(MasterKeys { current, previous, file: Some(path.to_owned()) })
    }

    fn text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::from(
            "# tracevault master key of one data directory: wraps every person's data key. Keep it secret\n\
             # and backed up: without it nothing in that data directory can be decrypted.\n",
        ));
        text.push_str(&format!("current {}\n", self.current.to_hex().as_str()));
        if let Some(p) = &self.previous {
            text.push_str(&format!("previous {}\n", p.to_hex().as_str()));
        }
        text
    }

    fn split_path(&self) -> Result<(&Path, &str), KeyError> {
        let Some(path) = &self.file else {
            return Err(KeyError::Config(format!(
                "the master key was given in ${ENV_MASTER_KEY}; rotation writes the new key to a key file: \
                 unset ${ENV_MASTER_KEY} and keep the key in the key directory instead"
            )));
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("master.key");
        Ok((dir, name))
    }

    /// Creates the key file; false if one appeared meanwhile.
    fn write_new(&self) -> Result<bool, KeyError> {
        let (dir, name) = self.split_path()?;
        write_private(dir, name, self.text().as_bytes(), true)
    }

    /// Replaces the key file (atomically).
    pub(crate) fn write(&self) -> Result<(), KeyError> {
        let (dir, name) = self.split_path()?;
        write_private(dir, name, self.text().as_bytes(), false).map(|_| ())
    }
}

/// Parses an Ed25519 public key given as 64 hex digits (the content of `signing.pub`).
pub fn parse_public_key(text: &str) -> Result<ed25519_dalek::VerifyingKey, KeyTextError> {
    let bytes = parse_hex32(text)?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| KeyTextError("not an Ed25519 public key".into()))
}
