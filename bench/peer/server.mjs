// Benchmark peer (issue 7): panva's oidc-provider as an RFC 8705 token server doing what our
// signing-token API does — the client-credentials grant with tls_client_auth and
// certificate-bound ES256 JWT access tokens (RFC 8705 §2.1, §3; RFC 8707; RFC 9068) — served by
// Node's own https with a mandatory client certificate. Configuration and caveats:
// shared/notes/peer-oidc-provider.md. Started by `bench run`; not for production.
//
// Environment: PEER_PORT, PEER_CERT (server chain PEM), PEER_KEY, PEER_CA (client CA PEM),
// PEER_CLIENT_CERT (the one client's certificate, for its subject DN), PEER_RESOURCE.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} must be set`);
  return v;
};
const port = Number(env('PEER_PORT'));
const resource = env('PEER_RESOURCE');
const clientCert = new X509Certificate(readFileSync(env('PEER_CLIENT_CERT')));
// Node prints the DN one RDN per line; the hook below compares in the same form.
const dn = (x509) => x509.subject.split('\n').join(',');
const clientDn = dn(clientCert);

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

const pemOf = (raw) => `-----BEGIN CERTIFICATE-----\n${raw.toString('base64').match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;

const provider = new Provider(`https://localhost:${port}`, {
  clients: [{
    client_id: 'bench-emr',
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: clientDn,
    tls_client_certificate_bound_access_tokens: true,
    // The only key is ES256; the default (RS256) would make the client metadata invalid.
    id_token_signed_response_alg: 'ES256',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  }],
  // The default list lacks tls_client_auth: without it the client is invalid_client_metadata.
  clientAuthMethods: ['tls_client_auth'],
  jwks: { keys: [jwk] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    mTLS: {
      enabled: true,
      tlsClientAuth: true,
      certificateBoundAccessTokens: true,
      getCertificate(ctx) {
        const peer = ctx.socket.getPeerCertificate();
        return peer && peer.raw ? pemOf(peer.raw) : undefined;
      },
      certificateAuthorized(ctx) {
        return ctx.socket.authorized;
      },
      certificateSubjectMatches(ctx, property, expected) {
        if (property !== 'tls_client_auth_subject_dn') return false;
        const peer = ctx.socket.getPeerCertificate();
        return Boolean(peer && peer.raw) && dn(new X509Certificate(peer.raw)) === expected;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: '',
        audience: resource,
        accessTokenTTL: 120,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.proxy = false;

const server = createServer({
  key: readFileSync(env('PEER_KEY')),
  cert: readFileSync(env('PEER_CERT')),
  ca: readFileSync(env('PEER_CA')),
  requestCert: true,
  rejectUnauthorized: true,
  keepAliveTimeout: 60_000,
}, provider.callback());
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`peer listening on ${port}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
