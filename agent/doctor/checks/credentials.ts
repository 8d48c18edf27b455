/**
 * A Google call that failed for want of credentials (the client could not initialise, ADC found
 * none, or the service said UNAUTHENTICATED) is fixed by credentials, never by the network.
 */
import { CREDENTIALS, type Facts, type Probe } from '../facts.js';
import { sh } from '../types.js';

type Failed = Extract<Probe<unknown>, { ok: false }>;

export function isCredentialFailure(p: Failed): boolean {
  return p.code === CREDENTIALS || p.code === 'UNAUTHENTICATED' || /could not load the default credentials/i.test(p.error);
}

/** Where this process's Google credentials come from, and how to give it working ones. */
export function credentialsFix(f: Pick<Facts, 'credentialsFile'>): string {
  const file = f.credentialsFile;
  if (file) {
    return `check GOOGLE_APPLICATION_CREDENTIALS=${sh(file)}: the key file must exist and be readable by this user (ls -l ${sh(file)}), or unset it to use the VM's service account`;
  }
  return "gcloud auth application-default login (or GOOGLE_APPLICATION_CREDENTIALS=<a service account key file>); on a GCE VM, check that it runs with a service account";
}
