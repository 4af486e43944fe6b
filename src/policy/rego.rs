//! The Rego modules of one required attestation, compiled once and evaluated per attestor.
//!
//! Modules are parsed as witness parses them: Rego v0 syntax, with the v1 keywords available
//! through `import rego.v1` or `future.keywords`. Evaluation is sandboxed: the engine is built
//! without network or runtime builtins, builtin errors are errors, and a time limit applies.
//! Every way of not producing a clean, empty `deny` set is a failure, never a pass.

use std::num::NonZeroU32;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};

use super::document::RegoPolicy;
use crate::encoding::decode_base64;

/// Default wall-clock limit for evaluating the modules of one attestation against one input.
pub const DEFAULT_REGO_TIME_LIMIT: Duration = Duration::from_secs(2);

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
    /// The module does not parse as Rego v0 (with optional v1 imports).
    #[error("rego module {name:?} does not compile: {message}")]
    Compile {
        /// Module name.
        name: String,
        /// The engine's message.
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

/// Compiled modules of one policy attestation entry.
#[derive(Clone)]
pub struct RegoModules {
    engine: Engine,
    packages: Vec<String>,
    names: Vec<String>,
}

impl std::fmt::Debug for RegoModules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoModules")
            .field("packages", &self.packages)
            .field("names", &self.names)
            .finish()
    }
}

impl RegoModules {
    /// Decodes and compiles the modules; `None` when there are none.
    ///
    /// All modules of one entry share one engine, as witness loads them together, so they may
    /// extend the same package. Unlike witness, two modules with the same name both count
    /// (witness silently drops the earlier one).
    ///
    /// # Errors
    /// A module that is not base64 text, is empty, or does not compile.
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
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: time_limit,
            check_interval: NonZeroU32::MIN,
        });

        let mut packages = Vec::new();
        let mut names = Vec::new();
        for (index, policy) in policies.iter().enumerate() {
            let name = policy.name.clone();
            let source = decode_base64(&policy.module)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| RegoError::Encoding { name: name.clone() })?;
            if !has_statements(&source) {
                return Err(RegoError::Empty { name });
            }
            if let Some(keyword) = unimported_v1_keyword(&source) {
                return Err(RegoError::Compile {
                    name,
                    message: format!(
                        "keyword `{keyword}` needs `import rego.v1` or `import future.keywords.{keyword}` (policies are Rego v0)"
                    ),
                });
            }
            // A unique file name per module, so same-named modules do not replace each other.
            let file = format!("{index}-{name}.rego");
            let package = engine
                .add_policy(file, source)
                .map_err(|e| RegoError::Compile {
                    name: name.clone(),
                    message: first_line(&e.to_string()),
                })?;
            if !packages.contains(&package) {
                packages.push(package);
            }
            names.push(name);
        }
        Ok(Some(Self {
            engine,
            packages,
            names,
        }))
    }

    /// The module names, for messages.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Evaluates `data.<package>.deny` of every package with `input` as the attestor object.
    pub fn evaluate(&self, input: &serde_json::Value) -> RegoOutcome {
        let mut engine = self.engine.clone();
        engine.set_input(Value::from(input.clone()));
        let mut messages = Vec::new();
        let mut failures = Vec::new();
        // Every package is evaluated, so a broken one cannot hide another's denial.
        for package in &self.packages {
            match Self::package_deny(&mut engine, package) {
                Ok(denials) => messages.extend(denials),
                Err(failure) => failures.push(failure),
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
    fn package_deny(engine: &mut Engine, package: &str) -> Result<Vec<String>, String> {
        let value = match engine.eval_rule(format!("{package}.deny")) {
            Ok(v) => v,
            // regorus reports a rule that no module defines as an invalid path.
            Err(e) if e.to_string().contains("not a valid rule path") => Value::Undefined,
            Err(e) => return Err(format!("{package}: {}", first_line(&e.to_string()))),
        };
        let items: Vec<&Value> = match &value {
            Value::Set(set) => set.iter().collect(),
            Value::Array(array) => array.iter().collect(),
            Value::Undefined => {
                return Err(format!(
                    "{package} has no deny rule, or deny is undefined for this input"
                ))
            }
            other => {
                return Err(format!(
                    "{package}.deny must be a set of strings, got {}",
                    describe(other)
                ))
            }
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.to_string()),
                other => Err(format!(
                    "{package}.deny holds a non-string element ({})",
                    describe(other)
                )),
            })
            .collect()
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

/// The first Rego v1 keyword used without the import that enables it, if any.
///
/// regorus's v0 mode accepts `if`, `contains`, `in` and `every` without an import, while OPA's
/// v0 parser (which witness uses) treats them as keywords only after `import rego.v1` or
/// `import future.keywords...`. This scan closes that gap so a module witness cannot parse is
/// refused here too. It skips comments, strings, field accesses (`input.if`) and calls of the
/// `contains()` builtin.
fn unimported_v1_keyword(source: &str) -> Option<&'static str> {
    const KEYWORDS: [&str; 4] = ["if", "contains", "in", "every"];
    let tokens = tokens(source);
    let imported = |keyword: &str| {
        tokens
            .iter()
            .enumerate()
            .any(|(i, t)| t.1 == "import" && import_enables(tokens.get(i + 1..), keyword))
    };
    for (i, (_, token)) in tokens.iter().enumerate() {
        let Some(keyword) = KEYWORDS.iter().find(|k| **k == *token) else {
            continue;
        };
        let after_dot = i > 0 && tokens[i - 1].1 == ".";
        let is_call = tokens.get(i + 1).is_some_and(|t| t.1 == "(");
        if after_dot || (*keyword == "contains" && is_call) {
            continue;
        }
        if !imported(keyword) {
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

/// Identifiers and single punctuation characters with their byte offsets, skipping comments
/// and string literals.
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
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
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

fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text);
    line.trim().chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::encode_base64;

    fn modules(sources: &[&str]) -> Result<Option<RegoModules>, RegoError> {
        let policies: Vec<RegoPolicy> = sources
            .iter()
            .enumerate()
            .map(|(i, s)| RegoPolicy {
                name: format!("m{i}"),
                module: encode_base64(s.as_bytes()),
            })
            .collect();
        RegoModules::compile(&policies, DEFAULT_REGO_TIME_LIMIT)
    }

    const EXIT: &str = "package cmd\ndeny[msg] {\n  input.exitcode != 0\n  msg := sprintf(\"exit %v\", [input.exitcode])\n}\n";

    #[test]
    fn v0_module_denies_and_allows() {
        let m = modules(&[EXIT]).unwrap().unwrap();
        assert_eq!(
            m.evaluate(&serde_json::json!({"exitcode": 2})),
            RegoOutcome::Denied(vec!["exit 2".into()])
        );
        assert_eq!(
            m.evaluate(&serde_json::json!({"exitcode": 0})),
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
            m.evaluate(&serde_json::json!({"x": true})),
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
            m.evaluate(&serde_json::json!({"s": "xifx", "if": "y"})),
            RegoOutcome::Denied(vec!["y".into()])
        );
    }

    #[test]
    fn missing_or_mistyped_deny_fails() {
        let no_deny = modules(&["package p\nallow = true\n"]).unwrap().unwrap();
        assert!(matches!(
            no_deny.evaluate(&serde_json::json!({})),
            RegoOutcome::Failed(_)
        ));
        let string_deny = modules(&["package p\ndeny = \"no\"\n"]).unwrap().unwrap();
        assert!(matches!(
            string_deny.evaluate(&serde_json::json!({})),
            RegoOutcome::Failed(_)
        ));
        let false_deny = modules(&["package p\ndeny = false\n"]).unwrap().unwrap();
        assert!(matches!(
            false_deny.evaluate(&serde_json::json!({})),
            RegoOutcome::Failed(_)
        ));
        let number_items = modules(&["package p\ndeny[x] { x := 1 }\n"])
            .unwrap()
            .unwrap();
        assert!(matches!(
            number_items.evaluate(&serde_json::json!({})),
            RegoOutcome::Failed(_)
        ));
    }

    #[test]
    fn a_package_without_deny_is_named_and_does_not_mask_another_packages_denial() {
        let m = modules(&[EXIT, "package other\nallow = true\n"])
            .unwrap()
            .unwrap();
        let RegoOutcome::Failed(detail) = m.evaluate(&serde_json::json!({"exitcode": 1})) else {
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
        let outcome = modules(&[http]).map(|m| m.map(|m| m.evaluate(&serde_json::json!({}))));
        assert!(
            matches!(
                outcome,
                Err(RegoError::Compile { .. }) | Ok(Some(RegoOutcome::Failed(_)))
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn runaway_evaluation_hits_the_time_limit() {
        let slow = "package p\ndeny[m] { some i, j, k; numbers.range(1, 400)[i]; numbers.range(1, 400)[j]; numbers.range(1, 400)[k]; false; m := \"x\" }\n";
        let policies = [RegoPolicy {
            name: "slow".into(),
            module: encode_base64(slow.as_bytes()),
        }];
        let m = RegoModules::compile(&policies, Duration::from_millis(50))
            .unwrap()
            .unwrap();
        assert!(matches!(
            m.evaluate(&serde_json::json!({})),
            RegoOutcome::Failed(_)
        ));
    }
}
