//! Wire types shared by the server and the browser. Never a database model.

use serde::{Deserialize, Serialize};

/// The colour theme a visitor chose. `System` follows the operating system's preference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    pub const COOKIE_NAME: &'static str = "theme";

    pub fn as_str(self) -> &'static str {
        match self {
            Theme::System => "system",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    pub fn parse(value: &str) -> Option<Theme> {
        match value {
            "system" => Some(Theme::System),
            "light" => Some(Theme::Light),
            "dark" => Some(Theme::Dark),
            _ => None,
        }
    }

    /// The theme the toggle switches to: system → dark → light → system.
    pub fn next(self) -> Theme {
        match self {
            Theme::System => Theme::Dark,
            Theme::Dark => Theme::Light,
            Theme::Light => Theme::System,
        }
    }

    /// What the toggle button says it will do.
    pub fn toggle_label(self) -> &'static str {
        match self.next() {
            Theme::System => "Use system theme",
            Theme::Dark => "Use dark theme",
            Theme::Light => "Use light theme",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theme_cycles_through_all_three_and_round_trips() {
        let mut seen = vec![];
        let mut theme = Theme::System;
        for _ in 0..3 {
            seen.push(theme);
            assert_eq!(Theme::parse(theme.as_str()), Some(theme));
            theme = theme.next();
        }
        assert_eq!(theme, Theme::System);
        assert_eq!(seen, vec![Theme::System, Theme::Dark, Theme::Light]);
        assert_eq!(Theme::parse("purple"), None);
    }
}

/// The signed-in person, as pages see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub display_name: String,
    pub email: String,
    pub email_verified: bool,
}

/// Live password strength for the meter next to a password field (0 = very weak … 4 = strong), with
/// the policy's verdict so the meter and the server never disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordStrengthView {
    pub score: u8,
    /// `None` when the password would be accepted.
    pub problem: Option<String>,
}
