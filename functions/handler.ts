/**
 * HTTP adapter for the cloud path. Cloud Scheduler POSTs (with an OIDC token verified by Cloud Run
 * IAM: the function is not publicly invokable) every few minutes. The body is ignored except
 * `{"force": true}`, which only an operator with run.invoker can send. The status code is what the
 * Scheduler's retry policy reads: 2xx when the run did its job (including deciding to wait),
 * 5xx when it failed (503: worth retrying soon; 500: needs a person).
 */
import type { Request, Response } from '@google-cloud/functions-framework';
import { errorText } from '../core/errors.js';
import { traceFields, withLogContext, type Logger } from '../core/log.js';
import { runCloudRefresh, type CloudDeps, type CloudResult } from './refresher.js';

export function httpStatus(r: CloudResult): number {
  switch (r.outcome) {
    case 'refreshed':
    case 'fresh':
    case 'superseded':
    case 'deferred':
      return 200;
    case 'rejected':
      return 500;
    case 'failed':
      return r.reason === 'no_app_key' ? 500 : 503;
  }
}

/**
 * Every line of one invocation carries its trace and span (from `traceparent` or
 * `X-Cloud-Trace-Context`), so Cloud Logging groups them with the request; the execution id is
 * added by the Functions Framework itself (LOG_EXECUTION_ID=true, set by Terraform).
 */
export function createRefreshHandler(getDeps: () => Promise<CloudDeps>, fallbackLogger: Logger) {
  const handle = refreshHandler(getDeps, fallbackLogger);
  return (req: Request, res: Response): Promise<void> =>
    withLogContext(traceFields(req.headers, process.env.GOOGLE_CLOUD_PROJECT), () => handle(req, res));
}

function refreshHandler(getDeps: () => Promise<CloudDeps>, fallbackLogger: Logger) {
  return async (req: Request, res: Response): Promise<void> => {
    let logger = fallbackLogger;
    try {
      const deps = await getDeps();
      logger = deps.logger;
      const force = typeof req.body === 'object' && req.body !== null && (req.body as { force?: unknown }).force === true;
      const result = await runCloudRefresh(deps, { force });
      res.status(httpStatus(result)).json(result);
    } catch (err) {
      logger.error('function_error', 'refreshToken failed unexpectedly', { error: errorText(err) });
      res.status(500).json({ outcome: 'failed', reason: 'internal' });
    }
  };
}
