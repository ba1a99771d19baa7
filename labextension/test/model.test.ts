/**
 * Unit tests of the panel's model: what the panel would show after a sequence of kernel
 * messages. Run with `jlpm test` (plain Node, no browser).
 */

import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { IActionOutcome, PanelModel, formatDuration } from '../src/model';
import {
  BEACON_DISPLAY_ID,
  BEACON_MIME,
  IDeltaMessage,
  IDeploymentRow,
  IDeploymentsMessage,
  IFunctionRow,
  IJobRow,
  ISnapshotMessage,
  PROTOCOL,
  PROTOCOL_VERSION,
  beaconOf,
  isKernelMessage
} from '../src/protocol';

const T0 = 1_700_000_000;

function fn(
  name: string,
  state = 'warm',
  setupAt: number | null = T0
): IFunctionRow {
  return {
    name,
    kind: 'model',
    backend: 'local',
    state,
    workers: [
      {
        id: `${name}-1`,
        state,
        setup_seconds: 1.5,
        setup_at: setupAt,
        description: 'pid 1',
        node: null
      }
    ],
    spec_hash: 'abc',
    error: null
  };
}

function job(
  id: string,
  submitted: number,
  status = 'queued',
  extra: Partial<IJobRow> = {}
) {
  const row: IJobRow = {
    job_id: id,
    function: 'echo',
    status,
    submitted_at: submitted,
    started_at: null,
    finished_at: null,
    duration: null,
    error: null,
    progress: null,
    ...extra
  };
  return row;
}

function snapshot(extra: Partial<ISnapshotMessage> = {}): ISnapshotMessage {
  return {
    v: PROTOCOL_VERSION,
    type: 'snapshot',
    seq: 0,
    server_time: T0,
    functions: [],
    jobs: [],
    counts: {},
    job_limit: 50,
    features: { form: false, deployments: true },
    ...extra
  };
}

function delta(seq: number, extra: Partial<IDeltaMessage> = {}): IDeltaMessage {
  return {
    v: PROTOCOL_VERSION,
    type: 'delta',
    seq,
    server_time: T0,
    functions: [],
    removed_functions: [],
    jobs: [],
    counts: {},
    ...extra
  };
}

test('a snapshot connects the panel and lists functions by name', () => {
  const model = new PanelModel();
  model.setStatus('connecting');
  const outcome = model.apply(
    snapshot({ functions: [fn('zeta'), fn('alpha', 'starting')] }),
    T0
  );
  assert.equal(outcome, 'ok');
  assert.equal(model.status, 'connected');
  const rows = model.functionViews(T0 + 75);
  assert.deepEqual(
    rows.map(r => [r.name, r.state, r.workers]),
    [
      ['alpha', 'starting', '1 worker'],
      ['zeta', 'warm', '1 worker']
    ]
  );
  assert.equal(rows[1].sinceSetup, '1 min 15 s');
});

test('jobs are listed newest first and bounded by the job limit', () => {
  const model = new PanelModel();
  model.setJobLimit(5);
  const jobs = Array.from({ length: 8 }, (_, i) => job(`job-${i}`, T0 + i));
  model.apply(snapshot({ jobs }), T0);
  assert.deepEqual(
    model.jobViews(T0).map(j => j.jobId),
    ['job-7', 'job-6', 'job-5', 'job-4', 'job-3']
  );
  model.apply(delta(1, { jobs: [job('job-8', T0 + 8)] }), T0);
  assert.deepEqual(
    model.jobViews(T0).map(j => j.jobId),
    ['job-8', 'job-7', 'job-6', 'job-5', 'job-4']
  );
});

test('deltas update a job in place: status, duration, progress, cancel button', () => {
  const model = new PanelModel();
  model.apply(snapshot({ jobs: [job('a', T0)] }), T0);
  assert.equal(model.jobViews(T0)[0].cancellable, true);

  const running = job('a', T0, 'processing', {
    started_at: T0 + 1,
    duration: 0.5, // as of the kernel's last message; the panel's clock moves on
    progress: { fraction: 0.25, message: 'frames' }
  });
  // Both clocks agree here: the kernel's time moved on with the browser's.
  model.apply(delta(1, { jobs: [running], server_time: T0 + 3 }), T0 + 3);
  let view = model.jobViews(T0 + 3)[0];
  assert.equal(view.status, 'processing');
  assert.equal(view.duration, '2.0 s');
  assert.equal(view.progress, '25% frames');
  assert.equal(view.fraction, 0.25);

  model.apply(
    delta(2, { jobs: [job('a', T0, 'cancelled', { duration: 4 })] }),
    T0 + 5
  );
  view = model.jobViews(T0 + 5)[0];
  assert.equal(view.status, 'cancelled');
  assert.equal(view.duration, '4.0 s');
  assert.equal(view.cancellable, false);
  assert.equal(model.jobViews(T0).length, 1);
});

test('a gap in the sequence asks for a fresh snapshot and changes nothing', () => {
  const model = new PanelModel();
  model.apply(snapshot({ seq: 10, functions: [fn('echo')] }), T0);
  assert.equal(
    model.apply(delta(11, { removed_functions: ['echo'] }), T0),
    'ok'
  );
  assert.equal(model.functionViews(T0).length, 0);
  assert.equal(
    model.apply(delta(13, { functions: [fn('late')] }), T0),
    'resubscribe'
  );
  assert.equal(model.functionViews(T0).length, 0);
});

test('a delta before any snapshot asks for one', () => {
  const model = new PanelModel();
  model.setStatus('connecting');
  assert.equal(model.apply(delta(1), T0), 'resubscribe');
  assert.equal(model.status, 'connecting');
});

test('leaving the connected state forgets the old kernel', () => {
  const model = new PanelModel();
  model.apply(snapshot({ functions: [fn('echo')], jobs: [job('a', T0)] }), T0);
  model.setStatus('restarting');
  assert.equal(model.status, 'restarting');
  assert.equal(model.functionViews(T0).length, 0);
  assert.equal(model.jobViews(T0).length, 0);
  model.setStatus('not-loaded');
  assert.equal(model.status, 'not-loaded');
});

test('times follow the kernel clock, not the browser clock', () => {
  const model = new PanelModel();
  // The browser runs 100 s behind the kernel.
  model.apply(
    snapshot({
      server_time: T0 + 100,
      functions: [fn('echo', 'warm', T0 + 90)]
    }),
    T0
  );
  assert.equal(model.functionViews(T0 + 5)[0].sinceSetup, '15 s');
});

test('an action is busy until its result; a failure is shown', () => {
  const model = new PanelModel();
  model.apply(snapshot({ functions: [fn('echo')], jobs: [job('a', T0)] }), T0);
  const cancel = model.beginAction('cancel_job', 'a');
  const restart = model.beginAction('restart', 'echo');
  const outcomes: IActionOutcome[] = [];
  model.actionFinished.connect((_, outcome) => outcomes.push(outcome));
  assert.equal(model.jobViews(T0)[0].busy, true);
  assert.equal(model.functionViews(T0)[0].busy, 'restart');
  model.apply(
    { v: 1, type: 'result', request_id: cancel, ok: true, error: null },
    T0
  );
  assert.equal(model.jobViews(T0)[0].busy, false);
  model.apply(
    { v: 1, type: 'result', request_id: restart, ok: false, error: 'no such' },
    T0
  );
  assert.equal(model.functionViews(T0)[0].busy, null);
  assert.equal(model.lastError, 'no such');
  assert.deepEqual(outcomes, [
    { action: 'cancel_job', target: 'a', ok: true, error: null },
    { action: 'restart', target: 'echo', ok: false, error: 'no such' }
  ]);
});

test('listeners hear every change until they disconnect', () => {
  const model = new PanelModel();
  let calls = 0;
  const listener = () => calls++;
  model.changed.connect(listener);
  model.setStatus('connecting');
  model.apply(snapshot(), T0);
  model.changed.disconnect(listener);
  model.apply(delta(1), T0);
  assert.equal(calls, 2);
  assert.equal(model.seq, 1);
});

test('running jobs come first and are always listed, however many others there are', () => {
  const model = new PanelModel();
  model.setJobLimit(3);
  const old = job('echo-1', T0, 'processing', { started_at: T0 + 1 });
  const later = job('echo-2', T0 + 1, 'processing', { started_at: T0 + 2 });
  const done = Array.from({ length: 5 }, (_, i) =>
    job(`echo-${i + 10}`, T0 + 10 + i, 'finished')
  );
  const queued = job('echo-20', T0 + 20);
  model.apply(snapshot({ jobs: [...done, queued, later, old] }), T0);
  assert.deepEqual(
    model.jobViews(T0 + 30).map(j => [j.label, j.status]),
    [
      ['#1', 'processing'],
      ['#2', 'processing'],
      ['#20', 'queued'],
      ['#14', 'finished'],
      ['#13', 'finished']
    ]
  );
  // Once it ends, a job that ran long falls back to its place among the others.
  model.apply(
    delta(1, { jobs: [{ ...old, status: 'finished', duration: 0.25 }] }),
    T0
  );
  const views = model.jobViews(T0 + 30);
  assert.deepEqual(
    views.map(j => j.label),
    ['#2', '#20', '#14', '#13']
  );
});

test('job counts per function read as one line, zero counts left out', () => {
  const model = new PanelModel();
  const counts = {
    queued: 10,
    processing: 2,
    finished: 340,
    error: 1,
    cancelled: 0
  };
  model.apply(
    snapshot({ functions: [fn('echo'), fn('idle')], counts: { echo: counts } }),
    T0
  );
  const [echo, idle] = model.functionViews(T0);
  assert.equal(echo.counts, '2 running · 10 queued · 340 finished · 1 error');
  assert.equal(idle.counts, '');
  model.apply(
    delta(1, { counts: { echo: { ...counts, error: 4, queued: 0 } } }),
    T0
  );
  assert.equal(
    model.functionViews(T0)[0].counts,
    '2 running · 340 finished · 4 errors'
  );
});

test('a changed job limit keeps the newest jobs', () => {
  const model = new PanelModel();
  const jobs = Array.from({ length: 8 }, (_, i) => job(`job-${i}`, T0 + i));
  model.apply(snapshot({ jobs }), T0);
  assert.equal(model.setJobLimit(2), true);
  assert.equal(model.setJobLimit(2), false);
  assert.deepEqual(
    model.jobViews(T0).map(j => j.jobId),
    ['job-7', 'job-6']
  );
});

test('a kernel beacon is recognised by its display id and hello', () => {
  const hello = { v: PROTOCOL_VERSION, type: 'hello' };
  const beacon = {
    header: { msg_type: 'update_display_data' },
    content: {
      data: { [BEACON_MIME]: hello },
      metadata: {},
      transient: { display_id: BEACON_DISPLAY_ID }
    }
  };
  assert.deepEqual(beaconOf(beacon), hello);
  assert.equal(
    beaconOf({ ...beacon, header: { msg_type: 'display_data' } }),
    null
  );
  assert.equal(
    beaconOf({
      ...beacon,
      content: { ...beacon.content, transient: { display_id: 'other' } }
    }),
    null
  );
});

test('messages of another protocol version or unknown type are not kernel messages', () => {
  assert.equal(
    isKernelMessage({ ...snapshot(), v: PROTOCOL_VERSION + 1 }),
    false
  );
  assert.equal(
    isKernelMessage({ v: PROTOCOL_VERSION, type: 'surprise' }),
    false
  );
  assert.equal(isKernelMessage(null), false);
  for (const type of Object.keys(PROTOCOL.kernelMessages)) {
    assert.equal(isKernelMessage({ v: PROTOCOL_VERSION, type }), true, type);
  }
});

test('durations read naturally, under a second in milliseconds', () => {
  assert.equal(formatDuration(null), '');
  assert.equal(formatDuration(0.0042), '4 ms');
  assert.equal(formatDuration(0.42), '420 ms');
  assert.equal(formatDuration(4.25), '4.3 s');
  assert.equal(formatDuration(42.9), '42 s');
  assert.equal(formatDuration(185), '3 min 05 s');
  assert.equal(formatDuration(2 * 3600 + 14 * 60), '2 h 14 min');
});

function deployment(
  name: string,
  version: string,
  extra: Partial<IDeploymentRow> = {}
): IDeploymentRow {
  return {
    name,
    version,
    backend: 'local',
    url: 'http://127.0.0.1:40001',
    state: 'serving',
    health: 'READY',
    draining: false,
    workers: 1,
    ready_workers: 1,
    started_at: T0,
    error: null,
    ...extra
  };
}

function deployments(
  rows: IDeploymentRow[],
  extra: Partial<IDeploymentsMessage> = {}
): IDeploymentsMessage {
  return {
    v: PROTOCOL_VERSION,
    type: 'deployments',
    server_time: T0,
    user: 'alice',
    deployments: rows,
    error: null,
    ...extra
  };
}

test('deployments are listed by name, newest version first, with health and uptime', () => {
  const model = new PanelModel();
  model.apply(snapshot(), T0);
  assert.equal(model.deploymentsListed, false);
  model.apply(
    deployments([
      deployment('alice/zeta', '1-aaa'),
      deployment('alice/adder', '2-bbb', {
        health: 'STARTING',
        ready_workers: 0
      }),
      deployment('alice/adder', '10-ccc', {
        health: 'UNREACHABLE',
        ready_workers: 0,
        error: 'UNREACHABLE: its server does not answer'
      })
    ]),
    T0 + 100 // the browser's clock runs 100 s ahead of the kernel's
  );
  assert.equal(model.deploymentsListed, true);
  assert.equal(model.deploymentsUser, 'alice');
  const views = model.deploymentViews(T0 + 100 + 75);
  assert.deepEqual(
    views.map(v => [v.key, v.health, v.level, v.workers]),
    [
      ['alice/adder:10-ccc', 'UNREACHABLE', 'error', '0/1 ready'],
      ['alice/adder:2-bbb', 'STARTING', 'starting', '0/1 ready'],
      ['alice/zeta:1-aaa', 'READY', 'ok', '1/1 ready']
    ]
  );
  assert.equal(views[2].uptime, '1 min 15 s');
  assert.equal(views[0].error, 'UNREACHABLE: its server does not answer');
});

test('a failed undeploy shows in its row, and stays when the deployment is gone', () => {
  const model = new PanelModel();
  model.apply(snapshot(), T0);
  model.apply(deployments([deployment('alice/adder', '1-aaa')]), T0);
  const request = model.beginAction('undeploy', 'alice/adder');
  assert.equal(model.deploymentViews(T0)[0].busy, true);
  model.apply(deployments([]), T0); // gone meanwhile (undeployed from a terminal)
  model.apply(
    {
      v: PROTOCOL_VERSION,
      type: 'result',
      request_id: request,
      ok: false,
      error: 'undeploy alice/adder: FunctionNotFoundError: no deployment'
    },
    T0
  );
  assert.equal(model.lastError, null); // not the panel's error line: the row's
  const [gone] = model.deploymentViews(T0);
  assert.equal(gone.gone, true);
  assert.equal(gone.busy, false);
  assert.match(gone.error, /FunctionNotFoundError/);
  model.dismissDeploymentError('alice/adder');
  assert.deepEqual(model.deploymentViews(T0), []);
});

test('a listing error is kept, and leaving the kernel forgets the deployments', () => {
  const model = new PanelModel();
  model.apply(snapshot(), T0);
  model.apply(
    deployments([], { error: 'the deployments could not be listed' }),
    T0
  );
  assert.equal(model.deploymentsError, 'the deployments could not be listed');
  model.apply(deployments([deployment('alice/adder', '1-aaa')]), T0);
  assert.equal(model.deploymentsError, null);
  model.setStatus('restarting');
  assert.equal(model.deploymentsListed, false);
  assert.deepEqual(model.deploymentViews(T0), []);
});

test('Ray workers are grouped by their node', () => {
  const model = new PanelModel();
  const row = fn('resize');
  row.workers = [
    { ...row.workers[0], id: 'w1', node: '10.0.0.2', description: 'actor 1' },
    { ...row.workers[0], id: 'w2', node: '10.0.0.1', description: 'actor 2' },
    { ...row.workers[0], id: 'w3', node: '10.0.0.2', description: 'actor 3' }
  ];
  model.apply(snapshot({ functions: [row, fn('local')] }), T0);
  const [local, resize] = model.functionViews(T0);
  assert.equal(local.nodes, '');
  assert.equal(local.workersDetail, 'local-1: warm (pid 1)');
  assert.equal(resize.nodes, 'on 2 nodes');
  assert.equal(
    resize.workersDetail,
    [
      '10.0.0.1:',
      '  w2: warm (actor 2)',
      '10.0.0.2:',
      '  w1: warm (actor 1)',
      '  w3: warm (actor 3)'
    ].join('\n')
  );
  row.workers = [row.workers[0]];
  model.apply(delta(1, { functions: [row] }), T0);
  assert.equal(model.functionViews(T0)[1].nodes, 'on 10.0.0.2');
});
