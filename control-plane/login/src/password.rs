//! Password hashing for local accounts: argon2id with the crate's default cost, a random
//! 16-byte salt per hash, stored as a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`),
//! so that the parameters travel with the hash and can be raised later without a
//! migration.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in bytes (bounds the hashing work one request can ask for).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password is refused at sign-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    /// Empty or only whitespace.
    #[error("the password must not be empty")]
    Empty,
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    /// More than [`MAX_PASSWORD_BYTES`] bytes.
    #[error("the password must have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// Only letters or only digits: too easy to guess.
    #[error("the password must mix letters with digits or symbols")]
    OneClass,
}

/// Checks the sign-up policy: not empty, [`MIN_PASSWORD_CHARS`]..=[`MAX_PASSWORD_BYTES`],
/// and not made only of letters or only of digits.
pub fn check_strength(password: &str) -> Result<(), WeakPassword> {
    if password.trim().is_empty() {
        return Err(WeakPassword::Empty);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(WeakPassword::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    let letters = password.chars().all(char::is_alphabetic);
    let digits = password.chars().all(|c| c.is_ascii_digit());
    if letters || digits {
        return Err(WeakPassword::OneClass);
    }
    Ok(())
}

/// The PHC string of `password` with a fresh random salt. Two hashes of one password
/// differ.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

/// True if `password` matches the PHC string `phc`; false for a wrong password and for a
/// string that is not a valid PHC hash.
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    password.len() <= MAX_PASSWORD_BYTES
        && Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
}

/// A hash of a random password, verified against when the e-mail is unknown so that a
/// failed log-in costs the same time whether or not the account exists.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash(&format!("{:032x}", rand::random::<u128>())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_phc_strings_that_verify() {
        let a = hash("correct horse 1");
        let b = hash("correct horse 1");
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "a random salt per hash");
        assert!(verify("correct horse 1", &a));
        assert!(verify("correct horse 1", &b));
        assert!(!verify("correct horse 2", &a));
        assert!(!verify("", &a));
        assert!(!verify("correct horse 1", "not a phc string"));
        assert!(!verify("x", dummy_hash()));
    }

    #[test]
    fn the_policy_refuses_weak_passwords() {
        assert_eq!(check_strength(""), Err(WeakPassword::Empty));
        assert_eq!(check_strength("   \t"), Err(WeakPassword::Empty));
        assert_eq!(check_strength("ab1"), Err(WeakPassword::TooShort));
        assert_eq!(check_strength("abcdefghij"), Err(WeakPassword::OneClass));
        assert_eq!(check_strength("1234567890"), Err(WeakPassword::OneClass));
        assert_eq!(
            check_strength(&"a1".repeat(600)),
            Err(WeakPassword::TooLong)
        );
        assert_eq!(check_strength("hunter2!x"), Ok(()));
        assert_eq!(check_strength("pässwört9"), Ok(()));
    }
}
