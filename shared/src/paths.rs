//! File paths as correlation keys. Sonarr, Radarr, Shoko and Jellyfin may run in different
//! containers (or on Windows) and name one file differently: separators, doubled slashes and
//! mount points differ. Paths are normalized once, then mapped through `TRACKER_PATH_MAP`.

/// Backslashes become `/`, runs of separators collapse, a trailing `/` is dropped, `.`
/// components vanish. Case is kept: Linux paths are case-sensitive.
pub fn normalize(path: &str) -> String {
    let unified = path.trim().replace('\\', "/");
    let absolute = unified.starts_with('/');
    let parts: Vec<&str> = unified.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let joined = parts.join("/");
    if absolute { format!("/{joined}") } else { joined }
}

/// The last component of a path.
pub fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Prefix rewrites for paths that name the same folder in different containers, parsed from
/// `from=to;from2=to2`. Mapping rewrites the longest matching prefix on a component boundary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathMap {
    rules: Vec<(String, String)>,
}

impl PathMap {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for pair in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (from, to) = pair.split_once('=').ok_or_else(|| format!("expected from=to, got {pair:?}"))?;
            let (from, to) = (normalize(from), normalize(to));
            if from.is_empty() || to.is_empty() {
                return Err(format!("empty side in {pair:?}"));
            }
            rules.push((from, to));
        }
        rules.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        Ok(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every name this path may have: itself (normalized) and each mapping in either
    /// direction.
    pub fn aliases(&self, path: &str) -> Vec<String> {
        let path = normalize(path);
        let mut out = vec![path.clone()];
        for (from, to) in &self.rules {
            for (a, b) in [(from, to), (to, from)] {
                if let Some(rest) = strip_dir_prefix(&path, a) {
                    let mapped = format!("{b}{rest}");
                    if !out.contains(&mapped) {
                        out.push(mapped);
                    }
                }
            }
        }
        out
    }
}

fn strip_dir_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Episode numbers named in a file name: `S01E02`, `S01E02E03`, `S01E02-E03`, `1x02`.
/// The last match in the path wins, so a season folder does not confuse it.
pub fn episode_numbers(path: &str) -> Vec<crate::events::arr::EpisodeRef> {
    use crate::events::arr::EpisodeRef;
    let name = file_name(path).to_ascii_lowercase();
    let b = name.as_bytes();
    let digits = |mut i: usize| {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 4 {
            i += 1;
        }
        (i > start).then(|| (name[start..i].parse::<u32>().unwrap_or(0), i))
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if boundary
            && b[i] == b's'
            && let Some((season, mut j)) = digits(i + 1)
        {
            let mut eps = Vec::new();
            loop {
                let k = if b.get(j) == Some(&b'-') && b.get(j + 1) == Some(&b'e') { j + 1 } else { j };
                if b.get(k) != Some(&b'e') {
                    break;
                }
                let Some((ep, next)) = digits(k + 1) else { break };
                eps.push(EpisodeRef { season, episode: ep });
                j = next;
            }
            if !eps.is_empty() {
                // A range S01E02-E04 means E02, E03 and E04.
                if eps.len() == 2 && name[..j].contains("-e") && eps[1].episode > eps[0].episode + 1 {
                    let (first, last) = (eps[0].episode, eps[1].episode);
                    eps = (first..=last).map(|e| EpisodeRef { season, episode: e }).collect();
                }
                found = eps;
                i = j;
                continue;
            }
        }
        if boundary
            && b[i].is_ascii_digit()
            && let Some((season, j)) = digits(i)
            && b.get(j) == Some(&b'x')
            && let Some((ep, next)) = digits(j + 1)
        {
            found = vec![EpisodeRef { season, episode: ep }];
            i = next;
            continue;
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_separators_and_duplicates() {
        assert_eq!(normalize("/data//media/./anime/"), "/data/media/anime");
        assert_eq!(normalize(r"D:\Anime\DAN DA DAN\ep1.mkv"), "D:/Anime/DAN DA DAN/ep1.mkv");
        assert_eq!(normalize("relative/x"), "relative/x");
    }

    #[test]
    fn path_map_rewrites_on_component_boundaries_both_ways() {
        let map = PathMap::parse("/downloads=/data/torrents; /tv = /data/media/tv").unwrap();
        let aliases = map.aliases("/downloads/x.mkv");
        assert!(aliases.contains(&"/data/torrents/x.mkv".to_owned()), "{aliases:?}");
        assert!(map.aliases("/data/media/tv/a.mkv").contains(&"/tv/a.mkv".to_owned()));
        assert_eq!(map.aliases("/downloadsX/a"), vec!["/downloadsX/a".to_owned()]);
        assert!(PathMap::parse("nonsense").is_err());
    }

    #[test]
    fn episode_numbers_are_read_from_file_names() {
        use crate::events::arr::EpisodeRef;
        let ep = |season, episode| EpisodeRef { season, episode };
        let p = "Season 01/DAN DA DAN - S01E02 - That's a Space Alien [WEBDL-1080p].mkv";
        assert_eq!(episode_numbers(p), vec![ep(1, 2)]);
        assert_eq!(episode_numbers("Show.S02E01E02.1080p.mkv"), vec![ep(2, 1), ep(2, 2)]);
        assert_eq!(episode_numbers("Show - S02E01-E03.mkv"), vec![ep(2, 1), ep(2, 2), ep(2, 3)]);
        assert_eq!(episode_numbers("Show 3x07.mkv"), vec![ep(3, 7)]);
        assert!(episode_numbers("The Batman (2022) [Bluray-1080p].mkv").is_empty());
        assert!(episode_numbers("Series 1/Specials.mkv").is_empty());
    }

    #[test]
    fn file_name_handles_both_separators() {
        assert_eq!(file_name("/a/b/c.mkv"), "c.mkv");
        assert_eq!(file_name(r"C:\a\c.mkv"), "c.mkv");
    }
}
