/**
 * The in-memory doubles the unit tests and the soak run on, proven by the same contract suites as
 * the adapters they stand for (the adapters run them in test/integration/): a proof on a double
 * holds only as far as these pass.
 */
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { MemorySecretStore, SaxoModel, VirtualClock } from '../../standins/memory.js';
import { inProcessSecretManager } from '../../standins/secret-manager/in-process.js';
import { SecretManagerState } from '../../standins/secret-manager/state.js';
import { secretStoreContract } from '../helpers/secret-store-contract.js';
import { tokenEndpointContract } from '../helpers/token-endpoint-contract.js';
import { eventBusCoreContract } from '../helpers/event-bus-core-contract.js';
import { MemoryEventBus } from '../../standins/memory.js';

let n = 0;
secretStoreContract('MemorySecretStore (the adapter over the in-process transport)', {
  async fresh(logger) {
    const m = new MemorySecretStore(`projects/mem/secrets/tok-${++n}`, logger);
    return {
      store: m,
      raw: {
        addRaw: async (data) => void m.addRaw(data),
        setState: async (v, state) =>
          void (state === 'DESTROYED' ? m.destroy(v) : m.model.DisableSecretVersion({ name: `${m.name}/versions/${v}` })),
        setAnnotations: async (annotations) => void m.model.UpdateSecret({ secret: { name: m.name, annotations }, update_mask: { paths: ['annotations'] } }),
        outage: (on) => (m.unavailable = on),
        states: () => m.versions().map(({ version, state }) => ({ version, state })),
      },
      projectNumber: m.model.projectNumber('mem'),
    };
  },
  missing: async (logger) =>
    createSecretStore({ client: inProcessSecretManager(new SecretManagerState()).client, projectId: 'mem', secretId: 'nope', logger }),
});

tokenEndpointContract('SaxoModel (the stand-in model, answers classified by the real classifier)', async (o) => {
  const clock = new VirtualClock(Date.now());
  const model = new SaxoModel(clock, o.accessLifetimeSec, o.refreshLifetimeSec);
  return {
    endpoint: model,
    issue: (clientId) => model.state.issue(clientId),
    state: model.state,
    advance: (ms) => clock.advance(ms),
    odd: (a) => void model.odd.push(a),
    close: async () => undefined,
  };
});

eventBusCoreContract('MemoryEventBus', async () => ({ bus: new MemoryEventBus(), close: async () => undefined }));
