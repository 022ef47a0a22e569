/**
 * Entries of one partition for storage tests: each carries its partition's id in its data
 * ("p<partition>:<index>@<term>"), so a partition showing another's entries fails a check.
 */
import { EntryType, type Entry } from '../../lib/types.js';

export function partitionEntry(partition: number, index: number, term: number): Entry {
  return { index, term, type: EntryType.Normal, data: new TextEncoder().encode(`p${partition}:${index}@${term}`) };
}

/** Entries from..to of `partition`, all of `term`. */
export function partitionRun(partition: number, from: number, to: number, term: number): Entry[] {
  return Array.from({ length: to - from + 1 }, (_, k) => partitionEntry(partition, from + k, term));
}
