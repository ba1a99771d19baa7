/**
 * The panel's state: what the kernel told it, folded into rows ready to render.
 *
 * No JupyterLab imports (only Lumino's signals), so the unit tests run it under plain Node.
 */

import { ISignal, Signal } from '@lumino/signaling';

import {
  ActionName,
  IDeploymentRow,
  IFeatures,
  IFunctionRow,
  IJobCounts,
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
  /** "1 worker", "2 workers" */
  workers: string;
  workersDetail: string;
  sinceSetup: string;
  /** "2 running · 10 queued · 340 finished · 4 errors", or "" before the first job. */
  counts: string;
  error: string;
  /** "on 10.0.0.2", "on 2 nodes" (Ray workers), or "" when every worker runs here. */
  nodes: string;
  /** The restart or stop in flight, if any. */
  busy: 'restart' | 'stop' | null;
}

export interface IDeploymentView {
  /** "user/name" (its versions share it), and the key of the row: "user/name:version". */
  name: string;
  key: string;
  version: string;
  backend: string;
  url: string;
  /** READY, BUSY, STARTING, SETUP_FAILED, UNREACHABLE...; "gone" for a row that only
   * remains to show why its undeploy failed. */
  health: string;
  /** ok (ready or busy), starting, error: the dot's color. */
  level: 'ok' | 'starting' | 'error';
  /** "1/1 ready": workers ready of those asked for */
  workers: string;
  uptime: string;
  /** Why the deployment is unhealthy, or why its undeploy failed. */
  error: string;
  /** An undeploy of this name is in flight. */
  busy: boolean;
  /** The deployment is no longer listed; the row stays to show `error` until dismissed. */
  gone: boolean;
}

export interface IJobView {
  jobId: string;
  /** The job id without its function's name: "#12" for "resize-12". */
  label: string;
  function: string;
  status: string;
  duration: string;
  progress: string;
  fraction: number | null;
  error: string;
  cancellable: boolean;
  busy: boolean;
}

/** The outcome of an action the panel asked for, once the kernel answered. */
export interface IActionOutcome {
  action: ActionName;
  target: string;
  ok: boolean;
  error: string | null;
}

/** What `apply` asks of the connection: nothing, or a fresh subscribe after a gap. */
export type ApplyOutcome = 'ok' | 'ignored' | 'resubscribe';

export const DEFAULT_JOB_LIMIT = 50;

const ACTIVE_STATUSES = new Set(['queued', 'processing']);
/** Running jobs first, then queued ones, then the rest. */
const STATUS_RANK: Record<string, number> = { processing: 0, queued: 1 };

/** "1 error", "4 errors": the one plural style the panel and the widgets use. */
export function plural(count: number, noun: string): string {
  return `${count.toLocaleString('en-US')} ${noun}${count === 1 ? '' : 's'}`;
}

/** A short human duration: 340 ms, 4.2 s, 12 s, 3 min 05 s, 2 h 14 min. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !isFinite(seconds) || seconds < 0) {
    return '';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)} s`;
  }
  if (seconds < 60) {
    return `${Math.floor(seconds)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    const rest = Math.floor(seconds - minutes * 60);
    return `${minutes} min ${String(rest).padStart(2, '0')} s`;
  }
  const hours = Math.floor(minutes / 60);
  return `${hours} h ${String(minutes - hours * 60).padStart(2, '0')} min`;
}

/** "2 running · 10 queued · 340 finished · 4 errors" (zero counts left out). */
export function countsText(counts: IJobCounts | undefined): string {
  if (!counts) {
    return '';
  }
  const parts: string[] = [];
  if (counts.processing) {
    parts.push(`${counts.processing.toLocaleString('en-US')} running`);
  }
  if (counts.queued) {
    parts.push(`${counts.queued.toLocaleString('en-US')} queued`);
  }
  if (counts.finished) {
    parts.push(`${counts.finished.toLocaleString('en-US')} finished`);
  }
  if (counts.error) {
    parts.push(plural(counts.error, 'error'));
  }
  if (counts.cancelled) {
    parts.push(`${counts.cancelled.toLocaleString('en-US')} cancelled`);
  }
  return parts.join(' · ');
}

function jobLabel(job: IJobRow): string {
  const prefix = `${job.function}-`;
  return job.job_id.startsWith(prefix)
    ? `#${job.job_id.slice(prefix.length)}`
    : job.job_id;
}

export class PanelModel {
  status: ConnectionStatus = 'no-notebook';
  /** The last failed action, shown until the next one succeeds. */
  lastError: string | null = null;
  features: IFeatures = { form: false, deployments: false };
  /** Whose deployments the kernel lists (its sieve.config.user), once it has listed them. */
  deploymentsUser: string | null = null;
  /** Why the kernel could not list the deployments, if it could not. */
  deploymentsError: string | null = null;
  /** The sequence number of the last message folded in (for tests and diagnostics). */
  seq: number | null = null;

  /** Emitted after every change of what the panel shows. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emitted when the kernel answers an action (a restart done, a cancel refused...). */
  get actionFinished(): ISignal<this, IActionOutcome> {
    return this._actionFinished;
  }

  /** How many jobs (besides running ones) the panel asks for and keeps. */
  get jobLimit(): number {
    return this._jobLimit;
  }

  /** Change the bound (from the extension's settings); returns whether it changed. */
  setJobLimit(limit: number): boolean {
    const bounded = Math.max(1, Math.floor(limit));
    if (bounded === this._jobLimit) {
      return false;
    }
    this._jobLimit = bounded;
    this._trimJobs();
    this._changed.emit();
    return true;
  }

  /** Enter a connection state; anything but `connected` forgets the kernel's data. */
  setStatus(status: ConnectionStatus): void {
    if (status !== 'connected') {
      this._functions.clear();
      this._counts.clear();
      this._jobs = [];
      this._lastSeq = null;
      this.seq = null;
      this._pending.clear();
      this._deployments = null;
      this._undeployErrors.clear();
      this.deploymentsUser = null;
      this.deploymentsError = null;
    }
    this.status = status;
    this._changed.emit();
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
        this._counts = new Map(Object.entries(msg.counts));
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
          this._counts.delete(name);
        }
        for (const row of msg.functions) {
          this._functions.set(row.name, row);
        }
        for (const [name, counts] of Object.entries(msg.counts)) {
          this._counts.set(name, counts);
        }
        this._mergeJobs(msg.jobs);
        break;
      case 'deployments':
        this._deployments = msg.deployments;
        this.deploymentsUser = msg.user;
        this.deploymentsError = msg.error;
        this._deploymentsOffset = msg.server_time - localNow;
        break;
      case 'result': {
        const pending = this._pending.get(msg.request_id);
        this._pending.delete(msg.request_id);
        const error = msg.error ?? 'the kernel refused the action';
        if (pending?.action === 'undeploy') {
          // Shown in the deployment's row, not as the panel's error line.
          if (!msg.ok) {
            this._undeployErrors.set(pending.target, error);
          }
        } else {
          this.lastError = msg.ok ? null : error;
        }
        if (pending) {
          this._actionFinished.emit({
            action: pending.action,
            target: pending.target,
            ok: msg.ok,
            error: msg.error
          });
        }
        break;
      }
      default:
        return 'ignored';
    }
    this.seq = this._lastSeq;
    this._changed.emit();
    return 'ok';
  }

  /**
   * Remember an action in flight (its button shows busy) and return its request id.
   */
  beginAction(action: ActionName, target: string): string {
    const requestId = `${action}:${target}:${++this._requestCounter}`;
    this._pending.set(requestId, { action, target });
    if (action === 'undeploy') {
      this._undeployErrors.delete(target);
    }
    this._changed.emit();
    return requestId;
  }

  /** Whether the kernel has sent its list of deployments since the panel connected. */
  get deploymentsListed(): boolean {
    return this._deployments !== null;
  }

  /** Forget why an undeploy failed (the row's dismiss button). */
  dismissDeploymentError(name: string): void {
    if (this._undeployErrors.delete(name)) {
      this._changed.emit();
    }
  }

  /**
   * Deployments by name, newest version first, then the rows of names whose undeploy failed
   * and that are no longer listed (so the error stays in view until dismissed).
   */
  deploymentViews(localNow: number): IDeploymentView[] {
    const serverNow = localNow + this._deploymentsOffset;
    const undeploying = new Set<string>();
    for (const { action, target } of this._pending.values()) {
      if (action === 'undeploy') {
        undeploying.add(target);
      }
    }
    const rows = [...(this._deployments ?? [])].sort(
      (a, b) =>
        a.name.localeCompare(b.name) || versionCounter(b) - versionCounter(a)
    );
    const views: IDeploymentView[] = rows.map(row => {
      const health = row.health ?? 'unknown';
      const undeployError = this._undeployErrors.get(row.name) ?? '';
      return {
        name: row.name,
        key: `${row.name}:${row.version}`,
        version: row.version,
        backend: row.backend,
        url: row.url,
        health: row.draining ? `${health} (draining)` : health,
        level: healthLevel(row.health),
        workers: `${row.ready_workers ?? '-'}/${row.workers} ready`,
        uptime:
          row.started_at === null
            ? ''
            : formatDuration(Math.max(0, serverNow - row.started_at)),
        error: [undeployError, row.error ?? ''].filter(Boolean).join('\n'),
        busy: undeploying.has(row.name),
        gone: false
      };
    });
    const listed = new Set(rows.map(row => row.name));
    for (const [name, error] of this._undeployErrors) {
      if (!listed.has(name)) {
        views.push({
          name,
          key: `${name}:gone`,
          version: '',
          backend: '',
          url: '',
          health: 'gone',
          level: 'error',
          workers: '',
          uptime: '',
          error,
          busy: undeploying.has(name),
          gone: true
        });
      }
    }
    return views;
  }

  /** Functions and models, sorted by name. */
  functionViews(localNow: number): IFunctionView[] {
    const serverNow = localNow + this._clockOffset;
    const busy = new Map<string, 'restart' | 'stop'>();
    for (const { action, target } of this._pending.values()) {
      if (action === 'restart' || action === 'stop') {
        busy.set(target, action);
      }
    }
    return [...this._functions.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map(row => {
        const setupTimes = row.workers
          .map(w => w.setup_at)
          .filter((t): t is number => typeof t === 'number');
        const lastSetup = setupTimes.length ? Math.max(...setupTimes) : null;
        const byNode = new Map<string, string[]>();
        for (const w of row.workers) {
          const line = `${w.id}: ${w.state}${w.description ? ` (${w.description})` : ''}`;
          const lines = byNode.get(w.node ?? '') ?? [];
          lines.push(line);
          byNode.set(w.node ?? '', lines);
        }
        const nodes = [...byNode.keys()].filter(Boolean).sort();
        return {
          name: row.name,
          kind: row.kind,
          backend: row.backend,
          state: row.state,
          workers: plural(row.workers.length, 'worker'),
          // Grouped by node when workers run on other machines (Ray).
          workersDetail: nodes.length
            ? [...byNode.entries()]
                .sort(([a], [b]) => a.localeCompare(b))
                .map(
                  ([node, lines]) =>
                    `${node || 'this machine'}:\n${lines.map(l => `  ${l}`).join('\n')}`
                )
                .join('\n')
            : (byNode.get('') ?? []).join('\n'),
          nodes:
            nodes.length === 0
              ? ''
              : nodes.length === 1
                ? `on ${nodes[0]}`
                : `on ${plural(nodes.length, 'node')}`,
          sinceSetup:
            lastSetup === null ? '' : formatDuration(serverNow - lastSetup),
          counts: countsText(this._counts.get(row.name)),
          error: row.error ?? '',
          busy: busy.get(row.name) ?? null
        };
      });
  }

  /**
   * Jobs as the panel lists them: running ones first (all of them, however many; the longest
   * running on top, so rows keep their places while others start), then queued ones, then
   * the rest, newest first.
   */
  jobViews(localNow: number): IJobView[] {
    const serverNow = localNow + this._clockOffset;
    const busy = new Set<string>();
    for (const { action, target } of this._pending.values()) {
      if (action === 'cancel_job') {
        busy.add(target);
      }
    }
    return [...this._jobs]
      .sort((a, b) => rank(a) - rank(b) || withinGroup(a, b))
      .map(job => {
        // A running job's duration grows with the clock; the kernel's figure is from its
        // last message only.
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
          label: jobLabel(job),
          function: job.function,
          status: job.status,
          duration: formatDuration(seconds),
          progress: parts.join(' '),
          fraction,
          error: job.error ?? '',
          cancellable: ACTIVE_STATUSES.has(job.status),
          busy: busy.has(job.job_id)
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
    this._jobs = [...byId.values()];
    this._trimJobs();
  }

  /** Keep every running job, and the newest `jobLimit` of the others. */
  private _trimJobs(): void {
    const running = this._jobs.filter(job => job.status === 'processing');
    const others = this._jobs
      .filter(job => job.status !== 'processing')
      .sort(newestFirst)
      .slice(0, this._jobLimit);
    this._jobs = [...running, ...others];
  }

  private _changed = new Signal<this, void>(this);
  private _actionFinished = new Signal<this, IActionOutcome>(this);
  private _functions = new Map<string, IFunctionRow>();
  private _counts = new Map<string, IJobCounts>();
  private _jobs: IJobRow[] = [];
  private _jobLimit = DEFAULT_JOB_LIMIT;
  private _lastSeq: number | null = null;
  private _clockOffset = 0;
  private _pending = new Map<string, { action: ActionName; target: string }>();
  private _requestCounter = 0;
  private _deployments: IDeploymentRow[] | null = null;
  private _deploymentsOffset = 0;
  private _undeployErrors = new Map<string, string>();
}

function versionCounter(row: IDeploymentRow): number {
  const counter = parseInt(row.version, 10);
  return isNaN(counter) ? 0 : counter;
}

function healthLevel(health: string | null): 'ok' | 'starting' | 'error' {
  if (health === 'READY' || health === 'BUSY') {
    return 'ok';
  }
  if (health === 'STARTING' || health === null) {
    return 'starting';
  }
  return 'error';
}

function rank(job: IJobRow): number {
  return STATUS_RANK[job.status] ?? 2;
}

function withinGroup(a: IJobRow, b: IJobRow): number {
  if (a.status === 'processing' && b.status === 'processing') {
    const dt = (a.started_at ?? 0) - (b.started_at ?? 0);
    return dt !== 0
      ? dt
      : a.job_id.localeCompare(b.job_id, 'en', { numeric: true });
  }
  return newestFirst(a, b);
}

function newestFirst(a: IJobRow, b: IJobRow): number {
  const dt = (b.submitted_at ?? 0) - (a.submitted_at ?? 0);
  return dt !== 0
    ? dt
    : b.job_id.localeCompare(a.job_id, 'en', { numeric: true });
}
