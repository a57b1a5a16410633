//! Readable random ids: `anonymouz-<adjective>-<noun>-<8 digits>` for anonymous users and
//! `<adjective>-<noun>-<8 digits>` for server ids and child identities (protocol.md §8.3).

use rand::Rng;

const ADJECTIVES: [&str; 16] = [
    "bold", "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen",
    "lively", "merry", "nimble", "proud", "quiet", "swift",
];
const NOUNS: [&str; 16] = [
    "otter", "heron", "falcon", "badger", "lynx", "marten", "panda", "raven", "salmon", "tiger",
    "walrus", "zebra", "beaver", "condor", "gecko", "ibex",
];

/// `<adjective>-<noun>-<8 digits>`.
pub fn readable_id() -> String {
    let mut rng = rand::thread_rng();
    format!(
        "{}-{}-{:08}",
        ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())],
        NOUNS[rng.gen_range(0..NOUNS.len())],
        rng.gen_range(0..100_000_000u32)
    )
}

/// A random alphanumeric string of `n` characters (session ids, secrets).
pub fn random_string(n: usize) -> String {
    use rand::distributions::Alphanumeric;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_reference_shape() {
        let id = readable_id();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].len(), 8);
        assert_eq!(random_string(22).len(), 22);
    }
}
