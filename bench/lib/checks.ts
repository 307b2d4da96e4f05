// A bench target and its verdict in one run, and the table that prints them: each line says what was
// wanted (as a ratio against a baseline of the same run where the target is one), what was measured, pass or miss.

export interface Check {
  readonly what: string;
  readonly target: string;
  readonly value: string;
  readonly ok: boolean;
}

/** `value` and its ratio to `baseline`, for a target written as "<= 1.0x HAProxy's": e.g. "0.071 (1.24x)". */
export const withRatio = (value: number, baseline: number, digits = 3): string => `${value.toFixed(digits)} (${(value / baseline).toFixed(2)}x)`;

/** One line per target: what, wanted, measured, pass/MISS; then how many passed. */
export function formatChecks(checks: readonly Check[]): string[] {
  const rows = [['target', 'wanted', 'measured', 'verdict'], ...checks.map((c) => [c.what, c.target, c.value, c.ok ? 'pass' : 'MISS'])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
  const passed = checks.filter((c) => c.ok).length;
  return [...lines, `${passed} of ${checks.length} targets pass`];
}
