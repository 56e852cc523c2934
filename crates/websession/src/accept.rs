//! Whether a request accepts an HTML page (RFC 9110 12.5.1 `Accept`): a
//! browser navigating does (`text/html,application/xhtml+xml,...`); Outlook,
//! ActiveSync devices and scripts send `*/*` or their own types, and are not
//! sent to a sign-in page they cannot show.

pub fn wants_html(accept: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(accept) else { return false };
    text.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let html = media.eq_ignore_ascii_case("text/html") || media.eq_ignore_ascii_case("application/xhtml+xml");
        html && !parts.any(|p| {
            let p = p.trim();
            p.len() >= 2 && p[..2].eq_ignore_ascii_case("q=") && p[2..].parse::<f64>().is_ok_and(|q| q <= 0.0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_yes_others_no() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        assert!(wants_html(chrome.as_bytes()));
        assert!(wants_html(b"TEXT/HTML"));
        assert!(wants_html(b"application/xhtml+xml"));
        assert!(wants_html(b"text/html;level=1;q=0.5"));
        assert!(!wants_html(b"*/*"), "curl, Outlook, ActiveSync");
        assert!(!wants_html(b"text/*"));
        assert!(!wants_html(b"application/json"));
        assert!(!wants_html(b"text/html;q=0"), "refused explicitly");
        assert!(!wants_html(b"text/html; q=0.000"));
        assert!(!wants_html(b""));
        assert!(!wants_html(b"\xfftext/html"));
    }
}
