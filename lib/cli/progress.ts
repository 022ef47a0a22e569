/**
 * Progress of a long step (scanning a tree, migrating it): a bar on a terminal, plain lines on
 * stderr otherwise, nothing under --json, --quiet or --no-progress.
 *
 * Ctrl-C while a bar is drawn: the bar is stopped first (cli-progress restores line wrap and
 * the cursor), then the process exits as SIGINT would (130), so the terminal is left as it was.
 */
import cliProgress from 'cli-progress';
import type { CliIo } from './io.js';

export interface ProgressOptions {
  json?: boolean;
  /** --quiet or --no-progress */
  quiet?: boolean;
}

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

export interface ProgressStyle {
  /** `replicalog <command>` in lines and the interruption message. */
  command: string;
  /** What is counted: "migrate" or "scanning". */
  label: string;
  /** Plain lines: one per this fraction of the total (0.01 = 101 lines at most). */
  lineStep: number;
  /** Below this many items nothing is shown (a small tree is done before anyone looks). */
  minimumTotal?: number;
  /** What the interruption message adds (e.g. how to resume). */
  onInterrupt?: string;
  /** What is counted (default "entries"; "partitions" for a storage's scan). */
  unit?: string;
}

const nothing: Progress = { update() {}, stop() {} };

export const plural = (count: number, singular: string, pluralForm = `${singular}s`) => `${count} ${count === 1 ? singular : pluralForm}`;
export const entries = (count: number) => plural(count, 'entry', 'entries');

export function createProgress(style: ProgressStyle, options: ProgressOptions, io: CliIo): Progress {
  if (options.json === true || options.quiet === true) return nothing;
  const shown = (total: number) => total >= (style.minimumTotal ?? 0);
  const unit = style.unit ?? 'entries';
  if (io.isTTY) {
    let bar: cliProgress.SingleBar | undefined;
    const onInterrupt = () => {
      bar?.stop();
      io.stderr(`\n${style.command}: interrupted${style.onInterrupt !== undefined ? `; ${style.onInterrupt}` : ''}\n`);
      process.exit(130);
    };
    return {
      update(done, total) {
        if (!shown(total)) return;
        if (bar === undefined) {
          bar = new cliProgress.SingleBar(
            { stream: io.progressStream, format: `${style.label} [{bar}] {percentage}% | {value}/{total} ${unit} | ETA {eta_formatted}`, hideCursor: false },
            cliProgress.Presets.shades_classic,
          );
          process.once('SIGINT', onInterrupt);
          bar.start(total, done);
        } else {
          if (total !== bar.getTotal()) bar.setTotal(total);
          bar.update(done);
        }
      },
      stop() {
        process.off('SIGINT', onInterrupt);
        bar?.stop();
      },
    };
  }
  let nextLine = 0;
  return {
    update(done, total) {
      if (!shown(total)) return;
      if (done < nextLine && done !== total) return;
      io.stderr(`${style.command}: ${style.label === 'scanning' ? `scanning ${done}/${total} ${unit}${done < total ? '…' : ''}` : `${done}/${total} ${unit}`}\n`);
      nextLine = done + Math.max(1, Math.floor(total * style.lineStep));
    },
    stop() {},
  };
}

/** Scanning a tree (inspect, verify, migrate --dry-run): shown from 10,000 entries, a line per 10 % on a pipe. */
export function scanProgress(command: string, options: ProgressOptions, io: CliIo): Progress {
  return createProgress({ command: `replicalog ${command}`, label: 'scanning', lineStep: 0.1, minimumTotal: SCAN_PROGRESS_MINIMUM }, options, io);
}

/** Scanning a storage's partitions (inspect, verify, migrate --dry-run): shown from 100 partitions, a line per 10 %. */
export function storageScanProgress(command: string, options: ProgressOptions, io: CliIo): Progress {
  return createProgress({ command: `replicalog ${command}`, label: 'scanning', lineStep: 0.1, minimumTotal: 100, unit: 'partitions' }, options, io);
}

/** Trees smaller than this are scanned in about a second: no progress for them. */
export const SCAN_PROGRESS_MINIMUM = 10_000;
