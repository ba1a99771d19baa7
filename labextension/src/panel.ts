/**
 * The "Sieve" side panel: two lists (functions and models; jobs) drawn from the PanelModel.
 * Each entry takes two short lines, so the panel reads well at a side bar's width.
 *
 * Plain DOM, redrawn whole on each change: the lists are bounded and updates are throttled by
 * the kernel, so this stays cheap and keeps the widget free of a framework.
 */

import { Widget } from '@lumino/widgets';

import { ConnectionStatus, IFunctionView, IJobView, PanelModel } from './model';
import { ActionName } from './protocol';

export const PANEL_ID = 'sieve-jupyter-panel';

/** What the panel's buttons do; the plugin wires these to the kernel and the notebook. */
export interface IPanelActions {
  run(action: ActionName, target: string): void;
  /** Show the function's form in the notebook, or null when that is not available. */
  openForm: ((name: string) => void) | null;
}

const STATUS_TEXT: Record<Exclude<ConnectionStatus, 'connected'>, string> = {
  'no-notebook': 'Open a notebook to see its Sieve functions and jobs.',
  'no-kernel': 'This notebook has no running kernel.',
  connecting: 'Connecting to the kernel…',
  'not-loaded':
    'The kernel has not loaded sieve_jupyter. Run %load_ext sieve_jupyter ' +
    '(or import sieve_jupyter and define a function) in this notebook.',
  restarting: 'The kernel is restarting…'
};

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function sinceText(view: IFunctionView): string {
  return view.sinceSetup ? `setup ${view.sinceSetup} ago` : 'not set up';
}

export class SievePanel extends Widget {
  constructor(
    private readonly _model: PanelModel,
    private readonly _actions: IPanelActions
  ) {
    super();
    this.id = PANEL_ID;
    this.addClass('jp-SievePanel');
    this.title.caption = 'Sieve: functions, workers and jobs';
    this._unsubscribe = this._model.onChange(() => this._render());
    this._render();
    // Durations and "since setup" move with the clock even when no message arrives.
    // Only their cells change, so a click is never lost to a redraw.
    this._timer = window.setInterval(() => this._tick(), 1000);
  }

  dispose(): void {
    window.clearInterval(this._timer);
    this._unsubscribe();
    super.dispose();
  }

  private _render(): void {
    const node = this.node;
    node.replaceChildren();
    node.appendChild(el('h2', 'jp-SievePanel-title', 'Sieve'));
    if (this._model.status !== 'connected') {
      const message = el('p', 'jp-SievePanel-message', STATUS_TEXT[this._model.status]);
      message.dataset.status = this._model.status;
      node.appendChild(message);
      return;
    }
    const now = Date.now() / 1000;
    if (this._model.lastError) {
      node.appendChild(el('p', 'jp-SievePanel-error', this._model.lastError));
    }
    node.appendChild(el('h3', 'jp-SievePanel-heading', 'Functions and models'));
    node.appendChild(this._functionsList(this._model.functionViews(now)));
    node.appendChild(el('h3', 'jp-SievePanel-heading', 'Jobs'));
    node.appendChild(this._jobsList(this._model.jobViews(now)));
  }

  private _tick(): void {
    if (!this.isVisible || this._model.status !== 'connected') {
      return;
    }
    const now = Date.now() / 1000;
    for (const view of this._model.functionViews(now)) {
      const cell = this.node.querySelector(
        `[data-name="${CSS.escape(view.name)}"] .jp-SievePanel-since`
      );
      if (cell && cell.textContent !== sinceText(view)) {
        cell.textContent = sinceText(view);
      }
    }
    if (!this._model.hasActiveJobs) {
      return;
    }
    for (const view of this._model.jobViews(now)) {
      const cell = this.node.querySelector(
        `[data-job-id="${CSS.escape(view.jobId)}"] .jp-SievePanel-duration`
      );
      if (cell && cell.textContent !== view.duration) {
        cell.textContent = view.duration;
      }
    }
  }

  private _button(label: string, title: string, disabled: boolean, run: () => void) {
    const button = el('button', 'jp-SievePanel-button', label);
    button.title = title;
    button.disabled = disabled;
    button.dataset.action = label.toLowerCase();
    button.addEventListener('click', event => {
      event.stopPropagation();
      run();
    });
    return button;
  }

  private _functionsList(rows: IFunctionView[]): HTMLElement {
    if (!rows.length) {
      return el('p', 'jp-SievePanel-empty', 'No functions yet: decorate one with @sieve.function.');
    }
    const list = el('div', 'jp-SievePanel-list jp-SievePanel-functions');
    for (const row of rows) {
      const item = el('div', 'jp-SievePanel-item');
      item.dataset.name = row.name;
      item.dataset.state = row.state;

      const top = el('div', 'jp-SievePanel-line');
      top.appendChild(el('span', 'jp-SievePanel-name', row.name));
      top.appendChild(el('span', 'jp-SievePanel-kind', row.kind));
      top.appendChild(el('span', 'jp-SievePanel-backend', row.backend));
      const state = el('span', `jp-SievePanel-state jp-mod-${row.state}`, row.state);
      if (row.error) {
        state.title = row.error;
      }
      top.appendChild(state);
      item.appendChild(top);

      const bottom = el('div', 'jp-SievePanel-line jp-SievePanel-sub');
      const count = Number(row.workers);
      const workers = el(
        'span',
        'jp-SievePanel-workers',
        `${row.workers} worker${count === 1 ? '' : 's'}`
      );
      workers.title = row.workersDetail;
      bottom.appendChild(workers);
      const since = el('span', 'jp-SievePanel-since', sinceText(row));
      since.title = 'time since the last __setup__';
      bottom.appendChild(since);
      const actions = el('span', 'jp-SievePanel-actions');
      actions.appendChild(
        this._button('Restart', `Restart the workers of ${row.name}`, row.busy, () =>
          this._actions.run('restart', row.name)
        )
      );
      actions.appendChild(
        this._button('Stop', `Stop the workers of ${row.name}`, row.busy, () =>
          this._actions.run('stop', row.name)
        )
      );
      const openForm = this._actions.openForm;
      if (openForm && this._model.features.form) {
        actions.appendChild(
          this._button('Form', `Show the form of ${row.name} in the notebook`, false, () =>
            openForm(row.name)
          )
        );
      }
      bottom.appendChild(actions);
      item.appendChild(bottom);
      list.appendChild(item);
    }
    return list;
  }

  private _jobsList(rows: IJobView[]): HTMLElement {
    if (!rows.length) {
      return el('p', 'jp-SievePanel-empty', 'No jobs yet.');
    }
    const list = el('div', 'jp-SievePanel-list jp-SievePanel-jobs');
    for (const row of rows) {
      const item = el('div', 'jp-SievePanel-item');
      item.dataset.jobId = row.jobId;
      item.dataset.status = row.status;

      const top = el('div', 'jp-SievePanel-line');
      const id = el('span', 'jp-SievePanel-jobid', row.shortId);
      id.title = row.jobId;
      top.appendChild(id);
      top.appendChild(el('span', 'jp-SievePanel-function', row.function));
      const status = el('span', `jp-SievePanel-status jp-mod-${row.status}`, row.status);
      if (row.error) {
        status.title = row.error;
      }
      top.appendChild(status);
      item.appendChild(top);

      const bottom = el('div', 'jp-SievePanel-line jp-SievePanel-sub');
      bottom.appendChild(el('span', 'jp-SievePanel-duration', row.duration));
      const progress = el('span', 'jp-SievePanel-progress');
      if (row.fraction !== null) {
        const bar = el('progress', '');
        bar.max = 1;
        bar.value = row.fraction;
        progress.appendChild(bar);
      }
      progress.appendChild(el('span', '', row.progress));
      bottom.appendChild(progress);
      const actions = el('span', 'jp-SievePanel-actions');
      if (row.cancellable) {
        actions.appendChild(
          this._button('Cancel', `Cancel job ${row.jobId}`, row.busy, () =>
            this._actions.run('cancel_job', row.jobId)
          )
        );
      }
      bottom.appendChild(actions);
      item.appendChild(bottom);
      list.appendChild(item);
    }
    return list;
  }

  private _timer: number;
  private _unsubscribe: () => void;
}
