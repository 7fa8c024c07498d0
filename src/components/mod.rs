pub mod auth_forms;
pub mod layout;
pub mod theme_toggle;
pub mod user_menu;
pub mod verification_banner;
