/**
 * The messages between a kernel and the "Sieve" panel, defined once for TypeScript.
 *
 * The Python twin is sieve_jupyter/jupyter/_channel_protocol.py. The panel always opens the
 * comm; the kernel announces that its comm target exists with a "beacon" on IOPub (an
 * update_display_data for a display id no output shows, carrying a hello message). The block between the
 * PROTOCOL-SPEC markers is plain JSON: tests/unit/test_comm_protocol.py reads it and compares
 * it with the Python definitions, and the type assertions at the end of this file make the
 * compiler compare it with the interfaces below. Keep all three in step.
 */

// PROTOCOL-SPEC-BEGIN
// prettier-ignore
export const PROTOCOL = {
  "version": 1,
  "target": "sieve_jupyter.panel",
  "beacon": {
    "displayId": "sieve_jupyter.panel",
    "mime": "application/vnd.sieve-jupyter.hello+json"
  },
  "kernelMessages": {
    "delta": [
      "counts", "functions", "jobs", "removed_functions", "seq", "server_time", "type", "v"
    ],
    "deployments": ["deployments", "error", "server_time", "type", "user", "v"],
    "hello": ["type", "v"],
    "result": ["error", "ok", "request_id", "type", "v"],
    "snapshot": [
      "counts", "features", "functions", "job_limit", "jobs", "seq", "server_time", "type", "v"
    ]
  },
  "panelMessages": {
    "action": ["action", "request_id", "target", "type", "v"],
    "subscribe": ["job_limit", "type", "v", "watch_deployments"],
    "watch": ["deployments", "type", "v"]
  },
  "records": {
    "counts": ["cancelled", "error", "finished", "processing", "queued"],
    "deployment": [
      "backend", "draining", "error", "health", "name", "ready_workers", "started_at", "state",
      "url", "version", "workers"
    ],
    "features": ["deployments", "form"],
    "function": ["backend", "error", "kind", "name", "spec_hash", "state", "workers"],
    "job": [
      "duration", "error", "finished_at", "function", "job_id", "progress", "started_at",
      "status", "submitted_at"
    ],
    "progress": ["fraction", "message"],
    "worker": ["description", "id", "node", "setup_at", "setup_seconds", "state"]
  },
  "functionStates": ["idle", "starting", "warm", "error", "stopped"],
  "jobStatuses": ["queued", "processing", "finished", "error", "cancelled"],
  "actions": ["cancel_job", "restart", "stop", "undeploy"]
} as const;
// PROTOCOL-SPEC-END

export const PROTOCOL_VERSION = PROTOCOL.version;
export const COMM_TARGET = PROTOCOL.target;
export const BEACON_DISPLAY_ID = PROTOCOL.beacon.displayId;
export const BEACON_MIME = PROTOCOL.beacon.mime;

export type FunctionState = (typeof PROTOCOL.functionStates)[number];
export type JobStatus = (typeof PROTOCOL.jobStatuses)[number];
export type ActionName = (typeof PROTOCOL.actions)[number];

export interface IWorkerRow {
  id: string;
  state: string;
  setup_seconds: number | null;
  setup_at: number | null;
  description: string;
  /** Where the worker runs when that is another machine (a Ray worker's node address). */
  node: string | null;
}

export interface IFunctionRow {
  name: string;
  kind: string;
  backend: string;
  state: string;
  workers: IWorkerRow[];
  spec_hash: string;
  error: string | null;
}

export interface IProgress {
  fraction: number | null;
  message: string;
}

export interface IJobRow {
  job_id: string;
  function: string;
  status: string;
  submitted_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  duration: number | null;
  error: string | null;
  progress: IProgress | null;
}

export interface IJobCounts {
  queued: number;
  processing: number;
  finished: number;
  error: number;
  cancelled: number;
}

export interface IFeatures {
  form: boolean;
  deployments: boolean;
}

/** One running version of a deployment of the kernel's user (never its token). */
export interface IDeploymentRow {
  name: string;
  version: string;
  backend: string;
  url: string;
  state: string;
  health: string | null;
  draining: boolean;
  workers: number;
  ready_workers: number | null;
  started_at: number | null;
  error: string | null;
}

export interface IHelloMessage {
  v: number;
  type: 'hello';
}

export interface ISnapshotMessage {
  v: number;
  type: 'snapshot';
  seq: number;
  server_time: number;
  functions: IFunctionRow[];
  jobs: IJobRow[];
  counts: Record<string, IJobCounts>;
  job_limit: number;
  features: IFeatures;
}

export interface IDeltaMessage {
  v: number;
  type: 'delta';
  seq: number;
  server_time: number;
  functions: IFunctionRow[];
  removed_functions: string[];
  jobs: IJobRow[];
  counts: Record<string, IJobCounts>;
}

export interface IResultMessage {
  v: number;
  type: 'result';
  request_id: string;
  ok: boolean;
  error: string | null;
}

export interface IDeploymentsMessage {
  v: number;
  type: 'deployments';
  server_time: number;
  user: string;
  deployments: IDeploymentRow[];
  error: string | null;
}

export interface ISubscribeMessage {
  v: number;
  type: 'subscribe';
  job_limit: number;
  watch_deployments: boolean;
}

export interface IWatchMessage {
  v: number;
  type: 'watch';
  deployments: boolean;
}

export interface IActionMessage {
  v: number;
  type: 'action';
  request_id: string;
  action: ActionName;
  target: string;
}

export type KernelMessage =
  | IHelloMessage
  | ISnapshotMessage
  | IDeltaMessage
  | IResultMessage
  | IDeploymentsMessage;
export type PanelMessage = ISubscribeMessage | IActionMessage | IWatchMessage;

/** The hello message of a kernel's beacon, if this IOPub message is one. */
export function beaconOf(msg: {
  header: { msg_type: string };
  content: unknown;
}): IHelloMessage | null {
  if (msg.header.msg_type !== 'update_display_data') {
    return null;
  }
  const content = msg.content as {
    data?: Record<string, unknown>;
    transient?: { display_id?: unknown };
  };
  if (content.transient?.display_id !== BEACON_DISPLAY_ID) {
    return null;
  }
  const hello = content.data?.[BEACON_MIME];
  return isKernelMessage(hello) && hello.type === 'hello' ? hello : null;
}

/** True when the value looks like a message of this protocol version from the kernel. */
export function isKernelMessage(value: unknown): value is KernelMessage {
  if (typeof value !== 'object' || value === null) {
    return false;
  }
  const msg = value as { v?: unknown; type?: unknown };
  return (
    msg.v === PROTOCOL_VERSION &&
    typeof msg.type === 'string' &&
    Object.prototype.hasOwnProperty.call(PROTOCOL.kernelMessages, msg.type)
  );
}

// Compile-time checks: each interface has exactly the fields the spec block lists.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Fields<
  K extends keyof typeof PROTOCOL,
  N extends keyof (typeof PROTOCOL)[K]
> = (typeof PROTOCOL)[K][N] extends readonly (infer F)[] ? F : never;
type Check<T extends true> = T;

export type ProtocolChecks = [
  Check<Same<keyof IWorkerRow, Fields<'records', 'worker'>>>,
  Check<Same<keyof IFunctionRow, Fields<'records', 'function'>>>,
  Check<Same<keyof IProgress, Fields<'records', 'progress'>>>,
  Check<Same<keyof IJobRow, Fields<'records', 'job'>>>,
  Check<Same<keyof IJobCounts, Fields<'records', 'counts'>>>,
  Check<Same<keyof IFeatures, Fields<'records', 'features'>>>,
  Check<Same<keyof IDeploymentRow, Fields<'records', 'deployment'>>>,
  Check<
    Same<keyof IDeploymentsMessage, Fields<'kernelMessages', 'deployments'>>
  >,
  Check<Same<keyof IWatchMessage, Fields<'panelMessages', 'watch'>>>,
  Check<Same<keyof IHelloMessage, Fields<'kernelMessages', 'hello'>>>,
  Check<Same<keyof ISnapshotMessage, Fields<'kernelMessages', 'snapshot'>>>,
  Check<Same<keyof IDeltaMessage, Fields<'kernelMessages', 'delta'>>>,
  Check<Same<keyof IResultMessage, Fields<'kernelMessages', 'result'>>>,
  Check<Same<keyof ISubscribeMessage, Fields<'panelMessages', 'subscribe'>>>,
  Check<Same<keyof IActionMessage, Fields<'panelMessages', 'action'>>>,
  Check<Same<KernelMessage['type'], keyof (typeof PROTOCOL)['kernelMessages']>>,
  Check<Same<PanelMessage['type'], keyof (typeof PROTOCOL)['panelMessages']>>
];
