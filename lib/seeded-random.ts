/**
 * mulberry32: a small, fast, well-distributed 32-bit PRNG returning numbers in [0, 1).
 * The same seed gives the same stream, so fixtures, simulations, crash and soak runs replay
 * exactly from their seed. Not for anything that needs unpredictability.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = state;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}
