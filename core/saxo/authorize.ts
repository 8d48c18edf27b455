/**
 * The browser half of the login flow: the /authorize URL, PKCE (S256) and state.
 * Built on openid-client's helpers so encoding matches what the token exchange expects.
 */
import { createHash } from 'node:crypto';
import * as oidc from 'openid-client';
import { isLoopbackHttp } from './client.js';

export interface AuthorizationUrlParams {
  authBaseUrl: string;
  appKey: string;
  redirectUri: string;
  state: string;
  codeChallenge: string;
}

export function buildAuthorizationUrl(p: AuthorizationUrlParams): string {
  const base = p.authBaseUrl.replace(/\/+$/, '');
  const config = new oidc.Configuration({ issuer: base, authorization_endpoint: `${base}/authorize` }, p.appKey);
  // Plain HTTP only towards this machine (stand-in, demo); openid-client throws for anything else.
  if (isLoopbackHttp(new URL(base))) oidc.allowInsecureRequests(config);
  return oidc
    .buildAuthorizationUrl(config, {
      response_type: 'code',
      redirect_uri: p.redirectUri,
      state: p.state,
      code_challenge: p.codeChallenge,
      code_challenge_method: 'S256',
    })
    .toString();
}

export interface Pkce {
  verifier: string;
  challenge: string;
}

/** S256: base64url(sha256(verifier)), computed synchronously (openid-client's helper is async). */
export function pkceChallenge(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

/** A fresh PKCE pair: 43-char base64url verifier (openid-client), S256 challenge. */
export function createPkce(): Pkce {
  const verifier = oidc.randomPKCECodeVerifier();
  return { verifier, challenge: pkceChallenge(verifier) };
}

/** Unguessable `state` for CSRF protection on the loopback redirect. */
export function randomState(): string {
  return oidc.randomState();
}
