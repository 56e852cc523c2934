// Loopback OpenID Connect provider for integration tests, built on oidc-provider.
//
// One static confidential client, password-checked login against an in-memory
// user table, authorization code flow with PKCE (S256) required, ID tokens
// signed RS256 or ES256, discovery, JWKS, userinfo and RP-initiated logout.
//
// Configuration (environment variables, all optional):
//   PORT                      listen port (default 9400; 0 = pick a free port)
//   HOST                      listen address (default 127.0.0.1)
//   ISSUER                    issuer URL, origin only (default http(s)://HOST:PORT)
//   REDIRECT_URI              comma-separated redirect URIs
//                             (default https://app.test:9443/.gatehouse/oidc/callback)
//   POST_LOGOUT_REDIRECT_URI  comma-separated post-logout redirect URIs
//                             (default: origin of the first REDIRECT_URI + "/")
//   CLIENT_ID                 default gatehouse
//   CLIENT_SECRET             default s3cret
//   TOKEN_AUTH_METHOD         client_secret_basic (default) or client_secret_post
//   STRICT_CLIENT_AUTH        1 (default): refuse the other of the two methods; 0: accept both
//   ID_TOKEN_ALG              RS256 (default) or ES256
//   ID_TOKEN_TTL              seconds (default 3600)
//   ACCESS_TOKEN_TTL          seconds (default 3600)
//   CODE_TTL                  authorization code lifetime, seconds (default 60)
//   SESSION_TTL               IdP session lifetime, seconds (default 3600)
//   REQUIRE_PKCE              1 (default) or 0
//   CONSENT                   auto (default: no consent page) or prompt
//   ID_TOKEN_CLAIMS           scope (default: scope claims in the ID token) or
//                             conform (ID token carries sub only; claims at userinfo)
//   USERS_FILE                JSON file replacing the built-in user table
//   JWKS_FILE                 private JWKS file; loaded if present, else generated
//                             and written there (default: fresh keys every start)
//   TLS_CERT, TLS_KEY         PEM files; when both are set the server speaks https
//   READY_FILE                file to write the issuer URL to once listening
//   LOG_REQUESTS              1 to log every request to stderr
//   TRUST_PROXY               1 to trust X-Forwarded-* (behind a TLS-terminating proxy)
//   RESOURCE                  (gatehouse's copy) a resource indicator whose access
//                             tokens are JWTs with that audience (Bearer tests)
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import { Provider, errors } from 'oidc-provider';

const env = process.env;
const int = (name, dflt) => {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${v}`);
  return n;
};
const list = (v) => v.split(',').map((s) => s.trim()).filter(Boolean);

const HOST = env.HOST || '127.0.0.1';
const PORT = int('PORT', 9400);
const TLS = Boolean(env.TLS_CERT && env.TLS_KEY);
const REDIRECT_URIS = list(env.REDIRECT_URI || 'https://app.test:9443/.gatehouse/oidc/callback');
const POST_LOGOUT_REDIRECT_URIS = list(
  env.POST_LOGOUT_REDIRECT_URI || `${new URL(REDIRECT_URIS[0]).origin}/`,
);
const CLIENT_ID = env.CLIENT_ID || 'gatehouse';
const CLIENT_SECRET = env.CLIENT_SECRET || 's3cret';
const TOKEN_AUTH_METHOD = env.TOKEN_AUTH_METHOD || 'client_secret_basic';
const ID_TOKEN_ALG = env.ID_TOKEN_ALG || 'RS256';
const ID_TOKEN_TTL = int('ID_TOKEN_TTL', 3600);
const ACCESS_TOKEN_TTL = int('ACCESS_TOKEN_TTL', 3600);
const CODE_TTL = int('CODE_TTL', 60);
const SESSION_TTL = int('SESSION_TTL', 3600);
const REQUIRE_PKCE = (env.REQUIRE_PKCE ?? '1') !== '0';
const CONSENT = env.CONSENT || 'auto';
const ID_TOKEN_CLAIMS = env.ID_TOKEN_CLAIMS || 'scope';
const LOG_REQUESTS = env.LOG_REQUESTS === '1';
const STRICT_CLIENT_AUTH = (env.STRICT_CLIENT_AUTH ?? '1') !== '0';

if (!['client_secret_basic', 'client_secret_post'].includes(TOKEN_AUTH_METHOD)) {
  throw new Error(`TOKEN_AUTH_METHOD must be client_secret_basic or client_secret_post`);
}
if (!['RS256', 'ES256'].includes(ID_TOKEN_ALG)) throw new Error('ID_TOKEN_ALG must be RS256 or ES256');
if (!['auto', 'prompt'].includes(CONSENT)) throw new Error('CONSENT must be auto or prompt');
if (!['scope', 'conform'].includes(ID_TOKEN_CLAIMS)) throw new Error('ID_TOKEN_CLAIMS must be scope or conform');

// ---------------------------------------------------------------- accounts
const DEFAULT_USERS = {
  alice: {
    password: 'Alice-Pass1',
    claims: {
      name: 'Alice Example',
      preferred_username: 'alice',
      email: 'alice@corp.example',
      email_verified: true,
      upn: 'alice@ad.test',
      groups: ['gatehouse-users', 'gatehouse-admins'],
    },
  },
  bob: {
    password: 'Bob-Pass1',
    claims: {
      name: 'Bob Example',
      preferred_username: 'bob',
      email: 'bob@corp.example',
      email_verified: true,
      upn: 'bob@ad.test',
      groups: ['gatehouse-users'],
    },
  },
};
const USERS = env.USERS_FILE ? JSON.parse(fs.readFileSync(env.USERS_FILE, 'utf8')) : DEFAULT_USERS;

function checkPassword(login, password) {
  const user = Object.hasOwn(USERS, login) ? USERS[login] : undefined;
  // hash both sides so the comparison is constant-time whatever the lengths
  const a = crypto.createHash('sha256').update(String(password ?? '')).digest();
  const b = crypto.createHash('sha256').update(user ? String(user.password) : crypto.randomUUID()).digest();
  return Boolean(user) && crypto.timingSafeEqual(a, b);
}

async function findAccount(ctx, sub) {
  if (!Object.hasOwn(USERS, sub)) return undefined;
  const user = USERS[sub];
  return {
    accountId: sub,
    async claims() {
      return { sub, ...user.claims };
    },
  };
}

// ---------------------------------------------------------------- keys
function thumbprint(jwk) {
  const members = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function generateJwks() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: thumbprint(rsa), alg: 'RS256', use: 'sig' },
      { ...ec, kid: thumbprint(ec), alg: 'ES256', use: 'sig' },
    ],
  };
}

function loadJwks() {
  const file = env.JWKS_FILE;
  if (file && fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8'));
  const jwks = generateJwks();
  if (file) fs.writeFileSync(file, JSON.stringify(jwks, null, 2), { mode: 0o600 });
  return jwks;
}

// ---------------------------------------------------------------- html
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function page(title, body) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:22em;margin:3em auto}input,button{display:block;width:100%;margin:.4em 0;padding:.4em}.error{color:#b00}</style>
</head><body><h1>${esc(title)}</h1>
${body}
</body></html>`;
}

function loginPage(uid, { loginHint = '', error } = {}) {
  return page('Sign-in', `${error ? `<p class="error" id="error">${esc(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label>Username <input type="text" name="login" value="${esc(loginHint)}" required autofocus></label>
<label>Password <input type="password" name="password" required></label>
<button type="submit">Sign in</button>
</form>
<p><a href="/interaction/${esc(uid)}/abort">Cancel</a></p>`);
}

function consentPage(uid, clientId, details) {
  const scopes = details.missingOIDCScope || [];
  return page('Authorize', `<p>Client <b>${esc(clientId)}</b> asks for: ${esc(scopes.join(' ') || '(no new scopes)')}</p>
<form id="consent" method="post" action="/interaction/${esc(uid)}/confirm">
<button type="submit">Allow</button>
</form>
<p><a href="/interaction/${esc(uid)}/abort">Deny</a></p>`);
}

async function readForm(ctx, limit = 16 * 1024) {
  const type = ctx.get('content-type') || '';
  if (!type.toLowerCase().startsWith('application/x-www-form-urlencoded')) return new URLSearchParams();
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > limit) ctx.throw(413, 'form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// ---------------------------------------------------------------- grants
// Adds every requested OIDC scope and claim to the grant, i.e. consent given.
function grantEverythingRequested(ctx, grant) {
  const scopes = [...ctx.oidc.requestParamOIDCScopes];
  if (scopes.length) grant.addOIDCScope(scopes.join(' '));
  const claims = [...ctx.oidc.requestParamClaims];
  if (claims.length) grant.addOIDCClaims(claims);
  // gatehouse's copy: the RESOURCE indicator's scopes too (Bearer tests).
  const resource = ctx.oidc.params.resource;
  if (env.RESOURCE && resource === env.RESOURCE) grant.addResourceScope(resource, 'api');
}

async function loadExistingGrant(ctx) {
  const { Grant } = ctx.oidc.provider;
  const grantId = ctx.oidc.result?.consent?.grantId
    || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
  let grant = grantId ? await Grant.find(grantId) : undefined;
  if (CONSENT === 'prompt' || !ctx.oidc.session.accountId) return grant;
  // first-party client: consent is implied, no consent page
  grant ||= new Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
  grantEverythingRequested(ctx, grant);
  await grant.save();
  return grant;
}

// ---------------------------------------------------------------- provider
function buildProvider(issuer) {
  const configuration = {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: REDIRECT_URIS,
      post_logout_redirect_uris: POST_LOGOUT_REDIRECT_URIS,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: TOKEN_AUTH_METHOD,
      id_token_signed_response_alg: ID_TOKEN_ALG,
    }],
    jwks: loadJwks(),
    findAccount,
    loadExistingGrant,
    responseTypes: ['code'],
    claims: {
      // gatehouse's copy: amr in the ID token (a site's mfa = "required").
      openid: ['sub', 'amr'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'upn', 'groups'],
    },
    conformIdTokenClaims: ID_TOKEN_CLAIMS === 'conform',
    pkce: { required: () => REQUIRE_PKCE },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        // form is <form id="op.logoutForm" ...> holding the xsrf token; confirming
        // means submitting it with logout=yes
        async logoutSource(ctx, form) {
          ctx.body = page('Sign out', `${form}
<p>Sign out of ${esc(ctx.host)}?</p>
<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out', '<p id="signed-out">You are signed out.</p>');
        },
      },
      revocation: { enabled: true },
      // gatehouse's copy: with RESOURCE set, an authorization request naming
      // that resource indicator gets a JWT access token for it (audience =
      // RESOURCE), which gatehouse's Bearer scheme checks; without it,
      // access tokens stay opaque as in the reference recipe.
      resourceIndicators: {
        enabled: Boolean(env.RESOURCE),
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator !== env.RESOURCE) throw new errors.InvalidTarget();
          return { scope: 'api', audience: env.RESOURCE, accessTokenFormat: 'jwt', accessTokenTTL: ACCESS_TOKEN_TTL };
        },
      },
      introspection: { enabled: true },
    },
    // gatehouse's copy: JWT access tokens name the user by upn, and say amr, as Entra's do.
    extraTokenClaims: async (ctx, token) => {
      if (token.kind !== 'AccessToken' || !Object.hasOwn(USERS, token.accountId || '')) return undefined;
      const user = USERS[token.accountId];
      return { upn: user.claims.upn, amr: user.amr || ['pwd'] };
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      AuthorizationCode: CODE_TTL,
      IdToken: ID_TOKEN_TTL,
      Interaction: 600,
      Session: SESSION_TTL,
      Grant: SESSION_TTL,
      RefreshToken: 24 * 3600,
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', `<pre id="error">${esc(JSON.stringify(out, null, 2))}</pre>`);
    },
  };

  const provider = new Provider(issuer, configuration);
  if (env.TRUST_PROXY === '1') provider.proxy = true;

  for (const event of ['authorization.error', 'grant.error', 'end_session.error',
    'end_session_confirm.error', 'userinfo.error', 'introspection.error', 'revocation.error']) {
    provider.on(event, (ctx, err) => {
      console.error(`[idp] ${event}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`);
    });
  }
  provider.on('server_error', (ctx, err) => console.error('[idp] server_error', err));

  // oidc-provider accepts client_secret_basic and client_secret_post
  // interchangeably whatever the client registered; unless STRICT_CLIENT_AUTH=0,
  // requests that use the other method are refused, so a relying party that
  // sends its secret the wrong way fails here as it would at a stricter provider.
  if (STRICT_CLIENT_AUTH) {
    const authenticated = new Set(['/token', '/token/introspection', '/token/revocation']);
    provider.use(async (ctx, next) => {
      if (ctx.method === 'POST' && authenticated.has(ctx.path)) {
        const basic = /^basic\s/i.test(ctx.get('authorization'));
        if ((TOKEN_AUTH_METHOD === 'client_secret_basic') !== basic) {
          console.error(`[idp] ${ctx.path}: client authentication method is not ${TOKEN_AUTH_METHOD}`);
          ctx.status = 401;
          if (TOKEN_AUTH_METHOD === 'client_secret_basic') ctx.set('www-authenticate', 'Basic realm="token"');
          ctx.set('cache-control', 'no-store');
          ctx.body = {
            error: 'invalid_client',
            error_description: `client authentication must use ${TOKEN_AUTH_METHOD}`,
          };
          return undefined;
        }
      }
      return next();
    });
  }

  // Interaction routes: /interaction/:uid (GET), /interaction/:uid/login (POST),
  // /interaction/:uid/confirm (POST), /interaction/:uid/abort (GET).
  provider.use(async (ctx, next) => {
    const m = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/.exec(ctx.path);
    if (!m) return next();
    const [, uid, action = 'show'] = m;
    ctx.set('cache-control', 'no-store');
    try {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      if (details.uid !== uid) ctx.throw(400, 'interaction uid mismatch');
      const { prompt, params } = details;

      if (action === 'show' && ctx.method === 'GET') {
        ctx.type = 'html';
        ctx.body = prompt.name === 'login'
          ? loginPage(uid, { loginHint: params.login_hint })
          : consentPage(uid, params.client_id, prompt.details);
        return undefined;
      }

      if (action === 'abort' && ctx.method === 'GET') {
        return provider.interactionFinished(ctx.req, ctx.res, {
          error: 'access_denied', error_description: 'End-User aborted interaction',
        }, { mergeWithLastSubmission: false });
      }

      if (action === 'login' && ctx.method === 'POST') {
        if (prompt.name !== 'login') ctx.throw(400, 'login is not the pending prompt');
        const form = await readForm(ctx);
        const login = form.get('login') || '';
        if (!checkPassword(login, form.get('password'))) {
          console.error(`[idp] login failed for ${JSON.stringify(login)}`);
          ctx.status = 401;
          ctx.type = 'html';
          ctx.body = loginPage(uid, { loginHint: login, error: 'Invalid username or password.' });
          return undefined;
        }
        return provider.interactionFinished(ctx.req, ctx.res, {
          // gatehouse's copy: a user's table entry may name its own amr (a user
          // who did MFA at the provider), else a password alone.
          login: { accountId: login, amr: USERS[login].amr || ['pwd'] },
        }, { mergeWithLastSubmission: false });
      }

      if (action === 'confirm' && ctx.method === 'POST') {
        if (prompt.name !== 'consent') ctx.throw(400, 'consent is not the pending prompt');
        const { Grant } = provider;
        const grant = details.grantId
          ? await Grant.find(details.grantId)
          : new Grant({ accountId: details.session.accountId, clientId: params.client_id });
        const d = prompt.details;
        if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
        if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
        if (d.missingResourceScopes) {
          for (const [indicator, scope] of Object.entries(d.missingResourceScopes)) {
            grant.addResourceScope(indicator, scope.join(' '));
          }
        }
        const grantId = await grant.save();
        return provider.interactionFinished(ctx.req, ctx.res, {
          consent: details.grantId ? {} : { grantId },
        }, { mergeWithLastSubmission: true });
      }

      ctx.throw(405, 'method not allowed');
    } catch (err) {
      if (err instanceof errors.SessionNotFound) {
        ctx.status = 400;
        ctx.type = 'html';
        ctx.body = page('Error', `<p id="error">${esc(err.message)}: ${esc(err.error_description || '')}</p>`);
        return undefined;
      }
      throw err;
    }
  });

  return provider;
}

// ---------------------------------------------------------------- server
let handler = (req, res) => { res.statusCode = 503; res.end('starting'); };
const dispatch = (req, res) => {
  if (LOG_REQUESTS) {
    const t0 = process.hrtime.bigint();
    res.on('finish', () => console.error(`[idp] ${req.method} ${req.url} -> ${res.statusCode} ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1)}ms`));
  }
  handler(req, res);
};
const server = TLS
  ? https.createServer({ cert: fs.readFileSync(env.TLS_CERT), key: fs.readFileSync(env.TLS_KEY) }, dispatch)
  : http.createServer(dispatch);

server.listen(PORT, HOST, () => {
  const { port } = server.address();
  const hostPart = HOST.includes(':') ? `[${HOST}]` : HOST;
  const issuer = env.ISSUER || `${TLS ? 'https' : 'http'}://${hostPart}:${port}`;
  const provider = buildProvider(issuer);
  handler = provider.callback();
  if (env.READY_FILE) fs.writeFileSync(env.READY_FILE, `${issuer}\n`);
  console.log(`oidc-idp ready issuer=${issuer} port=${port} pid=${process.pid} client_id=${CLIENT_ID} id_token_alg=${ID_TOKEN_ALG} id_token_ttl=${ID_TOKEN_TTL}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
