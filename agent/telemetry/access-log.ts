// The access log's lines (one per request, one per connection), each built by a serializer written for
// its record's fixed shape instead of pino's generic path (a child logger per flow, a loop over each
// record's fields with a type switch per value, message formatting). The bytes are pino's for the same
// record: its level and time fields, the logger's bindings, the fields in their order with absent ones
// left out, then "msg"; written to the logger's own destination, at the levels the logger lets through.

import { type Logger, pino } from 'pino';

/** A record's fields, serialized as pino writes them: `,"key":value` for each present field, in order. */
export type SerializedFields = string;

export type AccessLogLevel = 'debug' | 'info' | 'warn' | 'error';

interface LineDestination {
  write(line: string): unknown;
}

/**
 * Writes finished lines through the logger the agent gave its telemetry. What pino would add to each
 * line is read from that logger once (pino.symbols: its level prefixes, time function, bindings, line
 * end and message key), so a line is the same whatever the logger's timestamp or bindings; the agent's
 * loggers (log.ts) use none of pino's hooks, formatters, mixins or serializers, which this does not apply.
 */
export class AccessLog {
  readonly #logger: Logger;
  readonly #levelPrefix: Readonly<Record<number, string>>;
  readonly #time: () => string;
  readonly #bindings: string;
  readonly #messageKey: string;
  readonly #end: string;
  readonly #destination: LineDestination;

  constructor(logger: Logger) {
    const internals = logger as unknown as Record<symbol, unknown>;
    const s = pino.symbols;
    this.#logger = logger;
    this.#levelPrefix = internals[s.lsCacheSym] as Record<number, string>;
    this.#time = (internals[s.timeSym] as () => string).bind(logger);
    this.#bindings = internals[s.chindingsSym] as string;
    this.#messageKey = JSON.stringify(internals[s.messageKeySym]);
    this.#end = internals[s.endSym] as string;
    this.#destination = internals[s.streamSym] as LineDestination;
  }

  /** Whether a line at `level` would be written: callers skip building one that would not. */
  enabled(level: AccessLogLevel): boolean {
    return this.#logger.isLevelEnabled(level);
  }

  /** One line, if the logger's level lets `level` through. */
  write(level: AccessLogLevel, fields: SerializedFields, msg: string): void {
    if (!this.#logger.isLevelEnabled(level)) return;
    const prefix = this.#levelPrefix[this.#logger.levels.values[level]!];
    this.#destination.write(`${prefix}${this.#time()}${this.#bindings}${fields},${this.#messageKey}:${JSON.stringify(msg)}${this.#end}`);
  }
}

/** `,"key":"value"`; every string of a line goes through JSON.stringify, whatever it holds. */
export function stringField(key: string, value: string): SerializedFields {
  return `,"${key}":${JSON.stringify(value)}`;
}

/** As stringField, or nothing for an absent value (pino leaves undefined fields out). */
export function optionalStringField(key: string, value: string | undefined): SerializedFields {
  return value === undefined ? '' : `,"${key}":${JSON.stringify(value)}`;
}

/** `,"key":n`, null for a number JSON cannot hold (NaN, Infinity), as pino writes it. */
export function numberField(key: string, value: number): SerializedFields {
  return `,"${key}":${Number.isFinite(value) ? value : 'null'}`;
}
