/** An RPC failure of the Secret Manager stand-in: the gRPC status the real v1 API answers with. */
import type { status } from '@grpc/grpc-js';

export class RpcError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}
