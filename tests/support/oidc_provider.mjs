#!/usr/bin/env node
// A real OpenID provider for the tests: panva's oidc-provider 9.x (OpenID Certified) with the
// accounts, clients and API a JSON config file gives (tests/support/oidc.py writes it).
//
//   node oidc_provider.mjs --config path.json [--port N] [--host 127.0.0.1]
//
// Port 0 (the default) binds a free port. When ready it prints ONE JSON line to stdout,
// {"issuer": "http://127.0.0.1:PORT", "port": PORT, "pid": ...}; everything else (its
// Node 22 warning, logs) goes to stderr. Sign-in is scripted: a login_hint naming a test
// account signs it in at once and consent is automatic, so a requests.Session (or a
// browser) just follows redirects.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors, interactionPolicy } from 'oidc-provider';

// ---------------------------------------------------------------- CLI / config
const { values: argv, positionals } = parseArgs({
  options: {
    config: { type: 'string', short: 'c' },
    port: { type: 'string', short: 'p' },
    host: { type: 'string' },
  },
  allowPositionals: true,
});

const configPath = argv.config ?? positionals[0] ?? process.env.OIDC_CONFIG;
const cfg = configPath ? JSON.parse(fs.readFileSync(configPath, 'utf8')) : {};
const host = argv.host ?? process.env.OIDC_HOST ?? cfg.host ?? '127.0.0.1';
const port = Number(argv.port ?? process.env.OIDC_PORT ?? process.env.PORT ?? cfg.port ?? 0);

const log = (...args) => console.error('[oidc-fixture]', ...args);

// ---------------------------------------------------------------- accounts
const accounts = new Map((cfg.accounts ?? []).map((a) => [String(a.id), a]));

function resolveAccountId(hint) {
  if (hint == null || hint === '') return undefined;
  if (accounts.has(hint)) return hint;
  for (const [id, a] of accounts) {
    if (a.preferred_username === hint || a.email === hint) return id;
  }
  return undefined;
}

const STANDARD_CLAIMS = ['name', 'given_name', 'family_name', 'preferred_username',
  'email', 'email_verified', 'roles', 'fhirUser'];

async function findAccount(ctx, sub) {
  const a = accounts.get(sub);
  if (!a) return undefined;
  return {
    accountId: sub,
    async claims(/* use, scope, claims, rejected */) {
      const out = { sub };
      for (const k of STANDARD_CLAIMS) if (a[k] !== undefined) out[k] = a[k];
      if (a.email !== undefined && a.email_verified === undefined) out.email_verified = true;
      Object.assign(out, a.extraClaims ?? {});
      return out;
    },
  };
}

// ---------------------------------------------------------------- keys
function generateJwks() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: `rs256-${crypto.randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' },
      { ...ec, kid: `es256-${crypto.randomBytes(4).toString('hex')}`, use: 'sig', alg: 'ES256' },
    ],
  };
}

// ---------------------------------------------------------------- resource servers (RFC 8707 / RFC 9068)
const resourceServers = new Map((cfg.resourceServers ?? []).map((rs) => [rs.identifier, rs]));
const defaultRs = (cfg.resourceServers ?? []).find((rs) => rs.default) ?? cfg.resourceServers?.[0];

// ---------------------------------------------------------------- SMART launch context
// launch value -> extra token-response members. Explicit map first, then "patient-<id>".
function launchContext(launch) {
  if (!launch) return undefined;
  const map = cfg.smart?.launchContexts ?? {};
  if (map[launch]) return { ...map[launch] };
  const m = /^patient-(.+)$/.exec(launch);
  if (m) return { patient: m[1] };
  return undefined;
}
const ctxByCode = new Map(); // AuthorizationCode jti -> context
const ctxByGrant = new Map(); // grantId -> context (for refresh_token grants)

// ---------------------------------------------------------------- loopback-capable fetch
// oidc-provider's helpers/fetch_request.js injects an SSRF-protecting undici
// `dispatcher` into options before calling configuration.fetch(url, options).
// Dropping it for loopback URLs lets back-channel logout reach 127.0.0.1.
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const allowLoopbackFetch = cfg.allowLoopbackFetch !== false;
async function fixtureFetch(url, options) {
  const { hostname } = new URL(url);
  if (allowLoopbackFetch && (LOOPBACK.has(hostname) || hostname.startsWith('127.'))) {
    delete options.dispatcher;
  }
  log('outgoing', options.method ?? 'GET', url);
  return globalThis.fetch(url, options);
}

// ---------------------------------------------------------------- interaction policy
// Extra login check: a login_hint naming a *different* known account than the
// current session forces a new login (so one cookie jar can switch users).
const policy = interactionPolicy.base();
policy.get('login').checks.add(new interactionPolicy.Check(
  'login_hint_mismatch',
  'login_hint names a different account than the current session',
  (ctx) => {
    const wanted = resolveAccountId(ctx.oidc.params.login_hint);
    if (!wanted || !ctx.oidc.session.accountId) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    if (ctx.oidc.result?.login) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    return wanted === ctx.oidc.session.accountId
      ? interactionPolicy.Check.NO_NEED_TO_PROMPT
      : interactionPolicy.Check.REQUEST_PROMPT;
  },
));

// ---------------------------------------------------------------- HTML helpers
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));
const page = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body>${body}</body></html>`;

// ---------------------------------------------------------------- start
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, host, resolve);
});
const actualPort = server.address().port;
const issuer = cfg.issuer ?? `http://${host}:${actualPort}`;

const scopes = [...new Set([
  'openid', 'offline_access', 'profile', 'email', 'roles', 'fhirUser', 'launch', 'launch/patient',
  ...(cfg.scopes ?? []),
])];

const provider = new Provider(issuer, {
  clients: cfg.clients ?? [],
  jwks: cfg.jwks ?? generateJwks(),
  cookies: { keys: cfg.cookieKeys ?? [crypto.randomBytes(32).toString('hex')] },
  findAccount,
  scopes,
  claims: cfg.claims ?? {
    openid: ['sub', 'roles'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    email: ['email', 'email_verified'],
    roles: ['roles'],
    fhirUser: ['fhirUser'],
    acr: null,
    sid: null,
    auth_time: null,
    iss: null,
  },
  // scope-derived claims go into the ID token even though an access token for
  // userinfo is also issued (true, the library's default, keeps them userinfo-only:
  // a test sets it to sign in through a provider that puts roles in UserInfo alone).
  conformIdTokenClaims: cfg.conformIdTokenClaims ?? false,
  pkce: { required: () => cfg.pkceRequired !== false },
  extraParams: {
    launch: null,
    aud: (cfg.smart?.allowedAud?.length
      ? async (ctx, value) => {
        if (value !== undefined && !cfg.smart.allowedAud.includes(value)) {
          throw new errors.InvalidRequest('aud parameter does not name a known FHIR server');
        }
      }
      : null),
  },
  interactions: {
    policy,
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        // `form` carries the hidden xsrf input; add logout=yes and auto-submit.
        const f = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/><noscript><button type="submit">Sign out</button></noscript></form>');
        ctx.body = page('Logout', `${f}<script>document.forms[0].submit()</script>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<p id="signed-out">Signed out</p>');
      },
    },
    backchannelLogout: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      async defaultResource(ctx, client, oneOf) {
        if (oneOf) return oneOf;
        // client_credentials without `resource` -> the default API (JWT AT).
        if (ctx.oidc.params?.grant_type === 'client_credentials' && defaultRs) return defaultRs.identifier;
        return undefined;
      },
      async getResourceServerInfo(ctx, indicator) {
        const rs = resourceServers.get(indicator);
        if (!rs) throw new errors.InvalidTarget();
        return {
          scope: rs.scope,
          audience: rs.audience ?? rs.identifier,
          accessTokenTTL: rs.accessTokenTTL ?? 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: rs.alg ?? 'RS256' } },
        };
      },
      async useGrantedResource() { return true; },
    },
  },
  clientBasedCORS: () => false,
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    ClientCredentials: 600,
    IdToken: 3600,
    Interaction: 3600,
    RefreshToken: 86400,
    Session: 86400,
    Grant: 86400,
    ...(cfg.ttl ?? {}),
  },
  fetch: fixtureFetch,
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});
provider.proxy = false;

// ---------------------------------------------------------------- events
provider.on('authorization.success', (ctx) => {
  const code = ctx.oidc.entities.AuthorizationCode;
  const extra = launchContext(ctx.oidc.params.launch);
  if (code && extra) {
    ctxByCode.set(code.jti, extra);
    if (code.grantId) ctxByGrant.set(code.grantId, extra);
  }
});
provider.on('backchannel.success', (ctx, client, accountId, sid) => log('backchannel.success', client.clientId, accountId, sid));
provider.on('backchannel.error', (ctx, err, client) => log('backchannel.error', client.clientId, err.message, err.cause?.message ?? ''));
provider.on('server_error', (ctx, err) => log('server_error', err));
provider.on('grant.error', (ctx, err) => log('grant.error', err.message, err.error_description ?? ''));
provider.on('authorization.error', (ctx, err) => log('authorization.error', err.message, err.error_description ?? ''));
provider.on('end_session.error', (ctx, err) => log('end_session.error', err.message, err.error_description ?? ''));

// ---------------------------------------------------------------- SMART token-response members
provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route !== 'token' || ctx.status !== 200 || !ctx.body?.access_token) return;
  const { AuthorizationCode: code, RefreshToken: rt } = ctx.oidc.entities;
  const extra = (code && ctxByCode.get(code.jti)) ?? (rt && ctxByGrant.get(rt.grantId));
  if (extra) ctx.body = { ...extra, ...ctx.body };
});

// ---------------------------------------------------------------- SMART discovery
provider.use(async (ctx, next) => {
  if (ctx.method !== 'GET' || ctx.path !== '/.well-known/smart-configuration') return next();
  ctx.set('access-control-allow-origin', '*');
  ctx.body = {
    issuer,
    authorization_endpoint: provider.urlFor('authorization'),
    token_endpoint: provider.urlFor('token'),
    jwks_uri: provider.urlFor('jwks'),
    userinfo_endpoint: provider.urlFor('userinfo'),
    end_session_endpoint: provider.urlFor('end_session'),
    introspection_endpoint: provider.urlFor('introspection'),
    revocation_endpoint: provider.urlFor('revocation'),
    grant_types_supported: ['authorization_code', 'client_credentials', 'refresh_token'],
    response_types_supported: ['code'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    scopes_supported: scopes,
    code_challenge_methods_supported: ['S256'],
    capabilities: cfg.smart?.capabilities ?? [
      'launch-ehr', 'launch-standalone', 'client-confidential-symmetric',
      'context-ehr-patient', 'sso-openid-connect', 'permission-patient', 'permission-user',
    ],
  };
});

// ---------------------------------------------------------------- interactions (scripted login + auto consent)
async function finish(ctx, result, merge) {
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
  ctx.status = 303;
  ctx.redirect(returnTo);
}

async function autoConsent(ctx, details) {
  const { prompt: { details: missing }, grantId, session, params } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, s] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, s.join(' '));
    }
  }
  return finish(ctx, { consent: { grantId: await grant.save() } }, true);
}

function loginForm(uid, message) {
  const opts = [...accounts.values()].map((a) => `<option value="${esc(a.id)}">${esc(a.name ?? a.id)} (${esc(a.id)})</option>`).join('');
  return page('Sign in', `${message ? `<p class="error">${esc(message)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
<select name="login">${opts}</select><button type="submit">Sign in</button></form>`);
}

provider.use(async (ctx, next) => {
  const m = /^\/interaction\/([^/]+)(\/login)?$/.exec(ctx.path);
  if (!m) return next();
  ctx.set('cache-control', 'no-store');
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    ctx.status = 400;
    ctx.body = { error: 'invalid_request', error_description: err.message };
    return undefined;
  }
  if (details.uid !== m[1]) {
    ctx.status = 400;
    ctx.body = { error: 'invalid_request', error_description: 'interaction uid mismatch' };
    return undefined;
  }
  const { prompt, params } = details;

  if (prompt.name === 'login') {
    let accountId;
    if (ctx.method === 'POST' && m[2]) {
      const body = new URLSearchParams(await new Promise((resolve, reject) => {
        let data = '';
        ctx.req.setEncoding('utf8');
        ctx.req.on('data', (c) => { data += c; });
        ctx.req.on('end', () => resolve(data));
        ctx.req.on('error', reject);
      }));
      accountId = resolveAccountId(body.get('login'));
      if (!accountId) {
        ctx.status = 400;
        ctx.type = 'html';
        ctx.body = loginForm(details.uid, `unknown account ${body.get('login')}`);
        return undefined;
      }
    } else {
      accountId = resolveAccountId(params.login_hint) ?? resolveAccountId(cfg.defaultAccount);
    }
    if (!accountId) {
      ctx.type = 'html';
      ctx.body = loginForm(details.uid, params.login_hint ? `unknown login_hint ${params.login_hint}` : undefined);
      return undefined;
    }
    return finish(ctx, { login: { accountId, amr: ['pwd'] } }, false);
  }

  if (prompt.name === 'consent') {
    return autoConsent(ctx, details);
  }

  ctx.status = 501;
  ctx.body = { error: 'server_error', error_description: `unsupported prompt ${prompt.name}` };
  return undefined;
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer, port: actualPort, pid: process.pid })}\n`);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { server.close(() => process.exit(0)); server.closeAllConnections(); });
}
