/**
 * Tickwire TypeScript client: a thin layer over the code that protoc-gen-es generates from
 * `protos/` (`make proto`), shared by every service, so a new service needs no code here.
 *
 * ```ts
 * import { connect } from "@tickwire/client";
 * import { RiskService } from "@tickwire/client/gen/tickwire/risk/v1/risk_pb";
 * const tw = connect("127.0.0.1:50051");
 * const risk = tw.client(RiskService);            // typed client of any generated service
 * const r = await risk.computeVar({ ... }, { timeoutMs: 5000 });
 * ```
 *
 * Connection behaviour, the same in every Tickwire client language (see
 * clients/python/tickwire_client/client.py):
 * - a default deadline on every call (`timeoutMs`, 30 s; per call `{ timeoutMs }`);
 * - send and receive limits of 256 MiB, the server's default;
 * - HTTP/2 keepalive pings every 30 s, also on idle connections, 10 s ping timeout (the
 *   server accepts pings 10 s apart or more);
 * - retries on UNAVAILABLE only (unary calls, 4 attempts, exponential backoff from 50 ms
 *   to 1 s with full jitter, as gRPC's retry policy); every other status fails at once
 *   with a {@link TickwireError};
 * - W3C trace context: the caller's active OpenTelemetry span (from `@opentelemetry/api`)
 *   is sent as `traceparent`, so the server's span is its child.
 *
 * Tested with Node 20, @connectrpc/connect(-node) 2.1, @bufbuild/protobuf 2.17 (code from
 * protoc-gen-es 2.13), @opentelemetry/api 1.9 against the Python grpcio 1.85 server.
 */
import { create } from "@bufbuild/protobuf";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Client, Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { context as otelContext } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BadRequestSchema, ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import {
  Health,
  HealthCheckResponse_ServingStatus,
} from "../gen/grpc/health/v1/health_pb.js";
import { DType, TensorSchema } from "../gen/tickwire/common/v1/tensor_pb.js";
import type { Tensor } from "../gen/tickwire/common/v1/tensor_pb.js";

export { Code } from "@connectrpc/connect";

/** Send and receive limit, bytes: the server's default (256 MiB). */
export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;
/** Default deadline of a call, milliseconds. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** Default deadline of each call, ms (30 s). Per call: `{ timeoutMs }`. */
  timeoutMs?: number;
  /** Send and receive limit, bytes (256 MiB). */
  maxMessageBytes?: number;
  /** Attempts of a unary call that fails with UNAVAILABLE (4; 1 disables retries). */
  maxAttempts?: number;
  /** Propagate the caller's active OpenTelemetry span as `traceparent` (true). */
  trace?: boolean;
  /** Extra interceptors, outermost first, run before Tickwire's own. */
  interceptors?: Interceptor[];
  /** Use `https://` (TLS) instead of plaintext HTTP/2. */
  tls?: boolean;
}

/** A request field the server rejected, and why (`google.rpc.BadRequest.FieldViolation`). */
export interface FieldViolation {
  field: string;
  description: string;
}

/**
 * A failed call: the gRPC status code (`code`, numeric as in the gRPC spec: 3
 * INVALID_ARGUMENT, 4 DEADLINE_EXCEEDED...), the server's message (`rawMessage`), and the
 * `google.rpc.BadRequest` field violations decoded from `grpc-status-details-bin`. A
 * subclass of ConnectError (`findDetails` works), named "TickwireError".
 */
export class TickwireError extends ConnectError {
  /** Name of the code in gRPC's spelling, e.g. "INVALID_ARGUMENT" (`code` is the number). */
  readonly codeName: string;
  /** Non-empty for INVALID_ARGUMENT. */
  readonly fieldViolations: FieldViolation[];
  /** `google.rpc.ErrorInfo.reason` when the server sent one. */
  readonly reason: string;

  constructor(err: ConnectError) {
    super(err.rawMessage, err.code, err.metadata, undefined, err.cause ?? err);
    this.name = "TickwireError";
    this.details.push(...err.details);
    this.codeName = codeNameOf(err.code);
    this.fieldViolations = this.findDetails(BadRequestSchema).flatMap((b) =>
      b.fieldViolations.map((v) => ({ field: v.field, description: v.description })),
    );
    this.reason = this.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
  }

  /** True for TickwireErrors, also across copies of this package (like ConnectError's check). */
  static [Symbol.hasInstance](v: unknown): boolean {
    return v instanceof Error && v.name === "TickwireError" && "codeName" in v && "fieldViolations" in v;
  }

  /** Names of the rejected fields. */
  get fields(): string[] {
    return this.fieldViolations.map((v) => v.field);
  }

  /** Any thrown value as a TickwireError (a ConnectError's code, or UNKNOWN). */
  static from(reason: unknown): TickwireError {
    return reason instanceof TickwireError ? reason : new TickwireError(ConnectError.from(reason));
  }
}

/** "INVALID_ARGUMENT" for Code.InvalidArgument, and so on. */
export function codeNameOf(code: Code): string {
  return (Code[code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

const propagator = new W3CTraceContextPropagator();

/** Sends the caller's active OpenTelemetry span context as W3C `traceparent`/`tracestate`. */
export const traceContextInterceptor: Interceptor = (next) => async (req) => {
  propagator.inject(otelContext.active(), req.header, {
    set: (carrier, key, value) => carrier.set(key, value),
  });
  return await next(req);
};

/** Retries unary calls that fail with UNAVAILABLE, up to `maxAttempts` attempts in all. */
export function retryUnavailableInterceptor(maxAttempts = 4): Interceptor {
  return (next) => async (req) => {
    if (req.stream) return await next(req);
    let backoffMs = 50;
    for (let attempt = 1; ; attempt++) {
      try {
        return await next(req);
      } catch (e) {
        const err = ConnectError.from(e);
        if (err.code !== Code.Unavailable || attempt >= maxAttempts || req.signal.aborted) throw e;
        await new Promise((r) => setTimeout(r, Math.random() * backoffMs));
        backoffMs = Math.min(backoffMs * 2, 1000);
      }
    }
  };
}

/** A connection to one Tickwire server; cheap to share, one HTTP/2 session. */
export class Connection {
  readonly transport: Transport;
  constructor(transport: Transport) {
    this.transport = transport;
  }

  /**
   * A typed client for any generated service, e.g. `client(RiskService)`: one method per
   * RPC, in lowerCamelCase. Every failure is thrown (unary) or raised by the stream as a
   * {@link TickwireError}.
   */
  client<S extends DescService>(service: S): Client<S> {
    const raw = createClient(service, this.transport) as Record<string, (...a: unknown[]) => unknown>;
    const wrapped: Record<string, unknown> = {};
    for (const m of service.methods) {
      const call = raw[m.localName];
      if (m.methodKind === "unary" || m.methodKind === "client_streaming") {
        wrapped[m.localName] = (...a: unknown[]) =>
          (call(...a) as Promise<unknown>).catch((e: unknown) => {
            throw TickwireError.from(e);
          });
      } else {
        wrapped[m.localName] = async function* (...a: unknown[]) {
          try {
            yield* call(...a) as AsyncIterable<unknown>;
          } catch (e) {
            throw TickwireError.from(e);
          }
        };
      }
    }
    return wrapped as Client<S>;
  }

  /** `grpc.health.v1` status of the server ("") or of one service: "SERVING", "NOT_SERVING"... */
  async health(service = "", timeoutMs?: number): Promise<string> {
    const r = await this.client(Health).check({ service }, { timeoutMs });
    return HealthCheckResponse_ServingStatus[r.status] ?? "UNKNOWN";
  }
}

/**
 * Connects to `target` ("host:port", or a URL "http://host:port"); see the module comment
 * for the deadline, limits, keepalive, retry and tracing defaults.
 */
export function connect(target: string, options: ConnectOptions = {}): Connection {
  const baseUrl = /^https?:\/\//.test(target) ? target : `${options.tls ? "https" : "http"}://${target}`;
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const interceptors: Interceptor[] = [...(options.interceptors ?? [])];
  if (options.trace ?? true) interceptors.push(traceContextInterceptor);
  interceptors.push(retryUnavailableInterceptor(options.maxAttempts ?? 4));
  const transport = createGrpcTransport({
    baseUrl,
    interceptors,
    defaultTimeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    readMaxBytes: maxBytes,
    writeMaxBytes: maxBytes,
    pingIntervalMs: 30_000,
    pingTimeoutMs: 10_000,
    pingIdleConnection: true,
  });
  return new Connection(transport);
}

// ----- arrays <-> tickwire.common.v1.Tensor ---------------------------------------------

/** A dense array: elements row-major (C order), `shape` outermost first. */
export interface NdArray<T extends Float64Array | Float32Array | BigInt64Array | Int32Array> {
  data: T;
  shape: number[];
}

type Typed = Float64Array | Float32Array | BigInt64Array | Int32Array;

function dtypeOf(data: Typed): DType {
  if (data instanceof Float64Array) return DType.FLOAT64;
  if (data instanceof Float32Array) return DType.FLOAT32;
  if (data instanceof BigInt64Array) return DType.INT64;
  return DType.INT32;
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A typed array as a Tensor. `data` holds product(shape) elements row-major (C order); the
 * buffer is written little-endian whatever the host. `shape` defaults to `[data.length]`.
 * Throws RangeError when the shape does not match the length.
 */
export function toTensor(data: Typed | number[], shape?: number[]): Tensor {
  const arr: Typed = Array.isArray(data) ? Float64Array.from(data) : data;
  const dims = shape ?? [arr.length];
  const n = dims.reduce((a, b) => a * b, 1);
  if (n !== arr.length) throw new RangeError(`shape [${dims}] needs ${n} elements, got ${arr.length}`);
  const bytes = new Uint8Array(new ArrayBuffer(arr.byteLength));
  bytes.set(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
  if (!LITTLE_ENDIAN_HOST) swapBytes(bytes, arr.BYTES_PER_ELEMENT);
  return create(TensorSchema, { dtype: dtypeOf(arr), shape: dims.map(BigInt), data: bytes });
}

/** A (rows, cols) matrix given as rows (`number[][]`) as a float64 Tensor, row-major. */
export function matrixToTensor(rows: ArrayLike<number>[]): Tensor {
  const cols = rows.length ? rows[0].length : 0;
  const out = new Float64Array(rows.length * cols);
  rows.forEach((r, i) => {
    if (r.length !== cols) throw new RangeError(`row ${i} has ${r.length} elements, expected ${cols}`);
    out.set(r, i * cols);
  });
  return toTensor(out, [rows.length, cols]);
}

/**
 * A Tensor as a typed array of its dtype (Float64Array for FLOAT64...) and its shape. The
 * little-endian bytes are copied into an aligned buffer. Throws RangeError for an unknown
 * dtype or a buffer whose length does not match the shape.
 */
export function fromTensor(t: Tensor): NdArray<Typed> {
  const shape = t.shape.map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  const ctor = {
    [DType.FLOAT64]: Float64Array,
    [DType.FLOAT32]: Float32Array,
    [DType.INT64]: BigInt64Array,
    [DType.INT32]: Int32Array,
  }[t.dtype as DType.FLOAT64 | DType.FLOAT32 | DType.INT64 | DType.INT32];
  if (ctor === undefined) throw new RangeError(`unknown tensor dtype ${t.dtype}`);
  if (t.data.length !== n * ctor.BYTES_PER_ELEMENT) {
    throw new RangeError(`tensor of shape [${shape}] needs ${n * ctor.BYTES_PER_ELEMENT} bytes`);
  }
  const buffer = new ArrayBuffer(t.data.length);
  const bytes = new Uint8Array(buffer);
  bytes.set(t.data);
  if (!LITTLE_ENDIAN_HOST) swapBytes(bytes, ctor.BYTES_PER_ELEMENT);
  return { data: new ctor(buffer, 0, n), shape };
}

/** A FLOAT64 Tensor as a Float64Array (throws RangeError for another dtype). */
export function fromTensorF64(t: Tensor): NdArray<Float64Array> {
  if (t.dtype !== DType.FLOAT64) throw new RangeError(`expected a FLOAT64 tensor, got dtype ${t.dtype}`);
  return fromTensor(t) as NdArray<Float64Array>;
}

function swapBytes(bytes: Uint8Array, width: number): Uint8Array {
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
  return bytes;
}
