/**
 * The browser's part in a `token-keeper login` test: read the authorize URL the CLI prints on
 * stderr, and sign in at the Saxo stand-in (it signs the user in at once and redirects to the
 * loopback callback).
 */
import { expect } from 'vitest';
import { until, type CliProcess } from './agent-process.js';

/** The authorize URL the CLI prints on stderr (throws when the process exits without one). */
export async function authorizeUrl(p: CliProcess, timeoutMs = 20_000): Promise<string> {
  let url: string | undefined;
  await until(() => {
    url = /(http:\/\/127\.0\.0\.1:\d+\/authorize\?\S+)/.exec(p.stderr())?.[1];
    return url !== undefined || p.proc.exitCode !== null;
  }, timeoutMs, 'the authorize URL on stderr');
  if (!url) throw new Error(`login exited without printing a URL: ${p.stderr()}`);
  return url;
}

/** Act as the browser: GET the authorize URL; the stand-in answers 302 to the loopback callback. */
export async function signIn(url: string): Promise<URL> {
  const res = await fetch(url, { redirect: 'manual' });
  expect(res.status).toBe(302);
  return new URL(res.headers.get('location')!);
}
