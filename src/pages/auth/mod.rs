//! Pages for getting into an account: register, confirm the address, sign in, reset a forgotten
//! password, and confirm a new email address.

pub mod accept_terms;
pub mod confirm_email_change;
pub mod forgot_password;
pub mod login;
pub mod login_two_factor;
pub mod not_me;
pub mod register;
pub mod reset_password;
pub mod restore_email;
pub mod verify_email;
