/**
 * The stand-in's REST front (Secret Manager v1 over HTTP/JSON), on its own loopback port, sharing
 * the model, the faults and the call log with the gRPC front: what the function's REST transport
 * (core/gcp/secret-manager-rest.ts) talks to in tests and the demo.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

type Msg = Record<string, unknown>;
type Dispatch = (method: string, req: Msg) => Promise<Msg>;

// gRPC code → the HTTP status and name Google's REST APIs answer with.
const HTTP: Record<number, [number, string]> = {
  1: [499, 'CANCELLED'], 2: [500, 'UNKNOWN'], 3: [400, 'INVALID_ARGUMENT'], 4: [504, 'DEADLINE_EXCEEDED'],
  5: [404, 'NOT_FOUND'], 6: [409, 'ALREADY_EXISTS'], 7: [403, 'PERMISSION_DENIED'], 8: [429, 'RESOURCE_EXHAUSTED'],
  9: [400, 'FAILED_PRECONDITION'], 10: [409, 'ABORTED'], 12: [501, 'UNIMPLEMENTED'], 13: [500, 'INTERNAL'],
  14: [503, 'UNAVAILABLE'], 16: [401, 'UNAUTHENTICATED'],
};

const camel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The model's proto-loader shapes → REST JSON: camelCase, bytes as base64, timestamps as RFC 3339. */
function toJson(v: unknown, key = ''): unknown {
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (Array.isArray(v)) return v.map((x) => toJson(x));
  if (v && typeof v === 'object') {
    const o = v as Msg;
    if (key.endsWith('_time') && 'seconds' in o) return new Date(Number(o.seconds) * 1000 + Number(o.nanos ?? 0) / 1e6).toISOString();
    // Maps keep their keys (annotations, labels): only message fields are renamed.
    const isMap = key === 'annotations' || key === 'labels' || key === 'version_aliases';
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [isMap ? k : camel(k), toJson(x, k)]));
  }
  return v;
}

function body(req: IncomingMessage): Promise<Msg> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        resolve(chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Msg) : {});
      } catch {
        resolve({});
      }
    });
  });
}

/** URL + method → the RPC and its request, as the gRPC front would receive it. */
async function route(req: IncomingMessage): Promise<[string, Msg] | undefined> {
  const url = new URL(req.url ?? '/', 'http://x');
  const path = decodeURIComponent(url.pathname.replace(/^\/v1\//, ''));
  const q = url.searchParams;
  const [name, verb] = path.split(':') as [string, string | undefined];
  if (req.method === 'GET' && verb === 'access') return ['AccessSecretVersion', { name }];
  if (req.method === 'POST' && verb === 'addVersion') {
    const b = (await body(req)).payload as { data?: string; dataCrc32c?: string } | undefined;
    return ['AddSecretVersion', { parent: name, payload: { data: Buffer.from(b?.data ?? '', 'base64'), ...(b?.dataCrc32c !== undefined ? { data_crc32c: b.dataCrc32c } : {}) } }];
  }
  if (req.method === 'POST' && verb === 'destroy') return ['DestroySecretVersion', { name }];
  if (req.method === 'POST' && verb === 'disable') return ['DisableSecretVersion', { name }];
  if (req.method === 'GET' && /\/versions$/.test(name)) {
    return ['ListSecretVersions', { parent: name.replace(/\/versions$/, ''), filter: q.get('filter') ?? '', page_size: Number(q.get('pageSize') ?? 0), page_token: q.get('pageToken') ?? '' }];
  }
  if (req.method === 'GET' && !verb) return ['GetSecret', { name }];
  if (req.method === 'PATCH' && !verb) {
    const b = await body(req);
    const secret = Object.fromEntries(Object.entries(b).map(([k, v]) => [snake(k), v]));
    return ['UpdateSecret', { secret: { ...secret, name }, update_mask: { paths: (q.get('updateMask') ?? '').split(',').filter(Boolean) } }];
  }
  return undefined;
}

export async function startRestFront(dispatch: Dispatch): Promise<{ host: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    void (async () => {
      const r = await route(req);
      const send = (status: number, json: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(json));
      if (!r) return send(404, { error: { code: 404, status: 'NOT_FOUND', message: `no route ${req.method ?? ''} ${req.url ?? ''}` } });
      try {
        send(200, toJson(await dispatch(r[0], r[1])));
      } catch (e) {
        const { code, details } = e as { code: number; details: string };
        const [status, name] = HTTP[code] ?? [500, 'INTERNAL'];
        send(status, { error: { code: status, status: name, message: details } });
      }
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
