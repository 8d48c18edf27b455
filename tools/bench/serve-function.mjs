// Serves one HTTP function on 127.0.0.1 the way the Cloud Functions runtime would load it:
// import the module (which registers its function with functions-framework), then listen.
// Usage: node serve-function.mjs <module> <target>; prints "LISTENING <port>".
import { getTestServer } from '@google-cloud/functions-framework/testing';
const [, , modulePath, target] = process.argv;
await import(modulePath);
const server = getTestServer(target);
server.listen(0, '127.0.0.1', () => process.stdout.write(`LISTENING ${server.address().port}\n`));
