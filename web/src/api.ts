// Every call the UI makes to `cellfab serve`, in one place: adapting to a changed server is
// this file only. Same origin by default (the server serves the bundle); the Vite dev server
// proxies these paths. The access token (token.ts) goes on every request.

import { authHeaders, reportUnauthorized, withToken } from "./token";

/** A JSON object of the plant configuration (any subset of GET /api/v1/config/default). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** `{"error": {"code", "message", "field"?}}` as an exception. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** One error of POST /api/v1/config/validate. */
export interface FieldError {
  field: string;
  message: string;
  value?: number | null;
  min?: number | null;
  max?: number | null;
  unit?: string;
  code?: string;
}

export interface Validation {
  valid: boolean;
  errors: FieldError[];
}

export type RunStatus = "queued" | "running" | "finished" | "failed" | "cancelled" | "interrupted";

export interface MachineProgress {
  machine_id: string;
  line: string;
  stage: string;
  state: "idle" | "on" | "off";
  batch: number | null;
  batches_done: number;
  samples: number;
  completed_at: string | null;
}

export interface StageResult {
  machine_id: string;
  batch: number;
  accepted: boolean;
  timestamp: string;
  duration_s: number;
  samples: number;
  summary: Record<string, number>;
}

/** GET /api/v1/runs/{id} (history entries lack machines and results). */
export interface RunView {
  id: string;
  source: string;
  status: RunStatus;
  seed: number;
  batches: number;
  speed: string;
  start: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  error: string | null;
  progress: number;
  samples: number;
  alarms: number;
  cells: { count: number; grades: Record<string, number>; [extra: string]: unknown };
  plant_end_t_s: number | null;
  machines?: MachineProgress[];
  results?: StageResult[];
}

export interface SamplesResponse {
  machine: string;
  total_points: number;
  returned_points: number;
  fields: string[];
  points: Array<Record<string, number>>;
}

/** Body of POST /api/v1/runs. */
export interface RunRequest {
  config?: JsonObject;
  batches?: number;
  seed?: number;
  speed?: "max" | number;
}

/** Where the server is: the page's own origin unless `?api=http://host:port` is given. */
export function apiBase(): string {
  const fromQuery = new URLSearchParams(globalThis.location?.search ?? "").get("api");
  return (fromQuery ?? "").replace(/\/$/, "");
}

async function call<T>(path: string, init?: RequestInit): Promise<T> {
  let response: Response;
  try {
    response = await fetch(apiBase() + path, {
      ...init,
      headers: { ...(init?.body ? { "Content-Type": "application/json" } : {}), ...authHeaders() },
    });
  } catch (e) {
    throw new ApiError(0, "unreachable", `the server cannot be reached (${String(e)})`);
  }
  const text = await response.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (response.status === 401) reportUnauthorized();
  if (!response.ok) {
    const err = (body as { error?: { code?: string; message?: string; field?: string } } | undefined)?.error;
    throw new ApiError(
      response.status,
      err?.code ?? "http_" + response.status,
      err?.message ?? `${response.status} ${response.statusText}`,
      err?.field,
    );
  }
  return body as T;
}

const post = (body: unknown): RequestInit => ({ method: "POST", body: JSON.stringify(body) });

export const api = {
  defaultConfig: () => call<JsonObject>("/api/v1/config/default"),
  schema: () => call<JsonObject>("/api/v1/config/schema"),
  validate: (overrides: JsonObject) => call<Validation>("/api/v1/config/validate", post(overrides)),
  startRun: (req: RunRequest) => call<{ id: string; status: RunStatus }>("/api/v1/runs", post(req)),
  runs: async () => (await call<{ runs: RunView[] }>("/api/v1/runs")).runs,
  run: (id: string) => call<RunView>(`/api/v1/runs/${encodeURIComponent(id)}`),
  cancel: (id: string) => call<{ id: string }>(`/api/v1/runs/${encodeURIComponent(id)}/cancel`, { method: "POST" }),
  reset: () => call<{ message?: string }>("/reset", { method: "POST" }),
  samples: (id: string, machine: string, maxPoints = 600) =>
    call<SamplesResponse>(
      `/api/v1/runs/${encodeURIComponent(id)}/samples?machine=${encodeURIComponent(machine)}&max_points=${maxPoints}`,
    ),
};

/** Download links (with `?token=`: a link cannot send a header): the run's zip by scope,
 * and the prototype's latest-run zips. */
export const downloads = {
  run: (id: string, scope: "anode" | "cathode" | "cell" | "all") =>
    withToken(`${apiBase()}/api/v1/runs/${encodeURIComponent(id)}/download?scope=${scope}`),
  latest: (which: "Anode" | "Cathode" | "all") => withToken(`${apiBase()}/files/${which}`),
};

/** A WebSocket URL (with `?token=`: a browser WebSocket cannot send a header). */
export function wsUrl(path: string): string {
  const base = apiBase() || globalThis.location.origin;
  return withToken(base.replace(/^http/, "ws") + path);
}

/** Opens the live event stream of a run; returns a function that closes it. */
export function watchRun(id: string, onEvent: (event: JsonObject) => void, onClose?: () => void): () => void {
  const socket = new WebSocket(wsUrl(`/api/v1/runs/${encodeURIComponent(id)}/events`));
  socket.onmessage = (m) => {
    try {
      onEvent(JSON.parse(String(m.data)) as JsonObject);
    } catch {
      /* a frame that is not JSON is ignored */
    }
  };
  socket.onclose = () => onClose?.();
  return () => {
    socket.onclose = null;
    socket.close();
  };
}
