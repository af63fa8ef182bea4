//! Seeded draws: which faults a round injects. A round's draw depends only on the seed and the
//! round's number, so a run is the same whatever the number of jobs and wherever it stops.

use crate::fault::Fault;

/// SplitMix64: small, fast and well mixed; enough to spread draws over a catalog.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The faults a fixture offers, by kind (see `fault::variants`).
pub type Offer = Vec<(&'static str, Vec<Fault>)>;

/// Round `round`'s faults: 1..=`max` of them, of distinct kinds (each kind equally likely,
/// whatever its number of variants), each a variant of its kind drawn at random.
pub fn draw(offer: &Offer, seed: u64, round: u64, max: usize) -> Vec<Fault> {
    let mut rng = Rng::new(seed ^ round.wrapping_mul(0xd1b5_4a32_d192_ed03));
    let count = 1 + rng.below(max.clamp(1, offer.len().max(1)));
    let mut kinds: Vec<usize> = (0..offer.len()).collect();
    let mut out = Vec::new();
    while out.len() < count && !kinds.is_empty() {
        let k = kinds.swap_remove(rng.below(kinds.len()));
        let variants = &offer[k].1;
        out.push(variants[rng.below(variants.len())].clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/k8s.toml");
        crate::fault::variants(&crate::topology::load_fixture(&p).unwrap())
    }

    #[test]
    fn a_round_is_the_same_for_the_same_seed_and_differs_across_seeds() {
        let o = offer();
        let a: Vec<_> = (0..20).map(|r| draw(&o, 7, r, 3)).collect();
        let b: Vec<_> = (0..20).map(|r| draw(&o, 7, r, 3)).collect();
        let c: Vec<_> = (0..20).map(|r| draw(&o, 8, r, 3)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        for faults in &a {
            assert!((1..=3).contains(&faults.len()), "{faults:?}");
            let mut kinds: Vec<&str> = faults.iter().map(|f| f.name()).collect();
            kinds.sort();
            kinds.dedup();
            assert_eq!(kinds.len(), faults.len(), "distinct kinds: {faults:?}");
        }
        assert!(a.iter().any(|f| f.len() > 1), "some rounds combine faults");
    }
}
