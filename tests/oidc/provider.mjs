// The EMR's OpenID Connect provider in tests and the demo (docs/design.md §3.17): panva's
// oidc-provider (OpenID Certified), one confidential client for the gateway, authorization code
// with PKCE required, its own RS256 key in its JWKS. No consent and no login form: the
// interaction signs in the account chosen beforehand (OIDC_LOGIN_AS, or POST /__test/next), as
// an EMR with a signed-in user would. Not for production.
//
// Environment: OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URIS (comma-separated),
// OIDC_ACCOUNTS (comma-separated subjects it knows), optional OIDC_LOGIN_AS (default: the first
// account), OIDC_PORT (default 0: any), OIDC_ID_TOKEN_TTL (seconds, default 3600),
// OIDC_TOKEN_AUTH (client_secret_basic or client_secret_post).
// Prints `listening http://127.0.0.1:PORT` once ready.
//
// Test controls (POST /__test/next, JSON): `login_as` (the next sign-in's account), `deny`
// (answer the next authorization with error=access_denied), `tamper` (how the token endpoint's
// ID tokens are altered from now on: `none` (as issued), `wrong-nonce` (re-signed with the
// provider's own key), `rogue-key` (signed by a key not in the JWKS, same kid), `hs256` (MAC
// keyed with the client secret), `alg-none` (unsigned)).
import { createServer } from 'node:http';
import { createHmac, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import Provider from 'oidc-provider';

// Standard output carries the `listening` line only; oidc-provider's own notices go to stderr.
for (const level of ['log', 'info', 'warn']) console[level] = (...args) => process.stderr.write(`${args.join(' ')}\n`);

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') throw new Error(`${name} must be set`);
  return v;
};
const clientId = env('OIDC_CLIENT_ID');
const clientSecret = env('OIDC_CLIENT_SECRET');
const redirectUris = env('OIDC_REDIRECT_URIS').split(',');
const accounts = env('OIDC_ACCOUNTS').split(',');
const control = { loginAs: process.env.OIDC_LOGIN_AS || accounts[0], deny: false, tamper: 'none' };

const kid = 'emr-rs256';
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig', kid };
// A key the JWKS never shows, for `rogue-key`.
const rogue = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;

const b64 = (buf) => Buffer.from(buf).toString('base64url');
const resign = (idToken, mode) => {
  const [h, p] = idToken.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const payload = JSON.parse(Buffer.from(p, 'base64url'));
  if (mode === 'wrong-nonce') payload.nonce = `${payload.nonce}-not-yours`;
  if (mode === 'hs256') header.alg = 'HS256';
  if (mode === 'alg-none') header.alg = 'none';
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(payload))}`;
  switch (mode) {
    case 'wrong-nonce': return `${input}.${b64(sign('sha256', Buffer.from(input), privateKey))}`;
    case 'rogue-key': return `${input}.${b64(sign('sha256', Buffer.from(input), rogue))}`;
    case 'hs256': return `${input}.${b64(createHmac('sha256', clientSecret).update(input).digest())}`;
    case 'alg-none': return `${input}.`;
    default: throw new Error(`unknown tamper mode ${mode}`);
  }
};

const server = createServer();
server.listen(Number(process.env.OIDC_PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: process.env.OIDC_TOKEN_AUTH || 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    }],
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    pkce: { required: () => true },
    ttl: { IdToken: Number(process.env.OIDC_ID_TOKEN_TTL || 3600) },
    features: { devInteractions: { enabled: false } },
    // What the EMR states of its own sign-in goes into the ID token (the gateway records it).
    claims: { acr: null, amr: null, auth_time: null, sid: null, iss: null, openid: ['sub', 'acr', 'amr', 'auth_time'], profile: ['name'] },
    async findAccount(ctx, id) {
      if (!accounts.includes(id)) return undefined;
      return { accountId: id, async claims() { return { sub: id, name: `EMR user ${id}` }; } };
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // Consent-free: the gateway is the EMR's own first-party client.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return provider.Grant.find(grantId);
      const grant = new provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile');
      await grant.save();
      return grant;
    },
  });
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/__test/next') {
      const body = await new Promise((resolve) => {
        let data = '';
        ctx.req.on('data', (c) => { data += c; });
        ctx.req.on('end', () => resolve(data ? JSON.parse(data) : {}));
      });
      if (body.login_as !== undefined) control.loginAs = body.login_as;
      if (body.deny !== undefined) control.deny = Boolean(body.deny);
      if (body.tamper !== undefined) control.tamper = body.tamper;
      ctx.body = { ok: true };
      return;
    }
    if (ctx.method === 'GET' && ctx.path.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      let result;
      if (control.deny) {
        control.deny = false;
        result = { error: 'access_denied', error_description: 'the user declined' };
      } else {
        // What the EMR's own sign-in would state: a password, single factor.
        result = { login: { accountId: control.loginAs, acr: 'urn:ninsho:test:pwd', amr: ['pwd'] } };
      }
      ctx.status = 303;
      ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
      void details;
      return;
    }
    await next();
    if (ctx.path === '/token' && ctx.status === 200 && control.tamper !== 'none' && ctx.body?.id_token) {
      ctx.body = { ...ctx.body, id_token: resign(ctx.body.id_token, control.tamper) };
    }
  });
  server.on('request', provider.callback());
  process.stdout.write(`listening ${issuer}\n`);
});

// A service manager's stop (the demo stops its processes with SIGTERM) is a normal exit.
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
