/**
 * The panel's state: what the kernel told it, folded into rows ready to render.
 *
 * Pure TypeScript with no JupyterLab imports, so the unit tests run it under plain Node.
 */

import {
  ActionName,
  DEFAULT_JOB_LIMIT,
  IFeatures,
  IFunctionRow,
  IJobRow,
  KernelMessage,
  PROTOCOL_VERSION
} from './protocol';

/** Where the panel stands with the current notebook's kernel. */
export type ConnectionStatus =
  | 'no-notebook'
  | 'no-kernel'
  | 'connecting'
  | 'not-loaded'
  | 'connected'
  | 'restarting';

export interface IFunctionView {
  name: string;
  kind: string;
  backend: string;
  state: string;
  workers: string;
  workersDetail: string;
  sinceSetup: string;
  error: string;
  busy: boolean;
}

export interface IJobView {
  jobId: string;
  shortId: string;
  function: string;
  status: string;
  duration: string;
  progress: string;
  fraction: number | null;
  error: string;
  cancellable: boolean;
  busy: boolean;
}

/** What `apply` asks of the connection: nothing, or a fresh subscribe after a gap. */
export type ApplyOutcome = 'ok' | 'ignored' | 'resubscribe';

const ACTIVE_STATUSES = new Set(['queued', 'processing']);

/** A short human duration: 0.4s, 12s, 3m 05s, 2h 14m. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !isFinite(seconds) || seconds < 0) {
    return '';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)}s`;
  }
  if (seconds < 60) {
    return `${Math.floor(seconds)}s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    const rest = Math.floor(seconds - minutes * 60);
    return `${minutes}m ${String(rest).padStart(2, '0')}s`;
  }
  const hours = Math.floor(minutes / 60);
  return `${hours}h ${String(minutes - hours * 60).padStart(2, '0')}m`;
}

export class PanelModel {
  status: ConnectionStatus = 'no-notebook';
  /** The last failed action, shown until the next one succeeds. */
  lastError: string | null = null;
  features: IFeatures = { form: false };
  jobLimit = DEFAULT_JOB_LIMIT;

  /**
   * Register a listener called after every change; returns a function that removes it.
   */
  onChange(listener: () => void): () => void {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /** Enter a connection state; anything but `connected` forgets the kernel's data. */
  setStatus(status: ConnectionStatus): void {
    if (status !== 'connected') {
      this._functions.clear();
      this._jobs = [];
      this._lastSeq = null;
      this._pending.clear();
    }
    this.status = status;
    this._emit();
  }

  /**
   * Fold one kernel message into the state.
   *
   * @param msg - a message that passed `isKernelMessage`.
   * @param localNow - the browser's clock in epoch seconds, to learn the kernel's offset.
   * @returns `resubscribe` when a delta does not follow the last message (the connection
   *   should then ask for a fresh snapshot), `ignored` for messages it cannot use.
   */
  apply(msg: KernelMessage, localNow: number): ApplyOutcome {
    if (msg.v !== PROTOCOL_VERSION) {
      return 'ignored';
    }
    switch (msg.type) {
      case 'snapshot':
        this._functions.clear();
        for (const row of msg.functions) {
          this._functions.set(row.name, row);
        }
        this.jobLimit = msg.job_limit;
        this._jobs = [];
        this._mergeJobs(msg.jobs);
        this.features = msg.features;
        this._lastSeq = msg.seq;
        this._clockOffset = msg.server_time - localNow;
        this.status = 'connected';
        break;
      case 'delta':
        if (this._lastSeq === null || msg.seq !== this._lastSeq + 1) {
          return 'resubscribe';
        }
        this._lastSeq = msg.seq;
        this._clockOffset = msg.server_time - localNow;
        for (const name of msg.removed_functions) {
          this._functions.delete(name);
        }
        for (const row of msg.functions) {
          this._functions.set(row.name, row);
        }
        this._mergeJobs(msg.jobs);
        break;
      case 'result':
        this._pending.delete(msg.request_id);
        this.lastError = msg.ok ? null : msg.error ?? 'the kernel refused the action';
        break;
      default:
        return 'ignored';
    }
    this._emit();
    return 'ok';
  }

  /**
   * Remember an action in flight (its button shows busy) and return its request id.
   */
  beginAction(action: ActionName, target: string): string {
    const requestId = `${action}:${target}:${++this._requestCounter}`;
    this._pending.set(requestId, `${action}:${target}`);
    this._emit();
    return requestId;
  }

  /** Functions and models, sorted by name. */
  functionViews(localNow: number): IFunctionView[] {
    const serverNow = localNow + this._clockOffset;
    const busy = new Set(this._pending.values());
    return [...this._functions.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map(row => {
        const setupTimes = row.workers
          .map(w => w.setup_at)
          .filter((t): t is number => typeof t === 'number');
        const lastSetup = setupTimes.length ? Math.max(...setupTimes) : null;
        return {
          name: row.name,
          kind: row.kind,
          backend: row.backend,
          state: row.state,
          workers: String(row.workers.length),
          workersDetail: row.workers
            .map(w => `${w.id}: ${w.state}${w.description ? ` (${w.description})` : ''}`)
            .join('\n'),
          sinceSetup: lastSetup === null ? '' : formatDuration(serverNow - lastSetup),
          error: row.error ?? '',
          busy: busy.has(`restart:${row.name}`) || busy.has(`stop:${row.name}`)
        };
      });
  }

  /** Jobs, newest first, at most `jobLimit`. */
  jobViews(localNow: number): IJobView[] {
    const serverNow = localNow + this._clockOffset;
    const busy = new Set(this._pending.values());
    return this._jobs.map(job => {
      // A running job's duration grows with the clock; the kernel's figure is from its last
      // message only.
      let seconds = job.duration;
      if (job.status === 'processing' && job.started_at !== null) {
        seconds = Math.max(0, serverNow - job.started_at);
      }
      const fraction = job.progress?.fraction ?? null;
      const parts: string[] = [];
      if (fraction !== null) {
        parts.push(`${Math.round(fraction * 100)}%`);
      }
      if (job.progress?.message) {
        parts.push(job.progress.message);
      }
      return {
        jobId: job.job_id,
        shortId: job.job_id.length > 16 ? `${job.job_id.slice(0, 15)}…` : job.job_id,
        function: job.function,
        status: job.status,
        duration: formatDuration(seconds),
        progress: parts.join(' '),
        fraction,
        error: job.error ?? '',
        cancellable: ACTIVE_STATUSES.has(job.status),
        busy: busy.has(`cancel_job:${job.job_id}`)
      };
    });
  }

  /** True while some job may still change, so the panel keeps its clocks ticking. */
  get hasActiveJobs(): boolean {
    return this._jobs.some(job => ACTIVE_STATUSES.has(job.status));
  }

  private _mergeJobs(rows: IJobRow[]): void {
    if (!rows.length) {
      return;
    }
    const byId = new Map(this._jobs.map(job => [job.job_id, job]));
    for (const row of rows) {
      byId.set(row.job_id, row);
    }
    this._jobs = [...byId.values()]
      .sort((a, b) => {
        const dt = (b.submitted_at ?? 0) - (a.submitted_at ?? 0);
        return dt !== 0 ? dt : b.job_id.localeCompare(a.job_id);
      })
      .slice(0, this.jobLimit);
  }

  private _emit(): void {
    for (const listener of [...this._listeners]) {
      listener();
    }
  }

  private _functions = new Map<string, IFunctionRow>();
  private _jobs: IJobRow[] = [];
  private _lastSeq: number | null = null;
  private _clockOffset = 0;
  private _pending = new Map<string, string>();
  private _requestCounter = 0;
  private _listeners = new Set<() => void>();
}
