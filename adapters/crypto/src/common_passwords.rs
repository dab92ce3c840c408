//! The 100,000 most common passwords a new password could be, shipped inside the binary.
//!
//! Source and licence: `scripts/common-passwords.py` (SecLists, CC BY-SA 3.0). Kept gzipped
//! (330 KB) and unpacked on first use, so a server that never registers anyone never pays the
//! 1.3 MB it takes unpacked.

use flate2::read::GzDecoder;
use latchkey_domain::ports::CommonPasswords;
use std::{io::Read, sync::OnceLock};

static PACKED: &[u8] = include_bytes!("../data/common-passwords.txt.gz");

#[derive(Default)]
pub struct SecListsCommonPasswords {
    unpacked: OnceLock<Unpacked>,
}

/// The sorted list as one string, and where each entry starts, for a binary search.
struct Unpacked {
    text: String,
    starts: Vec<u32>,
}

impl Unpacked {
    fn load() -> Self {
        let mut text = String::new();
        // The bytes are part of this binary and checked by a test; failing here is a build bug.
        GzDecoder::new(PACKED)
            .read_to_string(&mut text)
            .expect("the bundled common-password list unpacks");
        let mut starts = vec![0];
        starts.extend(
            text.match_indices('\n')
                .map(|(at, _)| at as u32 + 1)
                .filter(|&start| (start as usize) < text.len()),
        );
        Self { text, starts }
    }

    fn entry(&self, index: usize) -> &str {
        let start = self.starts[index] as usize;
        let end = self
            .starts
            .get(index + 1)
            .map_or(self.text.len(), |&next| next as usize);
        self.text[start..end].trim_end_matches('\n')
    }

    fn len(&self) -> usize {
        self.starts.len()
    }
}

impl SecListsCommonPasswords {
    fn unpacked(&self) -> &Unpacked {
        self.unpacked.get_or_init(Unpacked::load)
    }
}

impl CommonPasswords for SecListsCommonPasswords {
    fn contains(&self, lowercase: &str) -> bool {
        let list = self.unpacked();
        let (mut low, mut high) = (0, list.len());
        while low < high {
            let middle = (low + high) / 2;
            match list.entry(middle).cmp(lowercase) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_holds_100_000_sorted_distinct_lower_case_entries_of_8_or_more_characters() {
        let list = SecListsCommonPasswords::default();
        let unpacked = list.unpacked();
        assert_eq!(unpacked.len(), 100_000);
        for index in 1..unpacked.len() {
            assert!(
                unpacked.entry(index - 1) < unpacked.entry(index),
                "at {index}"
            );
        }
        for index in 0..unpacked.len() {
            let entry = unpacked.entry(index);
            assert!(entry.chars().count() >= 8, "{entry:?}");
            assert_eq!(entry, entry.to_lowercase());
        }
    }

    #[test]
    fn well_known_passwords_are_found_and_others_are_not() {
        let list = SecListsCommonPasswords::default();
        for common in [
            "password",
            "12345678",
            "qwertyuiop",
            "iloveyou",
            "password1",
            "sunshine",
        ] {
            assert!(list.contains(common), "{common}");
        }
        // The first and the last entry, so the search reaches both ends.
        let unpacked = list.unpacked();
        assert!(list.contains(unpacked.entry(0)));
        assert!(list.contains(unpacked.entry(unpacked.len() - 1)));
        for uncommon in [
            "",
            "correct horse battery staple",
            "Password",
            "zzzzzzzzzzzzzzzzzzzzzzz9",
        ] {
            assert!(!list.contains(uncommon), "{uncommon}");
        }
    }
}
