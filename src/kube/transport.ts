/**
 * JSON over HTTP(S) to the API server: builds the URL, sets `User-Agent: csi-provisioner/<v>`,
 * `Accept: application/json`, `Accept-Encoding: gzip` and the credentials, waits for the rate
 * limiter, retries what client-go retries, and turns every failure into a {@link KubeApiError}
 * (here and nowhere else).
 *
 * Retries (each attempt takes a new rate-limiter token):
 * - 429, or 5xx with a `Retry-After` header: wait that long (1 s when a 429 has none) and retry,
 *   up to `maxRetries` times (client-go's default is 10), for any method.
 * - A GET (not a watch) that got a 5xx without `Retry-After`, or no answer: up to
 *   `idempotentRetries` more tries with jittered exponential back-off.
 * - 401: the credentials are invalidated (a rotated token file is re-read, an exec plugin run
 *   again) and the request is sent once more.
 *
 * Writes (every method but GET) once sent are not cancelled by the caller's signal: the caller
 * stops waiting at once, but the request runs until the server answers (closed after
 * `abandonWriteMs` at most), so that {@link KubeTransport.closeWrites} can tell when no write of
 * this client can reach the API any more — what a leader handing over its Lease must know.
 *
 * {@link KubeTransport.stream} reads a newline-delimited JSON stream (a watch). A line may span
 * chunks; a line that is not JSON (or fails the caller's shape check) is logged, counted in
 * `malformedLines` and passed to `onMalformedLine`, and the stream goes on.
 */
import { type HttpResponse, httpRequest, type TlsConfig } from "../runtime/https.ts";
import type { Clock, Random } from "../util/clock.ts";
import { type Logger, nullLogger } from "../util/log.ts";
import type { Credentials } from "./auth.ts";
import type { KubeConnection } from "./config.ts";
import { KubeApiError, parseRetryAfter } from "./errors.ts";
import { type Priority, type RateLimiter, unlimited } from "./ratelimit.ts";

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface KubeRequest {
  method: HttpMethod;
  /** Absolute API path, e.g. `/api/v1/namespaces/ns/persistentvolumeclaims`. */
  path: string;
  /** Query parameters; `undefined` values are left out. */
  query?: Record<string, string | number | boolean | undefined>;
  /** Sent as JSON unless it is a string or bytes. */
  body?: unknown;
  /** When given, called after the rate limiter's token is granted; its result is the body. */
  bodyAtSend?: () => unknown;
  /** Default `application/json` when there is a body. */
  contentType?: string;
  /**
   * The caller does not read a successful answer: it is drained without being parsed and `json`
   * is undefined. Error answers are parsed as always.
   */
  discardBody?: boolean;
  signal?: AbortSignal;
  /** Place in the rate limiter's line (default normal). */
  priority?: Priority;
  /** Once this aborts, the request goes ahead of every other one waiting for the rate limiter. */
  expedite?: AbortSignal;
  /** Told how long each try waited for the rate limiter, in ms. */
  onThrottled?: (ms: number) => void;
  /** Kubernetes verb for error messages; default derived from the method (GET is `get`). */
  verb?: string;
  /** What the request addresses, for error messages; default the path. */
  target?: string;
}

export interface KubeResponse<T = unknown> {
  status: number;
  headers: Record<string, string>;
  /** The parsed body; undefined when the body is empty. */
  json: T;
}

export interface MalformedLine {
  /** Request path of the stream. */
  path: string;
  /** The offending line (at most 1 000 characters); may hold object data, so log with care. */
  line: string;
  /** Why it was rejected: `invalid JSON` or `unexpected shape`. */
  error: string;
}

export interface StreamRequest extends KubeRequest {
  /** Values for which this returns false are handled as malformed lines; default: all accepted. */
  check?: (value: unknown) => boolean;
  /** Called for each malformed line of this stream, after the transport-wide handler. */
  onMalformedLine?: (info: MalformedLine) => void;
}

export interface KubeTransportOptions {
  connection: KubeConnection;
  /** Program version; the User-Agent is `csi-provisioner/<version>`. */
  version: string;
  clock: Clock;
  /** Default: no client-side limit. */
  rateLimiter?: RateLimiter;
  /** Jitter source for retry back-off. */
  random: Random;
  /** Default: discards. Requests are logged at -v=6, retries at -v=4, malformed lines as warnings. */
  logger?: Logger;
  /** Retries after 429 / Retry-After answers; default 10 (client-go). */
  maxRetries?: number;
  /** Extra tries of a GET after a 5xx or a transport failure; default 2. */
  idempotentRetries?: number;
  /** First back-off of those retries, doubled each time and jittered by ±50 %; default 500 ms. */
  retryBaseMs?: number;
  /** Called for every malformed line of every stream. */
  onMalformedLine?: (info: MalformedLine) => void;
  /** A write whose caller gave up is closed after this long without an answer. Default 10 s. */
  abandonWriteMs?: number;
}

const DEFAULT_VERB: Record<HttpMethod, string> = {
  GET: "get",
  POST: "create",
  PUT: "update",
  PATCH: "patch",
  DELETE: "delete",
};

const MAX_REPORTED_LINE = 1000;

export class KubeTransport {
  readonly userAgent: string;
  #conn: KubeConnection;
  #clock: Clock;
  #limiter: RateLimiter;
  #random: Random;
  #log: Logger;
  #maxRetries: number;
  #idempotentRetries: number;
  #retryBaseMs: number;
  #onMalformed: ((info: MalformedLine) => void) | undefined;
  #malformed = 0;
  #abandonWriteMs: number;
  /** Aborted while writes are stopped ({@link closeWrites}). */
  #writes = new AbortController();
  /** Writes sent and not answered yet. */
  #onWire = new Set<Promise<unknown>>();
  #wireSettled: (() => void)[] = [];

  constructor(opts: KubeTransportOptions) {
    this.userAgent = `csi-provisioner/${opts.version}`;
    this.#conn = opts.connection;
    this.#clock = opts.clock;
    this.#limiter = opts.rateLimiter ?? unlimited;
    this.#random = opts.random;
    this.#log = opts.logger ?? nullLogger;
    this.#maxRetries = opts.maxRetries ?? 10;
    this.#idempotentRetries = opts.idempotentRetries ?? 2;
    this.#retryBaseMs = opts.retryBaseMs ?? 500;
    this.#onMalformed = opts.onMalformedLine;
    this.#abandonWriteMs = opts.abandonWriteMs ?? 10_000;
  }

  /**
   * Stops every write of this client: writes not sent yet (waiting for the rate limiter, or
   * coming later) reject with a transport {@link KubeApiError}; reads go on. Resolves `true` once
   * every write already sent has been answered (or its connection closed), `false` when
   * `deadline` aborts first. Until {@link openWrites}.
   */
  async closeWrites(deadline?: AbortSignal): Promise<boolean> {
    if (!this.#writes.signal.aborted) {
      this.#writes.abort(new Error("API writes are stopped: this replica is stopping its work"));
    }
    while (this.#onWire.size > 0) {
      if (deadline?.aborted) return false;
      await new Promise<void>((resolve) => {
        const done = () => {
          deadline?.removeEventListener("abort", done);
          resolve();
        };
        this.#wireSettled.push(done);
        deadline?.addEventListener("abort", done, { once: true });
      });
    }
    return true;
  }

  /** Lets writes through again (a replica that leads again). */
  openWrites(): void {
    if (this.#writes.signal.aborted) this.#writes = new AbortController();
  }

  /** See {@link RateLimiter.keepBurst}: false once the controllers stop, true when they start. */
  keepBurst(keep: boolean): void {
    this.#limiter.keepBurst(keep);
  }

  /** Writes sent and not yet answered. */
  get writesOnWire(): number {
    return this.#onWire.size;
  }

  /** Malformed stream lines seen so far, over all streams. */
  get malformedLines(): number {
    return this.#malformed;
  }

  /** Sends a request and parses the JSON answer. Non-2xx answers reject with a KubeApiError. */
  async request<T = unknown>(req: KubeRequest): Promise<KubeResponse<T>> {
    const res = await this.#send(req, false);
    const ctx = this.#context(req);
    let text: string;
    try {
      text = await readText(res);
    } catch (err) {
      throw this.#transportError(req, ctx, err);
    }
    let json: unknown;
    if (!req.discardBody && text.trim() !== "") {
      try {
        json = JSON.parse(text);
      } catch (err) {
        throw new KubeApiError({
          kind: "transport",
          status: 0,
          reason: "",
          verb: ctx.verb,
          target: ctx.target,
          // The parser's message quotes the body; keep object data out of messages.
          detail: "the response body is not valid JSON",
          cause: err,
        });
      }
    }
    return { status: res.status, headers: res.headers, json: json as T };
  }

  /**
   * Opens a newline-delimited JSON stream. Resolves once the answer is 2xx; yields each decoded
   * line. Ends when the server closes the stream; breaking out of the loop (or `return()`) closes
   * the connection; an abort rejects with the signal's reason; a broken connection rejects with a
   * transport KubeApiError.
   */
  async stream<T = unknown>(req: StreamRequest): Promise<AsyncIterableIterator<T>> {
    const res = await this.#send(req, true);
    const ctx = this.#context(req);
    const report = (line: string, error: string) => {
      this.#malformed++;
      const info: MalformedLine = { path: req.path, line: line.slice(0, MAX_REPORTED_LINE), error };
      // The line itself is not logged: it may carry object data (secrets).
      this.#log.warn("Skipping a malformed line in a watch stream", {
        path: req.path,
        err: error,
        bytes: line.length,
      });
      this.#onMalformed?.(info);
      req.onMalformedLine?.(info);
    };
    return new JsonLines<T>(res, req.check, report, (err) => this.#transportError(req, ctx, err));
  }

  #context(req: KubeRequest): { verb: string; target: string } {
    return { verb: req.verb ?? DEFAULT_VERB[req.method], target: req.target ?? req.path };
  }

  #transportError(req: KubeRequest, ctx: { verb: string; target: string }, err: unknown): unknown {
    if (req.signal?.aborted) return req.signal.reason;
    if (err instanceof KubeApiError) return err;
    return KubeApiError.transport({ verb: ctx.verb, target: ctx.target, cause: err });
  }

  #url(req: KubeRequest): string {
    let url = this.#conn.server + req.path;
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(req.query ?? {})) {
      if (v !== undefined) params.append(k, String(v));
    }
    const qs = params.toString();
    if (qs !== "") url += `?${qs}`;
    return url;
  }

  /** Sends with retries; resolves with a 2xx response whose body is still unread. */
  async #send(req: KubeRequest, streaming: boolean): Promise<HttpResponse> {
    const ctx = this.#context(req);
    const url = this.#url(req);
    const { signal } = req;
    const encode = (b: unknown): Uint8Array | string | undefined =>
      b === undefined
        ? undefined
        : typeof b === "string" || b instanceof Uint8Array
          ? b
          : JSON.stringify(b);
    let body = encode(req.body);
    const idempotent = req.method === "GET" && !streaming;
    let retryAfterLeft = this.#maxRetries;
    let idempotentLeft = idempotent ? this.#idempotentRetries : 0;
    let backoffStep = 0;
    let reauthorised = false;

    const write = req.method !== "GET";
    const writes = this.#writes.signal;
    const closed = () =>
      KubeApiError.transport({ verb: ctx.verb, target: ctx.target, cause: writes.reason });
    for (;;) {
      if (write && writes.aborted) throw closed();
      const queued = req.onThrottled ? this.#clock.now() : 0;
      try {
        await this.#limiter.acquire(signal, req.priority, req.expedite, write ? writes : undefined);
      } catch (err) {
        if (write && writes.aborted && !signal?.aborted) throw closed();
        throw err;
      }
      req.onThrottled?.(this.#clock.now() - queued);
      if (req.bodyAtSend) body = encode(req.bodyAtSend());
      let creds: Credentials;
      try {
        creds = await this.#conn.auth.credentials();
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        throw KubeApiError.transport({
          verb: ctx.verb,
          target: ctx.target,
          cause: new Error(`getting credentials: ${(err as Error)?.message ?? String(err)}`, {
            cause: err,
          }),
        });
      }
      const headers: Record<string, string> = {
        "User-Agent": this.userAgent,
        Accept: "application/json",
        "Accept-Encoding": "gzip",
        ...creds.headers,
      };
      if (body !== undefined) headers["Content-Type"] = req.contentType ?? "application/json";
      let tls: TlsConfig = this.#conn.tls;
      if (creds.cert !== undefined && creds.key !== undefined) {
        tls = { ...tls, cert: creds.cert, key: creds.key };
      }

      const sentAt = this.#clock.now();
      let res: HttpResponse;
      try {
        const sending = {
          url,
          method: req.method,
          headers,
          body,
          tls,
          proxyUrl: this.#conn.proxyUrl,
          dedicatedConnection: streaming,
        };
        res = write
          ? await this.#sendWrite(sending, signal)
          : await httpRequest({ ...sending, signal });
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const e = KubeApiError.transport({ verb: ctx.verb, target: ctx.target, cause: err });
        if (idempotentLeft > 0) {
          idempotentLeft--;
          await this.#backoff(backoffStep++, e, signal);
          continue;
        }
        throw e;
      }
      const v6 = this.#log.v(6);
      if (v6.enabled) {
        v6.info("HTTP request", {
          verb: req.method,
          url,
          status: res.status,
          milliseconds: this.#clock.now() - sentAt,
        });
      }
      if (res.status >= 200 && res.status < 300) return res;

      // An error answer: read it whole and classify.
      let text: string;
      try {
        text = await readText(res);
      } catch (err) {
        throw this.#transportError(req, ctx, err);
      }
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // Not JSON: keep the text.
      }
      const header = res.headers["retry-after"];
      const err = KubeApiError.fromResponse({
        verb: ctx.verb,
        target: ctx.target,
        status: res.status,
        body: parsed,
        retryAfter: header,
      });

      if (res.status === 401 && !reauthorised) {
        reauthorised = true;
        this.#conn.auth.invalidate(sentAt);
        continue;
      }
      const headerSeconds = parseRetryAfter(header);
      if (
        retryAfterLeft > 0 &&
        (res.status === 429 || (res.status >= 500 && headerSeconds !== undefined))
      ) {
        retryAfterLeft--;
        const seconds = headerSeconds ?? err.retryAfterSeconds ?? 1;
        this.#log.v(4).info("Got a Retry-After response; retrying", {
          url,
          status: res.status,
          seconds,
          attempt: this.#maxRetries - retryAfterLeft,
        });
        await this.#clock.sleep(seconds * 1000, signal);
        continue;
      }
      if (idempotentLeft > 0 && res.status >= 500) {
        idempotentLeft--;
        await this.#backoff(backoffStep++, err, signal);
        continue;
      }
      throw err;
    }
  }

  /**
   * Sends a write that the caller's `signal` does not cancel: the caller stops waiting, the
   * request stays tracked until answered (or closed `abandonWriteMs` later).
   */
  #sendWrite(
    sending: Omit<Parameters<typeof httpRequest>[0], "signal">,
    signal: AbortSignal | undefined,
  ): Promise<HttpResponse> {
    const kill = new AbortController();
    const wire = httpRequest({ ...sending, signal: kill.signal });
    const tracked = wire.then(
      () => {},
      () => {},
    );
    this.#onWire.add(tracked);
    // Made only when the caller gives up (most writes are answered first).
    let stopTimer: AbortController | undefined;
    void tracked.then(() => {
      stopTimer?.abort();
      this.#onWire.delete(tracked);
      for (const f of this.#wireSettled.splice(0)) f();
    });
    if (!signal) return wire;
    return new Promise<HttpResponse>((resolve, reject) => {
      const onAbort = () => {
        reject(signal.reason);
        // Nobody reads the answer: close it when it comes; give up on it after a while.
        wire.then(
          (r) => r.close(),
          () => {},
        );
        if (!this.#onWire.has(tracked)) return;
        stopTimer = new AbortController();
        this.#clock.sleep(this.#abandonWriteMs, stopTimer.signal).then(
          () => kill.abort(signal.reason),
          () => {},
        );
      };
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener("abort", onAbort, { once: true });
      wire.then(
        (r) => {
          signal.removeEventListener("abort", onAbort);
          if (signal.aborted) r.close();
          else resolve(r);
        },
        (err) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      );
    });
  }

  async #backoff(step: number, err: KubeApiError, signal: AbortSignal | undefined): Promise<void> {
    const base = this.#retryBaseMs * 2 ** step;
    const ms = Math.round(base * (0.5 + this.#random()));
    this.#log.v(4).info("Retrying a failed request", { err: err.message, delayMs: ms });
    await this.#clock.sleep(ms, signal);
  }
}

async function readText(res: HttpResponse): Promise<string> {
  if (res.text) return res.text();
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of res.body) text += decoder.decode(chunk, { stream: true });
  return text + decoder.decode();
}

/** Splits a byte stream into lines and parses each as JSON. */
class JsonLines<T> implements AsyncIterableIterator<T> {
  #res: HttpResponse;
  #it: AsyncIterator<Uint8Array>;
  #check: ((value: unknown) => boolean) | undefined;
  #report: (line: string, error: string) => void;
  #wrap: (err: unknown) => unknown;
  #decoder = new TextDecoder();
  /** Bytes of a line not yet complete (split on the byte 0x0A, which no UTF-8 sequence holds). */
  #rest: Uint8Array[] = [];
  #queue: T[] = [];
  #done = false;

  constructor(
    res: HttpResponse,
    check: ((value: unknown) => boolean) | undefined,
    report: (line: string, error: string) => void,
    wrap: (err: unknown) => unknown,
  ) {
    this.#res = res;
    this.#it = res.body[Symbol.asyncIterator]();
    this.#check = check;
    this.#report = report;
    this.#wrap = wrap;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  async next(): Promise<IteratorResult<T>> {
    for (;;) {
      const value = this.#queue.shift();
      if (value !== undefined) return { done: false, value };
      if (this.#done) return { done: true, value: undefined };
      let r: IteratorResult<Uint8Array>;
      try {
        r = await this.#it.next();
      } catch (err) {
        this.#finish();
        throw this.#wrap(err);
      }
      if (r.done) {
        if (this.#rest.length > 0) this.#line(this.#decoder.decode(this.#joinRest()));
        this.#finish();
        continue;
      }
      // Lines are cut from the bytes and decoded one by one: cheaper than decoding each chunk
      // into a growing string and cutting that (a watch is the sidecar's hottest path).
      const chunk = r.value;
      let from = 0;
      let nl = chunk.indexOf(10);
      if (nl >= 0 && this.#rest.length > 0) {
        this.#rest.push(chunk.subarray(0, nl));
        this.#line(this.#decoder.decode(this.#joinRest()));
        from = nl + 1;
        nl = chunk.indexOf(10, from);
      }
      while (nl >= 0) {
        this.#line(this.#decoder.decode(chunk.subarray(from, nl)));
        from = nl + 1;
        nl = chunk.indexOf(10, from);
      }
      if (from < chunk.length) this.#rest.push(chunk.slice(from));
    }
  }

  async return(): Promise<IteratorResult<T>> {
    this.#queue = [];
    this.#finish();
    return { done: true, value: undefined };
  }

  #joinRest(): Uint8Array {
    const parts = this.#rest;
    this.#rest = [];
    if (parts.length === 1) return parts[0]!;
    let n = 0;
    for (const p of parts) n += p.length;
    const out = new Uint8Array(n);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  #finish(): void {
    this.#done = true;
    this.#res.close();
  }

  #line(raw: string): void {
    const line = raw.trim();
    if (line === "") return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      // The parser's message quotes the input; keep it out of logs.
      this.#report(line, "invalid JSON");
      return;
    }
    if (this.#check && !this.#check(value)) {
      this.#report(line, "unexpected shape");
      return;
    }
    // `undefined` marks "no value" in the queue; JSON never produces it.
    this.#queue.push(value as T);
  }
}
