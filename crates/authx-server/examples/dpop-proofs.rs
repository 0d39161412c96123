//! Writes DPoP proofs (RFC 9449 §4.2) for the load scenarios in `bench/load.sh`, one per
//! line: each request of a load run needs a proof of its own, and wrk cannot sign them.
//!
//! ```sh
//! cargo run --release -p authx-server --example dpop-proofs -- \
//!     --key /tmp/dpop.key --htm POST --htu http://127.0.0.1:18080/oauth2/token --count 100000
//! # With an access token, each proof carries its `ath` (for a resource server):
//! ... --htm GET --htu http://127.0.0.1:18081/whoami --token "$TOKEN" --count 100000
//! ```
//!
//! `--key` is a P-256 key in PKCS#8, created on first use, so that the token and the proofs
//! presented with it share one key. Proofs carry the current time as `iat`: use them within
//! the server's proof window.

use std::io::Write as _;
use std::path::PathBuf;

use authx_core::oauth::keys::{KeyEncryptor, Signer, SigningAlg, generate};
use authx_core::secret::b64url;
use clap::Parser;
use serde_json::json;
use sha2::Digest as _;

/// What to write.
#[derive(Parser)]
struct Args {
    /// The P-256 key (PKCS#8 DER), created when missing.
    #[arg(long)]
    key: PathBuf,
    /// The request method each proof is for.
    #[arg(long, default_value = "POST")]
    htm: String,
    /// The request URL each proof is for.
    #[arg(long)]
    htu: String,
    /// An access token the proofs accompany (adds `ath`).
    #[arg(long)]
    token: Option<String>,
    /// How many proofs.
    #[arg(long, default_value_t = 1)]
    count: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pkcs8 = match std::fs::read(&args.key) {
        Ok(bytes) => bytes,
        Err(_) => {
            // The key-encryption key only wraps the key for this one call.
            let enc = KeyEncryptor::new(&[0u8; 32]).map_err(|e| anyhow::anyhow!("{e}"))?;
            let k = generate(SigningAlg::Es256, &enc, authx_core::Timestamp(0))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let pkcs8 = enc
                .open(&k.kid, &k.private_key_encrypted)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            std::fs::write(&args.key, &pkcs8)?;
            pkcs8
        }
    };
    let signer = Signer::from_pkcs8(SigningAlg::Es256, "dpop", &pkcs8)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut jwk = signer.public_jwk();
    if let Some(o) = jwk.as_object_mut() {
        for member in ["kid", "use", "alg"] {
            o.remove(member);
        }
    }
    let header = b64url(
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk})
            .to_string()
            .as_bytes(),
    );
    let ath = args
        .token
        .as_deref()
        .map(|t| b64url(&sha2::Sha256::digest(t.as_bytes())));
    let iat = authx_core::Clock::now(&authx_core::SystemClock).secs();
    let run = authx_core::secret::random_id();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..args.count {
        let mut claims = json!({
            "jti": format!("{run}-{i}"),
            "htm": args.htm,
            "htu": args.htu,
            "iat": iat,
        });
        if let Some(ath) = &ath {
            claims["ath"] = json!(ath);
        }
        let input = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
        let sig = signer
            .sign(input.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        writeln!(out, "{input}.{}", b64url(&sig))?;
    }
    out.flush()?;
    Ok(())
}
