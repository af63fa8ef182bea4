//! Shrinking a failing round: delta debugging over its fault set (ddmin: try halves, then
//! complements, then finer splits, until no subset fails), then over each remaining fault's
//! parameters (an optional one left out, or a value earlier in the fixture's offer, one
//! parameter at a time) while the round still fails the same check.

use super::draw::Offer;
use crate::fault::Fault;

/// Whether a set of faults still fails the check being shrunk (a round run on a lab).
pub trait Trial {
    fn fails(&mut self, faults: Vec<Fault>) -> impl std::future::Future<Output = bool>;
}

/// The most trials spent on one fault's parameters.
const PARAM_TRIALS: usize = 12;

/// A 1-minimal subset of `faults` for which `fails` still holds (`fails(faults)` is assumed).
pub async fn fault_set(faults: Vec<Fault>, trial: &mut impl Trial) -> Vec<Fault> {
    let mut trial = Remembered {
        trial,
        seen: Vec::new(),
    };
    let mut set = faults;
    let mut n = 2;
    while set.len() >= 2 {
        let chunks = split(&set, n);
        let mut reduced = false;
        for c in &chunks {
            if trial.fails(c.clone()).await {
                (set, n, reduced) = (c.clone(), 2, true);
                break;
            }
        }
        if !reduced && n > 2 {
            for i in 0..chunks.len() {
                let rest: Vec<Fault> = complement(&chunks, i);
                if trial.fails(rest.clone()).await {
                    (set, n, reduced) = (rest, (n - 1).max(2), true);
                    break;
                }
            }
        }
        if !reduced {
            if n >= set.len() {
                break;
            }
            n = (n * 2).min(set.len());
        }
    }
    set
}

/// A trial that runs each subset once: ddmin asks again for sets it tried at a coarser split.
struct Remembered<'t, T: Trial> {
    trial: &'t mut T,
    seen: Vec<(Vec<Fault>, bool)>,
}

impl<T: Trial> Remembered<'_, T> {
    async fn fails(&mut self, faults: Vec<Fault>) -> bool {
        if let Some((_, r)) = self.seen.iter().find(|(s, _)| *s == faults) {
            return *r;
        }
        let r = self.trial.fails(faults.clone()).await;
        self.seen.push((faults, r));
        r
    }
}

/// Each fault's parameters made as simple as the failure allows.
pub async fn params(mut set: Vec<Fault>, offer: &Offer, trial: &mut impl Trial) -> Vec<Fault> {
    for i in 0..set.len() {
        let mut trials = 0;
        'simpler: loop {
            for alt in simpler(&set[i], offer) {
                if trials == PARAM_TRIALS {
                    break 'simpler;
                }
                trials += 1;
                let mut tried = set.clone();
                tried[i] = alt;
                if trial.fails(tried.clone()).await {
                    set = tried;
                    continue 'simpler;
                }
            }
            break;
        }
    }
    set
}

/// The variants of `f`'s kind that differ from it in one parameter and are simpler: fewer
/// parameters given, or the same number and earlier in the offer. Simplest first.
fn simpler(f: &Fault, offer: &Offer) -> Vec<Fault> {
    let Some((_, variants)) = offer.iter().find(|(k, _)| *k == f.name()) else {
        return Vec::new();
    };
    let rank = |g: &Fault| {
        let at = variants.iter().position(|x| x == g).unwrap_or(usize::MAX);
        (fields(g).len(), at)
    };
    let own = rank(f);
    let mut out: Vec<&Fault> = variants
        .iter()
        .filter(|g| differing(f, g) == 1 && rank(g) < own)
        .collect();
    out.sort_by_key(|g| rank(g));
    out.into_iter().cloned().collect()
}

fn fields(f: &Fault) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(f) {
        Ok(serde_json::Value::Object(m)) => m.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => serde_json::Map::new(),
    }
}

/// How many parameters two faults of a kind differ in (one given and not the other counts).
fn differing(a: &Fault, b: &Fault) -> usize {
    let (a, b) = (fields(a), fields(b));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).count()
}

fn split(set: &[Fault], n: usize) -> Vec<Vec<Fault>> {
    let size = set.len().div_ceil(n);
    set.chunks(size.max(1)).map(<[Fault]>::to_vec).collect()
}

fn complement(chunks: &[Vec<Fault>], skip: usize) -> Vec<Fault> {
    let others = chunks.iter().enumerate().filter(|(j, _)| *j != skip);
    others.flat_map(|(_, c)| c.iter().cloned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(spec: &str) -> Fault {
        Fault::parse_spec(spec).unwrap()
    }

    /// A trial decided by a function of the set, counting what it was asked.
    struct By<F: FnMut(&[Fault]) -> bool>(F, usize);

    impl<F: FnMut(&[Fault]) -> bool> Trial for By<F> {
        async fn fails(&mut self, faults: Vec<Fault>) -> bool {
            self.1 += 1;
            (self.0)(&faults)
        }
    }

    fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    }

    /// ddmin finds the two faults that fail only together among noise, asking few rounds.
    #[test]
    fn the_fault_set_shrinks_to_the_pair_that_fails_together() {
        let all = vec![
            f("veth-down:pod=pod-a"),
            f("delete-masquerade:node=node1"),
            f("bridge-down:node=node1"),
            f("delete-pod-route:pod=pod-b"),
            f("disable-ip-forward:node=node1"),
        ];
        let mut trial = By(
            |s: &[Fault]| {
                let has = |k: &str| s.iter().any(|x| x.name() == k);
                has("delete-masquerade") && has("delete-pod-route")
            },
            0,
        );
        let got = block_on(fault_set(all, &mut trial));
        let asked = trial.1;
        assert_eq!(
            got,
            [
                f("delete-masquerade:node=node1"),
                f("delete-pod-route:pod=pod-b")
            ]
        );
        assert!(asked <= 15, "each subset asked once: {asked} rounds");
    }

    /// Parameters shrink to the first variant of the offer that still fails, optional ones
    /// left out.
    #[test]
    fn parameters_shrink_to_the_simplest_that_still_fails() {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/single-node.toml");
        let offer = crate::fault::variants(&crate::topology::load_fixture(&p).unwrap());
        let start = vec![f("nft-reject:node=node1,from=pod-b,proto=tcp,port=80")];
        let mut trial = By(|s: &[Fault]| s[0].name() == "nft-reject", 0);
        let got = block_on(params(start, &offer, &mut trial));
        assert_eq!(got, [f("nft-reject:node=node1,from=node1")]);
        let start = vec![f("delete-pod-route:pod=pod-b")];
        let mut never = By(|_: &[Fault]| false, 0);
        assert_eq!(block_on(params(start.clone(), &offer, &mut never)), start);
    }
}
