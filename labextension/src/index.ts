/**
 * The sieve-jupyter JupyterLab extension: a "Sieve" side panel that follows the current
 * notebook's kernel and shows its functions, workers and jobs, and the deployments of its user.
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { KernelChannel } from './connection';
import { DEFAULT_JOB_LIMIT, PanelModel } from './model';
import { PANEL_ID, SievePanel } from './panel';

export { PanelModel } from './model';
export * from './protocol';

const OPEN_FORM = 'sieve-jupyter:open-form';
const SHOW_PANEL = 'sieve-jupyter:show-panel';

const sieveIcon = new LabIcon({
  name: 'sieve-jupyter:sieve',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<path d="M1 3h14l-5.5 6v5l-3-1.5V9z"/>' +
    '</g></svg>'
});

/** The line a notebook cell runs to show a function's form (quoted when it needs to be). */
export function formMagic(name: string): string {
  return /^[\w./-]+$/.test(name)
    ? `%sieve form ${name}`
    : `%sieve form ${JSON.stringify(name)}`;
}

/** The plugin id; its settings schema is `schema/panel.json`. */
const PLUGIN_ID = 'sieve-jupyter:panel';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'A side panel with the functions, workers and jobs of the current kernel.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const model = new PanelModel();
    const channel = new KernelChannel(model);

    if (settingRegistry) {
      void settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = () => {
            const limit = settings.get('jobLimit').composite;
            const changed = model.setJobLimit(
              typeof limit === 'number' ? limit : DEFAULT_JOB_LIMIT
            );
            if (changed) {
              channel.resubscribe();
            }
          };
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => {
          console.error(
            'sieve-jupyter: could not load the panel settings',
            reason
          );
        });
    }

    app.commands.addCommand(OPEN_FORM, {
      label: 'Show a Sieve function form in the notebook',
      describedBy: {
        args: {
          type: 'object',
          properties: {
            name: {
              type: 'string',
              description: 'The registered name of the function or model'
            }
          },
          required: ['name']
        }
      },
      execute: async args => {
        const notebook = tracker.currentWidget;
        const name = args['name'];
        if (!notebook || typeof name !== 'string') {
          return;
        }
        NotebookActions.insertBelow(notebook.content);
        notebook.content.activeCell?.model.sharedModel.setSource(
          formMagic(name)
        );
        await NotebookActions.run(notebook.content, notebook.sessionContext);
      }
    });

    const panel = new SievePanel(model, {
      run: (action, target) => channel.sendAction(action, target),
      openForm: name => void app.commands.execute(OPEN_FORM, { name }),
      watchDeployments: watching => channel.watchDeployments(watching)
    });
    panel.title.icon = sieveIcon;
    app.shell.add(panel, 'left', { rank: 650 });
    if (restorer) {
      restorer.add(panel, 'sieve-jupyter');
    }

    app.commands.addCommand(SHOW_PANEL, {
      label: 'Show the Sieve panel',
      describedBy: { args: { type: 'object', properties: {} } },
      execute: () => app.shell.activateById(PANEL_ID)
    });

    const follow = () =>
      channel.follow(tracker.currentWidget?.sessionContext ?? null);
    tracker.currentChanged.connect(follow);
    follow();
  }
};

export default plugin;
