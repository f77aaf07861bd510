/** fetch() for the /crm API: the envelope, the CSRF header, the chosen account (X-Account). */

export interface ErrorBody {
  code: string;
  message: string;
  fields?: Record<string, string[]>;
}

/** An API error from the envelope (or a network failure: status 0, code "network_error"). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: Record<string, string[]>;
  readonly retryAfter: number | null;

  constructor(status: number, body: ErrorBody, retryAfter: number | null = null) {
    super(body.message);
    this.name = "ApiError";
    this.status = status;
    this.code = body.code;
    this.fields = body.fields ?? {};
    this.retryAfter = retryAfter;
  }
}

let accountSlug: string | null = null;

/** The account every call acts for (sent as X-Account); null lets the server pick the only one. */
export function setAccountSlug(slug: string | null): void {
  accountSlug = slug;
}

export function getAccountSlug(): string | null {
  return accountSlug;
}

export function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

type Query = Record<string, string | number | boolean | null | undefined>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

interface RequestOptions {
  method?: "GET" | "POST" | "PATCH" | "DELETE";
  query?: Query;
  body?: unknown;
}

/** The `data` of a successful envelope; throws ApiError otherwise. */
export async function apiRequest<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const method = options.method ?? "GET";
  const headers: Record<string, string> = { Accept: "application/json" };
  if (accountSlug) headers["X-Account"] = accountSlug;
  if (method !== "GET") {
    headers["X-CSRFToken"] = csrfToken();
    headers["Content-Type"] = "application/json";
  }
  let response: Response;
  try {
    response = await fetch(withQuery(path, options.query), {
      method,
      headers,
      credentials: "same-origin",
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
  } catch {
    throw new ApiError(0, { code: "network_error", message: "The server could not be reached." });
  }
  let payload: unknown = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  const envelope = payload as { success?: boolean; data?: T; error?: ErrorBody } | null;
  if (response.ok && envelope && envelope.success !== false) {
    return envelope.data as T;
  }
  const retryAfter = Number(response.headers.get("Retry-After")) || null;
  const error = envelope?.error ?? { code: `http_${response.status}`, message: response.statusText || "Request failed." };
  throw new ApiError(response.status, error, retryAfter);
}
