//! [`compare_versions`]: which of two app versions is newer.
//!
//! ESP-IDF's app descriptor holds a free-form version string of up to 31
//! bytes (`PROJECT_VER`, or `git describe` by default). otter compares them
//! the way semantic versioning does wherever they look like one, and still
//! gives a total order when they do not:
//!
//! 1. A **semver-ish** version is an optional `v`/`V`, then one or more
//!    dot-separated runs of digits (any number of components, any length),
//!    then optionally `-` and a prerelease of dot-separated identifiers of
//!    `[0-9A-Za-z-]`, then optionally `+` and build metadata.
//! 2. Two semver-ish versions compare by their numbers, component by
//!    component, with missing components counting as 0 (`1.2` = `1.2.0`);
//!    then a version with a prerelease is older than the same without one;
//!    then prereleases compare as in SemVer 2.0.0 §11 (numeric identifiers
//!    numerically and below alphanumeric ones, which compare in ASCII order;
//!    a shorter list is older when all before it are equal). The `v` and the
//!    build metadata are ignored.
//! 3. A semver-ish version is newer than any free-form one (`1.0` > `dev`).
//! 4. Two free-form versions compare by "natural" order: split into runs of
//!    digits and runs of other characters, runs of digits compare as numbers
//!    and sort before other runs, others compare byte-wise; a string that is
//!    a prefix of the other is older. Ties (`007` vs `7`) are broken by the
//!    bytes, so only equal strings are equal.
//!
//! `git describe` output such as `v1.2.3-4-gabcdef` is semver-ish with a
//! prerelease, so it is *older* than `v1.2.3`: release from tags.

#[allow(unused_imports)]
use crate::prelude::*;
use core::cmp::Ordering;

/// Compares two app versions (module docs). A total order: `Equal` only for
/// versions that mean the same (`v1.2` and `1.2.0+build7`, or equal strings).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (SemverIsh::parse(a), SemverIsh::parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => natural(a, b).then_with(|| a.as_bytes().cmp(b.as_bytes())),
    }
}

/// A parsed semver-ish version: numbers and prerelease identifiers.
#[derive(Debug)]
struct SemverIsh<'a> {
    core: Vec<&'a str>,
    pre: Vec<&'a str>,
}

impl<'a> SemverIsh<'a> {
    fn parse(s: &'a str) -> Option<SemverIsh<'a>> {
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let (s, build) = match s.split_once('+') {
            Some((v, b)) => (v, Some(b)),
            None => (s, None),
        };
        if let Some(b) = build {
            if !b.split('.').all(is_identifier) {
                return None;
            }
        }
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let core: Vec<&str> = core.split('.').collect();
        if !core
            .iter()
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        let pre: Vec<&str> = match pre {
            Some(p) => {
                let ids: Vec<&str> = p.split('.').collect();
                if !ids.iter().all(|i| is_identifier(i)) {
                    return None;
                }
                ids
            }
            None => Vec::new(),
        };
        Some(SemverIsh { core, pre })
    }
}

impl Ord for SemverIsh<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.core.len().max(other.core.len());
        for i in 0..n {
            let x = self.core.get(i).copied().unwrap_or("0");
            let y = other.core.get(i).copied().unwrap_or("0");
            match cmp_digits(x, y) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                for (x, y) in self.pre.iter().zip(&other.pre) {
                    let o = match (is_numeric(x), is_numeric(y)) {
                        (true, true) => cmp_digits(x, y),
                        (true, false) => Ordering::Less,
                        (false, true) => Ordering::Greater,
                        (false, false) => x.as_bytes().cmp(y.as_bytes()),
                    };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                self.pre.len().cmp(&other.pre.len())
            }
        }
    }
}

impl PartialOrd for SemverIsh<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for SemverIsh<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SemverIsh<'_> {}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Compares two runs of ASCII digits as numbers of any length.
fn cmp_digits(x: &str, y: &str) -> Ordering {
    let x = x.trim_start_matches('0');
    let y = y.trim_start_matches('0');
    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
}

/// Natural order of free-form strings (rule 4, before the tie-break).
fn natural(a: &str, b: &str) -> Ordering {
    let mut xs = Runs(a.as_bytes());
    let mut ys = Runs(b.as_bytes());
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (x[0].is_ascii_digit(), y[0].is_ascii_digit()) {
                    (true, true) => {
                        // ASCII digits are valid UTF-8.
                        cmp_digits(
                            core::str::from_utf8(x).unwrap_or(""),
                            core::str::from_utf8(y).unwrap_or(""),
                        )
                    }
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// Maximal runs of ASCII digits and of other bytes; never empty.
struct Runs<'a>(&'a [u8]);

impl<'a> Iterator for Runs<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let first = *self.0.first()?;
        let digit = first.is_ascii_digit();
        let len = self
            .0
            .iter()
            .position(|b| b.is_ascii_digit() != digit)
            .unwrap_or(self.0.len());
        let (run, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn semver_order() {
        let ascending = [
            "0.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2",
            "1.10",
            "v2.0.0",
            "10.0",
            "123456789012345678901234567890.0",
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(compare_versions(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn equivalent_spellings_are_equal() {
        assert_eq!(compare_versions("1.2", "1.2.0"), Equal);
        assert_eq!(compare_versions("v1.2.0", "1.2.0+build.7"), Equal);
        assert_eq!(compare_versions("01.2", "1.2"), Equal);
    }

    #[test]
    fn git_describe_is_older_than_its_tag() {
        assert_eq!(compare_versions("v1.2.3-4-gabcdef", "v1.2.3"), Less);
        assert_eq!(compare_versions("v1.2.3-4-gabcdef", "v1.2.2"), Greater);
    }

    #[test]
    fn free_form_versions() {
        assert_eq!(compare_versions("1.0", "dev"), Greater);
        assert_eq!(compare_versions("build-9", "build-10"), Less);
        assert_eq!(compare_versions("2024-01-05a", "2024-01-05b"), Less);
        assert_eq!(compare_versions("abc", "abc"), Equal);
        assert_eq!(compare_versions("x07", "x7"), Less);
        assert_eq!(compare_versions("", "a"), Less);
        assert_eq!(compare_versions("1.2.", "1.2"), Less);
    }
}
