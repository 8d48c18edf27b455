/**
 * HTTP adapter for the cloud path. Cloud Scheduler POSTs (with an OIDC token verified by Cloud Run
 * IAM: the function is not publicly invokable) every 5 minutes. The body is ignored except
 * `{"force": true}`, which only an operator with run.invoker can send.
 */
import type { Request, Response } from '@google-cloud/functions-framework';
import { errorText } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { runCloudRefresh, type CloudDeps } from './refresher.js';

export function createRefreshHandler(getDeps: () => Promise<CloudDeps>, logger: Logger) {
  return async (req: Request, res: Response): Promise<void> => {
    try {
      const deps = await getDeps();
      const force = typeof req.body === 'object' && req.body !== null && (req.body as { force?: unknown }).force === true;
      const result = await runCloudRefresh(deps, { force });
      res.status(result.status).json(result);
    } catch (err) {
      logger.error('function_error', 'refreshToken failed unexpectedly', { error: errorText(err) });
      res.status(500).json({ action: 'failed', reason: 'internal' });
    }
  };
}
