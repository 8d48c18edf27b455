/** The relogin service's dependencies (wired by main.ts from the environment, by tests directly). */
import type { SaxoEnvironment } from '../../core/identity.js';
import type { Logger } from '../../core/log.js';
import type { EventBus, SecretStore, TokenEndpoint } from '../../core/ports.js';
import type { RateLimits } from './http.js';
import type { LinkStateStore } from './link-store.js';

/** One chain (one environment): its Saxo app, its token secret, its topic. */
export interface ChainDeps {
  environment: SaxoEnvironment;
  /** e.g. https://sim.logonvalidation.net (authorize and token). */
  authBaseUrl: string;
  /** e.g. https://gateway.saxobank.com/sim/openapi (users/me). */
  openapiBaseUrl: string;
  appKey: string;
  appSecret?: string | undefined;
  saxo: TokenEndpoint;
  store: SecretStore;
  bus?: EventBus | undefined;
  expiryMarginMs: number;
}

export interface ReloginDeps {
  /** RELOGIN_BASE_URL: every URL the service builds starts here (never from the Host header). */
  baseUrl: string;
  chains: Partial<Record<SaxoEnvironment, ChainDeps>>;
  links: LinkStateStore;
  logger: Logger;
  now?: (() => number) | undefined;
  rateLimits?: RateLimits | undefined;
  /** Behind Cloud Run's front end: the client is the first X-Forwarded-For entry. */
  trustForwarded?: boolean | undefined;
  fetch?: typeof fetch | undefined;
}

/** What one request handler needs besides the request. */
export interface RequestContext {
  deps: ReloginDeps;
  now: number;
  address: string;
  /** Log a refusal at WARNING with its reason (never a secret) and answer with a page. */
  refuse(status: number, reason: string, page: string, fields?: Record<string, unknown>): void;
}

export const callbackPath = (env: SaxoEnvironment): string => `/callback/${env.toLowerCase()}`;
export const redirectUri = (baseUrl: string, env: SaxoEnvironment): string => `${baseUrl.replace(/\/+$/, '')}${callbackPath(env)}`;
