//! The Rego modules of one required attestation, compiled once and evaluated per attestor.
//!
//! Modules are parsed as witness parses them: Rego v0 syntax, with the v1 keywords available
//! through `import rego.v1` or `future.keywords`. Before regorus parses a module, it is refused
//! when its brackets nest too deeply or too often (regorus's parser takes time exponential in
//! the depth); after, the modules of the entry are refused when a rule or function is
//! recursive (OPA rejects recursion at compile time; regorus overflows its stack on a
//! recursive function).
//!
//! Evaluation is sandboxed: the engine is built without network or runtime builtins, builtin
//! errors are errors, each evaluation has a time limit, and all the evaluations of one
//! verification share a [`RegoBudget`]. Every way of not producing a clean, empty `deny` set is
//! a failure, never a pass.
//!
//! Memory is not bounded: regorus 0.14 enforces memory limits only with its
//! `allocator-memory-limits` feature (a mimalloc global allocator, not enabled here), so a
//! builtin such as `numbers.range(1, 2000000000)` can still exhaust memory.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, LimitError, Value};

use super::document::RegoPolicy;
use crate::encoding::decode_base64;
use crate::json_shape;

/// Default wall-clock limit of one evaluation: the modules of one attestation entry, all their
/// packages, against one attestor. Every evaluation also ends when the verification's
/// [`RegoBudget`] runs out.
pub const DEFAULT_REGO_TIME_LIMIT: Duration = Duration::from_secs(2);

/// Default total time all the Rego evaluations of one verification may take together.
pub const DEFAULT_REGO_BUDGET: Duration = Duration::from_secs(10);

/// Deepest nesting of `[`, `{` and `(` (together, outside strings and comments) a module may
/// have.
///
/// regorus 0.14.1 parses each nested `[` or `{` by first trying a comprehension and parsing
/// again when that fails, so parse time doubles with every level, before any time limit
/// applies. Measured in release mode, one expression nested N deep (`[[…]]`, `{{…}}`,
/// `{"a": {…}}`) parses in 0.1–0.3 ms at N = 8, 0.4–1.1 ms at N = 10, 5–18 ms at N = 14 and
/// 1.4 s at N = 22. With `RUST_BACKTRACE=1` in the environment every discarded attempt also
/// captures a backtrace (regorus's errors are `anyhow` errors), 20 to 50 times slower:
/// 12–35 ms at N = 10, 0.5 s at N = 14, over a minute at N = 22. Of 472 real-world modules
/// (OPA's and regorus's own), none nests deeper than 8.
pub const MAX_REGO_NESTING: usize = 10;

/// Most parse work a module may need, estimated as the sum over its `[` and `{` of 2 to the
/// power of their depth (counting only `[` and `{`, themselves included).
///
/// The nesting limit bounds one expression, not how many a module holds: 20 000 lines of
/// `xN := [[[[[[[[[[]]]]]]]]]]` took regorus 7 s to parse, and 8 deep 80 s with
/// `RUST_BACKTRACE=1`. A step costs 0.2–0.25 µs in release mode (up to about 9 µs with
/// `RUST_BACKTRACE=1`, at the deepest nesting); a module just under this limit made of 10-deep
/// expressions parses in 12 ms (0.6 s with `RUST_BACKTRACE=1`). The largest real-world module
/// seen, an 86 kB Kata Containers policy, needs 28 000 steps (7 ms); witness policies' modules
/// need a few hundred.
pub const MAX_REGO_PARSE_WORK: u64 = 1 << 16;

/// Longest engine message quoted in an error, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// The failure once a verification's Rego time is spent.
const BUDGET_EXHAUSTED: &str = "rego time budget for this verification is exhausted";

/// Why a set of modules could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegoError {
    /// The `module` field is not base64 or not UTF-8.
    #[error("rego module {name:?} is not base64 of UTF-8 text")]
    Encoding {
        /// Module name.
        name: String,
    },
    /// The module holds no rule (witness crashes on it).
    #[error("rego module {name:?} is empty")]
    Empty {
        /// Module name.
        name: String,
    },
    /// The module does not parse as Rego v0 (with optional v1 imports), nests too deeply, or
    /// holds a recursive rule.
    #[error("rego module {name:?} does not compile: {message}")]
    Compile {
        /// Module name.
        name: String,
        /// What is wrong, with the line and column when known.
        message: String,
    },
}

/// The outcome of evaluating modules against one attestor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegoOutcome {
    /// Every package's `deny` is an empty set.
    Allowed,
    /// At least one `deny` message.
    Denied(Vec<String>),
    /// Evaluation failed; the text says how (undefined `deny`, wrong type, error, timeout).
    Failed(String),
}

impl RegoOutcome {
    /// The functions a failed evaluation called that neither the modules define nor the engine
    /// provides (regorus: "could not find function …"), such as `http.send` or `opa.runtime`,
    /// which attestgate's engine is built without.
    pub fn missing_functions(&self) -> Vec<String> {
        const MARK: &str = "could not find function ";
        let Self::Failed(detail) = self else {
            return Vec::new();
        };
        let mut names: Vec<String> = Vec::new();
        for (at, _) in detail.match_indices(MARK) {
            let name: String = detail
                .get(at + MARK.len()..)
                .unwrap_or_default()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

/// The Rego time one verification may still spend: a deadline that all its evaluations share
/// by reference. Each evaluation runs for at most the smaller of its own limit and the time
/// left, and once the deadline has passed evaluations fail without running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegoBudget {
    /// `None` when the deadline is too far away to represent: no overall bound.
    deadline: Option<Instant>,
}

impl RegoBudget {
    /// A budget of `total` from now.
    pub fn new(total: Duration) -> Self {
        Self {
            deadline: Instant::now().checked_add(total),
        }
    }

    /// The time left; zero once the budget is exhausted.
    pub fn remaining(&self) -> Duration {
        self.deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        })
    }

    /// Whether no time is left.
    pub fn is_exhausted(&self) -> bool {
        self.remaining().is_zero()
    }
}

/// Compiled modules of one policy attestation entry.
#[derive(Clone)]
pub struct RegoModules {
    engine: Engine,
    packages: Vec<String>,
    names: Vec<String>,
    time_limit: Duration,
}

impl std::fmt::Debug for RegoModules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoModules")
            .field("packages", &self.packages)
            .field("names", &self.names)
            .field("time_limit", &self.time_limit)
            .finish()
    }
}

/// Why one package produced no list of deny messages.
enum PackageFailure {
    /// The engine's time limit ended the evaluation.
    Time,
    /// Anything else, described.
    Other(String),
}

impl RegoModules {
    /// Decodes and compiles the modules; `None` when there are none. `time_limit` bounds each
    /// evaluation (see [`RegoModules::evaluate`]).
    ///
    /// All modules of one entry share one engine, as witness loads them together, so they may
    /// extend the same package. Unlike witness, two modules with the same name both count
    /// (witness silently drops the earlier one).
    ///
    /// # Errors
    /// A module that is not base64 text, is empty, nests brackets more than
    /// [`MAX_REGO_NESTING`] deep or needs more than [`MAX_REGO_PARSE_WORK`] to parse, does not
    /// compile, or defines a rule or function that depends on itself, directly or through
    /// others of the entry's modules.
    pub fn compile(
        policies: &[RegoPolicy],
        time_limit: Duration,
    ) -> Result<Option<Self>, RegoError> {
        if policies.is_empty() {
            return Ok(None);
        }
        let mut engine = Engine::new();
        engine.set_rego_v0(true);
        engine.set_strict_builtin_errors(true);
        engine.set_execution_timer_config(timer(time_limit));

        // Engine messages name a module by its index; these are the names to show instead.
        let names: Vec<String> = policies.iter().map(|p| p.name.clone()).collect();
        let mut packages = Vec::new();
        let mut sources = Vec::new();
        for (index, policy) in policies.iter().enumerate() {
            let name = policy.name.clone();
            let source = decode_base64(&policy.module)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| RegoError::Encoding { name: name.clone() })?;
            if !has_statements(&source) {
                return Err(RegoError::Empty { name });
            }
            let tokens = tokens(&source);
            if let Some((offset, problem)) = too_nested(&tokens) {
                let (line, col) = line_col(&source, offset);
                return Err(RegoError::Compile {
                    name,
                    message: format!("line {line}:{col}: {problem}"),
                });
            }
            if let Some(keyword) = unimported_v1_keyword(&tokens) {
                return Err(RegoError::Compile {
                    name,
                    message: format!(
                        "keyword `{keyword}` needs `import rego.v1` or `import future.keywords.{keyword}` (policies are Rego v0)"
                    ),
                });
            }
            // A file name per module index, so same-named modules do not replace each other
            // and messages can name the module (see `engine_error`).
            let package = engine
                .add_policy(format!("{index}.rego"), source.clone())
                .map_err(|e| RegoError::Compile {
                    name: name.clone(),
                    message: engine_error(&e.to_string(), &names, false),
                })?;
            if !packages.contains(&package) {
                packages.push(package);
            }
            sources.push(source);
        }
        if let Some((module, message)) = recursion(&sources) {
            return Err(RegoError::Compile {
                name: names.get(module).cloned().unwrap_or_default(),
                message,
            });
        }
        Ok(Some(Self {
            engine,
            packages,
            names,
            time_limit,
        }))
    }

    /// The module names, for messages.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Evaluates `data.<package>.deny` of every package with `input` as the attestor object.
    ///
    /// All packages together get the compile-time limit or what is left of `budget`, whichever
    /// is smaller; with the budget already exhausted nothing runs and the outcome is a failure.
    pub fn evaluate(&self, input: &serde_json::Value, budget: &RegoBudget) -> RegoOutcome {
        self.evaluate_with(|| Value::from(input.clone()), budget)
    }

    /// As [`RegoModules::evaluate`], with the input given as JSON text (an attestation body as
    /// the collection keeps it), read straight into the engine's value: no `serde_json` tree
    /// of it is built. The engine sees the same input as [`RegoModules::evaluate`] would for
    /// the parsed text.
    pub fn evaluate_json(&self, input: &str, budget: &RegoBudget) -> RegoOutcome {
        // Known shortcoming: the engine's value of a body costs several times its text (about
        // seven times for an SBOM of many small components, keys interned), so a policy with
        // Rego for an SBOM attestation pays that per evaluation; only the types that have
        // modules are ever converted.
        self.evaluate_with(|| input_from_json(input), budget)
    }

    fn evaluate_with(&self, input: impl FnOnce() -> Value, budget: &RegoBudget) -> RegoOutcome {
        let start = Instant::now();
        let allowed = self.time_limit.min(budget.remaining());
        if allowed.is_zero() {
            return RegoOutcome::Failed(BUDGET_EXHAUSTED.into());
        }
        let mut engine = self.engine.clone();
        engine.set_input(input());
        let mut messages = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        // Every package is evaluated, so a broken one cannot hide another's denial.
        for package in &self.packages {
            let left = allowed.saturating_sub(start.elapsed());
            let result = if left.is_zero() {
                Err(PackageFailure::Time)
            } else {
                engine.set_execution_timer_config(timer(left));
                self.package_deny(&mut engine, package)
            };
            let failure = match result {
                Ok(denials) => {
                    messages.extend(denials);
                    continue;
                }
                Err(PackageFailure::Time) if budget.is_exhausted() => BUDGET_EXHAUSTED.into(),
                Err(PackageFailure::Time) => format!(
                    "{package}: evaluation exceeded the time limit of {:?}",
                    self.time_limit
                ),
                Err(PackageFailure::Other(text)) => text,
            };
            if !failures.contains(&failure) {
                failures.push(failure);
            }
        }
        match (failures.is_empty(), messages.is_empty()) {
            (true, true) => RegoOutcome::Allowed,
            (true, false) => RegoOutcome::Denied(messages),
            (false, true) => RegoOutcome::Failed(failures.join("; ")),
            (false, false) => RegoOutcome::Failed(format!(
                "{}; and it denied: {}",
                failures.join("; "),
                messages.join("; ")
            )),
        }
    }

    /// The deny messages of one package, or why it does not produce a set of strings.
    fn package_deny(
        &self,
        engine: &mut Engine,
        package: &str,
    ) -> Result<Vec<String>, PackageFailure> {
        let value = match engine.eval_rule(format!("{package}.deny")) {
            Ok(v) => v,
            Err(e)
                if e.downcast_ref::<LimitError>()
                    .is_some_and(|l| matches!(l, LimitError::TimeLimitExceeded { .. })) =>
            {
                return Err(PackageFailure::Time)
            }
            // regorus reports a rule that no module defines as an invalid path.
            Err(e) if e.to_string().contains("not a valid rule path") => Value::Undefined,
            Err(e) => {
                return Err(PackageFailure::Other(format!(
                    "{package}: {}",
                    engine_error(&e.to_string(), &self.names, true)
                )))
            }
        };
        let items: Vec<&Value> = match &value {
            Value::Set(set) => set.iter().collect(),
            Value::Array(array) => array.iter().collect(),
            Value::Undefined => {
                return Err(PackageFailure::Other(format!(
                    "{package} has no deny rule, or deny is undefined for this input"
                )))
            }
            other => {
                return Err(PackageFailure::Other(format!(
                    "{package}.deny must be a set of strings, got {}",
                    describe(other)
                )))
            }
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.to_string()),
                other => Err(PackageFailure::Other(format!(
                    "{package}.deny holds a non-string element ({})",
                    describe(other)
                ))),
            })
            .collect()
    }
}

/// The key regorus reads as "this object is a number" when it is an object's first member.
const NUMBER_MARKER: &str = "$serde_json::private::Number";

/// The engine's value for JSON text, equal to `Value::from` of the parsed `serde_json` tree.
/// The two differ only for an object holding [`NUMBER_MARKER`] (regorus looks at an object's
/// first member, which is the smallest key in a tree but the first written in text), so such
/// a text takes the tree's path; a conversion that fails gives `Undefined`, as `Value::from`.
fn input_from_json(text: &str) -> Value {
    if json_shape::has_key(text, NUMBER_MARKER) {
        return serde_json::from_str::<serde_json::Value>(text)
            .map_or(Value::Undefined, Value::from);
    }
    Value::from_json_str(text).unwrap_or(Value::Undefined)
}

fn timer(limit: Duration) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit,
        check_interval: NonZeroU32::MIN,
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Set(_) => "a set",
        Value::Object(_) => "an object",
        Value::Undefined => "undefined",
    }
}

/// regorus's error text as one line: the message of its `error:` line, after the line and
/// column of its location, in the module named by its policy name when `with_name` (files are
/// named `<index>.rego`, indexes into `names`; the internal file name is never shown). At most
/// [`MAX_MESSAGE_CHARS`] characters, control characters replaced.
fn engine_error(text: &str, names: &[String], with_name: bool) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let location = lines
        .iter()
        .find_map(|l| l.strip_prefix("-->"))
        .and_then(|at| {
            let mut parts = at.trim().rsplitn(3, ':');
            let col: u32 = parts.next()?.parse().ok()?;
            let line: u32 = parts.next()?.parse().ok()?;
            let module = parts
                .next()?
                .strip_suffix(".rego")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| names.get(i));
            Some((module, line, col))
        });
    // Lines of a source excerpt: `-->` locations, `|` gutters and `12 | code`.
    let is_excerpt = |l: &str| {
        l.starts_with("-->")
            || l.starts_with('|')
            || l.split_once(" |")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let message = lines
        .iter()
        .find_map(|l| l.strip_prefix("error:"))
        .map(str::trim)
        .or_else(|| lines.iter().copied().find(|l| !is_excerpt(l)))
        .unwrap_or("unknown error");
    one_line(&match location {
        Some((Some(module), line, col)) if with_name => {
            format!("rego module {module:?} line {line}:{col}: {message}")
        }
        Some((_, line, col)) => format!("line {line}:{col}: {message}"),
        None => message.to_string(),
    })
}

/// At most [`MAX_MESSAGE_CHARS`] characters of `text` (then `…`), control characters replaced
/// by spaces.
fn one_line(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (before.matches('\n').count() + 1, col)
}

/// The first bracket at which a module needs too much parsing, with why: it opens more than
/// [`MAX_REGO_NESTING`] levels deep, or it brings the estimated parse work past
/// [`MAX_REGO_PARSE_WORK`].
fn too_nested(tokens: &[(usize, &str)]) -> Option<(usize, String)> {
    let mut depth = 0usize;
    // Only `[` and `{` make the parser start over; `(` does not.
    let mut doubling = 0u32;
    let mut work = 0u64;
    for &(offset, token) in tokens {
        match token {
            "[" | "{" | "(" => {
                depth += 1;
                if depth > MAX_REGO_NESTING {
                    return Some((
                        offset,
                        format!("brackets nest more than {MAX_REGO_NESTING} deep (refused: parsing time doubles with every level)"),
                    ));
                }
                if token != "(" {
                    doubling += 1;
                    work = work.saturating_add(1u64 << doubling.min(63));
                    if work > MAX_REGO_PARSE_WORK {
                        return Some((
                            offset,
                            format!("too many nested brackets: parsing would take over {MAX_REGO_PARSE_WORK} steps (each `[` or `{{` costs 2 to the power of its depth)"),
                        ));
                    }
                }
            }
            "]" | "}" | ")" => {
                depth = depth.saturating_sub(1);
                if token != ")" {
                    doubling = doubling.saturating_sub(1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The first Rego v1 keyword used without the import that enables it, if any.
///
/// regorus's v0 mode accepts `if`, `contains`, `in` and `every` without an import, while OPA's
/// v0 parser (which witness uses) treats them as keywords only after `import rego.v1` or
/// `import future.keywords...`. This scan closes that gap so a module witness cannot parse is
/// refused here too. It skips comments, strings, field accesses (`input.if`) and calls of the
/// `contains()` builtin. The imports are read once, so the scan is linear.
fn unimported_v1_keyword(tokens: &[(usize, &str)]) -> Option<&'static str> {
    const KEYWORDS: [&str; 4] = ["if", "contains", "in", "every"];
    let mut enabled = [false; KEYWORDS.len()];
    for (i, token) in tokens.iter().enumerate() {
        if token.1 == "import" {
            for (on, keyword) in enabled.iter_mut().zip(KEYWORDS) {
                *on = *on || import_enables(tokens.get(i + 1..), keyword);
            }
        }
    }
    for (i, (_, token)) in tokens.iter().enumerate() {
        let Some(k) = KEYWORDS.iter().position(|k| *k == *token) else {
            continue;
        };
        let keyword = KEYWORDS[k];
        let after_dot = i > 0 && tokens[i - 1].1 == ".";
        let is_call = tokens.get(i + 1).is_some_and(|t| t.1 == "(");
        if after_dot || (keyword == "contains" && is_call) {
            continue;
        }
        if !enabled[k] {
            return Some(keyword);
        }
    }
    None
}

/// Whether the import path that follows an `import` token enables `keyword`: `rego.v1`,
/// `future.keywords`, or `future.keywords.<keyword>`.
fn import_enables(path: Option<&[(usize, &str)]>, keyword: &str) -> bool {
    let path: Vec<&str> = path
        .unwrap_or_default()
        .iter()
        .take(5)
        .map(|t| t.1)
        .collect();
    match path.as_slice() {
        ["rego", ".", "v1", ..] => true,
        ["future", ".", "keywords", ".", k] => *k == keyword,
        ["future", ".", "keywords", ..] => true,
        _ => false,
    }
}

/// Identifiers, numbers and single punctuation characters with their byte offsets, skipping
/// comments and string literals.
fn tokens(source: &str) -> Vec<(usize, &str)> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if c == b'"' || c == b'`' {
            let quote = c;
            i += 1;
            while i < bytes.len() && bytes[i] != quote {
                if quote == b'"' && bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            // An identifier, or a number such as `12`, `1.5` or `1e9` (never an identifier).
            let number = c.is_ascii_digit();
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric()
                    || bytes[i] == b'_'
                    || (number
                        && bytes[i] == b'.'
                        && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            if let Some(word) = source.get(start..i) {
                out.push((start, word));
            }
        } else {
            if !c.is_ascii_whitespace() {
                if let Some(p) = source.get(i..i + 1) {
                    out.push((i, p));
                }
            }
            i += 1;
        }
    }
    out
}

/// Whether the source has anything besides blank lines and comments.
fn has_statements(source: &str) -> bool {
    source
        .lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && !l.starts_with('#'))
}

fn is_identifier(token: &str) -> bool {
    token
        .as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
}

/// Words that never refer to a rule. `input` and its paths are the attestation, not rules.
const NOT_RULE_REFERENCES: [&str; 16] = [
    "as", "contains", "default", "else", "every", "false", "if", "import", "in", "input", "not",
    "null", "package", "some", "true", "with",
];

/// What a rule's statement refers to, with the fields that follow (`a.b.c`): a path in the
/// rule's own package, or a path under `data` (written out, or through an import alias).
enum Target<'a> {
    Bare(Vec<&'a str>),
    Data(Vec<&'a str>),
}

/// One top-level rule or function statement: its path in the package (`f`, or `a.b` for a
/// rule with a reference head) and what it refers to.
struct RuleRefs<'a> {
    path: Vec<&'a str>,
    targets: Vec<Target<'a>>,
}

/// A module's package path and rule statements.
struct Shape<'a> {
    package: Vec<&'a str>,
    rules: Vec<RuleRefs<'a>>,
}

/// A token with the bracket depth it is at (an opening or closing bracket counts as outside
/// its group).
#[derive(Clone, Copy)]
struct Tok<'a> {
    text: &'a str,
    depth: usize,
}

/// The top-level statements of a module, token-based: each starts with an identifier at
/// bracket depth 0 that is first on its line, except `else`, which continues a rule.
fn statements<'a>(source: &str, tokens: &[(usize, &'a str)]) -> Vec<Vec<Tok<'a>>> {
    let mut out: Vec<Vec<Tok<'a>>> = Vec::new();
    let mut depth = 0usize;
    let mut previous_end = 0usize;
    for (n, &(offset, text)) in tokens.iter().enumerate() {
        let line_start = n == 0
            || source
                .get(previous_end..offset)
                .is_some_and(|gap| gap.contains('\n'));
        previous_end = offset + text.len();
        if matches!(text, "]" | "}" | ")") {
            depth = depth.saturating_sub(1);
        }
        let tok = Tok { text, depth };
        if matches!(text, "[" | "{" | "(") {
            depth += 1;
        }
        let starts = tok.depth == 0 && line_start && is_identifier(text) && text != "else";
        match out.last_mut() {
            Some(statement) if !starts => statement.push(tok),
            _ => out.push(vec![tok]),
        }
    }
    out
}

/// The identifiers (not field names) inside the bracket group that opens at `open`.
fn group_identifiers<'a>(statement: &[Tok<'a>], open: usize, into: &mut BTreeSet<&'a str>) {
    let Some(depth) = statement.get(open).map(|t| t.depth) else {
        return;
    };
    for (j, tok) in statement.iter().enumerate().skip(open + 1) {
        if tok.depth <= depth {
            break;
        }
        if is_identifier(tok.text) && statement[j - 1].text != "." {
            into.insert(tok.text);
        }
    }
}

/// The index of the bracket that opens the group closing at `close`.
fn group_start(statement: &[Tok<'_>], close: usize) -> Option<usize> {
    let depth = statement.get(close)?.depth;
    (0..close)
        .rev()
        .find(|&j| statement[j].depth == depth && matches!(statement[j].text, "[" | "{" | "("))
}

/// A module's package, and for each top-level rule the names it refers to, leaving out local
/// variables (function arguments, head key variables, `some`/`every` variables and
/// `:=` declarations), field names after `.`, `input` paths, strings and comments.
fn shape<'a>(source: &str, tokens: &[(usize, &'a str)]) -> Shape<'a> {
    let statements = statements(source, tokens);
    let mut package = Vec::new();
    let mut aliases: BTreeMap<&'a str, Vec<&'a str>> = BTreeMap::new();
    for statement in &statements {
        let words = || {
            statement
                .iter()
                .skip(1)
                .map(|t| t.text)
                .take_while(|t| *t != "as")
                .filter(|t| *t != ".")
        };
        match statement.first().map(|t| t.text) {
            Some("package") => package = words().collect(),
            Some("import") => {
                let path: Vec<&str> = words().collect();
                let alias = match statement.iter().position(|t| t.text == "as") {
                    Some(at) => statement.get(at + 1).map(|t| t.text),
                    None => path.last().copied(),
                };
                if let (Some((&"data", rest)), Some(alias)) = (path.split_first(), alias) {
                    aliases.insert(alias, rest.to_vec());
                }
            }
            _ => {}
        }
    }

    let mut rules = Vec::new();
    for statement in &statements {
        let first = match statement.first().map(|t| t.text) {
            Some("package" | "import") | None => continue,
            Some("default") => 1,
            Some(_) => 0,
        };
        if !statement.get(first).is_some_and(|t| is_identifier(t.text)) {
            continue;
        }
        let (path, head_end) = dotted_path(statement, first);
        let after_dot = |j: usize| j > 0 && statement[j - 1].text == ".";

        let mut locals = BTreeSet::new();
        if statement
            .get(head_end)
            .is_some_and(|t| matches!(t.text, "(" | "["))
        {
            group_identifiers(statement, head_end, &mut locals);
        }
        for (j, tok) in statement.iter().enumerate() {
            match tok.text {
                "some" | "every" => {
                    let mut k = j + 1;
                    while let Some(var) = statement.get(k).filter(|t| is_identifier(t.text)) {
                        locals.insert(var.text);
                        if statement.get(k + 1).is_some_and(|t| t.text == ",") {
                            k += 2;
                        } else {
                            break;
                        }
                    }
                }
                ":" if tok.depth > 0 && statement.get(j + 1).is_some_and(|t| t.text == "=") => {
                    let Some(before) = j.checked_sub(1) else {
                        continue;
                    };
                    let declared = statement[before].text;
                    if is_identifier(declared) && !after_dot(before) {
                        locals.insert(declared);
                    } else if matches!(declared, "]" | "}") {
                        if let Some(open) = group_start(statement, before) {
                            group_identifiers(statement, open, &mut locals);
                        }
                    }
                }
                _ => {}
            }
        }

        let mut targets = Vec::new();
        let mut j = head_end;
        while let Some(tok) = statement.get(j) {
            let word = tok.text;
            if !is_identifier(word)
                || after_dot(j)
                || NOT_RULE_REFERENCES.contains(&word)
                || locals.contains(word)
            {
                j += 1;
                continue;
            }
            let (fields, end) = dotted_path(statement, j);
            j = end;
            targets.push(match (word, aliases.get(word)) {
                ("data", _) => Target::Data(fields.get(1..).unwrap_or_default().to_vec()),
                (_, Some(alias)) => Target::Data(
                    alias
                        .iter()
                        .chain(fields.get(1..).unwrap_or_default())
                        .copied()
                        .collect(),
                ),
                _ => Target::Bare(fields),
            });
        }
        rules.push(RuleRefs { path, targets });
    }
    Shape { package, rules }
}

/// The identifier at `start` with the `.field`s that follow it, and the index after them.
fn dotted_path<'a>(statement: &[Tok<'a>], start: usize) -> (Vec<&'a str>, usize) {
    let mut path: Vec<&str> = statement.get(start).map(|t| t.text).into_iter().collect();
    let mut end = start + 1;
    while let (Some(dot), Some(field)) = (statement.get(end), statement.get(end + 1)) {
        if dot.text != "." || !is_identifier(field.text) {
            break;
        }
        path.push(field.text);
        end += 2;
    }
    (path, end)
}

/// The first recursive rule or function among the modules of one entry, as the index of the
/// module defining it and a message naming the cycle (`data.p.f -> data.p.g -> data.p.f`).
///
/// OPA refuses recursion at compile time; regorus detects some of it while evaluating and
/// overflows its stack on the rest (recursive functions), which aborts the process. The graph
/// is token-based: each top-level rule or function points to the rules its statement names
/// (bare, as `data.<package>.<rule>`, or through an import alias). A reference depends on the
/// rules whose path it extends (`cfg.x` on `cfg`) and on those that extend it (`r` on the
/// reference-head rules `r.a` and `r.b`), not on siblings (`r.a` on `r.b`).
fn recursion(sources: &[String]) -> Option<(usize, String)> {
    /// A rule: its index, the module defining it first, and how long its package path is.
    struct Node {
        index: usize,
        module: usize,
        package_len: usize,
    }
    let tokens: Vec<Vec<(usize, &str)>> = sources.iter().map(|s| tokens(s)).collect();
    let shapes: Vec<Shape<'_>> = sources
        .iter()
        .zip(&tokens)
        .map(|(source, tokens)| shape(source, tokens))
        .collect();
    fn full<'a>(shape: &Shape<'a>, path: &[&'a str]) -> Vec<&'a str> {
        shape.package.iter().chain(path).copied().collect()
    }

    // Rules by their full path under `data`, numbered in order of appearance.
    let mut nodes: BTreeMap<Vec<&str>, Node> = BTreeMap::new();
    for (module, shape) in shapes.iter().enumerate() {
        for rule in &shape.rules {
            let index = nodes.len();
            nodes.entry(full(shape, &rule.path)).or_insert(Node {
                index,
                module,
                package_len: shape.package.len(),
            });
        }
    }
    // The rules a reference (a full path) depends on; `package_len` limits the candidates to
    // rules of that package (a bare name never means a rule of another package).
    let resolve = |reference: &[&str], package_len: Option<usize>, into: &mut BTreeSet<usize>| {
        let mine = |node: &Node| package_len.is_none_or(|len| node.package_len == len);
        let shortest = package_len.map_or(1, |len| len + 1);
        for len in shortest..=reference.len() {
            if let Some(node) = reference.get(..len).and_then(|r| nodes.get(r)) {
                if mine(node) {
                    into.insert(node.index);
                }
            }
        }
        if reference.is_empty() {
            return;
        }
        for (path, node) in nodes.range::<[&str], _>((
            std::ops::Bound::Excluded(reference),
            std::ops::Bound::Unbounded,
        )) {
            if !path.starts_with(reference) {
                break;
            }
            if mine(node) {
                into.insert(node.index);
            }
        }
    };
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
    for shape in &shapes {
        for rule in &shape.rules {
            let Some(from) = nodes.get(&full(shape, &rule.path)).map(|n| n.index) else {
                continue;
            };
            let mut to = BTreeSet::new();
            for target in &rule.targets {
                match target {
                    Target::Bare(path) => {
                        resolve(&full(shape, path), Some(shape.package.len()), &mut to);
                    }
                    Target::Data(path) => resolve(path, None, &mut to),
                }
            }
            if let Some(edges) = edges.get_mut(from) {
                edges.extend(to);
            }
        }
    }

    let cycle = find_cycle(&edges)?;
    let mut labels = vec![String::new(); nodes.len()];
    let mut modules = vec![0; nodes.len()];
    for (path, node) in &nodes {
        labels[node.index] = format!("data.{}", path.join("."));
        modules[node.index] = node.module;
    }
    let first = *cycle.first()?;
    let path: Vec<&str> = cycle.iter().map(|&n| labels[n].as_str()).collect();
    let message = format!(
        "rule {} is recursive: {} (Rego does not allow recursion)",
        labels[first],
        path.join(" -> ")
    );
    Some((modules[first], one_line(&message)))
}

/// A cycle of the graph as its nodes, the first repeated at the end; self-loops included.
/// Iterative, so a long chain of rules cannot overflow the stack.
fn find_cycle(edges: &[BTreeSet<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; edges.len()];
    for root in 0..edges.len() {
        if marks[root] != Mark::New {
            continue;
        }
        marks[root] = Mark::Open;
        let mut stack = vec![(root, edges[root].iter())];
        while let Some((node, children)) = stack.last_mut() {
            let node = *node;
            match children.next() {
                Some(&child) => match marks[child] {
                    Mark::New => {
                        marks[child] = Mark::Open;
                        stack.push((child, edges[child].iter()));
                    }
                    Mark::Open => {
                        let at = stack.iter().position(|(n, _)| *n == child)?;
                        let mut cycle: Vec<usize> = stack[at..].iter().map(|(n, _)| *n).collect();
                        cycle.push(child);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                },
                None => {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::encode_base64;

    fn policies(sources: &[&str]) -> Vec<RegoPolicy> {
        sources
            .iter()
            .enumerate()
            .map(|(i, s)| RegoPolicy {
                name: format!("m{i}"),
                module: encode_base64(s.as_bytes()),
            })
            .collect()
    }

    fn modules(sources: &[&str]) -> Result<Option<RegoModules>, RegoError> {
        RegoModules::compile(&policies(sources), DEFAULT_REGO_TIME_LIMIT)
    }

    fn eval(m: &RegoModules, input: serde_json::Value) -> RegoOutcome {
        m.evaluate(&input, &RegoBudget::new(DEFAULT_REGO_BUDGET))
    }

    fn compile_message(sources: &[&str]) -> String {
        match modules(sources) {
            Err(RegoError::Compile { message, .. }) => message,
            other => panic!("expected a compile error, got {other:?}"),
        }
    }

    const EXIT: &str = "package cmd\ndeny[msg] {\n  input.exitcode != 0\n  msg := sprintf(\"exit %v\", [input.exitcode])\n}\n";

    #[test]
    fn v0_module_denies_and_allows() {
        let m = modules(&[EXIT]).unwrap().unwrap();
        assert_eq!(
            eval(&m, serde_json::json!({"exitcode": 2})),
            RegoOutcome::Denied(vec!["exit 2".into()])
        );
        assert_eq!(
            eval(&m, serde_json::json!({"exitcode": 0})),
            RegoOutcome::Allowed
        );
    }

    #[test]
    fn v1_keywords_need_the_import() {
        let bare = "package p\ndeny contains msg if { msg := \"x\" }\n";
        assert!(matches!(modules(&[bare]), Err(RegoError::Compile { .. })));
        let imported =
            "package p\nimport rego.v1\ndeny contains msg if { input.x; msg := \"x\" }\n";
        let m = modules(&[imported]).unwrap().unwrap();
        assert_eq!(
            eval(&m, serde_json::json!({"x": true})),
            RegoOutcome::Denied(vec!["x".into()])
        );
    }

    #[test]
    fn future_keyword_imports_enable_only_what_they_name() {
        let only_in =
            "package p\nimport future.keywords.in\ndeny[m] { some x in input.xs; m := x }\n";
        assert!(modules(&[only_in]).unwrap().is_some());
        let needs_if = "package p\nimport future.keywords.in\ndeny[m] if { m := \"x\" }\n";
        assert!(matches!(
            modules(&[needs_if]),
            Err(RegoError::Compile { .. })
        ));
        let call = "package p\ndeny[m] { contains(input.s, \"if\"); m := input.if }\n";
        let m = modules(&[call]).unwrap().unwrap();
        assert_eq!(
            eval(&m, serde_json::json!({"s": "xifx", "if": "y"})),
            RegoOutcome::Denied(vec!["y".into()])
        );
    }

    #[test]
    fn the_v1_keyword_scan_is_linear() {
        // Formerly every keyword rescanned all tokens for imports: minutes for this module.
        let mut source = String::from("package p\n");
        for _ in 0..100_000 {
            source.push_str("x if y in z every w contains v\n");
        }
        let start = Instant::now();
        assert_eq!(unimported_v1_keyword(&tokens(&source)), Some("if"));
        source.push_str("import rego.v1\n");
        assert_eq!(unimported_v1_keyword(&tokens(&source)), None);
        let only_in = source.replace("import rego.v1", "import future.keywords.in");
        assert_eq!(unimported_v1_keyword(&tokens(&only_in)), Some("if"));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn missing_or_mistyped_deny_fails() {
        let no_deny = modules(&["package p\nallow = true\n"]).unwrap().unwrap();
        assert!(matches!(
            eval(&no_deny, serde_json::json!({})),
            RegoOutcome::Failed(_)
        ));
        let string_deny = modules(&["package p\ndeny = \"no\"\n"]).unwrap().unwrap();
        assert!(matches!(
            eval(&string_deny, serde_json::json!({})),
            RegoOutcome::Failed(_)
        ));
        let false_deny = modules(&["package p\ndeny = false\n"]).unwrap().unwrap();
        assert!(matches!(
            eval(&false_deny, serde_json::json!({})),
            RegoOutcome::Failed(_)
        ));
        let number_items = modules(&["package p\ndeny[x] { x := 1 }\n"])
            .unwrap()
            .unwrap();
        assert!(matches!(
            eval(&number_items, serde_json::json!({})),
            RegoOutcome::Failed(_)
        ));
    }

    #[test]
    fn a_package_without_deny_is_named_and_does_not_mask_another_packages_denial() {
        let m = modules(&[EXIT, "package other\nallow = true\n"])
            .unwrap()
            .unwrap();
        let RegoOutcome::Failed(detail) = eval(&m, serde_json::json!({"exitcode": 1})) else {
            panic!("a package without deny must fail");
        };
        assert!(detail.contains("data.other has no deny rule"), "{detail}");
        assert!(detail.contains("exit 1"), "{detail}");
    }

    #[test]
    fn empty_modules_and_network_builtins_are_refused() {
        assert!(matches!(
            modules(&["# nothing\n"]),
            Err(RegoError::Empty { .. })
        ));
        let http = "package p\ndeny[m] { r := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"}); m := \"x\" }\n";
        let outcome = modules(&[http]).map(|m| m.map(|m| eval(&m, serde_json::json!({}))));
        assert!(
            matches!(
                outcome,
                Err(RegoError::Compile { .. }) | Ok(Some(RegoOutcome::Failed(_)))
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn missing_builtins_are_named() {
        let http = "package p\ndeny[m] { r := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"}); m := \"x\" }\n";
        let runtime = "package q\ndeny[m] { r := opa.runtime(); m := \"x\" }\n";
        let m = modules(&[http, runtime]).unwrap().unwrap();
        let outcome = eval(&m, serde_json::json!({}));
        assert_eq!(
            outcome.missing_functions(),
            ["http.send", "opa.runtime"],
            "{outcome:?}"
        );
        let RegoOutcome::Failed(detail) = &outcome else {
            panic!("{outcome:?}");
        };
        assert!(
            detail.contains("rego module \"m0\" line 2:25: could not find function http.send"),
            "{detail}"
        );
        // An ordinary failure names no function.
        let m = modules(&["package p\ndeny[m] { m := 1 / 0 }\n"])
            .unwrap()
            .unwrap();
        assert_eq!(
            eval(&m, serde_json::json!({})).missing_functions(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn messages_carry_the_engine_error_and_the_module_location() {
        let message = compile_message(&[EXIT, "package p\ndeny[m] {\n  x := \n}\n"]);
        assert_eq!(message, "line 2:9: expecting }");

        let m = modules(&[
            EXIT,
            "package p\ndeny[m] {\n  x := 1 / 0\n  m := \"x\"\n}\n",
        ])
        .unwrap()
        .unwrap();
        let RegoOutcome::Failed(detail) = eval(&m, serde_json::json!({"exitcode": 0})) else {
            panic!("division by zero must fail");
        };
        assert_eq!(
            detail,
            "data.p: rego module \"m1\" line 3:10: divide by zero"
        );

        // The internal file names never show, whatever the module is called.
        let named = [RegoPolicy {
            name: "exit.rego".into(),
            module: encode_base64(b"package p\ndeny[m] {\n  x := \n}\n"),
        }];
        let e = RegoModules::compile(&named, DEFAULT_REGO_TIME_LIMIT).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rego module \"exit.rego\" does not compile: line 2:9: expecting }"
        );
    }

    #[test]
    fn engine_messages_are_one_capped_line() {
        let names = ["a\nb".to_string()];
        let text = "\n--> 0.rego:7:3\n  |\n7 | x\n  | ^\nerror: bad \u{1b}[8m thing\nmore\n";
        assert_eq!(
            engine_error(text, &names, true),
            "rego module \"a\\nb\" line 7:3: bad  [8m thing"
        );
        assert_eq!(
            engine_error(text, &names, false),
            "line 7:3: bad  [8m thing"
        );
        // No location, no `error:` prefix: the text itself.
        assert_eq!(
            engine_error("not a valid rule path", &names, true),
            "not a valid rule path"
        );
        // An unknown file index keeps the location but names no module.
        assert_eq!(
            engine_error("--> 9.rego:1:2\nerror: x", &names, true),
            "line 1:2: x"
        );
        let long = format!("error: {}", "y".repeat(1000));
        let capped = engine_error(&long, &names, true);
        assert_eq!(capped.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(capped.ends_with('…'));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let nested = |open: &str, close: &str, depth: usize| {
            format!(
                "package p\nx := {}{}\ndeny[m] {{ false; m := \"x\" }}\n",
                open.repeat(depth),
                close.repeat(depth)
            )
        };
        let at_limit = nested("[", "]", MAX_REGO_NESTING);
        assert!(modules(&[&at_limit]).unwrap().is_some());
        // Without the check, 40 levels would take the parser hours.
        let start = Instant::now();
        for (open, close) in [("[", "]"), ("{", "}"), ("(", ")"), ("[{", "}]")] {
            let source = nested(open, close, 40);
            let message = compile_message(&[&source]);
            assert!(message.starts_with("line 2:"), "{message}");
            assert!(message.contains("nest more than 10 deep"), "{message}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        // The rule body counts: one level less is left inside it.
        let body = format!(
            "package p\ndeny[m] {{\n  x := {}{}\n  m := \"x\"\n}}\n",
            "[".repeat(MAX_REGO_NESTING),
            "]".repeat(MAX_REGO_NESTING)
        );
        assert_eq!(
            compile_message(&[&body]),
            "line 3:17: brackets nest more than 10 deep (refused: parsing time doubles with every level)"
        );
        // Many expressions, each within the depth limit, add up.
        let mut many = String::from("package p\ndeny[m] { false; m := \"x\" }\n");
        for i in 0..40 {
            many.push_str(&format!("x{i} := {}{}\n", "[".repeat(10), "]".repeat(10)));
        }
        let start = Instant::now();
        let message = compile_message(&[&many]);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(
            message.starts_with(
                "line 35:12: too many nested brackets: parsing would take over 65536 steps"
            ),
            "{message}"
        );
        // Parentheses do not make the parser start over, so they add no work.
        let mut calls = String::from("package p\ndeny[m] { false; m := \"x\" }\n");
        for i in 0..2000 {
            calls.push_str(&format!(
                "x{i} := {}1{}\n",
                "abs(".repeat(10),
                ")".repeat(10)
            ));
        }
        assert!(modules(&[&calls]).unwrap().is_some());
        // Brackets in strings and comments do not count.
        let quoted = format!(
            "package p\n# {}\ndeny[m] {{ m := \"{}\"; false }}\n",
            "[".repeat(50),
            "{".repeat(50)
        );
        assert!(modules(&[&quoted]).unwrap().is_some());
    }

    #[test]
    fn recursive_functions_and_rules_are_refused() {
        let cases: [(&[&str], &str); 9] = [
            (
                &["package p\nf(x) = y { y := f(x) }\ndeny[m] { f(1); m := \"x\" }\n"],
                "data.p.f -> data.p.f",
            ),
            (
                &["package p\na { b }\nb { a }\ndeny[m] { a; m := \"x\" }\n"],
                "data.p.a -> data.p.b -> data.p.a",
            ),
            (
                &["package p\nf(x) = y { y := g(x) }\ng(x) = y { y := f(x) }\ndeny[m] { f(1); m := \"x\" }\n"],
                "data.p.f -> data.p.g -> data.p.f",
            ),
            // Through two modules of the same package.
            (
                &[
                    "package p\nf(x) = y {\n  y := g(x)\n}\ndeny[m] { f(1); m := \"x\" }\n",
                    "package p\ng(x) = y {\n  y := f(x)\n}\n",
                ],
                "data.p.f -> data.p.g -> data.p.f",
            ),
            // Through a `data.` path and an import alias into another package.
            (
                &[
                    "package p\nimport data.lib as l\ndeny[m] { l.check(input); m := \"x\" }\nhelper(x) { x }\n",
                    "package lib\ncheck(x) {\n  data.p.helper(x)\n  data.p.deny[_]\n}\n",
                ],
                "data.p.deny -> data.lib.check -> data.p.deny",
            ),
            // An `else` branch and a head value count.
            (
                &["package p\nv = w { false } else = 1 { true }\nw = v { true }\ndeny[m] { v; m := \"x\" }\n"],
                "data.p.v -> data.p.w -> data.p.v",
            ),
            // Rules with reference heads: siblings are distinct, the whole depends on each.
            (
                &["package p\nr.a := r.b\nr.b := r.a\ndeny[m] { false; m := \"x\" }\n"],
                "data.p.r.a -> data.p.r.b -> data.p.r.a",
            ),
            (
                &["package p\nr.a := 1\nr.b := count(r)\ndeny[m] { false; m := \"x\" }\n"],
                "data.p.r.b -> data.p.r.b",
            ),
            // A rule referring to itself through a comprehension.
            (
                &["package p\ndeny[m] { count([x | x := deny[_]]) > 1; m := \"x\" }\n"],
                "data.p.deny -> data.p.deny",
            ),
        ];
        for (sources, cycle) in cases {
            let message = compile_message(sources);
            assert!(message.contains(cycle), "{cycle}: {message}");
            assert!(message.contains("is recursive"), "{message}");
        }
    }

    #[test]
    fn common_patterns_are_not_mistaken_for_recursion() {
        let sources = [
            // Several deny rules, a default, helpers, v1 syntax, locals named like rules.
            "package p\nimport rego.v1\n\ndefault allow = false\nallow if { input.ok }\n\ndeny contains msg if {\n  not allow\n  msg := \"not allowed\"\n}\n\ndeny contains msg if {\n  allow := input.flags[_]\n  msg := sprintf(\"flag %v\", [allow])\n}\n",
            "package q\n\nhelper(x) = y {\n  y := x + 1\n}\n\nbad[name] {\n  name := input.names[_]\n  startswith(name, \"tmp\")\n}\n\ndeny[msg] {\n  bad[name]\n  msg := sprintf(\"bad name %v, deny %v\", [name, helper(1)])\n}\n\ndeny[msg] {\n  input.deny.deny == \"deny\" # deny\n  msg := \"deny field\"\n}\n\nf(deny) = deny { true }\n\ncount_deny = n {\n  [n, _] := [count(input.xs), 1]\n}\n",
            // A rule calling a same-named rule of another package is not a cycle.
            "package r\nimport data.q\ndeny[msg] {\n  q.deny[msg]\n}\n",
            // Reference-head rules reading their siblings (OPA's documentation example).
            "package s\nresult.payload := {\"iss\": \"x\"}\nresult.check := result.payload.iss == \"x\"\ndeny[m] {\n  not result.check\n  m := \"x\"\n}\n",
        ];
        let m = modules(&sources).unwrap().unwrap();
        let outcome = eval(&m, serde_json::json!({"names": ["tmpx"], "ok": true}));
        assert!(matches!(outcome, RegoOutcome::Denied(_)), "{outcome:?}");
    }

    #[test]
    fn cycles_are_found_in_long_chains_without_recursing() {
        let mut source = String::from("package p\ndeny[m] { r0; m := \"x\" }\n");
        for i in 0..20_000 {
            source.push_str(&format!("r{i} {{ r{} }}\n", i + 1));
        }
        source.push_str("r20000 { r0 }\n");
        let start = Instant::now();
        let (module, message) = recursion(&[source.clone()]).unwrap();
        assert_eq!(module, 0);
        assert!(
            message.starts_with("rule data.p.r0 is recursive: data.p.r0 -> data.p.r1 -> "),
            "{message}"
        );
        assert!(message.ends_with('…'), "{message}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn numbers_are_not_identifiers() {
        let words: Vec<&str> = tokens("x := 1e5 + 1.25 + input.a[0].b")
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(
            words,
            ["x", ":", "=", "1e5", "+", "1.25", "+", "input", ".", "a", "[", "0", "]", ".", "b"]
        );
    }

    const SLOW: &str = "package p\ndeny[m] { some i, j, k; numbers.range(1, 400)[i]; numbers.range(1, 400)[j]; numbers.range(1, 400)[k]; false; m := \"x\" }\n";

    #[test]
    fn runaway_evaluation_hits_the_time_limit() {
        let m = RegoModules::compile(&policies(&[SLOW]), Duration::from_millis(50))
            .unwrap()
            .unwrap();
        let RegoOutcome::Failed(detail) = eval(&m, serde_json::json!({})) else {
            panic!("must time out");
        };
        assert_eq!(detail, "data.p: evaluation exceeded the time limit of 50ms");
    }

    #[test]
    fn the_time_limit_covers_all_packages_of_one_evaluation() {
        let q = SLOW.replace("package p", "package q");
        let r = SLOW.replace("package p", "package r");
        let m = RegoModules::compile(&policies(&[SLOW, &q, &r]), Duration::from_millis(200))
            .unwrap()
            .unwrap();
        let start = Instant::now();
        let outcome = eval(&m, serde_json::json!({}));
        // Formerly each package had the full limit: 600 ms.
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            outcome,
            RegoOutcome::Failed(
                ["p", "q", "r"]
                    .map(|p| format!("data.{p}: evaluation exceeded the time limit of 200ms"))
                    .join("; ")
            )
        );
    }

    #[test]
    fn the_budget_bounds_the_evaluations_of_a_verification() {
        let m = RegoModules::compile(&policies(&[SLOW]), Duration::from_secs(30))
            .unwrap()
            .unwrap();
        let budget = RegoBudget::new(Duration::from_millis(100));
        let start = Instant::now();
        assert_eq!(
            m.evaluate(&serde_json::json!({}), &budget),
            RegoOutcome::Failed(BUDGET_EXHAUSTED.into())
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(budget.is_exhausted());
        // Once spent, even a quick evaluation fails, without running.
        let quick = modules(&[EXIT]).unwrap().unwrap();
        assert_eq!(
            quick.evaluate(&serde_json::json!({"exitcode": 0}), &budget),
            RegoOutcome::Failed(BUDGET_EXHAUSTED.into())
        );
        let zero = RegoBudget::new(Duration::ZERO);
        assert_eq!(
            quick.evaluate(&serde_json::json!({"exitcode": 0}), &zero),
            RegoOutcome::Failed(BUDGET_EXHAUSTED.into())
        );
        // An unrepresentable deadline means no overall bound.
        let endless = RegoBudget::new(Duration::MAX);
        assert_eq!(endless.remaining(), Duration::MAX);
        assert_eq!(
            quick.evaluate(&serde_json::json!({"exitcode": 0}), &endless),
            RegoOutcome::Allowed
        );
    }
}
