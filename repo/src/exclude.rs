//! `--exclude` patterns, with restic's matching rules.
//!
//! A pattern is matched against a path's components. A pattern that starts
//! with `/` is anchored at the root; any other pattern may match starting at
//! any component (so `*.log` excludes every `.log` file, and `cache/tmp`
//! excludes every `tmp` inside a `cache`). `**` matches any number of
//! components; `*`, `?` and `[...]` work within one component. An excluded
//! directory is not descended into.

/// A compiled set of exclude patterns.
#[derive(Clone, Debug, Default)]
pub struct Excludes {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug)]
struct Pattern {
    anchored: bool,
    parts: Vec<Vec<u8>>,
}

impl Excludes {
    /// Compiles patterns; empty patterns are ignored.
    pub fn new(patterns: &[String]) -> Excludes {
        let patterns = patterns
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| Pattern {
                anchored: p.starts_with('/'),
                parts: p
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .map(|c| c.as_bytes().to_vec())
                    .collect(),
            })
            .collect();
        Excludes { patterns }
    }

    /// True when the absolute path (as raw components) is excluded.
    pub fn is_excluded(&self, components: &[&[u8]]) -> bool {
        self.patterns.iter().any(|p| {
            if p.anchored {
                match_parts(&p.parts, components)
            } else {
                (0..components.len()).any(|start| match_parts(&p.parts, &components[start..]))
            }
        })
    }
}

/// Matches pattern components against exactly all of `path`.
fn match_parts(pattern: &[Vec<u8>], path: &[&[u8]]) -> bool {
    match pattern.first() {
        None => path.is_empty(),
        Some(p) if p.as_slice() == b"**" => {
            (0..=path.len()).any(|skip| match_parts(&pattern[1..], &path[skip..]))
        }
        Some(p) => match path.first() {
            Some(c) => glob(p, c) && match_parts(&pattern[1..], &path[1..]),
            None => false,
        },
    }
}

/// Shell-style matching of one component: `*`, `?`, `[...]`, `\` escapes.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(&c) = s.first() else { return false };
            let mut i = 1;
            let negate = matches!(p.get(1), Some(b'!') | Some(b'^'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < p.len() && (first || p[i] != b']') {
                first = false;
                let lo = p[i];
                if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&h| h != b']') {
                    matched |= lo <= c && c <= p[i + 2];
                    i += 3;
                } else {
                    matched |= lo == c;
                    i += 1;
                }
            }
            if i >= p.len() {
                return false; // unterminated class matches nothing, as Go's filepath.Match errs
            }
            matched != negate && glob(&p[i + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&b) => s.first() == Some(&b) && glob(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(p: &[&str], path: &str) -> bool {
        let e = Excludes::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let comps: Vec<&[u8]> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::as_bytes)
            .collect();
        e.is_excluded(&comps)
    }

    #[test]
    fn restic_like_matching() {
        assert!(ex(&["*.log"], "/data/app/x.log"));
        assert!(!ex(&["*.log"], "/data/app/x.log.gz"));
        assert!(ex(&["/data/cache"], "/data/cache"));
        assert!(!ex(&["/cache"], "/data/cache"));
        assert!(ex(&["cache/tmp"], "/data/cache/tmp"));
        assert!(ex(&["/data/**/tmp"], "/data/a/b/tmp"));
        assert!(ex(&["file[0-9]"], "/x/file7"));
        assert!(!ex(&["file[!0-9]"], "/x/file7"));
        assert!(ex(&["?.txt"], "/a.txt"));
    }
}
