// The small subset of CEL that Telemetry resources use in Ambit: access-log filters such as
// `response.code >= 400 && request.method == "GET"` and metric tag values such as `request.host` or
// `string(destination.port)`. A bounded recursive-descent parser, type-checked when the YAML is read,
// so that a filter Ambit cannot evaluate is refused with why instead of silently logging everything.

/** The attributes Ambit can supply, with their CEL types (Envoy's attribute names). */
export const TELEMETRY_ATTRIBUTES = {
  'response.code': 'int',
  'request.method': 'string',
  'request.path': 'string',
  'request.url_path': 'string',
  'request.host': 'string',
  'destination.port': 'int',
  'connection.mtls': 'bool',
} as const;

export type AttributeName = keyof typeof TELEMETRY_ATTRIBUTES;
type ValueType = 'int' | 'string' | 'bool';
type Value = number | string | boolean;

/** What a record offers the expression; a request-only attribute is absent on a connection. */
export type Attributes = { readonly [K in AttributeName]?: K extends 'response.code' | 'destination.port' ? number : K extends 'connection.mtls' ? boolean : string };

export type Expression =
  | { readonly op: 'literal'; readonly type: ValueType; readonly value: Value }
  | { readonly op: 'attribute'; readonly type: ValueType; readonly name: AttributeName }
  | { readonly op: 'string'; readonly type: 'string'; readonly arg: Expression }
  | { readonly op: 'not'; readonly type: 'bool'; readonly arg: Expression }
  | { readonly op: '&&' | '||'; readonly type: 'bool'; readonly left: Expression; readonly right: Expression }
  | { readonly op: Comparison; readonly type: 'bool'; readonly left: Expression; readonly right: Expression };

type Comparison = '==' | '!=' | '<' | '<=' | '>' | '>=';

export type ParsedExpression = { readonly ok: true; readonly expression: Expression } | { readonly ok: false; readonly message: string };

/** Bounds on user input: a filter is a line, not a program. */
export const EXPRESSION_LIMITS = { chars: 1024, tokens: 256, depth: 16 } as const;

const SUPPORTED = `Ambit supports comparisons (== != < <= > >=), && || ! and parentheses over ${Object.keys(TELEMETRY_ATTRIBUTES).join(', ')}, with int, "string" and true/false literals, and string(attribute)`;

type Token = { readonly kind: 'number'; readonly value: number } | { readonly kind: 'string'; readonly value: string } | { readonly kind: 'word' | 'op'; readonly value: string };

class Refusal extends Error {}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    if (tokens.length > EXPRESSION_LIMITS.tokens) throw new Refusal(`more than ${EXPRESSION_LIMITS.tokens} tokens`);
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    const two = text.slice(i, i + 2);
    if (['==', '!=', '<=', '>=', '&&', '||'].includes(two)) {
      tokens.push({ kind: 'op', value: two });
      i += 2;
    } else if ('<>!().'.includes(c)) {
      tokens.push({ kind: 'op', value: c });
      i++;
    } else if (c === '"' || c === "'") {
      const end = text.indexOf(c, i + 1);
      if (end < 0) throw new Refusal(`unterminated string starting at column ${i + 1}`);
      const value = text.slice(i + 1, end);
      // Escapes would need CEL's full escape grammar; a filter compares against plain words.
      if (value.includes('\\')) throw new Refusal(`escapes in strings are not supported (column ${i + 1})`);
      tokens.push({ kind: 'string', value });
      i = end + 1;
    } else if (c >= '0' && c <= '9') {
      const m = /^[0-9]{1,9}(?![0-9A-Za-z_.])/.exec(text.slice(i));
      if (!m) throw new Refusal(`expected a whole number of at most 9 digits at column ${i + 1}`);
      tokens.push({ kind: 'number', value: Number(m[0]) });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i))!;
      tokens.push({ kind: 'word', value: m[0] });
      i += m[0].length;
    } else {
      throw new Refusal(`unexpected character ${JSON.stringify(c)} at column ${i + 1}`);
    }
  }
  return tokens;
}

class Parser {
  #at = 0;
  constructor(private readonly tokens: readonly Token[]) {}

  parse(): Expression {
    const e = this.#or(0);
    const rest = this.tokens[this.#at];
    if (rest) throw new Refusal(`unexpected ${JSON.stringify(String(rest.value))} after a complete expression`);
    return e;
  }

  #peek(value: string): boolean {
    const t = this.tokens[this.#at];
    return t !== undefined && t.kind === 'op' && t.value === value;
  }

  #expect(value: string): void {
    if (!this.#peek(value)) throw new Refusal(`expected ${JSON.stringify(value)}`);
    this.#at++;
  }

  #or(depth: number): Expression {
    let left = this.#and(depth);
    while (this.#peek('||')) {
      this.#at++;
      left = logical('||', left, this.#and(depth));
    }
    return left;
  }

  #and(depth: number): Expression {
    let left = this.#comparison(depth);
    while (this.#peek('&&')) {
      this.#at++;
      left = logical('&&', left, this.#comparison(depth));
    }
    return left;
  }

  #comparison(depth: number): Expression {
    const left = this.#unary(depth);
    const t = this.tokens[this.#at];
    if (t?.kind !== 'op' || !['==', '!=', '<', '<=', '>', '>='].includes(t.value)) return left;
    this.#at++;
    const op = t.value as Comparison;
    const right = this.#unary(depth);
    if (left.type !== right.type) throw new Refusal(`cannot compare ${left.type} with ${right.type} (${op})`);
    if (op !== '==' && op !== '!=' && left.type !== 'int') throw new Refusal(`${op} compares numbers only, got ${left.type}`);
    return { op, type: 'bool', left, right };
  }

  #unary(depth: number): Expression {
    if (depth >= EXPRESSION_LIMITS.depth) throw new Refusal(`nested more than ${EXPRESSION_LIMITS.depth} deep`);
    if (this.#peek('!')) {
      this.#at++;
      const arg = this.#unary(depth + 1);
      if (arg.type !== 'bool') throw new Refusal(`! applies to true/false, got ${arg.type}`);
      return { op: 'not', type: 'bool', arg };
    }
    if (this.#peek('(')) {
      this.#at++;
      const inner = this.#or(depth + 1);
      this.#expect(')');
      return inner;
    }
    const t = this.tokens[this.#at++];
    if (!t) throw new Refusal('the expression ends too early');
    if (t.kind === 'number') return { op: 'literal', type: 'int', value: t.value };
    if (t.kind === 'string') return { op: 'literal', type: 'string', value: t.value };
    if (t.kind === 'op') throw new Refusal(`unexpected ${JSON.stringify(t.value)}`);
    if (t.value === 'true' || t.value === 'false') return { op: 'literal', type: 'bool', value: t.value === 'true' };
    if (t.value === 'string' && this.#peek('(')) {
      this.#at++;
      const arg = this.#unary(depth + 1);
      this.#expect(')');
      return { op: 'string', type: 'string', arg };
    }
    let name = t.value;
    while (this.#peek('.')) {
      this.#at++;
      const part = this.tokens[this.#at++];
      if (part?.kind !== 'word') throw new Refusal(`expected an attribute name after "${name}."`);
      name = `${name}.${part.value}`;
    }
    if (this.#peek('(')) throw new Refusal(`function ${name}() is not supported`);
    if (!Object.hasOwn(TELEMETRY_ATTRIBUTES, name)) throw new Refusal(`attribute ${name} is not supported`);
    const attribute = name as AttributeName;
    return { op: 'attribute', type: TELEMETRY_ATTRIBUTES[attribute], name: attribute };
  }
}

function logical(op: '&&' | '||', left: Expression, right: Expression): Expression {
  if (left.type !== 'bool' || right.type !== 'bool') throw new Refusal(`${op} joins true/false conditions, got ${left.type} ${op} ${right.type}`);
  return { op, type: 'bool', left, right };
}

/** Parses `text` and checks it has type `want` (a filter: bool; a tag value: string, or int printed). */
export function parseTelemetryExpression(text: string, want: 'bool' | 'string'): ParsedExpression {
  if (text.length > EXPRESSION_LIMITS.chars) return { ok: false, message: `expression is longer than ${EXPRESSION_LIMITS.chars} characters` };
  try {
    const expression = new Parser(tokenize(text)).parse();
    if (want === 'bool' && expression.type !== 'bool') return { ok: false, message: `expected a condition (true/false), got a ${expression.type}` };
    if (want === 'string' && expression.type === 'bool') return { ok: false, message: 'expected a string or number value, got a condition' };
    return { ok: true, expression };
  } catch (e) {
    if (e instanceof Refusal) return { ok: false, message: `${e.message}; ${SUPPORTED}` };
    throw e;
  }
}

/** A missing attribute (a connection has no response.code) makes what depends on it undefined. */
export function evaluate(e: Expression, attributes: Attributes): Value | undefined {
  switch (e.op) {
    case 'literal':
      return e.value;
    case 'attribute':
      return attributes[e.name];
    case 'string': {
      const v = evaluate(e.arg, attributes);
      return v === undefined ? undefined : String(v);
    }
    case 'not': {
      const v = evaluate(e.arg, attributes);
      return v === undefined ? undefined : !v;
    }
    case '&&':
    case '||': {
      // CEL's commutative logic: false && error is false, true || error is true.
      const l = evaluate(e.left, attributes);
      const r = evaluate(e.right, attributes);
      const decisive = e.op === '&&' ? false : true;
      if (l === decisive || r === decisive) return decisive;
      return l === undefined || r === undefined ? undefined : !decisive;
    }
    default: {
      const l = evaluate(e.left, attributes);
      const r = evaluate(e.right, attributes);
      if (l === undefined || r === undefined) return undefined;
      switch (e.op) {
        case '==':
          return l === r;
        case '!=':
          return l !== r;
        case '<':
          return l < r;
        case '<=':
          return l <= r;
        case '>':
          return l > r;
        case '>=':
          return l >= r;
      }
    }
  }
}

/** Whether any of `names` occurs in the expression (to know a value depends on the request). */
export function usesAttributes(e: Expression, names: readonly AttributeName[]): boolean {
  switch (e.op) {
    case 'literal':
      return false;
    case 'attribute':
      return names.includes(e.name);
    case 'string':
    case 'not':
      return usesAttributes(e.arg, names);
    default:
      return usesAttributes(e.left, names) || usesAttributes(e.right, names);
  }
}
