//! Human text for timeline entries: sizes, episode ranges, titles folded for matching.

use shared::events::arr::EpisodeRef;

/// `15789453312` → "15.8 GB" (decimal units, as the *arrs show them).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// "S02E01", "S01E01–E03", "S01 (12 episodes)", "S01–S02 (20 episodes)".
pub fn episode_label(episodes: &[EpisodeRef]) -> Option<String> {
    let mut eps = episodes.to_vec();
    eps.sort_unstable();
    eps.dedup();
    let (first, last) = (eps.first()?, eps.last()?);
    Some(if eps.len() == 1 {
        format!("S{:02}E{:02}", first.season, first.episode)
    } else if first.season == last.season {
        let contiguous = eps.windows(2).all(|w| w[1].episode == w[0].episode + 1);
        if contiguous && eps.len() <= 3 {
            format!("S{:02}E{:02}–E{:02}", first.season, first.episode, last.episode)
        } else {
            format!("S{:02} ({} episodes)", first.season, eps.len())
        }
    } else {
        format!("S{:02}–S{:02} ({} episodes)", first.season, last.season, eps.len())
    })
}

/// A title folded for matching names across services: lower case, letters and digits only.
pub fn fold_title(title: &str) -> String {
    title.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_the_arrs() {
        assert_eq!(human_bytes(15_789_453_312), "15.8 GB");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }

    #[test]
    fn episode_labels_summarize_ranges() {
        let ep = |season, episode| EpisodeRef { season, episode };
        assert_eq!(episode_label(&[ep(2, 1)]).unwrap(), "S02E01");
        assert_eq!(episode_label(&[ep(1, 1), ep(1, 2)]).unwrap(), "S01E01–E02");
        let pack: Vec<_> = (1..=12).map(|e| ep(1, e)).collect();
        assert_eq!(episode_label(&pack).unwrap(), "S01 (12 episodes)");
        assert_eq!(episode_label(&[ep(1, 1), ep(2, 1)]).unwrap(), "S01–S02 (2 episodes)");
        assert_eq!(episode_label(&[]), None);
    }

    #[test]
    fn titles_fold_for_matching() {
        assert_eq!(fold_title("DAN DA DAN"), "dandadan");
        assert_eq!(fold_title("Dan Da Dan!"), "dandadan");
    }
}
