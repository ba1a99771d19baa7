/**
 * The comm between the panel and the current notebook's kernel.
 *
 * Either side may open it: the panel opens one whenever it starts following a kernel (and after
 * a restart); the kernel opens one when `%load_ext sieve_jupyter` runs, which reaches the panel
 * through the comm target registered here. Only one comm is live at a time; it reuses the
 * notebook's own kernel connection.
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
  PROTOCOL_VERSION,
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

  /** Ask the kernel to cancel a job, or restart or stop a function's workers. */
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
    if (!this._registered.has(kernel)) {
      this._registered.add(kernel);
      kernel.registerCommTarget(COMM_TARGET, (comm, msg) =>
        this._onKernelOpenedComm(kernel, comm, msg)
      );
    }
    this.model.setStatus('connecting');
    let comm: Kernel.IComm;
    try {
      comm = kernel.createComm(COMM_TARGET);
    } catch (error) {
      // Comms are disabled on this connection (e.g. a console-only view of the kernel).
      this.model.setStatus('not-loaded');
      return;
    }
    this._adopt(comm);
    void this._subscribeWhenReady(kernel, comm, true);
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
    comm: Kernel.IComm,
    open = false
  ): Promise<void> {
    try {
      await kernel.info;
      const subshells = (kernel as { supportsSubshells?: boolean }).supportsSubshells;
      const started = (comm as { subshellStarted?: Promise<void> }).subshellStarted;
      if (subshells && started && comm.commsOverSubshells !== 'disabled') {
        await Promise.race([started, new Promise(resolve => setTimeout(resolve, 5000))]);
      }
    } catch {
      // No kernel info (the kernel went away): the status handlers take it from here.
    }
    if (comm !== this._comm || comm.isDisposed) {
      return;
    }
    if (open) {
      comm.open({});
    }
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

  /** The kernel opened a comm (it just ran `%load_ext`): make it the live one. */
  private _onKernelOpenedComm(
    kernel: Kernel.IKernelConnection,
    comm: Kernel.IComm,
    msg: JupyterMessage.ICommOpenMsg
  ): void {
    if (kernel !== this._kernel) {
      // Another notebook's kernel: the panel opens its own comm when it follows that one.
      comm.close();
      return;
    }
    this._dropComm();
    this.model.setStatus('connecting');
    this._adopt(comm);
    void this._subscribeWhenReady(kernel, comm);
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
      if (data.type === 'hello') {
        comm.send(this._subscribeMessage() as unknown as JSONObject);
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
    return { v: PROTOCOL_VERSION, type: 'subscribe', job_limit: this.model.jobLimit };
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
  private _retries = 0;
  private _retryTimer = 0;
  private _registered = new WeakSet<Kernel.IKernelConnection>();
}
