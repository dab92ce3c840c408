use chrono::{DateTime, SubsecRound, Utc};
use latchkey_domain::ports::{Clock, RandomSource};
use rand::{rngs::OsRng, RngCore};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        // Millisecond precision is what stores keep (BSON dates), so every adapter sees the same
        // instants and a stored timestamp compares equal to the one that was written.
        Utc::now().trunc_subsecs(3)
    }
}

/// The operating system's CSPRNG.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn secret_bytes(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        bytes
    }

    fn uuid(&self) -> Uuid {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_values_differ_and_uuids_are_version_4() {
        let random = OsRandom;
        assert_ne!(random.secret_bytes(), random.secret_bytes());
        let id = random.uuid();
        assert_eq!(id.get_version_num(), 4);
        assert_ne!(id, random.uuid());
    }
}
