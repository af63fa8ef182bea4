//! "Did you mean": the known word closest to a typo.

/// The candidate nearest to `word` by edit distance, when it is near enough to be a typo of it
/// (at most a third of its length, and at least one edit, apart).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_words_are_suggested_and_far_ones_are_not() {
        let kinds = ["delete-veth", "veth-down", "delete-masquerade"];
        assert_eq!(did_you_mean("delete-vet", kinds), Some("delete-veth"));
        assert_eq!(
            did_you_mean("delete-masquerde", kinds),
            Some("delete-masquerade")
        );
        assert_eq!(did_you_mean("melt", kinds), None);
        assert_eq!(did_you_mean("pod-z", ["pod-a", "node1"]), Some("pod-a"));
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
