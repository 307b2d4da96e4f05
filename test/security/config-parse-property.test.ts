// Property tests (fast-check) of the configuration parser every source feeds (agent/config
// parseConfigFile: local YAML, Kubernetes objects as JSON, the lab's API server): on arbitrary text, and
// on objects of every kind Ambit reads with arbitrary values in their fields, it never throws, every
// diagnostic names the file and a line inside it, and whatever it accepts came from a document of the
// kind it claims. Deeply nested values (past the nesting bound) are refused with a line, not a crash.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import type { FileParseResult } from '../../agent/config/load.js';
import { parseConfigFile } from '../../agent/config/load.js';
import { fuzzTarget } from '../fuzz/property.js';

const fuzz = fuzzTarget('config-parse');

const FILE = 'fuzz/mesh.yaml';

/** The invariants any parse must keep, whatever it was given. */
function checkResult(text: string, parse: () => FileParseResult): FileParseResult {
  let result: FileParseResult | undefined;
  assert.doesNotThrow(() => (result = parse()), JSON.stringify(text.slice(0, 200)));
  const lines = text.split(/\r\n|\r|\n/).length;
  for (const d of result!.diagnostics) {
    assert.equal(d.location.file, FILE);
    assert.ok(Number.isInteger(d.location.line) && d.location.line >= 1 && d.location.line <= lines + 1, `line ${d.location.line} of ${lines}: ${d.message}`);
    assert.ok(d.message.length > 0);
  }
  if (!result!.readable) assert.equal(result!.objects.length, 0);
  for (const object of result!.objects) {
    assert.equal(object.source.file, FILE);
    assert.ok(object.metadata.name.length > 0);
  }
  return result!;
}

const KINDS = [
  ['v1', 'Namespace'],
  ['v1', 'Node'],
  ['v1', 'Pod'],
  ['v1', 'Service'],
  ['v1', 'ServiceAccount'],
  ['networking.istio.io/v1', 'VirtualService'],
  ['networking.istio.io/v1', 'DestinationRule'],
  ['security.istio.io/v1', 'AuthorizationPolicy'],
  ['security.istio.io/v1', 'PeerAuthentication'],
  ['ambit.dev/v1alpha1', 'RateLimit'],
] as const;

/** Values that land in typed fields: the right shape sometimes, anything else often. */
const value: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom('10.1.0.1', '10.0.0.0/8', 'fd00::/8', '1.5s', 'http', 'web', '*', '', '-1', 'GET', 80, 0, -1, 65536, 1.5, true, null),
    fc.string({ maxLength: 12 }),
    fc.integer(),
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom('name', 'port', 'hosts', 'http', 'route', 'match', 'rules', 'from', 'to', 'when', 'selector', 'x'), tie('v'), { maxKeys: 3 }),
  ),
})).v;

/** A spec built from the field names of every kind, with arbitrary values. */
const spec = fc.dictionary(
  fc.constantFrom(
    'containers', 'nodeName', 'ports', 'selector', 'clusterIP', 'hosts', 'http', 'tcp', 'gateways', 'host', 'trafficPolicy', 'subsets',
    'action', 'rules', 'mtls', 'portLevelMtls', 'targetRef', 'tokenBucket', 'type', 'addresses', 'podIP', 'exportTo',
  ),
  value,
  { maxKeys: 4 },
);

const object = fc.record({
  kind: fc.constantFrom(...KINDS),
  name: fc.oneof(fc.constantFrom('web', 'a.b', 'Bad_Name', ''), fc.string({ maxLength: 10 })),
  namespace: fc.option(fc.constantFrom('shop', 'istio-system', 'Bad NS'), { nil: undefined }),
  spec,
  status: fc.option(fc.dictionary(fc.constantFrom('podIP', 'addresses', 'phase'), value, { maxKeys: 2 }), { nil: undefined }),
});

describe('parseConfigFile on hostile input', () => {
  it('never throws on arbitrary text, and every diagnostic names the file and a line in it', async () => {
    await fuzz.assert('arbitrary-text',
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: fc.constantFrom('-', ' ', ':', '\n', '[', ']', '{', '}', '&a', '*a', '!!', '?', '|', '>', '#', '"', "'", 'k', '1', '---\n'), maxLength: 80 })), (text) => {
        checkResult(text, () => parseConfigFile(text, FILE));
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws on objects of every kind with arbitrary field values, as YAML and as JSON', async () => {
    await fuzz.assert('objects-yaml-json',
      fc.property(fc.array(object, { minLength: 1, maxLength: 3 }), (objects) => {
        const documents = objects.map((o) => ({
          apiVersion: o.kind[0],
          kind: o.kind[1],
          metadata: { name: o.name, ...(o.namespace !== undefined ? { namespace: o.namespace } : {}) },
          spec: o.spec,
          ...(o.status ? { status: o.status } : {}),
        }));
        const yaml = documents.map((d) => stringify(d)).join('---\n');
        const fromYaml = checkResult(yaml, () => parseConfigFile(yaml, FILE));
        const kinds = new Set(objects.map((o) => o.kind[1] as string));
        for (const parsed of fromYaml.objects) assert.ok(kinds.has(parsed.kind));
        // The Kubernetes source hands each object over as JSON text: the same decisions must come out.
        for (const document of documents) {
          const json = JSON.stringify(document);
          const fromJson = checkResult(json, () => parseConfigFile(json, FILE));
          const alone = parseConfigFile(stringify(document), FILE);
          assert.deepEqual(
            fromJson.objects.map((o) => [o.kind, o.metadata.name]),
            alone.objects.map((o) => [o.kind, o.metadata.name]),
          );
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('refuses values nested past the bound in any field, with a line, and never throws', async () => {
    await fuzz.assert('nesting-bound',
      fc.property(fc.constantFrom(...KINDS), fc.integer({ min: 101, max: 3000 }), fc.constantFrom('[', '{"a":', '- '), (kind, depth, opener) => {
        const nested = opener === '- ' ? `\n${'- '.repeat(depth)}x` : `${opener.repeat(depth)}1${(opener === '[' ? ']' : '}').repeat(depth)}`;
        const text = `apiVersion: ${kind[0]}\nkind: ${kind[1]}\nmetadata: {name: deep}\nspec:\n  x: ${nested}\n`;
        const result = checkResult(text, () => parseConfigFile(text, FILE));
        assert.equal(result.readable, false);
        assert.match(result.diagnostics[0]!.message, /^refused unread: collections nest deeper than 100 levels/);
      }),
      { numRuns: 200 },
    );
  });
});
