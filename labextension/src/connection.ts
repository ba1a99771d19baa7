/**
 * The comm between the panel and the current notebook's kernel.
 *
 * Only the panel opens it: whenever it starts following a kernel (and after a restart), and
 * again when the kernel's beacon says the comm target now exists (the kernel ran
 * `%load_ext sieve_jupyter` or created its manager). The kernel never opens a comm, so
 * frontends without this panel (nbconvert, papermill, consoles) see nothing. Only one comm is
 * live at a time; it reuses the notebook's own kernel connection.
 */

import { ISessionContext } from '@jupyterlab/apputils';
import { Kernel, KernelMessage as JupyterMessage } from '@jupyterlab/services';
import { JSONObject } from '@lumino/coreutils';

import { PanelModel } from './model';
import {
  ActionName,
  COMM_TARGET,
  IActionMessage,
  ISubscribeMessage,
  IWatchMessage,
  PROTOCOL_VERSION,
  beaconOf,
  isKernelMessage
} from './protocol';

const nowSeconds = (): number => Date.now() / 1000;
const OPEN_RETRY_MS = 5000;
const MAX_OPEN_RETRIES = 5;

export class KernelChannel {
  constructor(readonly model: PanelModel) {}

  /** Follow another notebook's session (or none). */
  follow(context: ISessionContext | null): void {
    if (context === this._context) {
      return;
    }
    if (this._context) {
      this._context.kernelChanged.disconnect(this._onKernelChanged, this);
      this._context.statusChanged.disconnect(this._onStatusChanged, this);
    }
    this._context = context;
    if (context) {
      context.kernelChanged.connect(this._onKernelChanged, this);
      context.statusChanged.connect(this._onStatusChanged, this);
    }
    this._attach();
  }

  /** Ask the kernel again with the model's (new) job limit. */
  resubscribe(): void {
    const comm = this._comm;
    if (comm && !comm.isDisposed && this.model.status === 'connected') {
      comm.send(this._subscribeMessage() as unknown as JSONObject);
    }
  }

  /**
   * The Deployments section is visible (or not): the kernel lists deployments (each listing
   * asks their health checks over HTTP) only while it is.
   */
  watchDeployments(watching: boolean): void {
    if (watching === this._watchDeployments) {
      return;
    }
    this._watchDeployments = watching;
    const comm = this._comm;
    if (comm && !comm.isDisposed && this.model.status === 'connected') {
      const msg: IWatchMessage = {
        v: PROTOCOL_VERSION,
        type: 'watch',
        deployments: watching
      };
      comm.send(msg as unknown as JSONObject);
    }
  }

  /** Ask the kernel to cancel a job, restart or stop a function's workers, or undeploy. */
  sendAction(action: ActionName, target: string): void {
    if (!this._comm || this._comm.isDisposed) {
      return;
    }
    const msg: IActionMessage = {
      v: PROTOCOL_VERSION,
      type: 'action',
      request_id: this.model.beginAction(action, target),
      action,
      target
    };
    this._comm.send(msg as unknown as JSONObject);
  }

  dispose(): void {
    this.follow(null);
  }

  private get _kernel(): Kernel.IKernelConnection | null {
    return this._context?.session?.kernel ?? null;
  }

  private _attach(retry = false): void {
    if (!retry) {
      this._retries = 0;
    }
    this._dropComm();
    const kernel = this._kernel;
    if (!this._context) {
      this.model.setStatus('no-notebook');
      return;
    }
    if (!kernel) {
      this.model.setStatus('no-kernel');
      return;
    }
    this._listen(kernel);
    this.model.setStatus('connecting');
    let comm: Kernel.IComm;
    try {
      comm = kernel.createComm(COMM_TARGET);
    } catch {
      // Comms are disabled on this connection (e.g. a console-only view of the kernel).
      this.model.setStatus('not-loaded');
      return;
    }
    this._adopt(comm);
    void this._subscribeWhenReady(kernel, comm);
    this._watchConnecting(comm);
  }

  /**
   * Open (for comms the panel starts) and subscribe once the comm's subshell, if the kernel has
   * subshells, is up. The kernel then answers on that subshell, so connecting and actions such
   * as "cancel" work while a cell keeps the kernel busy; messages sent earlier would go to the
   * busy main shell and tie the comm to it.
   */
  private async _subscribeWhenReady(
    kernel: Kernel.IKernelConnection,
    comm: Kernel.IComm
  ): Promise<void> {
    try {
      await kernel.info;
      const subshells = (kernel as { supportsSubshells?: boolean })
        .supportsSubshells;
      const started = (comm as { subshellStarted?: Promise<void> })
        .subshellStarted;
      if (subshells && started && comm.commsOverSubshells !== 'disabled') {
        await Promise.race([
          started,
          new Promise(resolve => setTimeout(resolve, 5000))
        ]);
      }
    } catch {
      // No kernel info (the kernel went away): the status handlers take it from here.
    }
    if (comm !== this._comm || comm.isDisposed) {
      return;
    }
    comm.open({});
    comm.send(this._subscribeMessage() as unknown as JSONObject);
  }

  /**
   * Open the comm again if neither a snapshot nor a close came back: a comm_open sent while
   * the kernel was still starting can be lost. Gives up (as "not loaded") after a few tries.
   */
  private _watchConnecting(comm: Kernel.IComm): void {
    window.clearTimeout(this._retryTimer);
    this._retryTimer = window.setTimeout(() => {
      if (comm !== this._comm || this.model.status !== 'connecting') {
        return;
      }
      if (this._kernel?.status !== 'idle') {
        // A busy kernel answers comms after the running cell: keep waiting.
        this._watchConnecting(comm);
        return;
      }
      if (this._retries >= MAX_OPEN_RETRIES) {
        this._dropComm();
        this.model.setStatus('not-loaded');
        return;
      }
      this._retries++;
      this._attach(true);
    }, OPEN_RETRY_MS);
  }

  /** Watch a kernel's IOPub stream for its beacon (once per kernel connection). */
  private _listen(kernel: Kernel.IKernelConnection): void {
    if (this._listening.has(kernel)) {
      return;
    }
    this._listening.add(kernel);
    kernel.iopubMessage.connect(this._onIOPub, this);
    kernel.disposed.connect(() => {
      kernel.iopubMessage.disconnect(this._onIOPub, this);
    });
  }

  /**
   * The kernel announced its comm target (it just loaded sieve_jupyter): open the comm now,
   * unless one is live already. The comm goes over its own subshell, so this connects while
   * the cell that loaded sieve_jupyter is still running.
   */
  private _onIOPub(
    kernel: Kernel.IKernelConnection,
    msg: JupyterMessage.IIOPubMessage
  ): void {
    if (kernel !== this._kernel || !beaconOf(msg)) {
      return;
    }
    if (
      this.model.status === 'connected' &&
      this._comm &&
      !this._comm.isDisposed
    ) {
      return;
    }
    this._attach();
  }

  private _adopt(comm: Kernel.IComm): void {
    this._comm = comm;
    comm.onMsg = msg => {
      if (comm !== this._comm) {
        return;
      }
      const data = msg.content.data;
      if (!isKernelMessage(data)) {
        return;
      }
      if (this.model.apply(data, nowSeconds()) === 'resubscribe') {
        comm.send(this._subscribeMessage() as unknown as JSONObject);
      }
    };
    comm.onClose = () => {
      if (comm !== this._comm) {
        return;
      }
      // The kernel closes a comm whose target it does not know: sieve_jupyter is not loaded.
      this._comm = null;
      this.model.setStatus('not-loaded');
    };
  }

  private _dropComm(): void {
    const comm = this._comm;
    this._comm = null;
    if (comm && !comm.isDisposed) {
      try {
        comm.close();
      } catch {
        // The kernel is going away; nothing to tell it.
      }
    }
  }

  private _subscribeMessage(): ISubscribeMessage {
    return {
      v: PROTOCOL_VERSION,
      type: 'subscribe',
      job_limit: this.model.jobLimit,
      watch_deployments: this._watchDeployments
    };
  }

  private _onKernelChanged(): void {
    this._attach();
  }

  private _onStatusChanged(_: ISessionContext, status: Kernel.Status): void {
    if (status === 'restarting' || status === 'autorestarting') {
      this._restarting = true;
      this._comm = null; // its kernel is gone; the connection disposes it
      this.model.setStatus('restarting');
    } else if (status === 'dead') {
      this._comm = null;
      this.model.setStatus('no-kernel');
    } else if (this._restarting && status === 'idle') {
      this._restarting = false;
      this._attach();
    }
  }

  private _context: ISessionContext | null = null;
  private _comm: Kernel.IComm | null = null;
  private _restarting = false;
  private _watchDeployments = false;
  private _retries = 0;
  private _retryTimer = 0;
  private _listening = new WeakSet<Kernel.IKernelConnection>();
}
