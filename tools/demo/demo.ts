// Placeholder while the demo is being written (replaced before this work lands).
export async function runDemo(_o: { durationSec: number }): Promise<number> {
  process.stderr.write('demo: not built yet\n');
  return 1;
}
