/**
 * How the agent's Node process is started in production (systemd unit, `npx token-keeper`'s
 * shebang, the benchmark). Measured in docs/BENCHMARKS.md: together they keep ~15–20 MB of
 * garbage and malloc arenas out of the agent's resident memory; an idle agent loses nothing.
 * infra/systemd/token-keeper.service and bin/token-keeper.js repeat these; a test keeps them equal.
 *
 * `--no-maglev`: Node 24 (V8 13) enables Maglev by default and tiers up Node's own bootstrap and
 * module-loader code within the first milliseconds, before agent/cli.ts can switch the compilers off
 * at runtime: ≈ 2.3 MB of Maglev/TurboFan code pages stay resident (docs/BENCHMARKS.md "Agent memory on
 * Node 24"). On Node 20 Maglev is off already. TurboFan and Sparkplug start late enough to be switched
 * off at runtime, which keeps the launcher's shebang under the 127 bytes older kernels read.
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1', '--optimize-for-size', '--v8-pool-size=1', '--no-maglev'] as const;
export const AGENT_ENV = { MALLOC_ARENA_MAX: '2' } as const;
