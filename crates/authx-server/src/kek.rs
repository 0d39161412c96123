//! The key-encryption key that seals what the store keeps secret (signing keys, the SAML
//! SP key, second factors): configured, or for a SQLite file a key in a file next to it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::config::Config;

/// The configured key-encryption key; with a SQLite file and none configured, the key in a file
/// next to the database (created with mode 0600 on first start).
pub(crate) fn key_encryption_key(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(k) = &config.oauth.key_encryption_key {
        return Ok(k.clone());
    }
    let Some(db) = sqlite_path(&config.database_url) else {
        if config.database_url.starts_with("sqlite:") {
            // An in-memory database: its keys die with it, so an ephemeral key is right.
            return Ok(authx_core::secret::random_bytes::<32>().to_vec());
        }
        bail!(
            "set oauth.key_encryption_key (or AUTHX_KEY_ENCRYPTION_KEY) to 32 bytes in base64: every instance \
             needs the same key to open the shared signing keys"
        );
    };
    let path = kek_path(&db);
    match std::fs::read_to_string(&path) {
        Ok(text) => crate::config::decode_kek(&text)
            .with_context(|| format!("{} does not hold a 32-byte base64 key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = authx_core::secret::random_bytes::<32>();
            write_private(&path, &base64_std(&key))
                .with_context(|| format!("cannot create {}", path.display()))?;
            tracing::info!(path = %path.display(), "created the key-encryption key file");
            Ok(key.to_vec())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
}

/// `authx.db` → `authx.db.key`.
fn kek_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".key");
    PathBuf::from(s)
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
