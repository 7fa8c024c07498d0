//! The password policy the server enforces whenever a password is set or changed.
//!
//! It follows NIST SP 800-63B's requirements for verifying passwords ("memorized secrets") rather than the old
//! "one upper, one digit, one symbol, change it every 90 days" habits, because those rules make passwords
//! harder to remember without making them harder to guess:
//!
//! - **Length is what counts.** At least 12 characters by default (800-63B's floor is 8, or 15 in its 4th
//!   revision when the password is the only factor; raise `min_length` for that), at most 128 so that a
//!   long passphrase always fits but nobody can make the server hash megabytes.
//!   Length is counted in Unicode scalar values (`char`s), so `"🦊🐙🌵…"` or a CJK phrase counts what the
//!   person typed, not its UTF-8 bytes. Every Unicode character is allowed, spaces included, and a
//!   password is never silently truncated: an over-long one is rejected, not cut.
//! - **No composition rules.** Nobody is told to add a digit or a symbol; `Password1!` would satisfy such
//!   rules and is still one of the first guesses an attacker makes.
//! - **Block what attackers try first**, as 800-63B requires: passwords found in breach corpora and
//!   common-password lists (`common_passwords.txt`, embedded at compile time; see its header for source
//!   and licence), context-specific words (the product's name, the person's own email address), and
//!   anything else [`zxcvbn`] judges too guessable (a score below 3 of 4: about 10^8 guesses or fewer).
//! - **Say why.** Every [`PasswordRejection`] reads as a sentence a person can act on, and never repeats
//!   the password back.
//!
//! The cheap checks run first and in a fixed order (too short, too long, product name, email, common
//! list, zxcvbn), so an over-long input is turned away before any expensive work: zxcvbn never sees it.

use std::collections::HashSet;
use std::sync::LazyLock;

use zxcvbn::Score;
use zxcvbn::feedback::Feedback;

/// Fewest characters a password may have, by default.
pub const DEFAULT_MIN_LENGTH: usize = 12;
/// Most characters a password may have, by default.
pub const DEFAULT_MAX_LENGTH: usize = 128;

/// The product's name with separators removed; a password containing it is among the first guesses.
const PRODUCT_NAME: &str = "nestegg";
/// An email local part shorter than this is too likely to occur by chance to be rejected on sight.
const MIN_EMAIL_PART_CHARS: usize = 3;
/// A password with its trailing digits/punctuation stripped is compared against the common list only if
/// at least this much remains (so "Summer!!2024" is caught as "summer", but "ab!!!!!!!!!!" is not
/// reduced to "ab").
const MIN_STRIPPED_CHARS: usize = 6;
/// zxcvbn scores below this (0, 1, 2: crackable in under about 10^8 guesses) are rejected.
const MIN_SCORE: Score = Score::Three;

/// Common and breached passwords, lowercase, one per line; `#` lines are comments.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common_passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
});

/// Length limits for passwords; everything else in the policy is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Fewest Unicode scalar values (`char`s) allowed.
    pub min_length: usize,
    /// Most Unicode scalar values (`char`s) allowed.
    pub max_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: DEFAULT_MIN_LENGTH,
            max_length: DEFAULT_MAX_LENGTH,
        }
    }
}

/// Why a password was refused. Each message is shown to the person choosing the password as is, tells them
/// why, and never contains the password itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    #[error("Use at least {min} characters — a short phrase of a few unrelated words works well.")]
    TooShort { min: usize },
    #[error(
        "Use at most {max} characters. Long passphrases are welcome, but this one is longer than we can accept."
    )]
    TooLong { max: usize },
    #[error(
        "Leave \"Nest Egg\" out of your password — the name of the site is one of the first things an attacker tries."
    )]
    ContainsProductName,
    #[error(
        "Leave your email address out of your password — it isn't secret, so attackers try it early. Choose another."
    )]
    ContainsEmail,
    #[error(
        "This password appears in lists of leaked passwords, so attackers try it first. Choose another."
    )]
    Common,
    #[error("{}", too_guessable_message(.hint.as_deref()))]
    TooGuessable {
        /// zxcvbn's warning and suggestions, when it gave any.
        hint: Option<String>,
    },
}

fn too_guessable_message(hint: Option<&str>) -> String {
    match hint {
        Some(hint) => format!("Too easy to guess: {hint}"),
        None => "Too easy to guess. Add another word or two — uncommon, unrelated words work best."
            .to_owned(),
    }
}

impl PasswordPolicy {
    /// Accepts `password` for the account with this `email` and optional `display_name`, or says why not.
    ///
    /// Checks run in this order, cheapest first, and the first failure is returned: too short, too long,
    /// contains the product name, contains the email's local part, on the common/breached list, too
    /// guessable by zxcvbn. Over-long input never reaches the common list or zxcvbn.
    pub fn check(
        &self,
        password: &str,
        email: &str,
        display_name: Option<&str>,
    ) -> Result<(), PasswordRejection> {
        let length = password.chars().count();
        if length < self.min_length {
            return Err(PasswordRejection::TooShort {
                min: self.min_length,
            });
        }
        if length > self.max_length {
            return Err(PasswordRejection::TooLong {
                max: self.max_length,
            });
        }

        let lower = password.to_lowercase();
        if contains_product_name(&lower) {
            return Err(PasswordRejection::ContainsProductName);
        }
        if contains_email_local_part(&lower, email) {
            return Err(PasswordRejection::ContainsEmail);
        }
        if is_common(&lower) {
            return Err(PasswordRejection::Common);
        }

        let owned_inputs = user_inputs(email, display_name);
        let inputs: Vec<&str> = owned_inputs.iter().map(String::as_str).collect();
        let entropy = zxcvbn::zxcvbn(password, &inputs);
        if entropy.score() < MIN_SCORE {
            return Err(PasswordRejection::TooGuessable {
                hint: hint_from(entropy.feedback()),
            });
        }
        Ok(())
    }
}

/// zxcvbn's score, 0 (trivial) to 4 (very strong), for a live strength meter. Only the first
/// [`DEFAULT_MAX_LENGTH`] characters are looked at, so any input is cheap to score.
pub fn strength(password: &str, user_inputs: &[&str]) -> u8 {
    let capped = password
        .char_indices()
        .nth(DEFAULT_MAX_LENGTH)
        .and_then(|(end, _)| password.get(..end))
        .unwrap_or(password);
    u8::from(zxcvbn::zxcvbn(capped, user_inputs).score())
}

/// Whether the (lowercased) password spells the product name, ignoring whitespace, `-`, `_` and `.` between
/// its letters and the most obvious digit/symbol look-alikes: "Nest Egg", "nest-egg", "N3ST_3GG".
fn contains_product_name(lower_password: &str) -> bool {
    let squashed: String = lower_password
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(*c, '-' | '_' | '.'))
        .map(|c| match c {
            '3' => 'e',
            '5' | '$' => 's',
            '7' | '+' => 't',
            '9' => 'g',
            other => other,
        })
        .collect();
    squashed.contains(PRODUCT_NAME)
}

/// The part of an email address before its last `@` (the whole trimmed string when it has none).
fn local_part(email: &str) -> &str {
    let email = email.trim();
    email.rsplit_once('@').map_or(email, |(local, _)| local)
}

/// Whether the (lowercased) password contains the email's local part, or that part without a `+tag`,
/// when it is at least [`MIN_EMAIL_PART_CHARS`] long.
fn contains_email_local_part(lower_password: &str, email: &str) -> bool {
    let local = local_part(email).to_lowercase();
    let untagged = local
        .split_once('+')
        .map_or(local.as_str(), |(base, _)| base);
    [local.as_str(), untagged]
        .into_iter()
        .any(|part| part.chars().count() >= MIN_EMAIL_PART_CHARS && lower_password.contains(part))
}

/// Digits, ASCII punctuation and whitespace: what people tack onto a common word to pass composition rules.
fn is_filler(c: char) -> bool {
    c.is_ascii_digit() || c.is_ascii_punctuation() || c.is_whitespace()
}

/// Whether the (lowercased) password is on the common/breached list as a whole, or once its trailing
/// filler (digits/punctuation) is stripped, or its filler at both ends — provided at least
/// [`MIN_STRIPPED_CHARS`] remain. "Sunshine!!2024" is "sunshine" to an attacker's rule set.
fn is_common(lower_password: &str) -> bool {
    let list = &*COMMON_PASSWORDS;
    if list.contains(lower_password) {
        return true;
    }
    let trailing_stripped = lower_password.trim_end_matches(is_filler);
    let both_stripped = trailing_stripped.trim_start_matches(is_filler);
    [trailing_stripped, both_stripped]
        .into_iter()
        .any(|candidate| {
            candidate.chars().count() >= MIN_STRIPPED_CHARS && list.contains(candidate)
        })
}

/// What zxcvbn should treat as known to an attacker: the product name, the email address, its local part,
/// the display name, and the words in each.
fn user_inputs(email: &str, display_name: Option<&str>) -> Vec<String> {
    let email = email.trim();
    let name = display_name.map_or("", str::trim);
    let mut inputs = vec![PRODUCT_NAME.to_owned(), "nest egg".to_owned()];
    for text in [email, local_part(email), name] {
        if text.is_empty() {
            continue;
        }
        inputs.push(text.to_owned());
        inputs.extend(
            text.split(|c: char| !c.is_alphanumeric())
                .filter(|word| word.chars().count() >= MIN_EMAIL_PART_CHARS && *word != text)
                .map(str::to_owned),
        );
    }
    inputs
}

/// zxcvbn's warning followed by its suggestions, as one sentence-per-item string; `None` when it gave none.
fn hint_from(feedback: Option<&Feedback>) -> Option<String> {
    let feedback = feedback?;
    let parts: Vec<String> = feedback
        .warning()
        .map(|warning| warning.to_string())
        .into_iter()
        .chain(feedback.suggestions().iter().map(ToString::to_string))
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(" "))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const EMAIL: &str = "jane.doe@example.com";
    const NAME: Option<&str> = Some("Jane Doe");
    const STRONG: &str = "glacier Minnow 47 paperclip orbit";

    fn check(password: &str) -> Result<(), PasswordRejection> {
        PasswordPolicy::default().check(password, EMAIL, NAME)
    }

    /// A tiny deterministic generator (Knuth's MMIX LCG), so the property test needs no extra crate.
    struct Lcg(u64);

    impl Lcg {
        fn next_usize(&mut self) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as usize
        }

        fn string(&mut self, chars: usize) -> String {
            const POOL: &[char] = &[
                'a', 'Z', 'q', '7', '0', '#', '!', ' ', '-', '_', 'é', 'ß', 'İ', 'Ω', '我', '猫',
                '🦊', '🎲', '\u{0301}', '\u{200d}', '\t', '\0',
            ];
            (0..chars)
                .map(|_| POOL[self.next_usize() % POOL.len()])
                .collect()
        }
    }

    #[test]
    fn defaults_are_12_and_128() {
        let policy = PasswordPolicy::default();
        assert_eq!(policy.min_length, 12);
        assert_eq!(policy.max_length, 128);
    }

    #[test]
    fn strong_passphrase_is_accepted() {
        assert_eq!(check(STRONG), Ok(()));
        assert_eq!(PasswordPolicy::default().check(STRONG, "", None), Ok(()));
        assert!(strength(STRONG, &[EMAIL]) >= 3);
    }

    #[test]
    fn too_short_is_rejected() {
        assert_eq!(check("short"), Err(PasswordRejection::TooShort { min: 12 }));
        assert_eq!(
            check("elevenchars"),
            Err(PasswordRejection::TooShort { min: 12 })
        );
        assert_eq!(check(""), Err(PasswordRejection::TooShort { min: 12 }));
        let custom = PasswordPolicy {
            min_length: 20,
            max_length: 64,
        };
        assert_eq!(
            custom.check("nineteen characters", EMAIL, NAME),
            Err(PasswordRejection::TooShort { min: 20 })
        );
    }

    #[test]
    fn too_long_is_rejected_before_any_other_check() {
        let over = "Qz8#vL2!mW5p".repeat(11); // 132 chars
        assert_eq!(check(&over), Err(PasswordRejection::TooLong { max: 128 }));
        // Would fail every later check, but length comes first.
        let long_and_bad = format!("nestegg {EMAIL} password ").repeat(10);
        assert_eq!(
            check(&long_and_bad),
            Err(PasswordRejection::TooLong { max: 128 })
        );
        // Megabytes of input are turned away without reaching zxcvbn.
        let huge = "a".repeat(1_000_000);
        assert_eq!(check(&huge), Err(PasswordRejection::TooLong { max: 128 }));
        // Exactly at the limit is fine as far as length goes.
        let at_limit: String = STRONG.chars().cycle().take(128).collect();
        assert!(!matches!(
            check(&at_limit),
            Err(PasswordRejection::TooLong { .. })
        ));
    }

    #[test]
    fn length_is_counted_in_chars_not_bytes() {
        let emoji = "🦊🐙🌵🎻🍋🚲🧲🪁🦉🌋🧊🎲";
        assert_eq!(emoji.chars().count(), 12);
        assert!(emoji.len() > 40);
        assert_eq!(check(emoji), Ok(()));
        let cjk = "我的猫喜欢在窗边晒太阳呢";
        assert_eq!(cjk.chars().count(), 12);
        assert_eq!(check(cjk), Ok(()));
        // Eleven of them are too few, however many bytes they take.
        let eleven: String = cjk.chars().take(11).collect();
        assert_eq!(check(&eleven), Err(PasswordRejection::TooShort { min: 12 }));
        // 128 four-byte chars (512 bytes) are not too long; 129 are.
        let fox128 = "🦊".repeat(128);
        assert!(!matches!(
            check(&fox128),
            Err(PasswordRejection::TooLong { .. })
        ));
        assert_eq!(
            check(&"🦊".repeat(129)),
            Err(PasswordRejection::TooLong { max: 128 })
        );
    }

    #[test]
    fn product_name_is_rejected() {
        for password in [
            "my NestEgg savings 2024!",
            "nest-egg savings plan",
            "NEST_EGG is great fun",
            "orbit nest egg walrus",
            "n3st 3gg for retirement",
        ] {
            assert_eq!(
                check(password),
                Err(PasswordRejection::ContainsProductName),
                "{password}"
            );
        }
        assert_eq!(
            check("nestegg"),
            Err(PasswordRejection::TooShort { min: 12 })
        );
    }

    #[test]
    fn email_local_part_is_rejected() {
        assert_eq!(
            check("JANE.DOE-likes-turnips"),
            Err(PasswordRejection::ContainsEmail)
        );
        let policy = PasswordPolicy::default();
        // A +tag is ignored too.
        assert_eq!(
            policy.check("walrus jane orbit tulip", "Jane+Money@example.com", None),
            Err(PasswordRejection::ContainsEmail)
        );
        // A local part shorter than 3 chars is not worth rejecting on sight.
        assert_ne!(
            policy.check("jo maple river turnip 88", "jo@example.com", None),
            Err(PasswordRejection::ContainsEmail)
        );
        // Product name is checked before email.
        assert_eq!(
            check("jane.doe loves nestegg"),
            Err(PasswordRejection::ContainsProductName)
        );
    }

    #[test]
    fn common_passwords_are_rejected() {
        // Whole password on the list, any case.
        assert_eq!(check("qwertyuiop123"), Err(PasswordRejection::Common));
        assert_eq!(check("1Q2W3E4R5T6Y"), Err(PasswordRejection::Common));
        assert_eq!(check("QazWsxEdcRfv"), Err(PasswordRejection::Common));
        // A common word with digits/punctuation tacked on; zxcvbn alone would let this one through.
        assert_eq!(check("Sunshine!!2024"), Err(PasswordRejection::Common));
        assert_eq!(check("password1234567"), Err(PasswordRejection::Common));
        assert_eq!(check("2024!!iloveyou!!"), Err(PasswordRejection::Common));
    }

    #[test]
    fn guessable_passwords_are_rejected_with_a_hint() {
        let repeated = check("aaaaaaaaaaaaaaaa");
        let Err(PasswordRejection::TooGuessable { hint }) = &repeated else {
            panic!("expected TooGuessable, got {repeated:?}");
        };
        assert!(hint.is_some());
        assert!(
            repeated
                .unwrap_err()
                .to_string()
                .starts_with("Too easy to guess")
        );

        // The person's own name is known to an attacker.
        let named = PasswordPolicy::default().check(
            "BartholomewQuincy",
            "bq@example.com",
            Some("Bartholomew Quincy"),
        );
        assert!(
            matches!(named, Err(PasswordRejection::TooGuessable { .. })),
            "{named:?}"
        );
    }

    #[test]
    fn too_guessable_message_without_hint_still_explains() {
        let message = PasswordRejection::TooGuessable { hint: None }.to_string();
        assert!(message.starts_with("Too easy to guess."));
        let message = PasswordRejection::TooGuessable {
            hint: Some("Avoid sequences.".to_owned()),
        }
        .to_string();
        assert_eq!(message, "Too easy to guess: Avoid sequences.");
    }

    #[test]
    fn messages_explain_and_never_echo_the_password() {
        assert_eq!(
            PasswordRejection::TooShort { min: 12 }.to_string(),
            "Use at least 12 characters — a short phrase of a few unrelated words works well."
        );
        assert_eq!(
            PasswordRejection::Common.to_string(),
            "This password appears in lists of leaked passwords, so attackers try it first. Choose another."
        );
        for password in [
            "tiny pw",
            "qwertyuiop123",
            "Sunshine!!2024",
            "aaaaaaaaaaaaaaaa",
            "JANE.DOE-likes-turnips",
            "my NestEgg savings 2024!",
        ] {
            let message = check(password).unwrap_err().to_string();
            assert!(!message.is_empty());
            assert!(!message.contains(password), "{message}");
        }
    }

    #[test]
    fn common_list_is_large_lowercase_and_loaded_without_comments() {
        let list = &*COMMON_PASSWORDS;
        assert!(list.len() > 20_000, "only {} entries", list.len());
        assert!(list.contains("password1"));
        assert!(list.contains("sunshine"));
        for entry in list {
            assert!(!entry.starts_with('#'));
            assert_eq!(*entry, entry.to_lowercase());
            assert!(entry.chars().count() >= 6, "{entry}");
        }
    }

    #[test]
    fn strength_scores_and_caps_input() {
        assert_eq!(strength("", &[]), 0);
        assert_eq!(strength("password", &[]), 0);
        assert!(strength(STRONG, &[]) >= 3);
        assert!(strength(&"x7#Q".repeat(100_000), &[]) <= 4);
    }

    #[test]
    fn property_any_input_shorter_than_min_is_too_short() {
        let policy = PasswordPolicy::default();
        let mut rng = Lcg(0x005E_ED0F_5E57_E995);
        for _ in 0..200 {
            let chars = rng.next_usize() % policy.min_length;
            let password = rng.string(chars);
            assert_eq!(
                policy.check(&password, EMAIL, NAME),
                Err(PasswordRejection::TooShort { min: 12 }),
                "{password:?}"
            );
        }
    }

    #[test]
    fn property_any_input_longer_than_max_is_too_long() {
        let policy = PasswordPolicy::default();
        let mut rng = Lcg(42);
        for _ in 0..200 {
            let chars = policy.max_length + 1 + rng.next_usize() % 200;
            let password = rng.string(chars);
            assert_eq!(
                policy.check(&password, EMAIL, NAME),
                Err(PasswordRejection::TooLong { max: 128 }),
                "{password:?}"
            );
        }
    }
}
