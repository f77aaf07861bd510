/** Renders a route of the hub with the real providers; the network is a table of canned /crm answers. */
import type { ReactElement } from "react";
import { render } from "@testing-library/react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { MemoryRouter, Route, Routes } from "react-router-dom";
import { vi } from "vitest";
import { setupI18n } from "../i18n";
import { SessionProvider } from "../session";
import type { Me, Role } from "../types/marketing";

export function meFor(role: Role, extra: Partial<Me> = {}): Me {
  const acme = { account_id: 1, name: "Acme", slug: "acme", role, currency: "USD", timezone: "America/Argentina/Buenos_Aires" };
  return {
    user: { id: 7, username: "alice", name: "Alice Anders", email: "alice@example.com", is_staff: role !== "seller" },
    memberships: [acme], account: acme, language: "es", ...extra,
  };
}

export type Answer = { status?: number; data?: unknown; error?: { code: string; message: string; fields?: Record<string, string[]> } } | (() => Promise<never>);

/** fetch() answering by "METHOD /path" (query ignored unless the key has one); records every call. */
export function stubApi(routes: Record<string, Answer>) {
  const calls: { method: string; url: string; body: unknown; headers: Record<string, string> }[] = [];
  const fetchMock = vi.fn(async (input: string, init: RequestInit = {}) => {
    const method = init.method ?? "GET";
    const url = String(input);
    calls.push({ method, url, body: init.body ? JSON.parse(String(init.body)) : undefined, headers: (init.headers ?? {}) as Record<string, string> });
    const answer = routes[`${method} ${url}`] ?? routes[`${method} ${url.split("?")[0]}`];
    if (typeof answer === "function") return answer();
    if (!answer) {
      return new Response(JSON.stringify({ success: false, error: { code: "not_found", message: "Not found." } }), { status: 404 });
    }
    const status = answer.status ?? 200;
    const body = answer.error ? { success: false, error: answer.error } : { success: true, data: answer.data, timestamp: "2026-11-29T12:00:00Z" };
    return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  });
  vi.stubGlobal("fetch", fetchMock);
  return calls;
}

export function renderAt(path: string, element: ReactElement, { me = meFor("ceo"), route = "*", language = "es" } = {}) {
  setupI18n(language);
  const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(
    <QueryClientProvider client={queryClient}>
      <SessionProvider initialMe={me}>
        <MemoryRouter initialEntries={[path]}>
          <Routes>
            <Route path={route} element={element} />
          </Routes>
        </MemoryRouter>
      </SessionProvider>
    </QueryClientProvider>,
  );
}
