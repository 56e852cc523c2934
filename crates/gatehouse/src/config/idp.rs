//! `[[idp]]`: an OpenID Connect provider that signs browsers in
//! (`"OIDC:NAME"`) and whose access tokens programs bring (`"Bearer:NAME"`);
//! a site's `require_acr`, `require_amr`, `require_group`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use super::reader::{Reader, Section};

/// `[[idp]]`, read and checked: the client secret is read from its file.
#[derive(Debug, Clone)]
pub struct Idp {
    pub name: String,
    /// Exactly as the provider writes it in its tokens (`iss`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Always with `openid`.
    pub scopes: Vec<String>,
    /// The redirect URI's path on the host the browser signed in on, under
    /// `/.gatehouse/`, lower case.
    pub redirect_path: String,
    /// The claim that names the user, and how it becomes a domain account.
    pub user_claim: String,
    pub mapping: Mapping,
    pub clock_skew: Duration,
    /// Claims every ID token (and bearer token) must carry.
    pub required_claims: Vec<String>,
    /// The claim holding the user's groups at the provider (`require_group`).
    pub group_claim: String,
    /// `"Bearer:NAME"`: the audience an access token must be for.
    pub bearer_audience: Option<String>,
    /// CA bundle for an https issuer, else the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Each request to the provider (discovery, JWKS, token endpoint).
    pub timeout: Duration,
    /// Where the provider sends the browser after its own sign-out: a path
    /// on the host the browser signed out on.
    pub post_logout_path: String,
}

/// The client secret: never in a `Debug` of the configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

/// How the user claim's value becomes an account of the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// The value is a UPN: S4U2Self with it as an enterprise name.
    Upn,
    /// `{claim}` replaced by that claim's value (`{preferred_username}@AD.TEST`).
    Template(String),
}

/// A site's requirements on the provider's assurance.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    /// The token's `acr` is one of these.
    pub acr: Vec<String>,
    /// The token's `amr` holds every one of these.
    pub amr: Vec<String>,
    /// The provider's group claim holds this.
    pub group: Option<String>,
}

impl ClaimRules {
    pub fn is_empty(&self) -> bool {
        self.acr.is_empty() && self.amr.is_empty() && self.group.is_none()
    }
}

pub const IDP_KEYS: &[&str] = &[
    "name",
    "issuer",
    "client_id",
    "client_secret_file",
    "scopes",
    "redirect_path",
    "user_claim",
    "user_mapping",
    "clock_skew",
    "required_claims",
    "group_claim",
    "bearer_audience",
    "ca_file",
    "timeout",
    "post_logout_path",
];

impl Reader<'_> {
    pub(super) fn idp(&mut self, s: &mut Section<'_, '_>) -> Option<Idp> {
        let name = self.required_string(s, "name").and_then(|(n, span)| {
            let ok = !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                let why = format!("`{n}`: a name of 1 to 32 letters, digits and `-` (sites name it as \"OIDC:{n}\")");
                self.problem(span, &s.key_path("name"), why);
            }
            ok.then_some(n)
        });
        let issuer = self.required_string(s, "issuer").and_then(|(i, span)| match issuer_ok(&i) {
            Ok(()) => Some(i),
            Err(why) => {
                self.problem(span, &s.key_path("issuer"), why);
                None
            }
        });
        let client_id = self.required_string(s, "client_id").map(|(c, _)| c);
        let secret = self.required_string(s, "client_secret_file").and_then(|(f, span)| {
            let path = self.file_path(&f);
            match read_secret(&path) {
                Ok(secret) => Some((path, secret)),
                Err(why) => {
                    self.problem(span, &s.key_path("client_secret_file"), why);
                    None
                }
            }
        });
        let mut scopes: Vec<String> = self
            .string_list(s, "scopes")
            .map(|l| l.into_iter().map(|(v, _)| v).collect())
            .unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
        if !scopes.iter().any(|x| x == "openid") {
            scopes.insert(0, "openid".into());
        }
        let redirect_path = match self.string(s, "redirect_path") {
            None => "/.gatehouse/oidc/callback".to_owned(),
            Some((p, span)) => {
                let lower = p.to_ascii_lowercase();
                let ok = lower.starts_with("/.gatehouse/")
                    && httpguard::routing_path(p.as_bytes()).ok().as_deref() == Some(p.as_bytes())
                    && !["/signin", "/password", "/logoff", "/signedout", "/mfa", "/style.css", "/logo"]
                        .iter()
                        .any(|own| lower["/.gatehouse".len()..].starts_with(own));
                if !ok {
                    let why = format!(
                        "`{p}`: a path under gatehouse's reserved /.gatehouse/ (such as \"/.gatehouse/oidc/callback\") \
                         that none of its own pages uses"
                    );
                    self.problem(span, &s.key_path("redirect_path"), why);
                }
                lower
            }
        };
        let user_claim = self.string(s, "user_claim").map_or_else(|| "upn".to_owned(), |(c, _)| c);
        let mapping = match self.string(s, "user_mapping") {
            None => Mapping::Upn,
            Some((m, _)) if m == "upn" => Mapping::Upn,
            Some((m, span)) => match template_ok(&m) {
                Ok(()) => Mapping::Template(m),
                Err(why) => {
                    self.problem(span, &s.key_path("user_mapping"), why);
                    Mapping::Upn
                }
            },
        };
        let clock_skew = self.duration(s, "clock_skew").unwrap_or(Duration::from_secs(60));
        if clock_skew > Duration::from_secs(600) {
            self.problem(s.span.clone(), &s.key_path("clock_skew"), "at most 10 minutes".into());
        }
        let required_claims =
            self.string_list(s, "required_claims").unwrap_or_default().into_iter().map(|(c, _)| c).collect();
        let group_claim = self.string(s, "group_claim").map_or_else(|| "groups".to_owned(), |(c, _)| c);
        let bearer_audience = self.string(s, "bearer_audience").map(|(a, _)| a);
        let ca_file = self.string(s, "ca_file").and_then(|(f, span)| {
            let path = self.file_path(&f);
            match crate::pem::load_ca_bundle(&path) {
                Ok(_) => Some(path),
                Err(e) => {
                    self.problem(span, &s.key_path("ca_file"), e);
                    None
                }
            }
        });
        let timeout = self.duration(s, "timeout").unwrap_or(Duration::from_secs(10));
        let post_logout_path = match self.string(s, "post_logout_path") {
            None => "/.gatehouse/signedout".to_owned(),
            Some((p, _)) if p.starts_with('/') && !p.starts_with("//") => p,
            Some((p, span)) => {
                self.problem(span, &s.key_path("post_logout_path"), format!("`{p}`: a path such as \"/\""));
                "/".to_owned()
            }
        };
        let (_, client_secret) = secret?;
        Some(Idp {
            name: name?,
            issuer: issuer?,
            client_id: client_id?,
            client_secret: Secret(client_secret),
            scopes,
            redirect_path,
            user_claim,
            mapping,
            clock_skew,
            required_claims,
            group_claim,
            bearer_audience,
            ca_file,
            timeout,
            post_logout_path,
        })
    }

    /// A site's `require_acr`, `require_amr`, `require_group`.
    pub(super) fn claim_rules(&mut self, s: &mut Section<'_, '_>) -> ClaimRules {
        let list = |r: &mut Self, s: &mut Section<'_, '_>, key| {
            r.string_list(s, key).unwrap_or_default().into_iter().map(|(v, _)| v).collect::<Vec<_>>()
        };
        ClaimRules {
            acr: list(self, s, "require_acr"),
            amr: list(self, s, "require_amr"),
            group: self.string(s, "require_group").map(|(g, _)| g),
        }
    }
}

/// An issuer is an https URL (http only on loopback, for tests), without
/// query or fragment.
fn issuer_ok(i: &str) -> Result<(), String> {
    let rest = i
        .strip_prefix("https://")
        .or_else(|| i.strip_prefix("http://").filter(|r| r.starts_with("127.") || r.starts_with("localhost")))
        .ok_or_else(|| {
            format!(
                "`{i}`: an https URL such as \"https://login.microsoftonline.com/TENANT/v2.0\" (http only on loopback)"
            )
        })?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) || rest.starts_with('/') {
        return Err(format!("`{i}`: an issuer URL has a host and no query or fragment"));
    }
    Ok(())
}

fn template_ok(t: &str) -> Result<(), String> {
    let mut rest = t;
    let mut any = false;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or_else(|| format!("`{t}`: a `{{` without its `}}`"))?;
        let claim = &rest[open + 1..open + close];
        if claim.is_empty() || !claim.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("`{t}`: `{{{claim}}}` is not a claim name"));
        }
        any = true;
        rest = &rest[open + close + 1..];
    }
    if !any {
        return Err(format!("`{t}`: \"upn\", or a template naming a claim such as \"{{preferred_username}}@AD.TEST\""));
    }
    Ok(())
}

/// The client secret: one line, in a file only gatehouse's account reads.
fn read_secret(path: &std::path::Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: readable or writable by others (mode {mode:03o}): it holds the client secret; `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() || secret.contains(['\n', '\r']) {
        return Err(format!("{}: the client secret on one line", path.display()));
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_and_templates() {
        assert!(issuer_ok("https://login.microsoftonline.com/t/v2.0").is_ok());
        assert!(issuer_ok("http://127.0.0.1:9400").is_ok());
        assert!(issuer_ok("http://idp.example.com").is_err(), "http off loopback");
        assert!(issuer_ok("https://idp.example.com/?x").is_err());
        assert!(template_ok("{preferred_username}@AD.TEST").is_ok());
        assert!(template_ok("ADTEST").is_err());
        assert!(template_ok("{pre ferred}@x").is_err());
        assert!(template_ok("{upn").is_err());
    }
}
