/**
 * A list of DOM rows kept in step with a list of views by key: rows are created once,
 * patched in place and moved only when their order changes.
 *
 * Redrawing a list whole on every update (several times a second while jobs run) would
 * replace the very button a user is pressing; keyed updates leave it where it is.
 */

/** One rendered row: its element, and how to bring it up to date with a new view. */
export interface IRow<V> {
  readonly node: HTMLElement;
  update(view: V): void;
}

export class KeyedList<V> {
  /**
   * @param node - the element whose children are the rows.
   * @param key - a view's identity (a job id, a function name).
   * @param create - makes the row for a view seen for the first time.
   */
  constructor(
    readonly node: HTMLElement,
    private readonly _key: (view: V) => string,
    private readonly _create: (view: V) => IRow<V>
  ) {}

  /** The row showing the view with this key, if any. */
  row(key: string): IRow<V> | undefined {
    return this._rows.get(key);
  }

  /** Make the rows show `views`, in this order. */
  update(views: readonly V[]): void {
    const keys = new Set(views.map(this._key));
    // Stale rows go first, so a row that keeps its place among the others is never moved.
    for (const [key, row] of this._rows) {
      if (!keys.has(key)) {
        row.node.remove();
        this._rows.delete(key);
      }
    }
    let previous: HTMLElement | null = null;
    for (const view of views) {
      const key = this._key(view);
      let row = this._rows.get(key);
      if (!row) {
        row = this._create(view);
        this._rows.set(key, row);
      }
      row.update(view);
      const expected: ChildNode | null = previous
        ? previous.nextSibling
        : this.node.firstChild;
      if (expected !== row.node) {
        this.node.insertBefore(row.node, expected);
      }
      previous = row.node;
    }
  }

  /** Remove every row. */
  clear(): void {
    this.update([]);
  }

  private _rows = new Map<string, IRow<V>>();
}
