// An independent relying party (oauth4webapi) runs the high-security profile against a running
// authx: discovery, a pushed authorization request and every token request authenticated with
// private_key_jwt (RFC 7523), the browser's visit to the authorization endpoint, the callback's
// checks, the code exchange with PKCE, a refresh, and userinfo. With DPOP=1 every request is
// also DPoP-bound (RFC 9449): `dpop_jkt` at PAR, proofs at the token endpoint, a server nonce
// when authx asks for one (each such request is retried once with it), DPoP-bound userinfo and,
// with RESOURCE_URL, a DPoP-bound call to a resource server behind the authx guard.
// Prints one JSON line of what it learned; any failure exits non-zero with the reason.
//
// Environment: ISSUER, CLIENT_ID, CLIENT_KEY_PKCS8 (base64 DER of the client's P-256 key),
// CLIENT_KID, REDIRECT_URI, SESSION_COOKIE; optional DPOP=1, RESOURCE (an API's resource
// indicator, RFC 8707: the tokens are then for that API, and userinfo is skipped), SCOPE
// (default "openid email offline_access") and RESOURCE_URL.
import * as oauth from 'oauth4webapi';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

// The test server speaks plain HTTP on 127.0.0.1.
const insecure = { [oauth.allowInsecureRequests]: true };

// Sends a request made by `make` and reads it with `read`; when authx answers that a DPoP
// nonce is needed, the handle has learned it, and the request is made once more.
async function withNonce(make, read) {
  let nonceRetries = 0;
  for (;;) {
    try {
      return await read(await make());
    } catch (err) {
      if (oauth.isDPoPNonceError(err) && nonceRetries === 0) {
        nonceRetries += 1;
        continue;
      }
      throw err;
    }
  }
}

async function main() {
  const issuer = new URL(env('ISSUER'));
  const redirectUri = env('REDIRECT_URI');
  const dpopOn = process.env.DPOP === '1';
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...insecure }),
  );
  if (!as.token_endpoint_auth_methods_supported?.includes('private_key_jwt')) {
    throw new Error('discovery does not offer private_key_jwt');
  }
  const client = { client_id: env('CLIENT_ID') };
  const key = await crypto.subtle.importKey(
    'pkcs8',
    Buffer.from(env('CLIENT_KEY_PKCS8'), 'base64'),
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  );
  const clientAuth = oauth.PrivateKeyJwt({ key, kid: env('CLIENT_KID') });

  let DPoP;
  let dpopJkt;
  if (dpopOn) {
    if (!as.dpop_signing_alg_values_supported?.includes('ES256')) {
      throw new Error('discovery does not offer DPoP with ES256');
    }
    DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
    dpopJkt = await DPoP.calculateThumbprint();
  }
  const opts = { ...insecure, DPoP };

  const codeVerifier = oauth.generateRandomCodeVerifier();
  const nonce = oauth.generateRandomNonce();
  const state = oauth.generateRandomState();
  const params = new URLSearchParams({
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: process.env.SCOPE ?? 'openid email offline_access',
    code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    nonce,
    state,
  });
  if (dpopJkt) params.set('dpop_jkt', dpopJkt);
  if (process.env.RESOURCE) params.set('resource', process.env.RESOURCE);
  const pushed = await withNonce(
    () => oauth.pushedAuthorizationRequest(as, client, clientAuth, params, opts),
    (res) => oauth.processPushedAuthorizationResponse(as, client, res),
  );

  // The browser's part: only client_id and request_uri travel through it.
  const authorize = new URL(as.authorization_endpoint);
  authorize.searchParams.set('client_id', client.client_id);
  authorize.searchParams.set('request_uri', pushed.request_uri);
  const answer = await fetch(authorize, {
    redirect: 'manual',
    headers: { cookie: env('SESSION_COOKIE') },
  });
  const location = answer.headers.get('location');
  if (answer.status !== 302 || !location) {
    throw new Error(`authorization endpoint answered ${answer.status} without a redirect`);
  }
  const callback = oauth.validateAuthResponse(as, client, new URL(location), state);

  const tokens = await withNonce(
    () =>
      oauth.authorizationCodeGrantRequest(
        as,
        client,
        clientAuth,
        callback,
        redirectUri,
        codeVerifier,
        opts,
      ),
    (res) =>
      oauth.processAuthorizationCodeResponse(as, client, res, {
        expectedNonce: nonce,
        requireIdToken: true,
      }),
  );
  const claims = oauth.getValidatedIdTokenClaims(tokens);
  if (!tokens.refresh_token) throw new Error('no refresh token');

  const refreshed = await withNonce(
    () => oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, opts),
    (res) => oauth.processRefreshTokenResponse(as, client, res),
  );
  if (refreshed.refresh_token === tokens.refresh_token) {
    throw new Error('the refresh token was not rotated');
  }

  // Userinfo takes tokens for the issuer; a token for an API goes to that API instead.
  const userinfo = process.env.RESOURCE
    ? {}
    : await withNonce(
        () => oauth.userInfoRequest(as, client, refreshed.access_token, opts),
        (res) => oauth.processUserInfoResponse(as, client, claims.sub, res),
      );

  let resource = null;
  if (process.env.RESOURCE_URL) {
    resource = await withNonce(
      () =>
        oauth.protectedResourceRequest(
          refreshed.access_token,
          'GET',
          new URL(process.env.RESOURCE_URL),
          new Headers(),
          null,
          opts,
        ),
      async (res) => ({ status: res.status, body: await res.json() }),
    );
  }

  console.log(
    JSON.stringify({
      sub: claims.sub,
      email: userinfo.email ?? null,
      token_type: tokens.token_type,
      refreshed_token_type: refreshed.token_type,
      dpop_jkt: dpopJkt ?? null,
      resource,
    }),
  );
}

main().catch((err) => {
  console.error(err?.stack ?? String(err));
  if (err?.cause) console.error('cause:', JSON.stringify(err.cause));
  process.exit(1);
});
