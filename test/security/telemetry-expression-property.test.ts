// Telemetry filters and tag values are CEL text written by users and parsed by every agent. Properties:
// any text gives an outcome (no throw) in bounded time; deep nesting and long input are refused; an
// expression built from the supported grammar parses and evaluates as a reference evaluator of the same
// tree says (a differential over random attributes, a missing attribute included).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Attributes, EXPRESSION_LIMITS, evaluate, parseTelemetryExpression } from '../../agent/config/telemetry-expression.js';

/** A generated condition: its text and how a reader of CEL evaluates it (undefined: an error). */
interface Generated {
  readonly text: string;
  readonly eval: (a: Attributes) => boolean | undefined;
}

const METHODS = ['GET', 'POST', 'HEAD'];
const comparison: fc.Arbitrary<Generated> = fc.oneof(
  fc.tuple(fc.constantFrom('==', '!=', '<', '<=', '>', '>='), fc.integer({ min: 0, max: 600 })).map(([op, n]): Generated => ({
    text: `response.code ${op} ${n}`,
    eval: (a) => {
      const code = a['response.code'];
      if (code === undefined) return undefined;
      return { '==': code === n, '!=': code !== n, '<': code < n, '<=': code <= n, '>': code > n, '>=': code >= n }[op];
    },
  })),
  fc.tuple(fc.constantFrom('==', '!='), fc.constantFrom(...METHODS), fc.constantFrom('"', "'")).map(([op, m, q]): Generated => ({
    text: `request.method ${op} ${q}${m}${q}`,
    eval: (a) => (a['request.method'] === undefined ? undefined : (a['request.method'] === m) === (op === '==')),
  })),
  fc.boolean().map((b): Generated => ({ text: `connection.mtls == ${b}`, eval: (a) => (a['connection.mtls'] === undefined ? undefined : a['connection.mtls'] === b) })),
);

const condition: fc.Arbitrary<Generated> = fc.letrec<{ c: Generated }>((tie) => ({
  c: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    comparison,
    tie('c').map((x): Generated => ({ text: `!(${x.text})`, eval: (a) => { const v = x.eval(a); return v === undefined ? undefined : !v; } })),
    fc.tuple(tie('c'), fc.constantFrom('&&', '||'), tie('c')).map(([l, op, r]): Generated => ({
      text: `(${l.text}) ${op} (${r.text})`,
      eval: (a) => {
        const lv = l.eval(a);
        const rv = r.eval(a);
        const decisive = op === '||';
        if (lv === decisive || rv === decisive) return decisive;
        return lv === undefined || rv === undefined ? undefined : !decisive;
      },
    })),
  ),
})).c;

const attributes: fc.Arbitrary<Attributes> = fc.record(
  { 'response.code': fc.integer({ min: 0, max: 599 }), 'request.method': fc.constantFrom(...METHODS), 'connection.mtls': fc.boolean() },
  { requiredKeys: ['connection.mtls'] },
);

describe('Telemetry CEL subset', () => {
  it('any text: an outcome, never a throw, a refusal saying what is supported', () => {
    const alphabet = fc.constantFrom(...'()!&|=<>"\' .0123456789abcdefghijklmnopqrstuvwxyz_[]{}+-*/\\,'.split(''));
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.array(alphabet, { maxLength: 200 }).map((c) => c.join(''))), fc.constantFrom('bool' as const, 'string' as const), (text, want) => {
        const parsed = parseTelemetryExpression(text, want);
        if (!parsed.ok) assert.ok(parsed.message.length > 0);
        else evaluate(parsed.expression, { 'response.code': 200 });
      }),
      { numRuns: 3000 },
    );
  });

  it('a condition from the supported grammar evaluates as CEL reads it', () => {
    fc.assert(
      fc.property(condition, attributes, (c, a) => {
        const parsed = parseTelemetryExpression(c.text, 'bool');
        if (!parsed.ok) {
          // Only the bounds may refuse a well-formed condition.
          assert.match(parsed.message, /nested more than|more than \d+ tokens|longer than/, `${c.text}: ${parsed.message}`);
          return;
        }
        assert.equal(evaluate(parsed.expression, a), c.eval(a), c.text);
      }),
      { numRuns: 2000 },
    );
  });

  it('nesting, token count and length are bounded, and refused quickly', () => {
    const started = performance.now();
    for (const text of ['('.repeat(10_000) + 'true' + ')'.repeat(10_000), '!'.repeat(5000) + 'true', 'true&&'.repeat(150) + 'true', 'x'.repeat(EXPRESSION_LIMITS.chars + 1), '('.repeat(EXPRESSION_LIMITS.depth + 1) + 'true' + ')'.repeat(EXPRESSION_LIMITS.depth + 1)]) {
      const parsed = parseTelemetryExpression(text, 'bool');
      assert.equal(parsed.ok, false, text.slice(0, 20));
    }
    assert.ok(performance.now() - started < 1000);
    assert.equal(parseTelemetryExpression('('.repeat(EXPRESSION_LIMITS.depth - 1) + 'true' + ')'.repeat(EXPRESSION_LIMITS.depth - 1), 'bool').ok, true);
  });
});
