// Randomness for routing decisions (weighted splits, fault and mirror percentages, random and
// power-of-two-choices balancing): injectable, so that tests replay a fixed sequence.

/** Returns a number in [0, 1), like Math.random. */
export type Random = () => number;

export const mathRandom: Random = Math.random;

/** A small deterministic generator (mulberry32): the same seed gives the same sequence everywhere. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** True for `percentage`% of calls (0 to 100, fractions allowed, as Istio's Percent). */
export function chance(random: Random, percentage: number): boolean {
  if (percentage >= 100) return true;
  if (percentage <= 0) return false;
  return random() * 100 < percentage;
}

/** An integer in [0, n). */
export function randomIndex(random: Random, n: number): number {
  return Math.min(n - 1, Math.floor(random() * n));
}
