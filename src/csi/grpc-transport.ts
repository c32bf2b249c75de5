/**
 * The CSI driver's gRPC transport: unary calls over one HTTP/2 connection to the driver's unix
 * socket, as a Connect `Transport` so that the client's interceptors (log, metrics, guard) and
 * error type are Connect's.
 *
 * A call is one HTTP/2 stream: headers, one length-prefixed message, then the response read
 * whole and its status checked (`grpc-wire.ts`). Nothing else runs per call: no stream
 * pipeline, no compression negotiation, no per-call timers (the deadline is the client's, sent
 * as `grpc-timeout`). CSI has no streaming methods; `stream()` refuses with `Unimplemented`.
 */
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  fromBinary,
  isMessage,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextValues,
  type Interceptor,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  createUnixH2Connection,
  H2_CANCEL,
  H2_REFUSED_STREAM,
  type H2Exchange,
  type H2Fields,
  H2StreamError,
  type UnixH2Connection,
} from "../runtime/unix-socket.ts";
import { toConnectError } from "./errors.ts";
import {
  decodeUnaryBody,
  encodeFrame,
  GRPC_CONTENT_TYPE,
  responseError,
  toHeaders,
} from "./grpc-wire.ts";

export interface UnixGrpcTransport {
  /** The Connect transport; every call goes through the single HTTP/2 session. */
  readonly transport: Transport;
  /**
   * Opens the HTTP/2 session if it is not open. Resolves once connected; rejects with the
   * socket error (for example `ENOENT` or `ECONNREFUSED`).
   */
  connect(): Promise<void>;
  /**
   * Registers the listener of connection loss: called at most once, with a reason, when a socket
   * that had connected closes while the transport is not being closed by {@link close}.
   */
  onConnectionLost(listener: (reason: string) => void): void;
  /** Whether a connection has been lost. */
  readonly lost: boolean;
  /** Closes the session and its socket. Idempotent. No loss is reported afterwards. */
  close(): void;
}

export interface UnixGrpcTransportOptions {
  /** Filesystem path of the unix socket. */
  socketPath: string;
  /** Interceptors of every call, outermost first; default none. */
  interceptors?: Interceptor[];
  /** The HTTP/2 connection; default one to `socketPath` (tests replace it). */
  connection?: UnixH2Connection;
}

/** The error a failed exchange stands for: the caller's reason on abort, else by how it ended. */
function exchangeFailure(error: unknown, signal: AbortSignal): ConnectError {
  if (signal.aborted) return toConnectError(signal.reason);
  if (error instanceof H2StreamError) {
    const code =
      error.rstCode === undefined || error.rstCode === H2_REFUSED_STREAM
        ? Code.Unavailable
        : error.rstCode === H2_CANCEL
          ? Code.Canceled
          : Code.Internal;
    return new ConnectError(error.message, code, undefined, undefined, error);
  }
  return toConnectError(error);
}

/** Response headers or trailers as `Headers`, built only when an interceptor asks. */
function lazyHeaders(fields: H2Fields | undefined): () => Headers {
  let built: Headers | undefined;
  return () => {
    built ??= toHeaders(fields);
    return built;
  };
}

/** Creates the gRPC transport to the unix socket at `socketPath`. */
export function createUnixGrpcTransport(options: UnixGrpcTransportOptions): UnixGrpcTransport {
  const conn = options.connection ?? createUnixH2Connection(options.socketPath);

  async function send(req: UnaryRequest): Promise<UnaryResponse> {
    const headers: Record<string, string> = {
      ":method": "POST",
      ":path": `/${req.service.typeName}/${req.method.name}`,
      "content-type": GRPC_CONTENT_TYPE,
      te: "trailers",
    };
    req.header.forEach((value, name) => {
      headers[name] = value;
    });
    const body = encodeFrame(toBinary(req.method.input, req.message));
    let exchange: H2Exchange;
    try {
      exchange = await conn.exchange(headers, body, req.signal);
    } catch (error) {
      throw exchangeFailure(error, req.signal);
    }
    const failure = responseError(exchange.headers, exchange.trailers);
    if (failure !== undefined) throw failure;
    const payload = decodeUnaryBody(exchange.body);
    if (payload === undefined) {
      throw new ConnectError(
        `protocol error: the driver sent no ${req.method.output.typeName} message`,
        Code.Internal,
      );
    }
    let message: UnaryResponse["message"];
    try {
      message = fromBinary(req.method.output, payload);
    } catch (error) {
      throw new ConnectError(
        `cannot decode ${req.method.output.typeName} from the driver: ${
          error instanceof Error ? error.message : String(error)
        }`,
        Code.Internal,
        undefined,
        undefined,
        error,
      );
    }
    const header = lazyHeaders(exchange.headers);
    const trailer = lazyHeaders(exchange.trailers);
    return {
      stream: false,
      service: req.service,
      method: req.method,
      message,
      get header() {
        return header();
      },
      get trailer() {
        return trailer();
      },
    };
  }

  const call = (options.interceptors ?? []).reduceRight(
    (next, interceptor) => interceptor(next as Parameters<Interceptor>[0]) as typeof send,
    send,
  );
  const NO_SIGNAL = new AbortController().signal;

  const transport: Transport = {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      _timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const req: UnaryRequest<I, O> = {
        stream: false,
        service: method.parent,
        method,
        requestMethod: "POST",
        url: `http://localhost/${method.parent.typeName}/${method.name}`,
        signal: signal ?? NO_SIGNAL,
        header: new Headers(header),
        contextValues: contextValues ?? createContextValues(),
        message: isMessage(input, method.input) ? input : create(method.input, input),
      };
      return (await call(req as UnaryRequest)) as UnaryResponse<I, O>;
    },
    stream() {
      return Promise.reject(
        new ConnectError(
          "streaming calls are not supported by the CSI transport",
          Code.Unimplemented,
        ),
      );
    },
  };

  return {
    transport,
    connect: () => conn.connect(),
    onConnectionLost: (listener) => conn.onConnectionLost(listener),
    get lost() {
      return conn.lost;
    },
    close: () => conn.close(),
  };
}
