//! What an authenticator app is shown at enrolment: the `otpauth://` URI (Google's Key Uri
//! Format, which every authenticator app reads) and the same URI as a QR code in SVG.
//!
//! # Security
//! The URI and the QR code carry the secret: they are shown once, to the enrolling user, and
//! never logged or stored. The QR code is drawn on the server (no third-party image service
//! sees the secret, no script is needed) as plain SVG shapes with presentation attributes only,
//! so the pages' Content-Security-Policy does not change.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

use super::totp::{DIGITS, PERIOD, TotpSecret};

/// `otpauth://totp/{issuer}:{account}?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`,
/// with the label parts and the issuer percent-encoded (RFC 3986: everything but the unreserved
/// characters), so a `:`, `&`, `?`, `#`, space or non-ASCII character cannot change the URI's
/// structure.
#[must_use]
pub fn otpauth_uri(secret: &TotpSecret, issuer: &str, account: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}\
         &algorithm=SHA1&digits={DIGITS}&period={PERIOD}",
        account = percent_encode(account),
        secret = secret.to_base32(),
    )
}

/// RFC 3986 §2.1 percent-encoding of every byte outside the unreserved set (§2.3).
#[must_use]
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// An SVG document showing `data` as a QR code (error correction M), or `None` when `data` is
/// too long for any QR code (it never is for an `otpauth://` URI of a valid account).
#[must_use]
pub fn qr_svg(data: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).ok()?;
    Some(
        code.render::<svg::Color<'_>>()
            .min_dimensions(200, 200)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_names_every_parameter_and_encodes_the_label() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        let uri = otpauth_uri(&secret, "Acme Corp", "ada+mfa@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Corp:ada%2Bmfa%40example.com\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Corp\
             &algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn hostile_label_characters_cannot_add_parameters() {
        let secret = TotpSecret::generate();
        let uri = otpauth_uri(&secret, "a:b&secret=AAAA#x", "é?digits=8 /");
        assert_eq!(uri.matches('?').count(), 1);
        assert_eq!(uri.matches("secret=").count(), 1);
        assert_eq!(uri.matches("digits=").count(), 1);
        assert!(!uri.contains('#') && !uri.contains(' '));
        assert!(
            uri.starts_with("otpauth://totp/a%3Ab%26secret%3DAAAA%23x:%C3%A9%3Fdigits%3D8%20%2F?")
        );
    }

    #[test]
    fn the_qr_code_is_an_svg_of_shapes_only() {
        let secret = TotpSecret::generate();
        let svg = qr_svg(&otpauth_uri(&secret, "authx", "ada@example.com")).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains("<path"));
        for banned in ["<script", "style=", "href", "<image", "<foreignObject"] {
            assert!(!svg.contains(banned), "{banned}");
        }
        assert!(qr_svg(&"x".repeat(10_000)).is_none());
    }
}
