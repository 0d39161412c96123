// An independent relying party (oauth4webapi) runs the code flow with a pushed authorization
// request (RFC 9126) against a running authx: discovery, PAR with client_secret_basic, the
// browser's visit to the authorization endpoint (with the session cookie it is given), the
// callback's checks (state, RFC 9207 iss), the code exchange with PKCE and nonce, and userinfo.
// Prints one JSON line of what it learned; any failure exits non-zero with the reason.
//
// Environment: ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, SESSION_COOKIE.
import * as oauth from 'oauth4webapi';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

// The test server speaks plain HTTP on 127.0.0.1.
const insecure = { [oauth.allowInsecureRequests]: true };

async function main() {
  const issuer = new URL(env('ISSUER'));
  const redirectUri = env('REDIRECT_URI');
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...insecure }),
  );
  if (!as.pushed_authorization_request_endpoint) {
    throw new Error('discovery names no pushed_authorization_request_endpoint');
  }
  const client = { client_id: env('CLIENT_ID') };
  const clientAuth = oauth.ClientSecretBasic(env('CLIENT_SECRET'));

  const codeVerifier = oauth.generateRandomCodeVerifier();
  const nonce = oauth.generateRandomNonce();
  const state = oauth.generateRandomState();
  const params = new URLSearchParams({
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: 'openid email',
    code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    nonce,
    state,
  });
  const pushed = await oauth.processPushedAuthorizationResponse(
    as,
    client,
    await oauth.pushedAuthorizationRequest(as, client, clientAuth, params, insecure),
  );

  // The browser's part: only client_id and request_uri travel through it.
  const authorize = new URL(as.authorization_endpoint);
  authorize.searchParams.set('client_id', client.client_id);
  authorize.searchParams.set('request_uri', pushed.request_uri);
  const visit = async () =>
    fetch(authorize, { redirect: 'manual', headers: { cookie: env('SESSION_COOKIE') } });
  const answer = await visit();
  const location = answer.headers.get('location');
  if (answer.status !== 302 || !location) {
    throw new Error(`authorization endpoint answered ${answer.status} without a redirect`);
  }
  const callback = oauth.validateAuthResponse(as, client, new URL(location), state);

  const tokens = await oauth.processAuthorizationCodeResponse(
    as,
    client,
    await oauth.authorizationCodeGrantRequest(
      as,
      client,
      clientAuth,
      callback,
      redirectUri,
      codeVerifier,
      insecure,
    ),
    { expectedNonce: nonce, requireIdToken: true },
  );
  const claims = oauth.getValidatedIdTokenClaims(tokens);
  const userinfo = await oauth.processUserInfoResponse(
    as,
    client,
    claims.sub,
    await oauth.userInfoRequest(as, client, tokens.access_token, insecure),
  );

  // The request_uri served its one authorization.
  const reuse = await visit();

  console.log(
    JSON.stringify({
      expires_in: pushed.expires_in,
      sub: claims.sub,
      email: userinfo.email,
      reuse_status: reuse.status,
      reuse_location: reuse.headers.get('location'),
    }),
  );
}

main().catch((error) => {
  console.error(`interop failure: ${error?.stack ?? error}`);
  if (error?.cause) console.error('cause:', error.cause);
  process.exit(1);
});
