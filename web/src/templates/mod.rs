pub mod account;
pub mod forgot_password;
pub mod home;
pub mod login;
pub mod register;
pub mod reset_password;
pub mod users;
pub mod verify_email;
