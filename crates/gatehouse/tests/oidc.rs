//! OpenID Connect against a real provider (panva's oidc-provider on Node.js,
//! the project's copy in tests/idp, installed into target/idp by
//! tests/idp/install.sh) and the lab: curl as the browser, following each
//! redirect by hand. alice signs in at the provider and reaches the lab's
//! Kerberos-only backend as alice@AD.TEST; a provider user without an AD
//! account gets the page; replayed state, replayed code and a wrong nonce are
//! refused; logoff ends the provider's session too; bearer tokens (the
//! provider's JWT access tokens for a resource indicator) reach the backend
//! through KCD, and forged ones (alg none, HS256 with the client secret,
//! another key), wrong-audience and expired ones are refused; a key rotation
//! at the provider is taken after one JWKS fetch; the provider stopped gives
//! 503 and lets nobody in.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::*;

const RESOURCE: &str = "https://api.ad.test";

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

use common::idp::{free_port, start as start_provider, Provider};

/// One curl request: (status, Location, body). `jar`: the cookie jar.
fn curl(jar: &Path, ca: &Path, port: u16, url: &str, args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "-c"])
        .arg(jar)
        .arg("-b")
        .arg(jar)
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("proxy.ad.test:{port}:127.0.0.1")])
        .args(["-H", "Accept: text/html", "-w", "\n%{http_code} %{redirect_url}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", "0 "));
    let (code, location) = tail.split_once(' ').unwrap_or((tail, ""));
    (code.trim().parse().unwrap_or(0), location.trim().to_owned(), body.to_owned())
}

fn query_param(url: &str, name: &str) -> String {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    q.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap_or("").to_owned()
}

struct World {
    g: Gatehouse,
    ca: PathBuf,
    port: u16,
    dir: PathBuf,
}

impl World {
    fn site(&self) -> String {
        format!("https://proxy.ad.test:{}", self.port)
    }

    /// From the protected page to the provider's login form: the provider's
    /// authorization URL gatehouse sent the browser to.
    fn to_provider(&self, jar: &Path) -> String {
        let (s, loc, body) = curl(jar, &self.ca, self.port, &format!("{}/whoami?from=oidc", self.site()), &[]);
        assert_eq!(s, 303, "{body}");
        assert!(loc.contains("/.gatehouse/oidc/start?idp=corp"), "{loc}");
        let (s, loc, body) = curl(jar, &self.ca, self.port, &loc, &[]);
        assert_eq!(s, 303, "{body}\n{}", self.g.stderr());
        assert!(loc.starts_with("http://127.0.0.1:") && loc.contains("code_challenge_method=S256"), "{loc}");
        loc
    }

    /// At the provider: its login form filled; the callback URL it sends back.
    fn log_in_at_provider(&self, jar: &Path, auth_url: &str, user: &str, password: &str) -> String {
        let (s, interaction, _) = curl(jar, &self.ca, self.port, auth_url, &[]);
        assert_eq!(s, 303);
        let (s, _, page) = curl(jar, &self.ca, self.port, &interaction, &[]);
        assert_eq!(s, 200, "{page}");
        let (s, resume, page) = curl(
            jar,
            &self.ca,
            self.port,
            &format!("{interaction}/login"),
            &["--data-urlencode", &format!("login={user}"), "--data-urlencode", &format!("password={password}")],
        );
        assert_eq!(s, 303, "{page}");
        let (s, callback, _) = curl(jar, &self.ca, self.port, &resume, &[]);
        assert_eq!(s, 303);
        assert!(callback.starts_with(&format!("{}/.gatehouse/oidc/callback?", self.site())), "{callback}");
        callback
    }

    fn jar(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.jar"))
    }
}

/// A bearer token of the provider's for `RESOURCE`, for `user`: the code
/// flow driven directly (as a program holding a token would have done).
fn access_token(p: &Provider, jar: &Path, user: &str, password: &str) -> String {
    let redirect = p.redirect.as_str();
    let verifier = b64url(b"a verifier of this test's, long enough for PKCE!");
    let challenge = {
        use sha2::Digest;
        b64url(&sha2::Sha256::digest(verifier.as_bytes()))
    };
    let base = format!("http://127.0.0.1:{}", p.port);
    let auth = format!(
        "{base}/auth?response_type=code&client_id=gatehouse&redirect_uri={}&scope=openid%20profile%20api&state=s&nonce=n\
         &code_challenge={challenge}&code_challenge_method=S256&resource={}",
        websession::form::encode(redirect),
        websession::form::encode(RESOURCE)
    );
    let none = Path::new("/dev/null");
    let (_, interaction, _) = curl(jar, none, 1, &auth, &[]);
    curl(jar, none, 1, &interaction, &[]);
    let (_, resume, _) = curl(
        jar,
        none,
        1,
        &format!("{interaction}/login"),
        &["--data-urlencode", &format!("login={user}"), "--data-urlencode", &format!("password={password}")],
    );
    let (_, back, _) = curl(jar, none, 1, &resume, &[]);
    let code = query_param(&back, "code");
    assert!(!code.is_empty(), "{back}");
    let (s, _, body) = curl(
        jar,
        none,
        1,
        &format!("{base}/token"),
        &[
            "-u",
            "gatehouse:s3cret",
            "-d",
            "grant_type=authorization_code",
            "-d",
            &format!("code={code}"),
            "--data-urlencode",
            &format!("redirect_uri={redirect}"),
            "-d",
            &format!("code_verifier={verifier}"),
            "--data-urlencode",
            &format!("resource={RESOURCE}"),
        ],
    );
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let at = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(at.split('.').count(), 3, "a JWT access token: {at:.40}");
    at
}

fn bearer(w: &World, token: &str) -> (u16, String) {
    bearer_at(w, token, "/api/whoami")
}

fn bearer_at(w: &World, token: &str, path: &str) -> (u16, String) {
    let jar = w.jar("bearer");
    let _ = std::fs::remove_file(&jar);
    let (s, _, body) =
        curl(&jar, &w.ca, w.port, &format!("{}{path}", w.site()), &["-H", &format!("Authorization: Bearer {token}")]);
    (s, body)
}

fn parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    let p: Vec<_> = token.split('.').collect();
    let dec =
        |s: &str| serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (dec(p[0]), dec(p[1]))
}

#[test]
fn sign_in_at_the_provider_bearer_tokens_and_every_refusal() {
    let Some(env) = lab_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_owned();
    let ca = make_certs(dir.path(), &[("proxy", &["proxy.ad.test"])]);
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    let write_private = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write_private("session.keys", &websession::Keys::line(&key));
    write_private("client.secret", "s3cret\n");
    // The provider's users: alice and bob of the lab, and carol whom the
    // domain does not know.
    let users = serde_json::json!({
        "alice": {"password": "Alice-Pass1", "claims": {"preferred_username": "alice", "upn": "alice@ad.test", "groups": ["gatehouse-users"]}},
        "bob": {"password": "Bob-Pass1", "amr": ["pwd", "mfa"], "claims": {"preferred_username": "bob", "upn": "bob@ad.test", "groups": ["gatehouse-users", "gatehouse-admins"]}},
        "oidccarol": {"password": "Carol-Pass1", "claims": {"preferred_username": "oidccarol", "upn": "oidccarol@ad.test"}},
    });
    std::fs::write(dir.path().join("users.json"), users.to_string()).unwrap();
    let idp_port = free_port();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let idp = format!(
        "name = \"corp\"\nissuer = \"{issuer}\"\nclient_id = \"gatehouse\"\nclient_secret_file = \"client.secret\"\n\
         bearer_audience = \"{RESOURCE}\"\nclock_skew = \"1s\"\ntimeout = \"3s\"\n\n\
         [idp]\nname = \"down\"\nissuer = \"http://127.0.0.1:{}\"\nclient_id = \"gatehouse\"\n\
         client_secret_file = \"client.secret\"\ntimeout = \"2s\"",
        free_port()
    );
    let config = Config::new()
        .domain(Domain::lab(&env))
        .accounts(Accounts::winbind(&env))
        .table("forms", "key_file = \"session.keys\"\ntitle = \"AD.TEST apps\"")
        .table("idp", &idp)
        .listener(Listener::tls("public", "proxy"))
        .site(
            Site::lab_kcd("mfa", "public", &env)
                .hosts(&["proxy.ad.test"])
                .path_prefix("/mfa")
                .auth(&["OIDC:corp", "Bearer:corp"])
                .set_str("mfa", "required"),
        )
        .site(
            Site::lab_kcd("admins", "public", &env)
                .hosts(&["proxy.ad.test"])
                .path_prefix("/admins")
                .auth(&["OIDC:corp"])
                .set_str("require_group", "gatehouse-admins"),
        )
        .site(Site::lab_kcd("down", "public", &env).hosts(&["proxy.ad.test"]).path_prefix("/down").auth(&["OIDC:down"]))
        .site(Site::lab_kcd("api", "public", &env).hosts(&["proxy.ad.test"]).path_prefix("/api").auth(&["Bearer:corp"]))
        .site(Site::lab_kcd("apps", "public", &env).hosts(&["proxy.ad.test"]).auth(&["OIDC:corp", "NTLM"]));
    let config = config.to_string().replace("[idp]", "[[idp]]");
    let g = Gatehouse::start_in(dir, &config);
    let port = g.port();
    let w = World { g, ca, port, dir: dir_path.clone() };
    let redirect = format!("https://proxy.ad.test:{port}/.gatehouse/oidc/callback");
    let provider_env = |jwks: &str| {
        vec![
            ("REDIRECT_URI", redirect.clone()),
            ("POST_LOGOUT_REDIRECT_URI", format!("https://proxy.ad.test:{port}/.gatehouse/signedout")),
            ("USERS_FILE", dir_path.join("users.json").display().to_string()),
            ("RESOURCE", RESOURCE.to_owned()),
            ("JWKS_FILE", dir_path.join(jwks).display().to_string()),
            ("ACCESS_TOKEN_TTL", "600".to_owned()),
        ]
    };
    let p = start_provider(&dir_path, idp_port, &provider_env("jwks-1.json"), dir_path.join("idp-1.log"));

    // A provider that cannot be reached (nothing listens on its port): its
    // discovery fails, the browser gets the 503 page, nobody is signed in.
    let jar0 = w.jar("down");
    let (s, loc, _) = curl(&jar0, &w.ca, port, &format!("{}/down/whoami", w.site()), &[]);
    assert_eq!(s, 303);
    assert!(loc.contains("/.gatehouse/oidc/start?idp=down"), "{loc}");
    let (s, _, body) = curl(&jar0, &w.ca, port, &loc, &[]);
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("The sign-in service down cannot be reached"), "{body}");
    assert!(w.g.stderr().contains("sign-in provider unreachable"), "{}", w.g.stderr());

    // alice: to the provider, back, and to the Kerberos-only backend as herself.
    let jar = w.jar("alice");
    let auth_url = w.to_provider(&jar);
    let callback = w.log_in_at_provider(&jar, &auth_url, "alice", "Alice-Pass1");
    let (s, loc, body) = curl(&jar, &w.ca, port, &callback, &[]);
    assert_eq!(s, 303, "{body}\n{}", w.g.stderr());
    assert_eq!(loc, format!("{}/whoami?from=oidc", w.site()));
    let (s, _, body) = curl(&jar, &w.ca, port, &loc, &[]);
    assert_eq!(s, 200, "{body}\n{}", w.g.stderr());
    assert!(body.contains("REMOTE_USER=alice@AD.TEST"), "{body}");
    w.g.wait_for_record(|r| r["user"] == "ADTEST\\alice" && r["auth"] == "OIDC");

    // The same callback again: the state was used.
    let (s, _, body) = curl(&jar, &w.ca, port, &callback, &[]);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("already used"), "{body}");

    // A replayed code under a fresh state of this browser: the provider refuses it.
    let jar2 = w.jar("replay");
    let auth2 = w.to_provider(&jar2);
    let state2 = query_param(&auth2, "state");
    let old_code = query_param(&callback, "code");
    let (s, _, body) =
        curl(&jar2, &w.ca, port, &format!("{}/.gatehouse/oidc/callback?code={old_code}&state={state2}", w.site()), &[]);
    assert_eq!(s, 403, "{body}");
    assert!(w.g.stderr().contains("refused the code"), "{}", w.g.stderr());

    // A code for another nonce than the one gatehouse sent (same state,
    // verifier's challenge and redirect URI): refused.
    let jar3 = w.jar("nonce");
    let auth3 = w.to_provider(&jar3);
    let nonce = query_param(&auth3, "nonce");
    let tampered = auth3.replace(&format!("nonce={nonce}"), "nonce=someone-elses");
    let cb3 = w.log_in_at_provider(&jar3, &tampered, "alice", "Alice-Pass1");
    let (s, _, body) = curl(&jar3, &w.ca, port, &cb3, &[]);
    assert_eq!(s, 403, "{body}");
    assert!(w.g.stderr().contains("nonce is not the one"), "{}", w.g.stderr());

    // A callback with a state this browser did not start: refused.
    let jar4 = w.jar("foreign");
    let (s, _, _) = curl(&jar4, &w.ca, port, &cb3, &[]);
    assert_eq!(s, 403);

    // alice signed in with a password only: the MFA site says so.
    let (s, _, body) = curl(&jar, &w.ca, port, &format!("{}/mfa/whoami", w.site()), &[]);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("second factor"), "{body}");

    // A site for the provider's group gatehouse-admins: alice is not in it.
    let (s, _, body) = curl(&jar, &w.ca, port, &format!("{}/admins/whoami", w.site()), &[]);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("for members of gatehouse-admins at corp"), "{body}");

    // bob did MFA at the provider: the MFA site lets him in.
    let jarb = w.jar("bob");
    let auth_b = w.to_provider(&jarb);
    let cb = w.log_in_at_provider(&jarb, &auth_b, "bob", "Bob-Pass1");
    let (s, _, _) = curl(&jarb, &w.ca, port, &cb, &[]);
    assert_eq!(s, 303);
    let (s, _, body) = curl(&jarb, &w.ca, port, &format!("{}/mfa/whoami", w.site()), &[]);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("REMOTE_USER=bob@AD.TEST"), "{body}");
    let (s, _, body) = curl(&jarb, &w.ca, port, &format!("{}/admins/whoami", w.site()), &[]);
    assert_eq!(s, 200, "bob is in the provider's gatehouse-admins: {body}");

    // carol is known to the provider only: the page says so, and a log line.
    let jarc = w.jar("carol");
    let auth_c = w.to_provider(&jarc);
    let cb = w.log_in_at_provider(&jarc, &auth_c, "oidccarol", "Carol-Pass1");
    let (s, _, body) = curl(&jarc, &w.ca, port, &cb, &[]);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("the domain has no account for oidccarol@ad.test"), "{body}");
    assert!(w.g.stderr().contains("no domain account for oidccarol@ad.test"), "{}", w.g.stderr());

    // Logoff ends gatehouse's session and sends the browser to end the provider's.
    let (s, loc, _) = curl(&jar, &w.ca, port, &format!("{}/.gatehouse/logoff", w.site()), &[]);
    assert_eq!(s, 303);
    assert!(loc.starts_with(&format!("{issuer}/session/end?id_token_hint=")), "{loc}");
    let (s, _, page) = curl(&jar, &w.ca, port, &loc, &[]);
    assert_eq!(s, 200, "{page}");
    let xsrf = page.split("name=\"xsrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_owned();
    let (s, back, _) = curl(
        &jar,
        &w.ca,
        port,
        &format!("{issuer}/session/end/confirm"),
        &["-d", &format!("xsrf={xsrf}"), "-d", "logout=yes"],
    );
    assert_eq!(s, 303);
    assert!(back.starts_with(&format!("{}/.gatehouse/signedout", w.site())), "{back}");
    let (s, loc, _) = curl(&jar, &w.ca, port, &format!("{}/whoami", w.site()), &[]);
    assert_eq!(s, 303, "signed out here");
    assert!(loc.contains("/.gatehouse/oidc/start"));
    // At the provider the next sign-in asks for the password again.
    let auth_again = w.to_provider(&jar);
    let (s, interaction, _) = curl(&jar, &w.ca, port, &auth_again, &[]);
    assert_eq!(s, 303);
    assert!(interaction.contains("/interaction/"), "the provider's session ended: {interaction}");

    // Bearer: a good token reaches the backend through KCD as the user.
    let pjar = w.jar("program");
    let token = access_token(&p, &pjar, "alice", "Alice-Pass1");
    let (s, body) = bearer(&w, &token);
    assert_eq!(s, 200, "{body}\n{}", w.g.stderr());
    assert!(body.contains("REMOTE_USER=alice@AD.TEST"), "{body}");
    // On the site that requires a second factor: alice's token says amr pwd only.
    let (s, body) = bearer_at(&w, &token, "/mfa/whoami");
    assert_eq!(s, 401, "{body}");
    assert!(w.g.stderr().contains("bearer token without mfa in amr"), "{}", w.g.stderr());
    let bob_token = access_token(&p, &w.jar("program-bob"), "bob", "Bob-Pass1");
    let (s, body) = bearer_at(&w, &bob_token, "/mfa/whoami");
    assert_eq!(s, 200, "bob's token says amr mfa: {body}");
    assert!(body.contains("REMOTE_USER=bob@AD.TEST"), "{body}");
    // An ID token is for the client, not for the API: wrong audience.
    let (header, claims) = parts(&token);
    let kid = header["kid"].as_str().unwrap().to_owned();
    // Forged: alg none, HS256 with the client secret, another key.
    let body64 = token.split('.').nth(1).unwrap();
    let none = format!("{}.{body64}.", b64url(format!(r#"{{"alg":"none","kid":"{kid}"}}"#).as_bytes()));
    let (s, _) = bearer(&w, &none);
    assert_eq!(s, 401);
    let hs_head = b64url(format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#).as_bytes());
    let mac = {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        m.update(format!("{hs_head}.{body64}").as_bytes());
        b64url(&m.finalize().into_bytes())
    };
    let (s, _) = bearer(&w, &format!("{hs_head}.{body64}.{mac}"));
    assert_eq!(s, 401);
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir_path.join("jwks-1.json")).unwrap()).unwrap();
    let ec_kid =
        jwks["keys"].as_array().unwrap().iter().find(|k| k["kty"] == "EC").unwrap()["kid"].as_str().unwrap().to_owned();
    let other_key = {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap();
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap()
    };
    let sign_other = |claims: &serde_json::Value| {
        let head = b64url(format!(r#"{{"alg":"ES256","kid":"{ec_kid}"}}"#).as_bytes());
        let body = b64url(claims.to_string().as_bytes());
        let sig = other_key.sign(&ring::rand::SystemRandom::new(), format!("{head}.{body}").as_bytes()).unwrap();
        format!("{head}.{body}.{}", b64url(sig.as_ref()))
    };
    let (s, _) = bearer(&w, &sign_other(&claims));
    assert_eq!(s, 401);
    let stderr = w.g.stderr();
    assert!(
        stderr.contains("`none`, which is never accepted") && stderr.contains("`HS256`, which is never accepted"),
        "{stderr}"
    );
    assert!(stderr.contains("signature does not verify"), "{stderr}");
    // The ID token of a sign-in as a bearer token: for the client, not the API.
    let id_token = {
        let pj = w.jar("id");
        let v = access_token_json(&p, &pj);
        v["id_token"].as_str().unwrap().to_owned()
    };
    let (s, _) = bearer(&w, &id_token);
    assert_eq!(s, 401);
    assert!(w.g.stderr().contains("for another audience (aud)"), "{}", w.g.stderr());

    // Key rotation: the provider restarted with new keys (new kid); its
    // token is taken after one more JWKS fetch.
    let fetches_before = std::fs::read_to_string(&p.log).unwrap().matches("/jwks").count();
    drop(p);
    let p = start_provider(&dir_path, idp_port, &provider_env("jwks-2.json"), dir_path.join("idp-2.log"));
    let token2 = access_token(&p, &w.jar("program2"), "alice", "Alice-Pass1");
    // Past the refetch limit since the keys were last fetched.
    std::thread::sleep(idtoken_refetch());
    assert_ne!(parts(&token2).0["kid"], parts(&token).0["kid"], "new keys, new kid");
    let (s, body) = bearer(&w, &token2);
    assert_eq!(s, 200, "{body}\n{}", w.g.stderr());
    let (s, _) = bearer(&w, &token2);
    assert_eq!(s, 200);
    let fetches = std::fs::read_to_string(&p.log).unwrap().matches("GET /jwks").count();
    assert_eq!(fetches, 1, "one JWKS fetch for the new key (before the restart: {fetches_before})");

    // Expired: a provider with one-second access tokens, no skew.
    drop(p);
    let mut short = provider_env("jwks-2.json");
    short.retain(|(k, _)| *k != "ACCESS_TOKEN_TTL");
    short.push(("ACCESS_TOKEN_TTL", "1".into()));
    let p = start_provider(&dir_path, idp_port, &short, dir_path.join("idp-3.log"));
    let t = access_token(&p, &w.jar("program3"), "alice", "Alice-Pass1");
    std::thread::sleep(Duration::from_millis(3100));
    let (s, _) = bearer(&w, &t);
    assert_eq!(s, 401);
    assert!(w.g.stderr().contains("expired (exp)"), "{}", w.g.stderr());

    // The provider stopped: a sign-in's callback cannot exchange its code:
    // 503, and nobody is signed in.
    let jar5 = w.jar("down");
    let auth5 = w.to_provider(&jar5);
    let cb5 = w.log_in_at_provider(&jar5, &auth5, "alice", "Alice-Pass1");
    drop(p);
    let (s, _, body) = curl(&jar5, &w.ca, port, &cb5, &[]);
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("cannot be reached"), "{body}");
    let (s, _, _) = curl(&jar5, &w.ca, port, &format!("{}/whoami", w.site()), &[]);
    assert_eq!(s, 303, "not signed in");
    // A bearer token whose key gatehouse does not hold: 503, not let in.
    let unknown_kid = {
        let mut c = claims.clone();
        c["exp"] = serde_json::json!(4_000_000_000u64);
        let head = b64url(br#"{"alg":"ES256","kid":"never-seen"}"#);
        let body = b64url(c.to_string().as_bytes());
        let sig = other_key.sign(&ring::rand::SystemRandom::new(), format!("{head}.{body}").as_bytes()).unwrap();
        format!("{head}.{body}.{}", b64url(sig.as_ref()))
    };
    // The JWKS was fetched moments ago: the refetch is rate-limited, so the
    // unknown key is refused (401) until it may be asked again.
    let (s, _) = bearer(&w, &unknown_kid);
    assert!(s == 401 || s == 503, "{s}");
    std::thread::sleep(idtoken_refetch());
    let (s, body) = bearer(&w, &unknown_kid);
    assert_eq!(s, 503, "{body}");

    // Nothing secret in gatehouse's logs: codes, state, tokens, cookies.
    let logs = format!("{}{}", w.g.stderr(), serde_json::Value::from(w.g.access_log()));
    for (what, secret) in [
        ("a code", old_code.as_str()),
        ("a state", state2.as_str()),
        ("a bearer token", &token[token.len() - 40..]),
        ("the client secret", "s3cret"),
    ] {
        assert!(!logs.contains(secret), "{what} in the logs");
    }
}

fn idtoken_refetch() -> Duration {
    Duration::from_secs(11)
}

/// The token endpoint's whole answer for a fresh code (no resource).
fn access_token_json(p: &Provider, jar: &Path) -> serde_json::Value {
    let redirect = p.redirect.as_str();
    let verifier = b64url(b"another verifier of this test's, long enough!!");
    let challenge = {
        use sha2::Digest;
        b64url(&sha2::Sha256::digest(verifier.as_bytes()))
    };
    let base = format!("http://127.0.0.1:{}", p.port);
    let auth = format!(
        "{base}/auth?response_type=code&client_id=gatehouse&redirect_uri={}&scope=openid%20profile&state=s&nonce=n\
         &code_challenge={challenge}&code_challenge_method=S256",
        websession::form::encode(redirect)
    );
    let none = Path::new("/dev/null");
    let (_, interaction, _) = curl(jar, none, 1, &auth, &[]);
    curl(jar, none, 1, &interaction, &[]);
    let (_, resume, _) =
        curl(jar, none, 1, &format!("{interaction}/login"), &["-d", "login=alice", "-d", "password=Alice-Pass1"]);
    let (_, back, _) = curl(jar, none, 1, &resume, &[]);
    let code = query_param(&back, "code");
    let (_, _, body) = curl(
        jar,
        none,
        1,
        &format!("{base}/token"),
        &[
            "-u",
            "gatehouse:s3cret",
            "-d",
            "grant_type=authorization_code",
            "-d",
            &format!("code={code}"),
            "--data-urlencode",
            &format!("redirect_uri={redirect}"),
            "-d",
            &format!("code_verifier={verifier}"),
        ],
    );
    serde_json::from_str(&body).unwrap()
}
