//! Deterministic numbers from names: FNV-1a to turn a name into a seed, splitmix64 to draw
//! from it. Ids, trace ids and filler come from here, so a server's answers are the same
//! on every run without a random-number crate.

/// FNV-1a's starting value: the seed of the empty name.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a (64-bit) of `bytes`, continuing from `hash` ([`FNV_OFFSET`] for a fresh one).
pub fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// splitmix64: a tiny, good-enough generator for ids and filler (no rand crate needed).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Two draws as 32 hex digits: the shape of a Jellyfin id.
pub fn hex_id(state: &mut u64) -> String {
    format!("{:016x}{:016x}", splitmix64(state), splitmix64(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generators_match_their_reference_values() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), FNV_OFFSET);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(&mut state), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(
            hex_id(&mut fnv1a(FNV_OFFSET, b"demo")),
            "8c284818951d6be62ea2e266d9ce4db9"
        );
    }
}
