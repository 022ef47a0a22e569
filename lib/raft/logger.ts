/**
 * A tiny pluggable logger for the raft port (etcd raft's Logger, reduced to four levels).
 * The default is silent; pass `logger` in the RawNode config (or call setDefaultLogger) to see
 * raft's internal decisions.
 */

export interface RaftLogger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Discards everything. */
export const silentLogger: RaftLogger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};

/** Writes every line to stderr with a level prefix (handy while debugging a test). */
export const consoleLogger: RaftLogger = {
  debug: (message) => console.error(`raft DEBUG ${message}`),
  info: (message) => console.error(`raft INFO ${message}`),
  warn: (message) => console.error(`raft WARN ${message}`),
  error: (message) => console.error(`raft ERROR ${message}`),
};

let defaultLogger: RaftLogger = silentLogger;

/** Replaces the logger used by nodes created without an explicit `logger`. */
export function setDefaultLogger(logger: RaftLogger): void {
  defaultLogger = logger;
}

export function getDefaultLogger(): RaftLogger {
  return defaultLogger;
}

/** Go's logger.Panicf: log at error level, then throw an Error with the same message. */
export function raftPanic(logger: RaftLogger, message: string): never {
  logger.error(message);
  throw new Error(message);
}
