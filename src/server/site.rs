//! Leptos site options. `Leptos.toml` is their one source: where the server listens and where the
//! compiled site lives. Cargo.toml's `[package.metadata.leptos]` holds only how cargo-leptos *builds*
//! (features, profiles, style and assets), and cargo-leptos' defaults for the output name, site root
//! and package directory are the values below — a unit test keeps the two in step. `LEPTOS_*`
//! environment variables override any key (e.g. `LEPTOS_SITE_ADDR=0.0.0.0:8080`).

use std::path::{Path, PathBuf};

use leptos::config::{LeptosOptions, errors::LeptosConfigError, get_config_from_str};

#[derive(Debug, thiserror::Error)]
pub enum SiteConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid {path}: {source}")]
    Invalid {
        path: String,
        source: LeptosConfigError,
    },
}

/// `Leptos.toml` next to the working directory, or at `LEPTOS_CONFIG` if set.
pub fn config_path() -> PathBuf {
    std::env::var_os("LEPTOS_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("Leptos.toml"))
}

pub fn load(path: &Path) -> Result<LeptosOptions, SiteConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| SiteConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    get_config_from_str(&text).map_err(|source| SiteConfigError::Invalid {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn leptos_toml_matches_what_cargo_leptos_builds() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Leptos.toml")).unwrap();
        let options = leptos::config::get_config_from_str(&text).unwrap();
        // cargo-leptos names the bundle after the package and writes it to target/site/pkg.
        assert_eq!(&*options.output_name, env!("CARGO_PKG_NAME"));
        assert_eq!(&*options.site_root, "target/site");
        assert_eq!(&*options.site_pkg_dir, "pkg");
        let cargo =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
        for key in ["output-name", "site-root", "site-pkg-dir", "site-addr"] {
            assert!(
                !cargo.contains(&format!("\n{key} =")),
                "{key} belongs in Leptos.toml only"
            );
        }
    }
}
