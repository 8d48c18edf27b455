/**
 * Odd servers on 127.0.0.1 for the reliability suites:
 * - a scripted OAuth token endpoint that answers whatever a test says (absurd lifetimes) and keeps
 *   its own ledger of issued and presented refresh tokens (single use, like Saxo);
 * - a TCP "black hole" that accepts connections and never answers (a Pub/Sub that hangs), which can
 *   be switched to forward to a real server later (Pub/Sub comes back).
 */
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';

export interface ScriptedAnswer {
  status?: number;
  /** Merged over a fresh pair {access_token, refresh_token, token_type}. */
  body: Record<string, unknown>;
  /**
   * Refuse before the grant, as a proxy or an overloaded Saxo does: this status, headers and text,
   * and the refresh token stays live (it was never consumed).
   */
  refuse?: { status: number; headers: Record<string, string>; text: string };
}

export interface ScriptedTokenEndpoint {
  /** http://127.0.0.1:PORT, for SAXO_AUTH_BASE_URL. */
  url: string;
  /** Refresh tokens presented, in order. */
  presented: string[];
  /** Every token handed out, for the log check. */
  issued: Set<string>;
  /** Presentations of a refresh token that was never issued or already used. */
  invalidPresentations(): number;
  /** Seed a pair the endpoint will honour (as if issued earlier). */
  issue(): { access_token: string; refresh_token: string };
  close(): Promise<void>;
}

/** Answers the n-th refresh (0-based) with `script(n)`; single-use refresh tokens. */
export async function startScriptedTokenEndpoint(script: (n: number) => ScriptedAnswer): Promise<ScriptedTokenEndpoint> {
  const presented: string[] = [];
  const issued = new Set<string>();
  const live = new Set<string>();
  let invalid = 0;
  const mint = () => {
    const pair = { access_token: `sa_${randomBytes(24).toString('base64url')}`, refresh_token: `sr_${randomBytes(24).toString('base64url')}` };
    issued.add(pair.access_token);
    issued.add(pair.refresh_token);
    live.add(pair.refresh_token);
    return pair;
  };
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const rt = form.get('refresh_token');
      if (req.url !== '/token' || form.get('grant_type') !== 'refresh_token' || !rt) {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_request' }));
        return;
      }
      const n = presented.length;
      presented.push(rt);
      const a = script(n);
      if (a.refuse && live.has(rt)) {
        res.writeHead(a.refuse.status, a.refuse.headers).end(a.refuse.text);
        return;
      }
      if (!live.delete(rt)) {
        invalid++;
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_grant' }));
        return;
      }
      // The body is built as text so that 1e300 reaches the client as the number 1e300.
      const body = { ...mint(), token_type: 'Bearer', ...a.body };
      const text = '{' + Object.entries(body).map(([k, v]) => `${JSON.stringify(k)}:${typeof v === 'number' ? numberText(v) : JSON.stringify(v)}`).join(',') + '}';
      res.writeHead(a.status ?? 200, { 'content-type': 'application/json' }).end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    presented,
    issued,
    invalidPresentations: () => invalid,
    issue: mint,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

function numberText(v: number): string {
  // JSON.stringify(1e300) is "1e+300": valid JSON either way; keep it as the server would send it.
  return String(v);
}

export interface BlackHole {
  /** "127.0.0.1:PORT", for PUBSUB_EMULATOR_HOST. */
  host: string;
  /** Connections accepted so far. */
  connections(): number;
  /** From now on pipe every connection to `target` ("host:port"); held connections are dropped. */
  forwardTo(target: string): void;
  close(): Promise<void>;
}

/** Accepts TCP connections and never answers, until told to forward. */
export async function startBlackHole(): Promise<BlackHole> {
  const held = new Set<Socket>();
  let target: { host: string; port: number } | undefined;
  let count = 0;
  const server: Server = createServer((sock) => {
    count++;
    held.add(sock);
    sock.on('close', () => held.delete(sock));
    sock.on('error', () => undefined);
    if (!target) return; // read nothing, answer nothing
    const up = connect(target.port, target.host);
    up.on('error', () => sock.destroy());
    sock.on('error', () => up.destroy());
    sock.pipe(up).pipe(sock);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => count,
    forwardTo(t) {
      const i = t.lastIndexOf(':');
      target = { host: t.slice(0, i), port: Number(t.slice(i + 1)) };
      for (const s of held) s.destroy();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of held) s.destroy();
        server.close(() => r());
      }),
  };
}
