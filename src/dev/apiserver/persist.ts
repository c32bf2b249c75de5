/**
 * Keeps the store in a JSON file so that a restart finds its objects and resourceVersion
 * counter again (the dev mode's data directory). Writes are debounced through the injected
 * clock, serialised, and atomic (the file behind {@link StateFiles} is replaced, never edited).
 * After a restart the history is empty: watches and continue tokens from before the restart
 * answer 410 Gone, and clients relist, as after an etcd compaction.
 */
import type { KubeObject } from "../../kube/objects.ts";
import type { Clock } from "../../util/clock.ts";
import type { Logger } from "../../util/log.ts";
import type { StoreState, VersionedStore } from "./store.ts";

/** The file operations persistence needs (implemented by `src/runtime/files.ts`). */
export interface StateFiles {
  /** The file's text, or undefined when it does not exist. */
  read(path: string): Promise<string | undefined>;
  /** Replaces the file atomically. */
  writeAtomic(path: string, text: string): Promise<void>;
}

interface StateFile {
  kind: "ApiServerState";
  version: 1;
  resourceVersion: string;
  buckets: Record<string, KubeObject[]>;
}

/** Parses a state file; throws with the cause when it is not one. */
export function parseState(text: string, path: string): StoreState {
  let parsed: StateFile;
  try {
    parsed = JSON.parse(text) as StateFile;
  } catch (err) {
    throw new Error(`Cannot read API server state ${path}: ${(err as Error).message}`);
  }
  if (
    parsed?.kind !== "ApiServerState" ||
    parsed.version !== 1 ||
    typeof parsed.buckets !== "object"
  ) {
    throw new Error(`Cannot read API server state ${path}: not a version 1 state file`);
  }
  return { resourceVersion: Number(parsed.resourceVersion) || 0, buckets: parsed.buckets };
}

export function formatState(state: StoreState): string {
  const file: StateFile = {
    kind: "ApiServerState",
    version: 1,
    resourceVersion: String(state.resourceVersion),
    buckets: state.buckets,
  };
  return `${JSON.stringify(file, null, 1)}\n`;
}

export interface PersisterOptions {
  store: VersionedStore;
  files: StateFiles;
  path: string;
  clock: Clock;
  /** Delay between a change and the write that saves it. */
  debounceMs: number;
  logger: Logger;
}

export class Persister {
  readonly #o: PersisterOptions;
  #dirty = false;
  #timer: AbortController | undefined;
  #writing: Promise<void> | undefined;
  #unsubscribe: () => void;
  #closed = false;
  /** Completed writes. */
  writes = 0;

  constructor(opts: PersisterOptions) {
    this.#o = opts;
    this.#unsubscribe = opts.store.subscribe(() => this.#schedule());
  }

  #schedule(): void {
    this.#dirty = true;
    if (this.#closed || this.#timer || this.#writing) return;
    const timer = new AbortController();
    this.#timer = timer;
    this.#o.clock.sleep(this.#o.debounceMs, timer.signal).then(
      () => {
        if (this.#timer === timer) this.#timer = undefined;
        void this.#write();
      },
      () => {},
    );
  }

  #write(): Promise<void> {
    if (this.#writing) return this.#writing;
    if (!this.#dirty) return Promise.resolve();
    this.#dirty = false;
    const text = formatState(this.#o.store.dump());
    this.#writing = this.#o.files
      .writeAtomic(this.#o.path, text)
      .then(
        () => {
          this.writes++;
        },
        (err: unknown) => {
          this.#dirty = true;
          this.#o.logger.error("Cannot save API server state", { path: this.#o.path, err });
        },
      )
      .finally(() => {
        this.#writing = undefined;
        if (this.#dirty && !this.#timer) this.#schedule();
      });
    return this.#writing;
  }

  /** Writes pending changes now and waits until they are on disk (or the write failed). */
  async flush(): Promise<void> {
    this.#cancelTimer();
    if (this.#writing) await this.#writing;
    this.#cancelTimer();
    if (this.#dirty) await this.#write();
    this.#cancelTimer();
  }

  #cancelTimer(): void {
    this.#timer?.abort();
    this.#timer = undefined;
  }

  /** Flushes and stops listening to the store. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    await this.flush();
  }
}
