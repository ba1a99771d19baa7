/**
 * The "Sieve" side panel: the functions and models of the current kernel, and its jobs, one
 * line each, and the deployments of the kernel's user (which outlive the kernel), drawn from
 * the PanelModel.
 *
 * Rows are keyed (`KeyedList`): an update patches the rows that changed and leaves the others,
 * and every button, where they are, so a click is never lost to a redraw however fast deltas
 * arrive. Looks follow JupyterLab's own side panels (the running-sessions list): theme
 * variables, `jp-Button` buttons with LabIcons, a colored dot per status.
 */

import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import {
  LabIcon,
  closeIcon,
  deleteIcon,
  editIcon,
  refreshIcon,
  stopIcon
} from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { IRow, KeyedList } from './keyedlist';
import {
  ConnectionStatus,
  IActionOutcome,
  IDeploymentView,
  IFunctionView,
  IJobView,
  PanelModel
} from './model';
import { ActionName } from './protocol';

export const PANEL_ID = 'sieve-jupyter-panel';

/** What the panel's buttons do; the plugin wires these to the kernel and the notebook. */
export interface IPanelActions {
  run(action: ActionName, target: string): void;
  /** Show the function's form in the notebook, or null when that is not available. */
  openForm: ((name: string) => void) | null;
  /** The Deployments section is (not) in view: the kernel lists deployments only then. */
  watchDeployments(watching: boolean): void;
}

const STATUS_TEXT: Record<ConnectionStatus, string> = {
  connected: '',
  'no-notebook': 'Open a notebook to see its Sieve functions and jobs.',
  'no-kernel': 'This notebook has no running kernel.',
  connecting: 'Connecting to the kernel…',
  'not-loaded':
    'The kernel has not loaded sieve_jupyter. Run %load_ext sieve_jupyter ' +
    '(or import sieve_jupyter and define a function) in this notebook.',
  restarting: 'The kernel is restarting…'
};

/** The short word beside each job's dot. */
const JOB_STATUS_WORD: Record<string, string> = {
  processing: 'running'
};

const DONE_TEXT: Record<'restart' | 'stop', [string, string]> = {
  restart: ['Restarting', 'Restarted the workers of'],
  stop: ['Stopping', 'Stopped the workers of']
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

/** Set a text or attribute only when it differs (an unchanged DOM stays untouched). */
function setText(node: HTMLElement, text: string): void {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

function setAttr(node: HTMLElement, name: string, value: string | null): void {
  if (value === null || value === '') {
    if (node.hasAttribute(name)) {
      node.removeAttribute(name);
    }
  } else if (node.getAttribute(name) !== value) {
    node.setAttribute(name, value);
  }
}

function setClass(node: HTMLElement, className: string): void {
  if (node.className !== className) {
    node.className = className;
  }
}

/** A small JupyterLab icon button; the label is its accessible name and tooltip. */
function iconButton(
  icon: LabIcon,
  label: string,
  action: string,
  onClick: () => void
): HTMLButtonElement {
  const button = el(
    'button',
    'jp-Button jp-mod-minimal jp-mod-small jp-SievePanel-button'
  );
  button.type = 'button';
  button.dataset.action = action;
  button.setAttribute('aria-label', label);
  button.title = label;
  icon.element({ container: button, tag: null, elementSize: 'normal' });
  button.addEventListener('click', event => {
    event.stopPropagation();
    onClick();
  });
  return button;
}

/** The three lines every function and deployment row has, and where their parts go. */
interface IItemSkeleton {
  node: HTMLDivElement;
  dot: HTMLSpanElement;
  /** The first line, after the dot and the name. */
  top: HTMLDivElement;
  /** The second line: short facts separated by dots. */
  details: HTMLDivElement;
  /** The third line, whose end holds `actions`. */
  bottom: HTMLDivElement;
}

function itemSkeleton(className: string, name: string): IItemSkeleton {
  const node = el('div', `jp-SievePanel-item ${className}`);
  node.dataset.name = name;
  const top = node.appendChild(el('div', 'jp-SievePanel-line'));
  const dot = top.appendChild(el('span', 'jp-SievePanel-dot'));
  top.appendChild(el('span', 'jp-SievePanel-name', name));
  const details = node.appendChild(
    el('div', 'jp-SievePanel-line jp-SievePanel-sub jp-SievePanel-details')
  );
  const bottom = node.appendChild(
    el('div', 'jp-SievePanel-line jp-SievePanel-sub')
  );
  return { node, dot, top, details, bottom };
}

export class SievePanel extends Widget {
  constructor(
    private readonly _model: PanelModel,
    private readonly _actions: IPanelActions
  ) {
    super();
    this.id = PANEL_ID;
    this.addClass('jp-SievePanel');
    this.title.caption = 'Sieve: functions, workers, jobs and deployments';

    const node = this.node;
    node.appendChild(el('h2', 'jp-SievePanel-header', 'Sieve'));
    this._message = node.appendChild(el('p', 'jp-SievePanel-message'));
    this._error = node.appendChild(el('p', 'jp-SievePanel-error'));
    this._content = node.appendChild(el('div', 'jp-SievePanel-content'));

    const functions = this._content.appendChild(el('section', ''));
    functions.appendChild(
      el('h3', 'jp-SievePanel-section', 'Functions and models')
    );
    this._functionsEmpty = functions.appendChild(
      el(
        'p',
        'jp-SievePanel-empty',
        'No functions yet: decorate one with @sieve.function.'
      )
    );
    this._functions = new KeyedList<IFunctionView>(
      functions.appendChild(
        el('div', 'jp-SievePanel-list jp-SievePanel-functions')
      ),
      view => view.name,
      view => this._functionRow(view)
    );

    const jobs = this._content.appendChild(el('section', ''));
    const jobsHeading = jobs.appendChild(
      el('h3', 'jp-SievePanel-section', 'Jobs')
    );
    this._jobsNote = jobsHeading.appendChild(
      el('span', 'jp-SievePanel-sectionNote')
    );
    this._jobsEmpty = jobs.appendChild(
      el('p', 'jp-SievePanel-empty', 'No jobs yet.')
    );
    this._jobs = new KeyedList<IJobView>(
      jobs.appendChild(el('div', 'jp-SievePanel-list jp-SievePanel-jobs')),
      view => view.jobId,
      view => this._jobRow(view)
    );

    const deployments = this._content.appendChild(el('section', ''));
    this._deploymentsSection = deployments;
    const deploymentsHeading = deployments.appendChild(
      el('h3', 'jp-SievePanel-section', 'Deployments')
    );
    this._deploymentsNote = deploymentsHeading.appendChild(
      el('span', 'jp-SievePanel-sectionNote')
    );
    this._deploymentsEmpty = deployments.appendChild(
      el('p', 'jp-SievePanel-empty')
    );
    this._deployments = new KeyedList<IDeploymentView>(
      deployments.appendChild(
        el('div', 'jp-SievePanel-list jp-SievePanel-deployments')
      ),
      view => view.key,
      view => this._deploymentRow(view)
    );

    this._model.changed.connect(this._render, this);
    this._model.actionFinished.connect(this._onActionFinished, this);
    this._render();
    // Durations and "since setup" move with the clock even when no message arrives; keyed
    // rows make this redraw patch a few text nodes.
    this._timer = window.setInterval(() => {
      if (this.isVisible && this._model.status === 'connected') {
        this._render();
      }
    }, 1000);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearInterval(this._timer);
    this._model.changed.disconnect(this._render, this);
    this._model.actionFinished.disconnect(this._onActionFinished, this);
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._render();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._render();
  }

  private _render(): void {
    const model = this._model;
    const connected = model.status === 'connected';
    // Deployments are listed (an HTTP health check each) only while someone can see them.
    this._actions.watchDeployments(
      connected && this.isVisible && model.features.deployments
    );
    this.node.dataset.status = model.status;
    setAttr(
      this.node,
      'data-seq',
      model.seq === null ? null : String(model.seq)
    );
    this._message.hidden = connected;
    this._message.dataset.status = model.status;
    setText(this._message, connected ? '' : STATUS_TEXT[model.status]);
    this._error.hidden = !connected || !model.lastError;
    setText(this._error, model.lastError ?? '');
    this._content.hidden = !connected;
    if (!connected) {
      this._functions.clear();
      this._jobs.clear();
      this._deployments.clear();
      return;
    }
    const now = Date.now() / 1000;
    const functions = model.functionViews(now);
    this._functionsEmpty.hidden = functions.length > 0;
    this._functions.update(functions);
    const jobs = model.jobViews(now);
    this._jobsEmpty.hidden = jobs.length > 0;
    this._jobs.update(jobs);
    setText(
      this._jobsNote,
      jobs.length ? `running and last ${model.jobLimit}` : ''
    );
    this._renderDeployments(now);
  }

  private _renderDeployments(now: number): void {
    const model = this._model;
    this._deploymentsSection.hidden = !model.features.deployments;
    if (!model.features.deployments) {
      return;
    }
    const views = model.deploymentViews(now);
    this._deployments.update(views);
    let empty = '';
    if (model.deploymentsError) {
      empty = model.deploymentsError;
    } else if (!model.deploymentsListed) {
      empty = 'Listing deployments…';
    } else if (!views.length) {
      empty =
        'No deployments: Model.deploy() or %sieve deploy NAME serves a function ' +
        'after the kernel is gone.';
    }
    this._deploymentsEmpty.hidden = !empty;
    setText(this._deploymentsEmpty, empty);
    setClass(
      this._deploymentsEmpty,
      model.deploymentsError
        ? 'jp-SievePanel-empty jp-SievePanel-rowError'
        : 'jp-SievePanel-empty'
    );
    setText(
      this._deploymentsNote,
      model.deploymentsUser ? `of ${model.deploymentsUser}` : ''
    );
  }

  private async _confirmUndeploy(name: string): Promise<void> {
    const result = await showDialog({
      title: `Undeploy ${name}?`,
      body:
        `Every version of ${name} stops once its jobs in flight finish, and all of it ` +
        'is removed (its server processes or containers, their files and images). ' +
        'Clients calling it by name will no longer find it.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Undeploy' })]
    });
    if (result.button.accept) {
      this._actions.run('undeploy', name);
    }
  }

  private _deploymentRow(first: IDeploymentView): IRow<IDeploymentView> {
    const name = first.name;
    const { node, dot, top, details, bottom } = itemSkeleton(
      'jp-SievePanel-deployment',
      name
    );
    node.dataset.version = first.version;
    const version = top.appendChild(el('span', 'jp-SievePanel-version'));
    const health = top.appendChild(el('span', 'jp-SievePanel-health'));
    const backend = details.appendChild(el('span', 'jp-SievePanel-backend'));
    const workers = details.appendChild(el('span', 'jp-SievePanel-workers'));
    const uptime = details.appendChild(el('span', 'jp-SievePanel-uptime'));
    uptime.title = 'uptime';
    const address = bottom.appendChild(el('span', 'jp-SievePanel-address'));
    const actions = bottom.appendChild(el('span', 'jp-SievePanel-actions'));
    const undeploy = actions.appendChild(
      iconButton(deleteIcon, 'Undeploy', 'undeploy', () => {
        void this._confirmUndeploy(name);
      })
    );
    const dismiss = actions.appendChild(
      iconButton(closeIcon, 'Dismiss', 'dismiss', () =>
        this._model.dismissDeploymentError(name)
      )
    );
    const error = node.appendChild(el('div', 'jp-SievePanel-rowError'));

    return {
      node,
      update: view => {
        node.dataset.health = view.health;
        setClass(dot, `jp-SievePanel-dot jp-mod-deploy-${view.level}`);
        setAttr(dot, 'title', view.health);
        setText(version, view.version);
        setAttr(version, 'title', view.version || null);
        setText(health, view.busy ? 'undeploying…' : view.health);
        setClass(
          health,
          `jp-SievePanel-state jp-mod-deploy-${view.busy ? 'starting' : view.level}`
        );
        setText(backend, view.backend);
        setText(workers, view.workers);
        setText(uptime, view.uptime ? `up ${view.uptime}` : '');
        setText(address, view.url);
        setAttr(address, 'title', view.url || null);
        setAttr(details, 'title', details.textContent);
        error.hidden = !view.error;
        setText(error, view.error);
        undeploy.hidden = view.gone;
        undeploy.disabled = view.busy;
        undeploy.classList.toggle('jp-mod-busy', view.busy);
        dismiss.hidden = !view.gone;
      }
    };
  }

  private _onActionFinished(_: PanelModel, outcome: IActionOutcome): void {
    if (!outcome.ok) {
      Notification.error(outcome.error ?? `${outcome.action} failed`, {
        autoClose: 8000
      });
      return;
    }
    if (outcome.action === 'restart' || outcome.action === 'stop') {
      Notification.success(
        `${DONE_TEXT[outcome.action][1]} ${outcome.target}.`,
        { autoClose: 4000 }
      );
    }
  }

  private _functionRow(first: IFunctionView): IRow<IFunctionView> {
    const name = first.name;
    const { node, dot, top, details, bottom } = itemSkeleton(
      'jp-SievePanel-function',
      name
    );
    const state = top.appendChild(el('span', 'jp-SievePanel-state'));
    const kind = details.appendChild(el('span', 'jp-SievePanel-kind'));
    const backend = details.appendChild(el('span', 'jp-SievePanel-backend'));
    const workers = details.appendChild(el('span', 'jp-SievePanel-workers'));
    const nodes = details.appendChild(el('span', 'jp-SievePanel-nodes'));
    const since = details.appendChild(el('span', 'jp-SievePanel-since'));
    since.title = 'time since the last __setup__';
    const counts = bottom.appendChild(el('span', 'jp-SievePanel-counts'));
    const actions = bottom.appendChild(el('span', 'jp-SievePanel-actions'));
    const restart = actions.appendChild(
      iconButton(refreshIcon, 'Restart', 'restart', () =>
        this._actions.run('restart', name)
      )
    );
    const stop = actions.appendChild(
      iconButton(stopIcon, 'Stop', 'stop', () =>
        this._actions.run('stop', name)
      )
    );
    const openForm = this._actions.openForm;
    const form = openForm
      ? actions.appendChild(
          iconButton(editIcon, 'Form', 'form', () => openForm(name))
        )
      : null;

    return {
      node,
      update: view => {
        node.dataset.state = view.state;
        setClass(dot, `jp-SievePanel-dot jp-mod-${view.state}`);
        setAttr(dot, 'title', view.state);
        setText(kind, view.kind);
        setText(backend, view.backend);
        const stateText = view.busy
          ? `${DONE_TEXT[view.busy][0].toLowerCase()}…`
          : view.state;
        setText(state, stateText);
        setClass(
          state,
          `jp-SievePanel-state jp-mod-${view.busy ? 'starting' : view.state}`
        );
        setAttr(state, 'title', view.error || null);
        setText(workers, view.workers);
        setAttr(workers, 'title', view.workersDetail);
        setText(nodes, view.nodes);
        nodes.hidden = !view.nodes;
        setText(
          since,
          view.sinceSetup ? `setup ${view.sinceSetup} ago` : 'not set up'
        );
        // (the line is cut to the panel's width: its tooltip has all of it)
        setAttr(details, 'title', details.textContent);
        setText(counts, view.counts);
        setAttr(counts, 'title', view.counts);
        restart.disabled = stop.disabled = view.busy !== null;
        restart.classList.toggle('jp-mod-busy', view.busy === 'restart');
        stop.classList.toggle('jp-mod-busy', view.busy === 'stop');
        if (form) {
          form.hidden = !this._model.features.form;
        }
      }
    };
  }

  private _jobRow(first: IJobView): IRow<IJobView> {
    const jobId = first.jobId;
    const node = el('div', 'jp-SievePanel-item jp-SievePanel-job');
    node.dataset.jobId = jobId;
    const dot = node.appendChild(el('span', 'jp-SievePanel-dot'));
    node.appendChild(el('span', 'jp-SievePanel-function', first.function));
    const id = node.appendChild(el('span', 'jp-SievePanel-jobid'));
    id.title = jobId;
    const progress = node.appendChild(el('span', 'jp-SievePanel-progress'));
    const bar = progress.appendChild(el('progress', ''));
    bar.max = 1;
    const progressText = progress.appendChild(el('span', ''));
    const status = node.appendChild(el('span', 'jp-SievePanel-status'));
    const duration = node.appendChild(el('span', 'jp-SievePanel-duration'));
    const cancel = node.appendChild(
      iconButton(closeIcon, 'Cancel', 'cancel', () =>
        this._actions.run('cancel_job', jobId)
      )
    );
    return {
      node,
      update: view => {
        node.dataset.status = view.status;
        setAttr(node, 'title', view.error || null);
        setClass(dot, `jp-SievePanel-dot jp-mod-${view.status}`);
        setAttr(dot, 'title', view.status);
        setText(id, view.label);
        setText(status, JOB_STATUS_WORD[view.status] ?? view.status);
        setClass(status, `jp-SievePanel-status jp-mod-${view.status}`);
        setText(duration, view.duration);
        const showProgress =
          view.status === 'processing' &&
          (view.fraction !== null || !!view.progress);
        progress.hidden = !showProgress;
        bar.hidden = view.fraction === null;
        if (view.fraction !== null && bar.value !== view.fraction) {
          bar.value = view.fraction;
        }
        setText(progressText, view.progress);
        setAttr(progressText, 'title', view.progress || null);
        cancel.hidden = !view.cancellable;
        cancel.disabled = view.busy;
      }
    };
  }

  private _message: HTMLParagraphElement;
  private _error: HTMLParagraphElement;
  private _content: HTMLDivElement;
  private _functionsEmpty: HTMLParagraphElement;
  private _jobsEmpty: HTMLParagraphElement;
  private _jobsNote: HTMLSpanElement;
  private _functions: KeyedList<IFunctionView>;
  private _jobs: KeyedList<IJobView>;
  private _deploymentsSection: HTMLElement;
  private _deploymentsEmpty: HTMLParagraphElement;
  private _deploymentsNote: HTMLSpanElement;
  private _deployments: KeyedList<IDeploymentView>;
  private _timer: number;
}
