//! The arithmetic of second factors, free of storage: TOTP secrets (RFC 6238 through `totp-rs`), the
//! `otpauth://` URI and its QR code, and backup codes.
//!
//! Time is a parameter (Unix seconds), so step boundaries and clock skew are tested without waiting.

use rand::Rng as _;
use totp_rs::{Algorithm, Secret, TOTP};

pub const ISSUER: &str = "Nest Egg";
const DIGITS: usize = 6;
const STEP_SECS: u64 = 30;
/// Steps either side of now that are accepted: one covers a phone clock a little off and a code typed
/// just as it changed; more would only widen the window for guessing.
const SKEW_STEPS: i64 = 1;

/// Crockford's base32 alphabet (no i, l, o, u): 5 bits a character, nothing to misread.
const BACKUP_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// 10 characters × 5 bits = 50 bits per code.
const BACKUP_CODE_CHARS: usize = 10;
pub const BACKUP_CODE_COUNT: usize = 10;
// At least 50 bits per backup code.
const _: () = assert!(BACKUP_CODE_CHARS * 5 >= 50);

/// A TOTP shared secret. Not `Serialize`, and `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<hidden>)")
    }
}

impl TotpSecret {
    /// 160 random bits, the length RFC 4226 recommends.
    pub fn generate() -> Self {
        match Secret::generate_secret().to_bytes() {
            Ok(bytes) => TotpSecret(bytes),
            // `generate_secret` returns raw bytes, which always convert; fall back to our own RNG.
            Err(_) => TotpSecret(rand::rng().random::<[u8; 20]>().to_vec()),
        }
    }

    /// The form it is stored (sealed) in and typed in: unpadded base32.
    pub fn to_base32(&self) -> String {
        match Secret::Raw(self.0.clone()).to_encoded() {
            Secret::Encoded(text) => text.trim_end_matches('=').to_owned(),
            Secret::Raw(_) => String::new(),
        }
    }

    pub fn from_base32(text: &str) -> Option<Self> {
        let bytes = Secret::Encoded(text.to_owned()).to_bytes().ok()?;
        (bytes.len() >= 16).then_some(TotpSecret(bytes))
    }

    /// The base32 secret in groups of four, for typing into an app by hand.
    pub fn grouped(&self) -> String {
        let text = self.to_base32();
        text.as_bytes()
            .chunks(4)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn totp(&self, account: &str) -> Option<TOTP> {
        // Skew is handled by `matching_step`, which needs to know which step matched.
        TOTP::new(
            Algorithm::SHA1,
            DIGITS,
            0,
            STEP_SECS,
            self.0.clone(),
            Some(ISSUER.to_owned()),
            account.to_owned(),
        )
        .ok()
    }

    /// `otpauth://totp/Nest%20Egg:<email>?secret=…&issuer=Nest%20Egg&algorithm=SHA1&digits=6&period=30`.
    /// totp-rs leaves out parameters at their default values; they are spelled out for apps that do not
    /// assume the defaults.
    pub fn otpauth_uri(&self, account: &str) -> Option<String> {
        self.totp(account).map(|t| {
            format!(
                "{}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
                t.get_url()
            )
        })
    }

    /// The code an app shows at `unix_time` (for tests and the step arithmetic).
    pub fn code_at(&self, unix_time: u64) -> Option<String> {
        self.totp("").map(|t| t.generate(unix_time))
    }

    /// The time step `code` belongs to, if it is valid within ±1 step of `unix_time`. Callers refuse a
    /// step that is not newer than the last one accepted (replay).
    pub fn matching_step(&self, code: &str, unix_time: i64) -> Option<i64> {
        let totp = self.totp("")?;
        let now_step = unix_time.div_euclid(STEP_SECS as i64);
        (-SKEW_STEPS..=SKEW_STEPS)
            .map(|offset| now_step + offset)
            .filter(|step| *step >= 0)
            // `check` compares in constant time.
            .find(|step| totp.check(code, *step as u64 * STEP_SECS))
    }
}

/// Six digits, ignoring spaces and a dash someone may type in the middle.
pub fn parse_totp_code(input: &str) -> Option<String> {
    let digits: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    (digits.len() == DIGITS && digits.chars().all(|c| c.is_ascii_digit())).then_some(digits)
}

/// The QR code of `uri` as an inline SVG element (no XML prolog), black on white whatever the theme so
/// every camera can read it.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(uri, qrcode::EcLevel::M).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    let start = svg.find("<svg")?;
    Some(svg[start..].replacen(
        "<svg ",
        "<svg role=\"img\" aria-label=\"QR code for your authenticator app\" ",
        1,
    ))
}

/// Ten new backup codes, `xxxxx-xxxxx`.
pub fn generate_backup_codes() -> Vec<String> {
    let mut rng = rand::rng();
    (0..BACKUP_CODE_COUNT)
        .map(|_| {
            let chars: String = (0..BACKUP_CODE_CHARS)
                .map(|_| BACKUP_ALPHABET[rng.random_range(0..BACKUP_ALPHABET.len())] as char)
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

/// The canonical form of a typed backup code (what is hashed): lower case, without spaces or dashes,
/// with the letters people confuse with digits read as those digits (Crockford decoding).
pub fn normalize_backup_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            other => other,
        })
        .collect();
    (code.len() == BACKUP_CODE_CHARS && code.bytes().all(|b| BACKUP_ALPHABET.contains(&b)))
        .then_some(code)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA1 secret, "12345678901234567890".
    fn rfc_secret() -> TotpSecret {
        TotpSecret(b"12345678901234567890".to_vec())
    }

    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        // The RFC lists 8-digit codes; 6 digits are their last six.
        let secret = rfc_secret();
        assert_eq!(secret.code_at(59).unwrap(), "287082");
        assert_eq!(secret.code_at(1_111_111_109).unwrap(), "081804");
        assert_eq!(secret.code_at(1_234_567_890).unwrap(), "005924");
    }

    #[test]
    fn one_step_of_skew_is_accepted_either_side_and_two_are_not() {
        let secret = TotpSecret::generate();
        let now: i64 = 1_790_000_000;
        let step = now / 30;
        let code_at_step = |s: i64| secret.code_at((s * 30) as u64).unwrap();
        assert_eq!(secret.matching_step(&code_at_step(step), now), Some(step));
        assert_eq!(
            secret.matching_step(&code_at_step(step - 1), now),
            Some(step - 1)
        );
        assert_eq!(
            secret.matching_step(&code_at_step(step + 1), now),
            Some(step + 1)
        );
        for far in [step - 2, step + 2] {
            let code = code_at_step(far);
            // A code for ±2 steps may collide with one inside the window by chance (1 in 10⁶).
            if ![step - 1, step, step + 1]
                .iter()
                .any(|s| code_at_step(*s) == code)
            {
                assert_eq!(secret.matching_step(&code, now), None, "step {far}");
            }
        }
    }

    #[test]
    fn step_boundaries_are_exact() {
        let secret = TotpSecret::generate();
        // The last second of a step and the first of the next belong to different steps.
        let boundary: i64 = 1_790_000_010; // divisible by 30
        assert_eq!(boundary % 30, 0);
        let before = secret.code_at((boundary - 1) as u64).unwrap();
        let after = secret.code_at(boundary as u64).unwrap();
        assert_eq!(
            secret.matching_step(&before, boundary - 1),
            Some(boundary / 30 - 1)
        );
        assert_eq!(secret.matching_step(&after, boundary), Some(boundary / 30));
        // Just after the boundary the previous code is still inside the ±1 window …
        assert_eq!(
            secret.matching_step(&before, boundary),
            Some(boundary / 30 - 1)
        );
        // … and 60 s later it is not.
        if secret.code_at((boundary + 60) as u64).unwrap() != before
            && secret.code_at((boundary + 30) as u64).unwrap() != before
            && after != before
        {
            assert_eq!(secret.matching_step(&before, boundary + 60), None);
        }
    }

    #[test]
    fn secrets_are_160_bits_and_round_trip_through_base32() {
        let secret = TotpSecret::generate();
        assert_eq!(secret.0.len(), 20);
        let text = secret.to_base32();
        assert_eq!(text.len(), 32);
        assert_eq!(TotpSecret::from_base32(&text), Some(secret.clone()));
        assert_eq!(secret.grouped().split(' ').count(), 8);
        assert_ne!(TotpSecret::generate(), secret);
        assert_eq!(format!("{secret:?}"), "TotpSecret(<hidden>)");
        assert_eq!(TotpSecret::from_base32("not base32!"), None);
    }

    #[test]
    fn the_uri_names_the_issuer_and_account_and_the_qr_code_encodes_it() {
        let secret = TotpSecret::generate();
        let uri = secret.otpauth_uri("ana@example.org").unwrap();
        assert_eq!(
            uri,
            format!(
                "otpauth://totp/Nest%20Egg:ana%40example.org?secret={}&issuer=Nest%20Egg\
                 &algorithm=SHA1&digits=6&period=30",
                secret.to_base32()
            )
        );
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<svg role=\"img\""), "{svg:.60}");
        assert!(svg.ends_with("</svg>"));
        // The rendering is deterministic: it is the QR code of exactly this URI.
        assert_eq!(Some(svg.clone()), qr_svg(&uri));
        assert_ne!(Some(svg), qr_svg(&uri.replace("Egg", "Eggs")));
    }

    #[test]
    fn totp_codes_are_six_digits_with_spaces_tolerated() {
        assert_eq!(parse_totp_code(" 123 456 ").as_deref(), Some("123456"));
        assert_eq!(parse_totp_code("123-456").as_deref(), Some("123456"));
        assert_eq!(parse_totp_code("12345"), None);
        assert_eq!(parse_totp_code("1234567"), None);
        assert_eq!(parse_totp_code("12345a"), None);
    }

    #[test]
    fn backup_codes_are_ten_distinct_readable_codes_of_fifty_bits() {
        let codes = generate_backup_codes();
        assert_eq!(codes.len(), 10);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 11, "{code}");
            assert_eq!(&code[5..6], "-");
            let normalized = normalize_backup_code(code).unwrap();
            assert_eq!(normalized.len(), 10);
            assert!(!normalized.contains(['i', 'l', 'o', 'u']));
        }
        // 32 symbols = 5 bits each (and `BACKUP_CODE_CHARS * 5 >= 50` is checked at compile time).
        assert_eq!(BACKUP_ALPHABET.len(), 32);
    }

    #[test]
    fn typed_backup_codes_are_normalized_forgivingly() {
        assert_eq!(
            normalize_backup_code(" AB1CD-EFGH0 ").as_deref(),
            Some("ab1cdefgh0")
        );
        assert_eq!(
            normalize_backup_code("abIcd efghO").as_deref(),
            Some("ab1cdefgh0")
        );
        assert_eq!(normalize_backup_code("abcd-efgh"), None, "too short");
        assert_eq!(normalize_backup_code("abcde-fghuu"), None, "u is not used");
    }
}
