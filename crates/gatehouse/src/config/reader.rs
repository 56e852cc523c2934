//! The reading machinery: a TOML table walked key by key, every problem
//! collected with its line, column and key path, and typed getters that
//! report a value of the wrong kind. What the keys mean is `read.rs`'s.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One thing wrong with the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `site[1].backend`; empty for syntax errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with the file, in file order.
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

pub type Span = Range<usize>;

pub struct Reader<'t> {
    pub file: PathBuf,
    pub base: PathBuf,
    pub text: &'t str,
    pub problems: Vec<Problem>,
    /// Whether `[domain] keytab` is opened and its principals checked.
    pub read_keytab: bool,
    /// The `[[idp]]` names, in order, for `"OIDC:NAME"` and `"Bearer:NAME"`.
    pub idp_names: Vec<String>,
}

/// A table being read: remembers which keys were asked for, so that the rest can
/// be reported as unknown.
pub struct Section<'a, 'i> {
    pub table: &'a DeTable<'i>,
    pub span: Span,
    pub path: String,
    pub known: Vec<&'static str>,
}

impl<'a, 'i> Section<'a, 'i> {
    pub fn get(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.known.push(key);
        self.table.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v)
    }

    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

impl<'t> Reader<'t> {
    pub fn problem(&mut self, span: Span, key: &str, message: String) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem { file: self.file.clone(), line, column, key: key.to_owned(), message });
    }

    /// `keys`: every key the table may have. Declared up front, not learnt from
    /// the keys read, so that a reader that stops early (its `tls` failed to
    /// load, its `source` is misspelt) does not turn the keys it never reached
    /// into false "unknown key" problems.
    pub fn section<'a, 'i>(
        &mut self,
        value: &'a Spanned<DeValue<'i>>,
        path: String,
        keys: &[&'static str],
    ) -> Option<Section<'a, 'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(Section { table: t, span: value.span(), path, known: keys.to_vec() }),
            other => {
                self.problem(value.span(), &path, format!("expected a table, found {}", kind(other)));
                None
            }
        }
    }

    pub fn finish(&mut self, s: Section<'_, '_>) {
        for (k, _) in s.table.iter() {
            let name = k.get_ref().as_ref();
            if !s.known.contains(&name) {
                let mut message = format!("unknown key `{name}`");
                if let Some(near) = s.known.iter().find(|known| close(known, name)) {
                    message.push_str(&format!(" (did you mean `{near}`?)"));
                }
                self.problem(k.span(), &s.key_path(name), message);
            }
        }
    }

    pub fn string(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<(String, Span)> {
        let v = s.get(key)?;
        match v.get_ref() {
            DeValue::String(text) => Some((text.to_string(), v.span())),
            other => {
                let path = s.key_path(key);
                self.problem(v.span(), &path, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    pub fn required_string(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<(String, Span)> {
        let present = s.table.iter().any(|(k, _)| k.get_ref().as_ref() == key);
        if !present {
            s.known.push(key);
            let path = s.key_path(key);
            self.problem(s.span.clone(), &path, format!("missing required key `{key}`"));
            return None;
        }
        self.string(s, key)
    }

    pub fn bool(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<bool> {
        let v = s.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                let path = s.key_path(key);
                self.problem(v.span(), &path, format!("expected true or false, found {}", kind(other)));
                None
            }
        }
    }

    pub fn count(&mut self, s: &mut Section<'_, '_>, key: &'static str, min: u64, max: u64) -> Option<usize> {
        let v = s.get(key)?;
        let path = s.key_path(key);
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n as usize),
            _ => {
                self.problem(v.span(), &path, format!("expected a whole number from {min} to {max}"));
                None
            }
        }
    }

    /// A duration: a whole number of seconds, or a string such as "90s", "20m", "1h".
    pub fn duration(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<Duration> {
        let v = s.get(key)?;
        let path = s.key_path(key);
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix()).ok().map(Duration::from_secs),
            DeValue::String(t) => humantime::parse_duration(t).ok(),
            _ => None,
        };
        match parsed {
            Some(d) if !d.is_zero() && d <= Duration::from_secs(30 * 24 * 3600) => Some(d),
            _ => {
                self.problem(
                    v.span(),
                    &path,
                    "expected a duration above zero and at most 30 days: seconds, or a string like \"90s\", \"20m\", \"1h\"".into(),
                );
                None
            }
        }
    }

    pub fn string_list(&mut self, s: &mut Section<'_, '_>, key: &'static str) -> Option<Vec<(String, Span)>> {
        let v = s.get(key)?;
        let path = s.key_path(key);
        let DeValue::Array(items) = v.get_ref() else {
            self.problem(v.span(), &path, format!("expected a list of strings, found {}", kind(v.get_ref())));
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(t) => out.push((t.to_string(), item.span())),
                other => self.problem(
                    item.span(),
                    &format!("{path}[{i}]"),
                    format!("expected a string, found {}", kind(other)),
                ),
            }
        }
        Some(out)
    }

    pub fn file_path(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    /// A string that must be one of `choices` (each with its meaning): absent,
    /// the first (the default); one of them, its meaning; anything else, a
    /// problem naming every choice, and None.
    pub fn choice<T: Copy>(&mut self, s: &mut Section<'_, '_>, key: &'static str, choices: &[(&str, T)]) -> Option<T> {
        let Some((text, span)) = self.string(s, key) else {
            return choices.first().map(|c| c.1);
        };
        if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(*value);
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        let expected = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        self.problem(span, &s.key_path(key), format!("`{text}`: expected {expected}"));
        None
    }
}

pub fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// Same letters but for one edit or a different case: worth a "did you mean".
fn close(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
    prefix + suffix + 1 >= a.len().max(b.len())
}

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
