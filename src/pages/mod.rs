pub mod auth;
pub mod home;
pub mod household;
pub mod household_join;
pub mod legal;
pub mod not_found;
pub mod security;
pub mod settings;
