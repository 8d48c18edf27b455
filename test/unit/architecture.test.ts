/**
 * The single-use refresh token is presented in one place only (issue 18, docs/ARCHITECTURE.md
 * "One refresh, as code walks it"): every call of `TokenEndpoint.refresh` in production code
 * (core/, agent/, functions/) sits in a function that takes decide()'s present action
 * (`PresentAction`) — so nothing reaches Saxo unless decide() said "present". Proved with the
 * TypeScript compiler: calls are found by the type of their receiver, not by a name in the source.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PRODUCTION = ['core', 'agent', 'functions'];

function sources(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

interface RefreshCall {
  where: string;
  /** The PresentAction parameter of the enclosing function, if there is one. */
  presentParam: string | undefined;
}

/** Every call whose callee is TokenEndpoint's `refresh` (through the interface or an implementation). */
function tokenEndpointRefreshCalls(files: string[]): RefreshCall[] {
  const program = ts.createProgram(files, { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, strict: true, noEmit: true, skipLibCheck: true, types: ['node'] });
  const checker = program.getTypeChecker();
  const calls: RefreshCall[] = [];
  const isTokenEndpointRefresh = (callee: ts.PropertyAccessExpression): boolean => {
    if (callee.name.text !== 'refresh') return false;
    const receiver = checker.getTypeAtLocation(callee.expression);
    const types = receiver.isUnion() ? receiver.types : [receiver];
    return types.some((t) => {
      const sym = t.getSymbol() ?? t.aliasSymbol;
      if (sym?.getName() === 'TokenEndpoint') return true;
      // A class implementing TokenEndpoint (core/saxo/client.ts) called directly.
      return checker.getBaseTypes(t as ts.InterfaceType)?.some((b) => b.getSymbol()?.getName() === 'TokenEndpoint') ||
        (sym?.declarations ?? []).some((d) => ts.isClassDeclaration(d) && (d.heritageClauses ?? []).some((h) => h.types.some((x) => x.expression.getText() === 'TokenEndpoint')));
    });
  };
  const presentParamOf = (node: ts.Node): string | undefined => {
    for (let n: ts.Node | undefined = node.parent; n; n = n.parent) {
      if (ts.isFunctionLike(n)) {
        const p = n.parameters.find((x) => x.type !== undefined && x.type.getText() === 'PresentAction');
        if (p) return p.name.getText();
      }
    }
    return undefined;
  };
  for (const sf of program.getSourceFiles()) {
    if (!files.includes(path.resolve(sf.fileName))) continue;
    const visit = (node: ts.Node): void => {
      if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression) && isTokenEndpointRefresh(node.expression)) {
        const { line } = sf.getLineAndCharacterOfPosition(node.getStart());
        calls.push({ where: `${path.relative(ROOT, sf.fileName)}:${line + 1}`, presentParam: presentParamOf(node) });
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  return calls;
}

describe('architecture: the refresh token is presented only by code holding a present action', () => {
  const files = PRODUCTION.flatMap(sources);
  const calls = tokenEndpointRefreshCalls(files);

  it('TokenEndpoint.refresh is called from production code exactly once, in core/refresh.ts', () => {
    expect(calls.map((c) => c.where.replace(/:\d+$/, ''))).toEqual(['core/refresh.ts']);
  });

  it('every call sits in a function whose parameter is decide()\'s PresentAction', () => {
    for (const c of calls) expect(c.presentParam, c.where).toBeDefined();
  });

  it('the scan finds a call planted outside a present action (it can fail)', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const dir = mkdtempSync(path.join(ROOT, 'core', '.arch-'));
    try {
      const planted = path.join(dir, 'planted.ts');
      writeFileSync(planted, `import type { TokenEndpoint } from '../ports.js';\nexport const sneak = (saxo: TokenEndpoint) => saxo.refresh('rt', { deadline: 0, appKey: 'k' });\n`);
      const found = tokenEndpointRefreshCalls([planted]);
      expect(found).toHaveLength(1);
      expect(found[0]!.presentParam).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('architecture: the refresh session has no import circle', () => {
  it('core/refresh.ts imports its steps; no step (nor the session types) imports core/refresh.ts back', async () => {
    const { readFileSync } = await import('node:fs');
    const importsOf = (f: string) => [...readFileSync(path.join(ROOT, f), 'utf8').matchAll(/^(?:import|export)[^;]*?from '(\.[^']+)'/gms)].map((m) => path.join(path.dirname(f), m[1]!).replace(/\.js$/, '.ts'));
    expect(importsOf('core/refresh.ts')).toEqual(expect.arrayContaining(['core/refresh-steps.ts', 'core/refresh-answer.ts', 'core/session.ts']));
    for (const f of ['core/refresh-steps.ts', 'core/refresh-answer.ts', 'core/session.ts', 'core/decide.ts', 'core/believed.ts']) {
      expect(importsOf(f), f).not.toContain('core/refresh.ts');
    }
    expect(importsOf('core/believed.ts')).not.toContain('core/decide.ts');
  });
});

/** Calls in `files` of the functions or methods named `names` declared in `declaredIn` (resolved by the compiler, aliases followed). */
function callsOf(program: ts.Program, files: string[], declaredIn: string, names: string[]): string[] {
  const checker = program.getTypeChecker();
  const found: string[] = [];
  for (const sf of program.getSourceFiles()) {
    if (!files.includes(path.resolve(sf.fileName))) continue;
    const visit = (node: ts.Node): void => {
      if (ts.isCallExpression(node)) {
        const callee = ts.isPropertyAccessExpression(node.expression) ? node.expression.name : node.expression;
        let sym = checker.getSymbolAtLocation(callee);
        if (sym && sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
        const decl = sym?.declarations?.[0];
        if (sym && names.includes(sym.getName()) && decl && path.relative(ROOT, decl.getSourceFile().fileName) === declaredIn) {
          found.push(`${path.relative(ROOT, sf.fileName)} ${sym.getName()}`);
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  return found.sort();
}

describe('architecture: one decision per trigger, one per attempt; the caller counts once', () => {
  const files = PRODUCTION.flatMap(sources);
  const program = ts.createProgram(files, { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, strict: true, noEmit: true, skipLibCheck: true, types: ['node'] });

  it('decide() is called once per place that decides: the agent trigger, the attempt under the lock, recover()\'s look, the cloud look, and the read-only views', () => {
    expect(callsOf(program, files, 'core/decide.ts', ['decide', 'decideCloud'])).toEqual([
      'agent/doctor/checks/token.ts decide', // read-only
      'agent/reconciler.ts decide', // the agent's trigger
      'agent/status.ts decide', // read-only
      'core/decide.ts decide', // decideCloud is decide() with the secret only
      'core/refresh-steps.ts decide', // recover()'s look after invalid_grant (the 'refused' gate)
      'core/refresh.ts decide', // each attempt, under the locks
      'functions/refresher.ts decideCloud', // the function, before its lease
    ]);
  });

  it('the refresh session counts nothing: FailureCounter is applied by the agent and the function, once each', () => {
    const counted = callsOf(program, files, 'core/failures.ts', ['failed', 'recovered', 'apply']);
    expect(counted.length).toBeGreaterThan(2); // the scan sees the agent's own counts (health, fence, cache writes)
    expect(counted.filter((c) => c.startsWith('core/') && !c.startsWith('core/failures.ts'))).toEqual([]);
    expect(counted.filter((c) => c.endsWith(' apply'))).toEqual(['agent/reconciler.ts apply', 'functions/refresher.ts apply']);
  });
});
