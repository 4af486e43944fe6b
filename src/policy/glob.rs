//! Glob patterns as go-witness matches Fulcio extension constraints: gobwas/glob syntax with no
//! separators.
//!
//! Syntax: `*` (and `**`) matches any run of characters, `/` included; `?` one character;
//! `[abc]` one character of a set, `[a-z]` one of a range, `[!...]` one character outside it;
//! `{a,b}` one of the alternatives, each itself a pattern (groups nest); `\` makes the next
//! character literal. Everything else is literal, including `]`, `}` and `,` outside the
//! constructs they close. A match covers the whole value; characters are Unicode scalar values.
//!
//! A pattern compiles to a small automaton that is matched by simulating all its states at once,
//! so a match costs at most (pattern length × value length) steps whatever the pattern. Pattern
//! length and group nesting are capped. An invalid pattern is an error here; upstream compiles
//! it at match time and panics, so refusing it is the fail-closed reading.

/// Longest pattern accepted, in characters.
pub(crate) const MAX_PATTERN_CHARS: usize = 4096;
/// Deepest nesting of `{...}` groups accepted.
const MAX_NESTING: usize = 32;

/// Why a pattern is not a valid glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The pattern is over [`MAX_PATTERN_CHARS`] characters.
    #[error("pattern is longer than {MAX_PATTERN_CHARS} characters")]
    TooLong,
    /// A `[` has no matching `]`.
    #[error("character class is not closed")]
    UnclosedClass,
    /// A class is empty, or a range is followed by more than its `]`.
    #[error("character class is empty or malformed")]
    BadClass,
    /// A range's high end is below its low end.
    #[error("character range {lo:?}-{hi:?} is reversed")]
    ReversedRange {
        /// The low end as written.
        lo: char,
        /// The high end as written.
        hi: char,
    },
    /// A `{` has no matching `}`.
    #[error("alternatives group is not closed")]
    UnclosedGroup,
    /// The pattern ends with a backslash that escapes nothing.
    #[error("pattern ends with a lone backslash")]
    TrailingEscape,
    /// Groups nest deeper than the cap.
    #[error("alternatives are nested more than {MAX_NESTING} deep")]
    TooDeep,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    states: Vec<State>,
    start: usize,
}

impl Glob {
    /// Compiles `pattern`.
    ///
    /// # Errors
    /// See [`GlobError`].
    pub(crate) fn new(pattern: &str) -> Result<Self, GlobError> {
        let chars: Vec<char> = pattern.chars().collect();
        if chars.len() > MAX_PATTERN_CHARS {
            return Err(GlobError::TooLong);
        }
        let mut pos = 0;
        let nodes = parse_sequence(&chars, &mut pos, 0)?;
        let mut states = vec![State::Match];
        let start = compile(&nodes, 0, &mut states);
        Ok(Self { states, start })
    }

    /// Whether the whole of `value` matches.
    pub(crate) fn matches(&self, value: &str) -> bool {
        let mut current = StateSet::new(self.states.len());
        self.add(self.start, &mut current);
        for c in value.chars() {
            let mut next = StateSet::new(self.states.len());
            for &index in &current.list {
                match self.states.get(index) {
                    Some(State::Char(matcher, to)) if matcher.matches(c) => {
                        self.add(*to, &mut next)
                    }
                    Some(State::Star(_)) => self.add(index, &mut next),
                    _ => {}
                }
            }
            if next.list.is_empty() {
                return false;
            }
            current = next;
        }
        current
            .list
            .iter()
            .any(|&i| matches!(self.states.get(i), Some(State::Match)))
    }

    /// Adds `index` and every state reachable from it without reading a character.
    fn add(&self, index: usize, set: &mut StateSet) {
        let mut stack = vec![index];
        while let Some(i) = stack.pop() {
            if !set.insert(i) {
                continue;
            }
            match self.states.get(i) {
                Some(State::Split(targets)) => stack.extend(targets.iter().copied()),
                Some(State::Star(to)) => stack.push(*to),
                _ => {}
            }
        }
    }
}

/// The states of one simulation step, without duplicates.
struct StateSet {
    seen: Vec<bool>,
    list: Vec<usize>,
}

impl StateSet {
    fn new(size: usize) -> Self {
        Self {
            seen: vec![false; size],
            list: Vec::new(),
        }
    }

    fn insert(&mut self, index: usize) -> bool {
        match self.seen.get_mut(index) {
            Some(seen) if !*seen => {
                *seen = true;
                self.list.push(index);
                true
            }
            _ => false,
        }
    }
}

/// One element of a parsed pattern.
#[derive(Debug)]
enum Node {
    Char(CharMatcher),
    Star,
    Alternatives(Vec<Vec<Node>>),
}

/// What one character must be.
#[derive(Debug, Clone)]
enum CharMatcher {
    Literal(char),
    Any,
    Set { chars: Vec<char>, not: bool },
    Range { lo: char, hi: char, not: bool },
}

impl CharMatcher {
    fn matches(&self, c: char) -> bool {
        match self {
            Self::Literal(l) => *l == c,
            Self::Any => true,
            Self::Set { chars, not } => chars.contains(&c) != *not,
            Self::Range { lo, hi, not } => (*lo <= c && c <= *hi) != *not,
        }
    }
}

/// A state of the automaton; `usize` values are indices of following states.
#[derive(Debug, Clone)]
enum State {
    /// Reads one character that fits the matcher.
    Char(CharMatcher, usize),
    /// Reads any number of characters, then continues.
    Star(usize),
    /// Continues in every listed state.
    Split(Vec<usize>),
    /// The end of the pattern.
    Match,
}

/// Parses until the end of the pattern or, inside a group, until its `,` or `}`.
fn parse_sequence(chars: &[char], pos: &mut usize, depth: usize) -> Result<Vec<Node>, GlobError> {
    let mut nodes = Vec::new();
    while let Some(&c) = chars.get(*pos) {
        match c {
            ',' | '}' if depth > 0 => return Ok(nodes),
            '*' => {
                *pos += 1;
                if chars.get(*pos) == Some(&'*') {
                    // `**` only differs from `*` when there are separators; there are none.
                    *pos += 1;
                }
                nodes.push(Node::Star);
            }
            '?' => {
                *pos += 1;
                nodes.push(Node::Char(CharMatcher::Any));
            }
            '[' => {
                *pos += 1;
                nodes.push(Node::Char(parse_class(chars, pos)?));
            }
            '{' => {
                *pos += 1;
                if depth >= MAX_NESTING {
                    return Err(GlobError::TooDeep);
                }
                nodes.push(Node::Alternatives(parse_group(chars, pos, depth + 1)?));
            }
            '\\' => {
                let escaped = chars.get(*pos + 1).ok_or(GlobError::TrailingEscape)?;
                *pos += 2;
                nodes.push(Node::Char(CharMatcher::Literal(*escaped)));
            }
            other => {
                *pos += 1;
                nodes.push(Node::Char(CharMatcher::Literal(other)));
            }
        }
    }
    Ok(nodes)
}

/// Parses the alternatives of a group whose `{` was just read, and its closing `}`.
fn parse_group(chars: &[char], pos: &mut usize, depth: usize) -> Result<Vec<Vec<Node>>, GlobError> {
    let mut alternatives = Vec::new();
    loop {
        alternatives.push(parse_sequence(chars, pos, depth)?);
        match chars.get(*pos) {
            Some(',') => *pos += 1,
            Some('}') => {
                *pos += 1;
                return Ok(alternatives);
            }
            _ => return Err(GlobError::UnclosedGroup),
        }
    }
}

/// Parses a class whose `[` was just read, as gobwas's lexer reads it: an optional leading `!`,
/// then either one range `lo-hi` or a set of characters (with `\` escapes), then `]`.
fn parse_class(chars: &[char], pos: &mut usize) -> Result<CharMatcher, GlobError> {
    let mut not = false;
    if chars.get(*pos) == Some(&'!') {
        not = true;
        *pos += 1;
    }
    let first = *chars.get(*pos).ok_or(GlobError::UnclosedClass)?;

    if chars.get(*pos + 1) == Some(&'-') {
        let hi = *chars.get(*pos + 2).ok_or(GlobError::UnclosedClass)?;
        *pos += 3;
        match chars.get(*pos) {
            Some(']') => *pos += 1,
            Some(_) => return Err(GlobError::BadClass),
            None => return Err(GlobError::UnclosedClass),
        }
        if first == '\0' || hi == '\0' {
            return Err(GlobError::BadClass);
        }
        if hi < first {
            return Err(GlobError::ReversedRange { lo: first, hi });
        }
        return Ok(CharMatcher::Range { lo: first, hi, not });
    }

    let mut set = Vec::new();
    loop {
        match chars.get(*pos) {
            None => return Err(GlobError::UnclosedClass),
            Some(']') => {
                *pos += 1;
                break;
            }
            Some('\\') => {
                let escaped = chars.get(*pos + 1).ok_or(GlobError::UnclosedClass)?;
                set.push(*escaped);
                *pos += 2;
            }
            Some(c) => {
                set.push(*c);
                *pos += 1;
            }
        }
    }
    if set.is_empty() {
        return Err(GlobError::BadClass);
    }
    Ok(CharMatcher::Set { chars: set, not })
}

/// Appends the states of `nodes`, which continue into state `next`; returns the entry state.
fn compile(nodes: &[Node], next: usize, states: &mut Vec<State>) -> usize {
    let mut next = next;
    for node in nodes.iter().rev() {
        let state = match node {
            Node::Char(matcher) => State::Char(matcher.clone(), next),
            Node::Star => State::Star(next),
            Node::Alternatives(alternatives) => {
                let entries = alternatives
                    .iter()
                    .map(|a| compile(a, next, states))
                    .collect();
                State::Split(entries)
            }
        };
        states.push(state);
        next = states.len() - 1;
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, value: &str) -> bool {
        Glob::new(pattern).unwrap().matches(value)
    }

    #[test]
    fn star_matches_any_run_including_slashes() {
        assert!(m(
            "https://github.com/org/repo/.github/workflows/release.yml@*",
            "https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1.2"
        ));
        assert!(m("*", ""));
        assert!(m("a*b*c", "a/x/b/y/c"));
        assert!(m("**", "a/b"));
        assert!(!m("a*b", "a/x/c"));
        assert!(!m("refs/heads/*", "refs/tags/v1"));
    }

    #[test]
    fn literals_are_exact_and_anchored() {
        assert!(m(
            "https://token.actions.githubusercontent.com",
            "https://token.actions.githubusercontent.com"
        ));
        assert!(!m(
            "https://token.actions.githubusercontent.com",
            "https://token.actions.githubusercontent.com/"
        ));
        assert!(!m("abc", "xabc"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn single_classes_and_ranges() {
        assert!(m("v?.0", "v1.0"));
        assert!(!m("v?.0", "v10.0"));
        assert!(m("v[0-9]", "v7"));
        assert!(!m("v[0-9]", "vx"));
        assert!(m("v[!0-9]", "vx"));
        assert!(m("[abc]x", "bx"));
        assert!(!m("[!abc]x", "bx"));
        assert!(m("é?", "éü"));
    }

    #[test]
    fn alternatives_nest_and_may_be_empty() {
        assert!(m("refs/{heads/main,tags/v*}", "refs/tags/v1.0"));
        assert!(m("refs/{heads/main,tags/v*}", "refs/heads/main"));
        assert!(!m("refs/{heads/main,tags/v*}", "refs/heads/dev"));
        assert!(m("a{b,{c,d}e}", "ade"));
        assert!(m("x{,y}", "x"));
        assert!(m("{}", ""));
    }

    #[test]
    fn escapes_and_stray_closers_are_literal() {
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axb"));
        assert!(m("a]b}c,d", "a]b}c,d"));
        assert!(m(r"[\]]", "]"));
    }

    #[test]
    fn invalid_patterns_are_errors() {
        assert_eq!(Glob::new("[abc").unwrap_err(), GlobError::UnclosedClass);
        assert_eq!(Glob::new("[]").unwrap_err(), GlobError::BadClass);
        assert_eq!(Glob::new("[a-z0-9]").unwrap_err(), GlobError::BadClass);
        assert_eq!(
            Glob::new("[z-a]").unwrap_err(),
            GlobError::ReversedRange { lo: 'z', hi: 'a' }
        );
        assert_eq!(Glob::new("{a,b").unwrap_err(), GlobError::UnclosedGroup);
        assert_eq!(Glob::new("ab\\").unwrap_err(), GlobError::TrailingEscape);
        assert_eq!(Glob::new(&"{".repeat(40)).unwrap_err(), GlobError::TooDeep);
        assert_eq!(
            Glob::new(&"a".repeat(MAX_PATTERN_CHARS + 1)).unwrap_err(),
            GlobError::TooLong
        );
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let pattern = "*a".repeat(200) + "b";
        let value = "a".repeat(4000);
        let start = std::time::Instant::now();
        assert!(!m(&pattern, &value));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_patterns_never_panic(pattern in r"[a-c*?\[\]{},!\\-]{0,24}", value in "[a-c/,-]{0,24}") {
            if let Ok(glob) = Glob::new(&pattern) {
                let _ = glob.matches(&value);
            }
        }

        #[test]
        fn literal_patterns_match_themselves(value in "[a-z0-9/:._@-]{0,40}") {
            proptest::prop_assert!(m(&value, &value));
        }
    }
}
