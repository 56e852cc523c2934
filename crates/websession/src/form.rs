//! `application/x-www-form-urlencoded` (the sign-in form's body, a page's
//! query string), as the WHATWG URL standard reads it: `&`-separated
//! `name=value` pairs, `+` for a space, `%XX` for a byte, then UTF-8.

/// A form with more fields than this is not ours.
pub const MAX_FIELDS: usize = 32;
/// Bytes of a body or query; the caller stops reading past it.
pub const MAX_LEN: usize = 16 * 1024;

#[derive(Debug)]
pub struct Form {
    fields: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    TooLong,
    TooManyFields,
    /// A `%` not followed by two hex digits.
    BadEscape,
    NotUtf8,
    /// A field given twice: which one counts would be a guess.
    Repeated(String),
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormError::TooLong => write!(f, "longer than {MAX_LEN} bytes"),
            FormError::TooManyFields => write!(f, "more than {MAX_FIELDS} fields"),
            FormError::BadEscape => f.write_str("a % not followed by two hex digits"),
            FormError::NotUtf8 => f.write_str("not UTF-8"),
            FormError::Repeated(n) => write!(f, "the field {n:?} is given twice"),
        }
    }
}

impl Form {
    pub fn parse(bytes: &[u8]) -> Result<Form, FormError> {
        if bytes.len() > MAX_LEN {
            return Err(FormError::TooLong);
        }
        let mut fields: Vec<(String, String)> = Vec::new();
        for pair in bytes.split(|b| *b == b'&') {
            if pair.is_empty() {
                continue;
            }
            if fields.len() == MAX_FIELDS {
                return Err(FormError::TooManyFields);
            }
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let (name, value) = (decode(name)?, decode(value)?);
            if fields.iter().any(|(n, _)| *n == name) {
                return Err(FormError::Repeated(name));
            }
            fields.push((name, value));
        }
        Ok(Form { fields })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

fn decode(bytes: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(h), Some(l)) =
                    (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
                else {
                    return Err(FormError::BadEscape);
                };
                out.push((h * 16 + l) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8)
}

/// `%XX` for every byte but unreserved ones (RFC 3986), for a value put into
/// a query string.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_decoded() {
        let f = Form::parse(b"username=ADTEST%5Calice&password=p%C3%A4ss+w%2Bord&public=on&empty=&bare").unwrap();
        assert_eq!(f.get("username"), Some("ADTEST\\alice"));
        assert_eq!(f.get("password"), Some("päss w+ord"));
        assert_eq!(f.get("public"), Some("on"));
        assert_eq!(f.get("empty"), Some(""));
        assert_eq!(f.get("bare"), Some(""));
        assert_eq!(f.get("missing"), None);
        assert_eq!(Form::parse(b"").unwrap().fields().count(), 0);
        assert_eq!(Form::parse(b"&&a=1&&").unwrap().get("a"), Some("1"));
    }

    #[test]
    fn refusals() {
        assert_eq!(Form::parse(b"a=%2").unwrap_err(), FormError::BadEscape);
        assert_eq!(Form::parse(b"a=%zz").unwrap_err(), FormError::BadEscape);
        assert_eq!(Form::parse(b"a=%ff").unwrap_err(), FormError::NotUtf8);
        assert_eq!(Form::parse(b"a=1&a=2").unwrap_err(), FormError::Repeated("a".into()));
        assert_eq!(Form::parse(b"a=1&%61=2").unwrap_err(), FormError::Repeated("a".into()), "decoded names compare");
        let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("f{i}=x")).collect();
        assert_eq!(Form::parse(many.join("&").as_bytes()).unwrap_err(), FormError::TooManyFields);
        assert_eq!(Form::parse(&vec![b'a'; MAX_LEN + 1]).unwrap_err(), FormError::TooLong);
    }

    #[test]
    fn encode_round_trips() {
        for s in ["/owa/?a=b&c=d#x", "ADTEST\\alice", "päss w+ord", ""] {
            let f = Form::parse(format!("v={}", encode(s)).as_bytes()).unwrap();
            assert_eq!(f.get("v"), Some(s));
        }
    }
}
