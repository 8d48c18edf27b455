/**
 * How the agent's Node process is started in production (systemd unit, `npx token-keeper`'s
 * shebang, the benchmark). Measured in docs/BENCHMARKS.md: together they keep ~15–20 MB of
 * garbage and malloc arenas out of the agent's resident memory; an idle agent loses nothing.
 * infra/systemd/token-keeper.service and bin/token-keeper.js repeat these; a test keeps them equal.
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1', '--optimize-for-size', '--v8-pool-size=1'] as const;
export const AGENT_ENV = { MALLOC_ARENA_MAX: '2' } as const;
