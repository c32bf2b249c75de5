/**
 * One open watch response: a stream of newline-delimited JSON events, ended by the client, by
 * `timeoutSeconds` (through the injected clock), by the server closing (gracefully) or by a
 * fault (abruptly: the connection is cut mid-stream). BOOKMARK events are sent only when the
 * client allowed them: every `bookmarkIntervalMs`, on demand, and as the watch times out.
 */
import type { WatchEvent } from "../../kube/objects.ts";
import type { Clock } from "../../util/clock.ts";

export interface WatchSessionOptions {
  clock: Clock;
  /** Ends the stream after this long; 0 never. */
  timeoutMs: number;
  /** Sends a bookmark this often (when allowed); 0 never. */
  bookmarkIntervalMs: number;
  allowBookmarks: boolean;
  /** Builds a BOOKMARK event at the current resourceVersion. */
  bookmark: () => WatchEvent;
  /** Shapes an event for the wire (Table conversion); identity by default. */
  encode?: (ev: WatchEvent) => unknown;
  /** Called once when the stream ends, whatever the cause. */
  onEnd?: () => void;
}

const encoder = new TextEncoder();

export class WatchSession {
  readonly stream: ReadableStream<Uint8Array>;
  readonly #opts: WatchSessionOptions;
  readonly #abort = new AbortController();
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #ended = false;
  /** Events sent so far (bookmarks included). */
  sent = 0;

  constructor(opts: WatchSessionOptions) {
    this.#opts = opts;
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      cancel: () => {
        this.#finish();
      },
    });
    const { clock } = opts;
    const signal = this.#abort.signal;
    if (opts.timeoutMs > 0) {
      // Like kube-apiserver's cache watcher, a last bookmark goes out as the watch times out,
      // so that the client resumes from the latest resourceVersion.
      clock.sleep(opts.timeoutMs, signal).then(
        () => {
          this.sendBookmark();
          this.end();
        },
        () => {},
      );
    }
    if (opts.allowBookmarks && opts.bookmarkIntervalMs > 0) {
      void (async () => {
        while (!this.#ended) {
          await clock.sleep(opts.bookmarkIntervalMs, signal);
          this.sendBookmark();
        }
      })().catch(() => {});
    }
  }

  get ended(): boolean {
    return this.#ended;
  }

  send(ev: WatchEvent): void {
    if (this.#ended) return;
    const shaped = this.#opts.encode && ev.type !== "ERROR" ? this.#opts.encode(ev) : ev;
    try {
      this.#controller.enqueue(encoder.encode(`${JSON.stringify(shaped)}\n`));
      this.sent++;
    } catch {
      this.#finish();
    }
  }

  /** Sends a BOOKMARK if the client allowed them; returns whether it did. */
  sendBookmark(): boolean {
    if (this.#ended || !this.#opts.allowBookmarks) return false;
    this.send(this.#opts.bookmark());
    return true;
  }

  /** Ends the stream cleanly, as a server-side timeout does. */
  end(): void {
    if (this.#ended) return;
    this.#finish();
    try {
      this.#controller.close();
    } catch {
      // Already closed or cancelled by the client.
    }
  }

  /** Ends the stream abruptly: the response is cut without its final chunk. */
  drop(): void {
    if (this.#ended) return;
    this.#finish();
    try {
      this.#controller.error(new Error("Watch stream dropped by fault injection"));
    } catch {
      // Already closed.
    }
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#abort.abort();
    this.#opts.onEnd?.();
  }
}
