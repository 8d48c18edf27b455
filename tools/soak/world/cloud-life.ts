/** One invocation of the function (the real runCloudRefresh) on a host whose clock is skewed. */
import { runCloudRefresh } from '../../../functions/refresher.js';
import { skewed } from '../../../standins/virtual-clock.js';
import { busPort, Proc, saxoPort, storePort } from '../procs.js';
import type { World } from '../world.js';

export function runCloud(w: World): void {
  const proc = new Proc(`cloud#${++w.cloudN}`, 'cloud');
  proc.skewMs = w.cloudSkewMs;
  const deps = {
    clock: skewed(w.clock, w.cloudSkewMs),
    store: storePort(w, proc),
    bus: busPort(w, proc),
    saxo: saxoPort(w, proc),
    logger: w.loggerFor(proc),
    settings: w.cloudSettings,
  };
  w.fire(runCloudRefresh(deps), proc.name);
}
